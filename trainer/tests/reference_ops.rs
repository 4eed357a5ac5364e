//! The CPU reference ops checked against hand-computed cases and against central finite
//! differences of their own forwards. Tolerances are stated per check.

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

#[allow(clippy::too_many_arguments)]
fn shape(
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    groups: usize,
) -> Conv2dShape {
    Conv2dShape {
        n,
        c_in,
        h,
        w,
        c_out,
        kh: k,
        kw: k,
        stride,
        pad,
        groups,
    }
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
    let s = shape(1, 1, 4, 4, 1, 3, 1, 0, 1);
    let x: Vec<f32> = (1..=16).map(|v| v as f32).collect();
    let w = [1., 0., -1., 2., 0., -2., 1., 0., -1.];
    assert_eq!(conv2d_forward(&s, &x, &w, Some(&[0.5])), vec![-7.5; 4]);
    // Padding 1, all-ones kernel: the output is the 3×3 box sum with zeros outside.
    // Corner (0,0): 1+2+5+6 = 14; (0,1): 1+2+3+5+6+7 = 24; centre (1,1): 1+2+3+5+6+7+9+10+11 = 54.
    let s = shape(1, 1, 4, 4, 1, 3, 1, 1, 1);
    let y = conv2d_forward(&s, &x, &[1.0; 9], None);
    assert_eq!(y.len(), 16);
    assert_eq!(
        (y[0], y[1], y[5], y[15]),
        (14.0, 24.0, 54.0, 11. + 12. + 15. + 16.)
    );
    // Stride 2, padding 1: output 2×2 centred on input (0,0),(0,2),(2,0),(2,2):
    // 1+2+5+6 = 14; 2+3+4+6+7+8 = 30; 5+6+9+10+13+14 = 57; 6+7+8+10+11+12+14+15+16 = 99.
    let s = shape(1, 1, 4, 4, 1, 3, 2, 1, 1);
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
    let s = shape(n, c_in, 5, 6, c_out, 3, 2, 1, groups);
    let x = r.vec_uniform(s.input_len(), -1.0, 1.0);
    let w = r.vec_uniform(s.weight_len(), -1.0, 1.0);
    let y = conv2d_forward(&s, &x, &w, None);
    let sg = shape(n, c_in / groups, 5, 6, c_out / groups, 3, 2, 1, 1);
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
    let s = shape(1, 2, 3, 3, 2, 3, 1, 0, 2);
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
        shape(2, 3, 7, 5, 4, 3, 1, 1, 1),
        shape(1, 4, 6, 6, 8, 3, 2, 0, 2),
        shape(3, 5, 5, 5, 5, 3, 2, 1, 5),
        shape(2, 3, 4, 4, 6, 1, 1, 0, 1),
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
        shape(2, 3, 5, 4, 4, 3, 1, 1, 1),
        shape(1, 4, 7, 7, 6, 3, 2, 1, 2),
        shape(2, 3, 6, 5, 3, 3, 2, 0, 3),
        shape(1, 2, 3, 3, 3, 1, 1, 0, 1),
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
