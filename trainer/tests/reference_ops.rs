//! The CPU reference ops checked against hand-computed cases and against central finite
//! differences of their own forwards. Tolerances are stated per check.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

use limpq_trainer::reference::finite_diff::{dot, numeric_grad, worst_error};
use limpq_trainer::reference::rng::SeededRng;
use limpq_trainer::reference::*;
use limpq_trainer::shapes::Conv2dShape;

fn assert_close(name: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let (r, i) = worst_error(got, want, atol, rtol);
    assert!(
        r <= 1.0,
        "{name}: element {i}: got {} want {} (atol {atol}, rtol {rtol})",
        got[i],
        want[i]
    );
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|x| *x as f64).collect()
}

// ---------------------------------------------------------------- rng

#[test]
fn rng_is_deterministic_and_in_range() {
    let a = SeededRng::new(7).vec_uniform(1000, -1.0, 1.0);
    let b = SeededRng::new(7).vec_uniform(1000, -1.0, 1.0);
    let c = SeededRng::new(8).vec_uniform(1000, -1.0, 1.0);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
    let mean: f32 = a.iter().sum::<f32>() / a.len() as f32;
    assert!(mean.abs() < 0.1, "mean of U(-1,1) over 1000 draws: {mean}");
    let mut r = SeededRng::new(3);
    let mut seen = [0usize; 5];
    for _ in 0..5000 {
        seen[r.below(5)] += 1;
    }
    assert!(
        seen.iter().all(|&k| (800..1200).contains(&k)),
        "below(5) counts {seen:?}"
    );
}

// ---------------------------------------------------------------- matmul

#[test]
fn matmul_hand_case() {
    // [1 2 3; 4 5 6] · [7 8; 9 10; 11 12] = [58 64; 139 154]
    let c = matmul(
        2,
        3,
        2,
        &[1., 2., 3., 4., 5., 6.],
        &[7., 8., 9., 10., 11., 12.],
    );
    assert_eq!(c, vec![58., 64., 139., 154.]);
}

#[test]
fn matmul_matches_transposed_product() {
    // (A·B)ᵀ = Bᵀ·Aᵀ: an independent identity, on odd sizes.
    let mut r = SeededRng::new(1);
    let (m, k, n) = (5, 7, 3);
    let a = r.vec_uniform(m * k, -1.0, 1.0);
    let b = r.vec_uniform(k * n, -1.0, 1.0);
    let t = |v: &[f32], rows: usize, cols: usize| -> Vec<f32> {
        (0..cols * rows)
            .map(|i| v[(i % rows) * cols + i / rows])
            .collect()
    };
    let c = matmul(m, k, n, &a, &b);
    let ct = matmul(n, k, m, &t(&b, k, n), &t(&a, m, k));
    assert_close("matmul transpose", &t(&ct, n, m), &f64s(&c), 1e-6, 1e-6);
}

// ---------------------------------------------------------------- conv2d

#[test]
fn conv2d_hand_case_3x3_on_4x4() {
    // x = 1..16 in a 4×4 plane; w = [[1,0,-1],[2,0,-2],[1,0,-1]] (Sobel x), no padding, stride 1.
    // Output (2×2): each = (left col weighted 1,2,1) - (right col weighted 1,2,1)
    // window at (0,0): cols 0 and 2 of rows 0..2: left = 1+2*5+9 = 20, right = 3+2*7+11 = 28 → -8.
    // Every window of this linear ramp gives -8. Add bias 0.5 → -7.5.
    let s = Conv2dShape::square(1, 1, 4, 4, 1, 3, 1, 0, 1);
    let x: Vec<f32> = (1..=16).map(|v| v as f32).collect();
    let w = [1., 0., -1., 2., 0., -2., 1., 0., -1.];
    assert_eq!(conv2d_forward(&s, &x, &w, Some(&[0.5])), vec![-7.5; 4]);
    // Padding 1, all-ones kernel: the output is the 3×3 box sum with zeros outside.
    // Corner (0,0): 1+2+5+6 = 14; (0,1): 1+2+3+5+6+7 = 24; centre (1,1): 1+2+3+5+6+7+9+10+11 = 54.
    let s = Conv2dShape::square(1, 1, 4, 4, 1, 3, 1, 1, 1);
    let y = conv2d_forward(&s, &x, &[1.0; 9], None);
    assert_eq!(y.len(), 16);
    assert_eq!(
        (y[0], y[1], y[5], y[15]),
        (14.0, 24.0, 54.0, 11. + 12. + 15. + 16.)
    );
    // Stride 2, padding 1: output 2×2 centred on input (0,0),(0,2),(2,0),(2,2):
    // 1+2+5+6 = 14; 2+3+4+6+7+8 = 30; 5+6+9+10+13+14 = 57; 6+7+8+10+11+12+14+15+16 = 99.
    let s = Conv2dShape::square(1, 1, 4, 4, 1, 3, 2, 1, 1);
    assert_eq!(
        conv2d_forward(&s, &x, &[1.0; 9], None),
        vec![14.0, 30.0, 57.0, 99.0]
    );
}

#[test]
fn conv2d_groups_equal_separate_convs() {
    // A grouped conv is `groups` independent convs on channel slices; check against that.
    let mut r = SeededRng::new(11);
    let (n, c_in, c_out, groups) = (2, 6, 4, 2);
    let s = Conv2dShape::square(n, c_in, 5, 6, c_out, 3, 2, 1, groups);
    let x = r.vec_uniform(s.input_len(), -1.0, 1.0);
    let w = r.vec_uniform(s.weight_len(), -1.0, 1.0);
    let y = conv2d_forward(&s, &x, &w, None);
    let sg = Conv2dShape::square(n, c_in / groups, 5, 6, c_out / groups, 3, 2, 1, 1);
    let plane_in = 5 * 6;
    let plane_out = s.h_out() * s.w_out();
    for g in 0..groups {
        let xg: Vec<f32> = (0..n)
            .flat_map(|b| {
                let start = (b * c_in + g * c_in / groups) * plane_in;
                x[start..start + c_in / groups * plane_in].to_vec()
            })
            .collect();
        let wg = &w[g * sg.weight_len()..(g + 1) * sg.weight_len()];
        let yg = conv2d_forward(&sg, &xg, wg, None);
        for b in 0..n {
            let start = (b * c_out + g * c_out / groups) * plane_out;
            let got = &y[start..start + c_out / groups * plane_out];
            let want = &yg[b * c_out / groups * plane_out..(b + 1) * c_out / groups * plane_out];
            assert_eq!(got, want, "group {g} batch {b}");
        }
    }
}

#[test]
fn conv2d_depthwise_hand_case() {
    // Depthwise (groups = channels): channel c is convolved with its own kernel only.
    let s = Conv2dShape::square(1, 2, 3, 3, 2, 3, 1, 0, 2);
    let x: Vec<f32> = (0..18).map(|v| v as f32).collect();
    let mut w = vec![0.0; 18];
    w[4] = 2.0; // channel 0: centre tap ×2 → 2·x[0][1][1] = 2·4 = 8
    w[9] = 1.0; // channel 1: top-left tap → x[1][0][0] = 9
    assert_eq!(conv2d_forward(&s, &x, &w, None), vec![8.0, 9.0]);
}

#[test]
fn conv2d_matches_im2col_matmul() {
    // Independent implementation: im2col then matmul, per group.
    let mut r = SeededRng::new(5);
    for s in [
        Conv2dShape::square(2, 3, 7, 5, 4, 3, 1, 1, 1),
        Conv2dShape::square(1, 4, 6, 6, 8, 3, 2, 0, 2),
        Conv2dShape::square(3, 5, 5, 5, 5, 3, 2, 1, 5),
        Conv2dShape::square(2, 3, 4, 4, 6, 1, 1, 0, 1),
    ] {
        let x = r.vec_uniform(s.input_len(), -1.0, 1.0);
        let w = r.vec_uniform(s.weight_len(), -1.0, 1.0);
        let b = r.vec_uniform(s.c_out, -1.0, 1.0);
        let y = conv2d_forward(&s, &x, &w, Some(&b));
        let (ho, wo) = (s.h_out(), s.w_out());
        let (cin_g, cout_g) = (s.c_in / s.groups, s.c_out / s.groups);
        let kk = cin_g * s.kh * s.kw;
        let mut want = vec![0.0f64; s.output_len()];
        for n in 0..s.n {
            for g in 0..s.groups {
                let mut cols = vec![0.0f32; kk * ho * wo];
                for ci in 0..cin_g {
                    for ky in 0..s.kh {
                        for kx in 0..s.kw {
                            let row = (ci * s.kh + ky) * s.kw + kx;
                            for oy in 0..ho {
                                for ox in 0..wo {
                                    let iy = (oy * s.stride + ky) as isize - s.pad as isize;
                                    let ix = (ox * s.stride + kx) as isize - s.pad as isize;
                                    if iy >= 0
                                        && ix >= 0
                                        && (iy as usize) < s.h
                                        && (ix as usize) < s.w
                                    {
                                        cols[row * ho * wo + oy * wo + ox] =
                                            x[((n * s.c_in + g * cin_g + ci) * s.h + iy as usize)
                                                * s.w
                                                + ix as usize];
                                    }
                                }
                            }
                        }
                    }
                }
                let wg = &w[g * cout_g * kk..(g + 1) * cout_g * kk];
                let out = matmul(cout_g, kk, ho * wo, wg, &cols);
                for co in 0..cout_g {
                    for p in 0..ho * wo {
                        let c = g * cout_g + co;
                        want[(n * s.c_out + c) * ho * wo + p] =
                            out[co * ho * wo + p] as f64 + b[c] as f64;
                    }
                }
            }
        }
        assert_close(&format!("conv vs im2col {s:?}"), &y, &want, 1e-5, 1e-5);
    }
}

#[test]
fn conv2d_backwards_match_finite_differences() {
    // L = <r, conv(x, w) + b>. Conv is linear in x, w and b, so central differences are exact up
    // to f32 rounding of the outputs: tolerance 2e-3 absolute + 1e-3 relative.
    let mut r = SeededRng::new(9);
    for s in [
        Conv2dShape::square(2, 3, 5, 4, 4, 3, 1, 1, 1),
        Conv2dShape::square(1, 4, 7, 7, 6, 3, 2, 1, 2),
        Conv2dShape::square(2, 3, 6, 5, 3, 3, 2, 0, 3),
        Conv2dShape::square(1, 2, 3, 3, 3, 1, 1, 0, 1),
    ] {
        let x = r.vec_uniform(s.input_len(), -1.0, 1.0);
        let w = r.vec_uniform(s.weight_len(), -1.0, 1.0);
        let b = r.vec_uniform(s.c_out, -1.0, 1.0);
        let dy = r.vec_uniform(s.output_len(), -1.0, 1.0);
        let h = 1e-2;
        let num_dx = numeric_grad(&x, h, |x| dot(&dy, &conv2d_forward(&s, x, &w, Some(&b))));
        let num_dw = numeric_grad(&w, h, |w| dot(&dy, &conv2d_forward(&s, &x, w, Some(&b))));
        let num_db = numeric_grad(&b, h, |b| dot(&dy, &conv2d_forward(&s, &x, &w, Some(b))));
        assert_close(
            &format!("conv dx {s:?}"),
            &conv2d_backward_data(&s, &dy, &w),
            &num_dx,
            2e-3,
            1e-3,
        );
        assert_close(
            &format!("conv dw {s:?}"),
            &conv2d_backward_weight(&s, &x, &dy),
            &num_dw,
            2e-3,
            1e-3,
        );
        assert_close(
            &format!("conv db {s:?}"),
            &conv2d_backward_bias(&s, &dy),
            &num_db,
            2e-3,
            1e-3,
        );
    }
}

// ---------------------------------------------------------------- helpers for the other ops

/// `L = <r, f(x)>`: checks `backward(r)` against central differences with step `h`.
#[allow(clippy::too_many_arguments)]
fn check_grad(
    name: &str,
    x: &[f32],
    r: &[f32],
    h: f32,
    atol: f64,
    rtol: f64,
    f: impl Fn(&[f32]) -> Vec<f32>,
    analytic: &[f32],
) {
    let numeric = numeric_grad(x, h, |x| dot(r, &f(x)));
    assert_close(name, analytic, &numeric, atol, rtol);
}

/// `len` values spaced `gap` apart in a seeded random order (no near-ties: max pool's argmax and
/// ReLU masks are stable under perturbations smaller than gap/2).
fn spaced(r: &mut SeededRng, len: usize, start: f32, gap: f32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..len).map(|i| start + gap * i as f32).collect();
    r.shuffle(&mut v);
    v
}

// ---------------------------------------------------------------- batch norm

#[test]
fn batch_norm_known_vector() {
    // One channel, x = [1, 2, 3, 4]: mean 2.5, biased var 1.25, unbiased var 5/3.
    let d = Nchw::new(1, 1, 1, 4);
    let (mut rm, mut rv) = (vec![0.0f32], vec![1.0f32]);
    let cfg = BatchNormConfig::default();
    let (y, saved) =
        batch_norm_train_forward(&d, &[1., 2., 3., 4.], &[2.0], &[1.0], &mut rm, &mut rv, cfg);
    let inv = 1.0 / (1.25f64 + 1e-5).sqrt();
    let want: Vec<f64> = [1., 2., 3., 4.]
        .iter()
        .map(|x| 2.0 * (x - 2.5) * inv + 1.0)
        .collect();
    assert_close("bn y", &y, &want, 1e-6, 1e-6);
    assert_eq!(saved.mean, vec![2.5]);
    assert_close("bn inv_std", &saved.inv_std, &[inv], 0.0, 1e-6);
    // running_mean = 0.9·0 + 0.1·2.5; running_var = 0.9·1 + 0.1·(5/3) (unbiased, like PyTorch).
    assert_close("bn running_mean", &rm, &[0.25], 1e-7, 1e-6);
    assert_close("bn running_var", &rv, &[0.9 + 0.1 * 5.0 / 3.0], 1e-7, 1e-6);
    // Eval with those running stats: (x - 0.25)/sqrt(rv + eps)·2 + 1.
    let ye = batch_norm_eval_forward(&d, &[1., 2., 3., 4.], &[2.0], &[1.0], &rm, &rv, 1e-5);
    let inv_e = 1.0 / (rv[0] as f64 + 1e-5).sqrt();
    let want_e: Vec<f64> = [1., 2., 3., 4.]
        .iter()
        .map(|x| 2.0 * (x - 0.25) * inv_e + 1.0)
        .collect();
    assert_close("bn eval y", &ye, &want_e, 1e-6, 1e-6);
}

#[test]
fn batch_norm_statistics_span_batch_and_space_per_channel() {
    // Two samples, two channels, 2×1 planes. Channel 0 gets {0,2,4,6}, channel 1 {10,10,10,10}.
    let d = Nchw::new(2, 2, 2, 1);
    let x = [0., 2., 10., 10., 4., 6., 10., 10.];
    let (mut rm, mut rv) = (vec![0.0; 2], vec![1.0; 2]);
    let (y, saved) = batch_norm_train_forward(
        &d,
        &x,
        &[1., 1.],
        &[0., 0.],
        &mut rm,
        &mut rv,
        BatchNormConfig::default(),
    );
    assert_eq!(saved.mean, vec![3.0, 10.0]);
    // channel 0: biased var 5; channel 1: var 0 → inv_std = 1/sqrt(eps), y = 0.
    assert_close(
        "inv_std",
        &saved.inv_std,
        &[1.0 / 5.00001f64.sqrt(), 1.0 / 1e-5f64.sqrt()],
        0.0,
        1e-5,
    );
    assert_eq!((y[2], y[3], y[6], y[7]), (0.0, 0.0, 0.0, 0.0));
    assert_close(
        "running_var",
        &rv,
        &[0.9 + 0.1 * 20.0 / 3.0, 0.9],
        1e-6,
        1e-6,
    );
}

#[test]
fn batch_norm_backward_matches_finite_differences() {
    // BN is smooth; h = 1e-2 on inputs of scale 1: truncation + f32 output noise < 1e-4.
    // Tolerance: 5e-4 absolute + 5e-3 relative.
    let mut r = SeededRng::new(21);
    for d in [
        Nchw::new(2, 3, 4, 5),
        Nchw::new(1, 2, 3, 3),
        Nchw::new(5, 1, 1, 2),
    ] {
        let x = r.vec_uniform(d.len(), -2.0, 2.0);
        let gamma = r.vec_uniform(d.c, 0.5, 1.5);
        let beta = r.vec_uniform(d.c, -0.5, 0.5);
        let dy = r.vec_uniform(d.len(), -1.0, 1.0);
        let cfg = BatchNormConfig::default();
        let fwd = |x: &[f32], g: &[f32], b: &[f32]| {
            let (mut rm, mut rv) = (vec![0.0; d.c], vec![1.0; d.c]);
            batch_norm_train_forward(&d, x, g, b, &mut rm, &mut rv, cfg)
        };
        let (_, saved) = fwd(&x, &gamma, &beta);
        let (dx, dg, db) = batch_norm_backward(&d, &x, &dy, &gamma, &saved);
        check_grad(
            &format!("bn dx {d:?}"),
            &x,
            &dy,
            1e-2,
            5e-4,
            5e-3,
            |x| fwd(x, &gamma, &beta).0,
            &dx,
        );
        check_grad(
            &format!("bn dgamma {d:?}"),
            &gamma,
            &dy,
            1e-2,
            5e-4,
            5e-3,
            |g| fwd(&x, g, &beta).0,
            &dg,
        );
        check_grad(
            &format!("bn dbeta {d:?}"),
            &beta,
            &dy,
            1e-2,
            5e-4,
            5e-3,
            |b| fwd(&x, &gamma, b).0,
            &db,
        );

        let rm = r.vec_uniform(d.c, -0.5, 0.5);
        let rv = r.vec_uniform(d.c, 0.5, 2.0);
        let (dx, dg, db) = batch_norm_eval_backward(&d, &x, &dy, &gamma, &rm, &rv, 1e-5);
        let ev =
            |x: &[f32], g: &[f32], b: &[f32]| batch_norm_eval_forward(&d, x, g, b, &rm, &rv, 1e-5);
        check_grad(
            "bn eval dx",
            &x,
            &dy,
            1e-2,
            5e-4,
            5e-3,
            |x| ev(x, &gamma, &beta),
            &dx,
        );
        check_grad(
            "bn eval dgamma",
            &gamma,
            &dy,
            1e-2,
            5e-4,
            5e-3,
            |g| ev(&x, g, &beta),
            &dg,
        );
        check_grad(
            "bn eval dbeta",
            &beta,
            &dy,
            1e-2,
            5e-4,
            5e-3,
            |b| ev(&x, &gamma, b),
            &db,
        );
    }
}

// ---------------------------------------------------------------- relu, relu6, add

#[test]
fn relu_relu6_add_hand_and_finite_differences() {
    let x = [-1.0, 0.0, 0.5, 5.9, 6.0, 7.0];
    assert_eq!(relu_forward(&x), vec![0.0, 0.0, 0.5, 5.9, 6.0, 7.0]);
    assert_eq!(relu6_forward(&x), vec![0.0, 0.0, 0.5, 5.9, 6.0, 6.0]);
    let dy = [1.0; 6];
    assert_eq!(relu_backward(&x, &dy), vec![0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    assert_eq!(relu6_backward(&x, &dy), vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    assert_eq!(add_forward(&[1.0, 2.0], &[0.5, -3.0]), vec![1.5, -1.0]);

    // Away from the kinks (values spaced 0.1 apart, none within 0.05 of 0 or 6), h = 1e-2.
    let mut r = SeededRng::new(4);
    let x: Vec<f32> = spaced(&mut r, 90, -1.95, 0.1);
    let dy = r.vec_uniform(x.len(), -1.0, 1.0);
    check_grad(
        "relu",
        &x,
        &dy,
        1e-2,
        1e-4,
        1e-3,
        relu_forward,
        &relu_backward(&x, &dy),
    );
    check_grad(
        "relu6",
        &x,
        &dy,
        1e-2,
        1e-4,
        1e-3,
        relu6_forward,
        &relu6_backward(&x, &dy),
    );
    let b = r.vec_uniform(x.len(), -1.0, 1.0);
    let (da, db) = add_backward(&dy);
    check_grad(
        "add a",
        &x,
        &dy,
        1e-2,
        1e-4,
        1e-3,
        |a| add_forward(a, &b),
        &da,
    );
    check_grad(
        "add b",
        &b,
        &dy,
        1e-2,
        1e-4,
        1e-3,
        |b| add_forward(&x, b),
        &db,
    );
}

// ---------------------------------------------------------------- pooling

#[test]
fn pooling_hand_cases() {
    let d = Nchw::new(1, 1, 4, 4);
    let x: Vec<f32> = (1..=16).map(|v| v as f32).collect();
    let p = Pool2d {
        k: 2,
        stride: 2,
        pad: 0,
    };
    let (y, arg) = max_pool2d_forward(&d, &p, &x);
    assert_eq!(y, vec![6., 8., 14., 16.]);
    assert_eq!(arg, vec![5, 7, 13, 15]);
    assert_eq!(
        max_pool2d_backward(&d, &arg, &[1., 2., 3., 4.])[5..8],
        [1., 0., 2.]
    );
    assert_eq!(avg_pool2d_forward(&d, &p, &x), vec![3.5, 5.5, 11.5, 13.5]);
    // 3×3, stride 1, pad 1, count_include_pad: corner = (1+2+5+6)/9, centre (1,1) = 54/9.
    let p3 = Pool2d {
        k: 3,
        stride: 1,
        pad: 1,
    };
    let y = avg_pool2d_forward(&d, &p3, &x);
    assert_close(
        "avg corner/centre",
        &[y[0], y[5]],
        &[14.0 / 9.0, 6.0],
        1e-6,
        1e-6,
    );
    // Max with padding: padding is -inf, so an all-negative corner still picks a real value.
    let neg: Vec<f32> = x.iter().map(|v| -v).collect();
    let (y, arg) = max_pool2d_forward(
        &d,
        &Pool2d {
            k: 3,
            stride: 2,
            pad: 1,
        },
        &neg,
    );
    assert_eq!((y[0], arg[0]), (-1.0, 0));
    // Ties: the first in window order wins.
    let (_, arg) = max_pool2d_forward(&Nchw::new(1, 1, 2, 2), &p, &[1.0, 3.0, 3.0, 0.0]);
    assert_eq!(arg, vec![1]);
    // Batched channels: indices point into the whole tensor.
    let (_, arg) = max_pool2d_forward(
        &Nchw::new(2, 1, 2, 2),
        &p,
        &[0.0, 1.0, 2.0, 0.0, 9.0, 0.0, 0.0, 0.0],
    );
    assert_eq!(arg, vec![2, 4]);
    assert_eq!(
        global_avg_pool_forward(&Nchw::new(2, 1, 2, 2), &[1., 2., 3., 4., 0., 0., 0., 8.]),
        vec![2.5, 2.0]
    );
}

#[test]
fn pooling_backwards_match_finite_differences() {
    // Max pool on values spaced 0.05 apart (h = 1e-2 never changes an argmax). Pooling is
    // piecewise linear: tolerance 1e-4 absolute + 1e-3 relative.
    let mut r = SeededRng::new(8);
    for (d, p) in [
        (
            Nchw::new(2, 3, 5, 7),
            Pool2d {
                k: 2,
                stride: 2,
                pad: 0,
            },
        ),
        (
            Nchw::new(1, 2, 6, 6),
            Pool2d {
                k: 3,
                stride: 2,
                pad: 1,
            },
        ),
        (
            Nchw::new(2, 1, 5, 5),
            Pool2d {
                k: 3,
                stride: 1,
                pad: 1,
            },
        ),
    ] {
        let x = spaced(&mut r, d.len(), -1.0, 0.05);
        let o = p.out_dims(&d);
        let dy = r.vec_uniform(o.len(), -1.0, 1.0);
        let (_, arg) = max_pool2d_forward(&d, &p, &x);
        check_grad(
            &format!("maxpool {d:?} {p:?}"),
            &x,
            &dy,
            1e-2,
            1e-4,
            1e-3,
            |x| max_pool2d_forward(&d, &p, x).0,
            &max_pool2d_backward(&d, &arg, &dy),
        );
        check_grad(
            &format!("avgpool {d:?} {p:?}"),
            &x,
            &dy,
            1e-2,
            1e-4,
            1e-3,
            |x| avg_pool2d_forward(&d, &p, x),
            &avg_pool2d_backward(&d, &p, &dy),
        );
        let dg = r.vec_uniform(d.n * d.c, -1.0, 1.0);
        check_grad(
            &format!("gap {d:?}"),
            &x,
            &dg,
            1e-2,
            1e-4,
            1e-3,
            |x| global_avg_pool_forward(&d, x),
            &global_avg_pool_backward(&d, &dg),
        );
    }
}

// ---------------------------------------------------------------- linear

#[test]
fn linear_hand_case_and_finite_differences() {
    // x [1, 2] = [1, 2]; W [[1, 0], [2, -1], [0.5, 0.5]]; b = [0, 1, -1] → [1, 1, 0.5].
    let y = linear_forward(
        1,
        2,
        3,
        &[1., 2.],
        &[1., 0., 2., -1., 0.5, 0.5],
        Some(&[0., 1., -1.]),
    );
    assert_eq!(y, vec![1.0, 1.0, 0.5]);
    let (dx, dw, db) = linear_backward(
        1,
        2,
        3,
        &[1., 2.],
        &[1., 0., 2., -1., 0.5, 0.5],
        &[1., 0., 2.],
    );
    assert_eq!(dx, vec![2.0, 1.0]); // dy·W = 1·[1,0] + 2·[0.5,0.5]
    assert_eq!(dw, vec![1., 2., 0., 0., 2., 4.]);
    assert_eq!(db, vec![1., 0., 2.]);

    let mut r = SeededRng::new(31);
    let (n, i, o) = (3, 7, 5);
    let x = r.vec_uniform(n * i, -1.0, 1.0);
    let w = r.vec_uniform(o * i, -1.0, 1.0);
    let b = r.vec_uniform(o, -1.0, 1.0);
    let dy = r.vec_uniform(n * o, -1.0, 1.0);
    let (dx, dw, db) = linear_backward(n, i, o, &x, &w, &dy);
    // Linear: exact up to f32 output rounding; 1e-4 absolute + 1e-3 relative.
    check_grad(
        "linear dx",
        &x,
        &dy,
        1e-2,
        1e-4,
        1e-3,
        |x| linear_forward(n, i, o, x, &w, Some(&b)),
        &dx,
    );
    check_grad(
        "linear dw",
        &w,
        &dy,
        1e-2,
        1e-4,
        1e-3,
        |w| linear_forward(n, i, o, &x, w, Some(&b)),
        &dw,
    );
    check_grad(
        "linear db",
        &b,
        &dy,
        1e-2,
        1e-4,
        1e-3,
        |b| linear_forward(n, i, o, &x, &w, Some(b)),
        &db,
    );
    assert_eq!(
        matmul(
            n,
            i,
            o,
            &x,
            &(0..i * o)
                .map(|k| w[(k % o) * i + k / o])
                .collect::<Vec<_>>()
        ),
        linear_forward(n, i, o, &x, &w, None)
    );
}

// ---------------------------------------------------------------- cross-entropy

#[test]
fn cross_entropy_known_logits() {
    // Uniform logits: loss = ln 3 whatever the smoothing.
    let ce = softmax_cross_entropy(1, 3, &[0., 0., 0.], &[0], 0.1);
    assert!((ce.loss as f64 - 3f64.ln()).abs() < 1e-6);
    // logits [1,2,3], label 2, ε = 0.1: -log p = [2.4076, 1.4076, 0.4076] (lse = 3.40760596);
    // loss = 0.9·0.40760596 + 0.1·mean(-log p) = 0.9·0.40760596 + 0.1·1.40760596 = 0.50760596
    // (what torch.nn.functional.cross_entropy(..., label_smoothing=0.1) gives).
    let ce = softmax_cross_entropy(1, 3, &[1., 2., 3.], &[2], 0.1);
    assert!((ce.loss as f64 - 0.50760596).abs() < 1e-6, "{}", ce.loss);
    let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    let p: Vec<f64> = [1., 2., 3.].iter().map(|v: &f64| (v - lse).exp()).collect();
    let want = [p[0] - 0.1 / 3.0, p[1] - 0.1 / 3.0, p[2] - 0.9 - 0.1 / 3.0];
    assert_close("ce dlogits", &ce.dlogits, &want, 1e-7, 1e-6);
    assert_eq!(ce.correct, 1);
    // Batch of two: mean over the batch; accuracy counts argmax == label (first max on ties).
    let ce2 = softmax_cross_entropy(2, 3, &[1., 2., 3., 5., 5., 0.], &[2, 1], 0.0);
    let l2 = (lse - 3.0) + (5f64.exp() * 2.0 + 1.0).ln() - 5.0;
    assert!(
        (ce2.loss as f64 - l2 / 2.0).abs() < 1e-6,
        "{} vs {}",
        ce2.loss,
        l2 / 2.0
    );
    assert_eq!(ce2.correct, 1);
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    // Smooth; h = 1e-2, f32 loss noise ~1e-7/2e-2 and O(h²) truncation: 2e-4 absolute + 1e-2 relative.
    let mut r = SeededRng::new(12);
    for (n, k, eps) in [(4, 10, 0.1f32), (3, 5, 0.0), (1, 2, 0.3)] {
        let logits = r.vec_uniform(n * k, -3.0, 3.0);
        let labels: Vec<u32> = (0..n).map(|_| r.below(k) as u32).collect();
        let ce = softmax_cross_entropy(n, k, &logits, &labels, eps);
        let numeric = numeric_grad(&logits, 1e-2, |l| {
            softmax_cross_entropy(n, k, l, &labels, eps).loss as f64
        });
        assert_close(
            &format!("ce n{n} k{k} eps{eps}"),
            &ce.dlogits,
            &numeric,
            2e-4,
            1e-2,
        );
    }
}

// ---------------------------------------------------------------- sgd

#[test]
fn sgd_matches_pytorch_sequence() {
    // p = 1, g = 0.5 twice, lr 0.1, momentum 0.9, wd 0.01 (torch.optim.SGD by hand):
    // step 1: d = 0.5 + 0.01 = 0.51, buf = 0.51, p = 0.949
    // step 2: d = 0.5 + 0.00949 = 0.50949, buf = 0.9·0.51 + 0.50949 = 0.96849, p = 0.852151
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.01,
        nesterov: false,
        clip: None,
    };
    let (mut p, mut buf) = (vec![1.0f32], vec![0.0f32]);
    sgd_step(&cfg, &mut p, &[0.5], &mut buf);
    assert_close("sgd p1", &p, &[0.949], 1e-7, 1e-6);
    assert_close("sgd buf1", &buf, &[0.51], 1e-7, 1e-6);
    sgd_step(&cfg, &mut p, &[0.5], &mut buf);
    assert_close("sgd p2", &p, &[0.852151], 1e-7, 1e-6);
    assert_close("sgd buf2", &buf, &[0.96849], 1e-7, 1e-6);
    // Nesterov step 1: buf = 0.51, d = 0.51 + 0.9·0.51 = 0.969, p = 0.9031.
    let nes = SgdConfig {
        nesterov: true,
        ..cfg
    };
    let (mut p, mut buf) = (vec![1.0f32], vec![0.0f32]);
    sgd_step(&nes, &mut p, &[0.5], &mut buf);
    assert_close("nesterov p1", &p, &[0.9031], 1e-7, 1e-6);
    // Clip ±1 before weight decay: g = 5 → 1; no momentum: p = 1 - 0.1·(1 + 0.01) = 0.899.
    let clip = SgdConfig {
        momentum: 0.0,
        clip: Some(1.0),
        ..cfg
    };
    let (mut p, mut buf) = (vec![1.0f32], vec![0.0f32]);
    sgd_step(&clip, &mut p, &[5.0], &mut buf);
    assert_close("clip p1", &p, &[0.899], 1e-7, 1e-6);
    assert_eq!(buf, vec![0.0], "no momentum: buffer untouched");
    assert_eq!(cosine_lr(0.01, 0, 100), 0.01);
    assert!((cosine_lr(0.01, 50, 100) - 0.005).abs() < 1e-9);
    assert!(cosine_lr(0.01, 100, 100).abs() < 1e-9);
}

// ---------------------------------------------------------------- lsq

#[test]
fn lsq_ranges() {
    assert_eq!(lsq_range(2, true), (-2.0, 1.0));
    assert_eq!(lsq_range(4, true), (-8.0, 7.0));
    assert_eq!(lsq_range(2, false), (0.0, 3.0));
    assert_eq!(lsq_range(8, false), (0.0, 255.0));
}

#[test]
fn lsq_hand_cases() {
    // Unsigned 2 bits (Qp = 3), s = 1: v = x. Rounds half to even: 0.5→0, 1.5→2, 2.5→2.
    let x = [0.5, 1.5, 2.5, -1.0, 4.0, 2.2];
    assert_eq!(
        lsq_quantize_forward(&x, 1.0, 2, false),
        vec![0., 2., 2., 0., 3., 2.]
    );
    let (dx, ds) = lsq_quantize_backward(&x, 1.0, 2, false, &[1.0; 6]);
    assert_eq!(dx, vec![1., 1., 1., 0., 0., 1.]);
    // t = [-0.5, 0.5, -0.5, Qn = 0, Qp = 3, -0.2], Σ = 2.3, g = 1/sqrt(6·3).
    assert!((ds as f64 - 2.3 / 18f64.sqrt()).abs() < 1e-6, "{ds}");
    // Signed 2 bits (Qn = -2, Qp = 1), s = 0.5: v = [-6, -0.5, 1.5, 1.0 (boundary, inside)].
    let x = [-3.0, -0.25, 0.75, 0.5];
    assert_eq!(
        lsq_quantize_forward(&x, 0.5, 2, true),
        vec![-1.0, 0.0, 0.5, 0.5]
    );
    let dy = [1.0, 2.0, 1.0, 1.0];
    let (dx, ds) = lsq_quantize_backward(&x, 0.5, 2, true, &dy);
    assert_eq!(dx, vec![0.0, 2.0, 0.0, 1.0]);
    // t = [Qn = -2, round(-0.5) + 0.5 = 0.5, Qp = 1, 0]; Σ dy·t = -2 + 1 + 1 + 0 = 0; g = 1/2.
    assert_eq!(ds, 0.0);
    let (_, ds) = lsq_quantize_backward(&x, 0.5, 2, true, &[1.0, 1.0, 3.0, 1.0]);
    assert!((ds as f64 - (-2.0 + 0.5 + 3.0) / 2.0).abs() < 1e-6, "{ds}");
    // Step-size inits (docs/METHOD.md): weights max(|m-3σ|, |m+3σ|)/2^(b-1), σ unbiased;
    // activations 2·mean|x|/sqrt(Qp).
    let w = [1.0, -1.0, 1.0, -1.0]; // mean 0, unbiased σ = sqrt(4/3)
    assert!((lsq_init_weight_scale(&w, 4) as f64 - 3.0 * (4f64 / 3.0).sqrt() / 8.0).abs() < 1e-6);
    assert!((lsq_init_act_scale(&[1.0, -3.0], 2) as f64 - 2.0 * 2.0 / 3f64.sqrt()).abs() < 1e-6);
}

#[test]
fn lsq_step_gradient_matches_ste_surrogate() {
    // LSQ's ds is the derivative of the surrogate q(s) = (clamp(x/s) + c)·s with
    // c = round(clamp(x/s₀)) - clamp(x/s₀) held constant (the straight-through estimator), times g.
    // Central differences of that surrogate in f64, h = 1e-6·s₀: tolerance 1e-5 abs + 1e-4 rel.
    let mut r = SeededRng::new(17);
    for (bits, signed, n) in [
        (2, true, 50),
        (4, true, 200),
        (3, false, 120),
        (8, false, 64),
    ] {
        let (qn, qp) = lsq_range(bits, signed);
        let lo = if signed { -1.5 } else { -0.2 };
        let x = r.vec_uniform(n, lo, 1.5);
        let dy = r.vec_uniform(n, -1.0, 1.0);
        let s0 = if signed { 1.2 / (qp + 1.0) } else { 1.2 / qp };
        let (dx, ds) = lsq_quantize_backward(&x, s0, bits, signed, &dy);
        let s0d = s0 as f64;
        let c: Vec<f64> = x
            .iter()
            .map(|v| {
                let cl = (*v as f64 / s0d).clamp(qn as f64, qp as f64);
                ((*v / s0).clamp(qn, qp).round_ties_even() as f64) - cl
            })
            .collect();
        let surrogate = |s: f64| -> f64 {
            x.iter()
                .zip(&c)
                .zip(&dy)
                .map(|((v, c), g)| {
                    ((*v as f64 / s).clamp(qn as f64, qp as f64) + c) * s * *g as f64
                })
                .sum()
        };
        let h = 1e-6 * s0d;
        let numeric =
            (surrogate(s0d + h) - surrogate(s0d - h)) / (2.0 * h) / ((n as f64) * qp as f64).sqrt();
        assert!(
            (ds as f64 - numeric).abs() <= 1e-5 + 1e-4 * numeric.abs(),
            "bits {bits} signed {signed}: ds {ds} vs {numeric}"
        );
        let inside = x.iter().filter(|v| (qn..=qp).contains(&(**v / s0))).count();
        assert!(
            inside > 0 && inside < n,
            "the sample must cover inside and outside the range"
        );
        for (i, v) in x.iter().enumerate() {
            let want = if (qn..=qp).contains(&(v / s0)) {
                dy[i]
            } else {
                0.0
            };
            assert_eq!(dx[i], want);
        }
        // Forward values lie on the grid s·{Qn..Qp}.
        for q in lsq_quantize_forward(&x, s0, bits, signed) {
            let k = q / s0;
            assert!(
                k >= qn && k <= qp && (k - k.round()).abs() < 1e-4,
                "{q} not on the grid"
            );
        }
    }
}
