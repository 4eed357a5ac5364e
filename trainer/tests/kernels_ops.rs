//! Element-wise, loss, batch-norm, pooling and SGD kernels against the CPU reference
//! (`limpq_trainer::reference`) on seeded U(-1,1) data, forward and backward, with shapes
//! smaller than a workgroup, uneven, batched and 1×1 spatial. Tolerances are stated per op.
//! Skips (with a printed reason) only when no GPU adapter exists; lavapipe runs them.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

mod common;

use common::{assert_close, gpu_or_skip, Tol};
use limpq_trainer::gpu::Gpu;
use limpq_trainer::kernels::elementwise::{Add, Axpy, Fill, Relu, ReluBackward};
use limpq_trainer::kernels::loss::SoftmaxCrossEntropy;
use limpq_trainer::kernels::norm::{BatchNorm2d, BatchNorm2dBackward, BnMode, BnShape, BnTensors};
use limpq_trainer::kernels::optim::{Sgd, SgdConfig};
use limpq_trainer::kernels::pool::{
    AvgPool2d, AvgPool2dBackward, GlobalAvgPool, GlobalAvgPoolBackward, MaxPool2d,
    MaxPool2dBackward, PoolShape,
};
use limpq_trainer::kernels::{Recorder, Tensor};
use limpq_trainer::reference;
use limpq_trainer::reference::rng::SeededRng;
use limpq_trainer::reference::{BatchNormConfig, BatchNormSaved, Nchw, Pool2d};

fn up(gpu: &Gpu, data: &[f32]) -> Tensor {
    Tensor::from_f32(gpu, data, "test").unwrap()
}

/// A tensor full of NaN: an output the kernel must overwrite everywhere.
fn poisoned(gpu: &Gpu, len: usize) -> Tensor {
    up(gpu, &vec![f32::NAN; len])
}

/// Exact: results that involve no rounding (selection, copies, one f32 add).
const EXACT: Tol = Tol { abs: 0.0, rel: 0.0 };

// ---------------------------------------------------------------- elementwise

/// Element counts: below one workgroup, uneven, several workgroups.
const LENS: [usize; 4] = [1, 37, 3 * 5 * 7 * 7, 2 * 17 * 9 * 9];

/// U(-8, 8) with exact 0 and 6 sprinkled in, so ReLU6's both ends and ReLU's 0 are hit.
fn relu_input(rng: &mut SeededRng, len: usize) -> Vec<f32> {
    let mut x = rng.vec_uniform(len, -8.0, 8.0);
    for (i, v) in x.iter_mut().enumerate() {
        match i % 11 {
            3 => *v = 0.0,
            7 => *v = 6.0,
            _ => {}
        }
    }
    x
}

#[test]
fn relu_and_relu6_forward_backward() {
    let Some(gpu) = gpu_or_skip("relu") else {
        return;
    };
    for &len in &LENS {
        let mut rng = SeededRng::new(100 + len as u64);
        let x = relu_input(&mut rng, len);
        let dy = rng.vec_uniform(len, -1.0, 1.0);
        let (tx, tdy) = (up(gpu, &x), up(gpu, &dy));
        for cap in [None, Some(6.0)] {
            let (ty, tdx) = (poisoned(gpu, len), poisoned(gpu, len));
            let f = Relu::new(gpu, &tx, &ty, cap).unwrap();
            let b = ReluBackward::new(gpu, &tx, &tdy, &tdx, cap).unwrap();
            let mut rec = Recorder::new(gpu);
            f.record(&mut rec);
            b.record(&mut rec);
            let (iy, idx) = (rec.read(&ty), rec.read(&tdx));
            let out = rec.submit().unwrap();
            let (want_y, want_dx) = match cap {
                None => (
                    reference::relu_forward(&x),
                    reference::relu_backward(&x, &dy),
                ),
                Some(_) => (
                    reference::relu6_forward(&x),
                    reference::relu6_backward(&x, &dy),
                ),
            };
            let what = format!("relu cap {cap:?} len {len}");
            assert_close(&format!("{what} y"), out.f32(iy), &want_y, EXACT);
            assert_close(&format!("{what} dx"), out.f32(idx), &want_dx, EXACT);
        }
    }
}

#[test]
fn add_axpy_fill() {
    let Some(gpu) = gpu_or_skip("add/axpy/fill") else {
        return;
    };
    for &len in &LENS {
        let mut rng = SeededRng::new(200 + len as u64);
        let a = rng.vec_uniform(len, -1.0, 1.0);
        let b = rng.vec_uniform(len, -1.0, 1.0);
        let (ta, tb, ty) = (up(gpu, &a), up(gpu, &b), poisoned(gpu, len));
        let add = Add::new(gpu, &ta, &tb, &ty).unwrap();
        // Accumulate twice into a copy of b with different alphas: b + 0.5·a - 2·a.
        let acc = up(gpu, &b);
        let mut axpy = Axpy::new(gpu, &ta, &acc, 0.5).unwrap();
        let filled = poisoned(gpu, len);
        let fill = Fill::new(gpu, &filled, -3.25).unwrap();
        let mut rec = Recorder::new(gpu);
        add.record(&mut rec);
        axpy.record(&mut rec);
        fill.record(&mut rec);
        let (iy, ifill) = (rec.read(&ty), rec.read(&filled));
        let out = rec.submit().unwrap();
        let what = format!("len {len}");
        assert_close(
            &format!("add {what}"),
            out.f32(iy),
            &reference::add_forward(&a, &b),
            EXACT,
        );
        assert_close(
            &format!("fill {what}"),
            out.f32(ifill),
            &vec![-3.25; len],
            EXACT,
        );
        axpy.set_alpha(gpu, -2.0);
        let mut rec = Recorder::new(gpu);
        axpy.record(&mut rec);
        let i = rec.read(&acc);
        let out = rec.submit().unwrap();
        let want: Vec<f32> = a
            .iter()
            .zip(&b)
            .map(|(a, b)| (*b as f64 + 0.5 * *a as f64 - 2.0 * *a as f64) as f32)
            .collect();
        // Two f32 multiply-adds (possibly fused): a few ulps of values of size ≤ 3.
        assert_close(
            &format!("axpy {what}"),
            out.f32(i),
            &want,
            Tol {
                abs: 1e-6,
                rel: 1e-6,
            },
        );
    }
}

#[test]
fn elementwise_rejects_wrong_lengths() {
    let Some(gpu) = gpu_or_skip("elementwise lengths") else {
        return;
    };
    let (a, b) = (poisoned(gpu, 5), poisoned(gpu, 6));
    assert!(Relu::new(gpu, &a, &b, None).is_err());
    assert!(Relu::new(gpu, &a, &poisoned(gpu, 5), Some(-1.0)).is_err());
    assert!(Add::new(gpu, &a, &b, &a).is_err());
    assert!(Axpy::new(gpu, &a, &b, 1.0).is_err());
}

// ---------------------------------------------------------------- loss

fn check_xent(gpu: &Gpu, n: usize, classes: usize, eps: f32) {
    let mut rng = SeededRng::new(300 + (n * 31 + classes) as u64);
    let mut logits: Vec<f32> = rng.vec_uniform(n * classes, -4.0, 4.0);
    let labels: Vec<u32> = (0..n).map(|_| rng.below(classes) as u32).collect();
    // A row of equal logits: the first maximum (index 0) is the argmax.
    if n > 2 && classes > 1 {
        logits[2 * classes..3 * classes].fill(0.5);
    }
    let want = reference::softmax_cross_entropy(n, classes, &logits, &labels, eps);
    let tl = up(gpu, &logits);
    let ty = Tensor::from_u32(gpu, &labels, "labels").unwrap();
    let (td, tloss, tcorrect) = (
        poisoned(gpu, n * classes),
        poisoned(gpu, 1),
        poisoned(gpu, 1),
    );
    let op =
        SoftmaxCrossEntropy::new(gpu, n, classes, &tl, &ty, &td, &tloss, &tcorrect, eps).unwrap();
    let mut rec = Recorder::new(gpu);
    op.record(&mut rec);
    let (id, il, ic) = (rec.read(&td), rec.read(&tloss), rec.read(&tcorrect));
    let out = rec.submit().unwrap();
    let what = format!("xent n {n} classes {classes} eps {eps}");
    // Loss: a mean of f32 log-sum-exps of values in [-4, 4]; relative 1e-5 is ~100 ulps.
    assert_close(
        &format!("{what} loss"),
        out.f32(il),
        &[want.loss],
        Tol {
            abs: 1e-6,
            rel: 1e-5,
        },
    );
    assert_close(
        &format!("{what} correct"),
        out.f32(ic),
        &[want.correct as f32],
        EXACT,
    );
    // dlogits = (p - target) / n with p from one f32 exp: error ≲ 1e-6 of 1/n.
    assert_close(
        &format!("{what} dlogits"),
        out.f32(id),
        &want.dlogits,
        Tol {
            abs: 1e-6 / n as f32,
            rel: 1e-5,
        },
    );
    assert!(
        want.correct > 0 || n < 10,
        "{what}: test data hits no label"
    );
}

#[test]
fn softmax_cross_entropy_matches_reference() {
    let Some(gpu) = gpu_or_skip("softmax_cross_entropy") else {
        return;
    };
    for (n, classes) in [(1, 10), (3, 1), (7, 10), (300, 13)] {
        for eps in [0.0, 0.1] {
            check_xent(gpu, n, classes, eps);
        }
    }
}

#[test]
fn softmax_cross_entropy_bad_label_is_nan() {
    let Some(gpu) = gpu_or_skip("softmax_cross_entropy bad label") else {
        return;
    };
    let tl = up(gpu, &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
    let ty = Tensor::from_u32(gpu, &[1, 3], "labels").unwrap();
    let (td, tloss, tc) = (poisoned(gpu, 6), poisoned(gpu, 1), poisoned(gpu, 1));
    let op = SoftmaxCrossEntropy::new(gpu, 2, 3, &tl, &ty, &td, &tloss, &tc, 0.0).unwrap();
    let mut rec = Recorder::new(gpu);
    op.record(&mut rec);
    let il = rec.read(&tloss);
    assert!(rec.submit().unwrap().f32(il)[0].is_nan());
    assert!(SoftmaxCrossEntropy::new(gpu, 2, 4, &tl, &ty, &td, &tloss, &tc, 0.0).is_err());
    assert!(SoftmaxCrossEntropy::new(gpu, 2, 3, &tl, &ty, &td, &tloss, &tc, 1.5).is_err());
}

// ---------------------------------------------------------------- batch norm

/// (n, c, hw): below a workgroup, uneven, batched, 1×1 spatial, and m = n·hw = 4500 > 4096
/// so a channel spans two partial-sum chunks.
const BN_SHAPES: [(usize, usize, usize); 5] =
    [(3, 5, 49), (2, 17, 81), (4, 3, 1), (1, 2, 1), (3, 2, 1500)];

/// A sum of m terms of size ≲ 1 in f32 (per-thread runs, then a tree): worst-case rounding is
/// ≲ m·2⁻²⁴ ≈ 6e-8·m; 1e-6·m is 16× that and far below one missing term (~0.3).
fn sum_tol(m: usize) -> Tol {
    Tol {
        abs: 1e-6 * m as f32,
        rel: 1e-5,
    }
}

fn check_bn(gpu: &Gpu, n: usize, c: usize, hw: usize) {
    let mut rng = SeededRng::new(400 + (n * 1000 + c * 10 + hw) as u64);
    let d = Nchw::new(n, c, hw, 1);
    let len = d.len();
    // U(-1,1) plus a per-channel offset up to ±3, so the mean is not ~0.
    let offsets = rng.vec_uniform(c, -3.0, 3.0);
    let x: Vec<f32> = (0..len)
        .map(|i| rng.uniform(-1.0, 1.0) + offsets[(i / hw) % c])
        .collect();
    let dy = rng.vec_uniform(len, -1.0, 1.0);
    let gamma = rng.vec_uniform(c, -1.0, 1.0);
    let beta = rng.vec_uniform(c, -1.0, 1.0);
    let rm0 = rng.vec_uniform(c, -1.0, 1.0);
    let rv0: Vec<f32> = (0..c).map(|_| rng.uniform(0.5, 1.5)).collect();

    let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
    let cfg = BatchNormConfig::default();
    let (want_y, saved) =
        reference::batch_norm_train_forward(&d, &x, &gamma, &beta, &mut rm, &mut rv, cfg);
    let (want_dx, want_dg, want_db) = reference::batch_norm_backward(&d, &x, &dy, &gamma, &saved);
    let want_eval = reference::batch_norm_eval_forward(&d, &x, &gamma, &beta, &rm0, &rv0, cfg.eps);

    let shape = BnShape::new(n, c, hw);
    let (tx, tdy) = (up(gpu, &x), up(gpu, &dy));
    let (tg, tb) = (up(gpu, &gamma), up(gpu, &beta));
    let (trm, trv) = (up(gpu, &rm0), up(gpu, &rv0));
    let (tsm, tsi) = (poisoned(gpu, c), poisoned(gpu, c));
    let t = BnTensors {
        gamma: &tg,
        beta: &tb,
        running_mean: &trm,
        running_var: &trv,
        saved_mean: &tsm,
        saved_invstd: &tsi,
    };
    let (ty, ty_eval, tdx) = (poisoned(gpu, len), poisoned(gpu, len), poisoned(gpu, len));
    let (tdg, tdb) = (poisoned(gpu, c), poisoned(gpu, c));
    // Eval first: it must read the running statistics before train mode updates them.
    let eval = BatchNorm2d::new(gpu, shape, &tx, &ty_eval, &t, BnMode::Eval).unwrap();
    let train = BatchNorm2d::new(gpu, shape, &tx, &ty, &t, BnMode::Train).unwrap();
    let back = BatchNorm2dBackward::new(gpu, shape, &tx, &tdy, &tdx, &t, &tdg, &tdb).unwrap();
    let mut rec = Recorder::new(gpu);
    eval.record(&mut rec);
    train.record(&mut rec);
    back.record(&mut rec);
    let r: Vec<usize> = [&ty_eval, &ty, &tsm, &tsi, &trm, &trv, &tdx, &tdg, &tdb]
        .into_iter()
        .map(|t| rec.read(t))
        .collect();
    let out = rec.submit().unwrap();
    let what = format!("bn n {n} c {c} hw {hw}");
    let m = n * hw;
    // Normalised outputs are O(1) (|x̂| ≤ ~2, |gamma|, |beta| ≤ 1): a few f32 roundings of
    // mean/invstd, well under 1e-5.
    let elem = Tol {
        abs: 1e-5,
        rel: 1e-5,
    };
    let BatchNormSaved { mean, inv_std } = &saved;
    assert_close(&format!("{what} eval y"), out.f32(r[0]), &want_eval, elem);
    assert_close(&format!("{what} train y"), out.f32(r[1]), &want_y, elem);
    assert_close(&format!("{what} saved mean"), out.f32(r[2]), mean, elem);
    // invstd up to 1/sqrt(eps) ≈ 316 when the variance is 0 (m = 1): relative tolerance.
    let stat = Tol {
        abs: 1e-5,
        rel: 1e-4,
    };
    assert_close(
        &format!("{what} saved invstd"),
        out.f32(r[3]),
        inv_std,
        stat,
    );
    assert_close(&format!("{what} running mean"), out.f32(r[4]), &rm, elem);
    assert_close(&format!("{what} running var"), out.f32(r[5]), &rv, stat);
    assert_close(&format!("{what} dx"), out.f32(r[6]), &want_dx, stat);
    assert_close(
        &format!("{what} dgamma"),
        out.f32(r[7]),
        &want_dg,
        sum_tol(m),
    );
    assert_close(
        &format!("{what} dbeta"),
        out.f32(r[8]),
        &want_db,
        sum_tol(m),
    );
}

/// A channel whose first value is far from the others (a zero-padded corner, a rare large
/// activation): the statistics summed x − K and (x − K)² with K that first value, and the
/// f32 subtraction of the squares lost the variance, by ~1e-7 · (mean − K)² / var
/// relative (here ~4e-3). Chunk means and squared deviations from them lose nothing.
#[test]
fn batch_norm_statistics_with_a_far_first_value() {
    let Some(gpu) = gpu_or_skip("batch_norm") else {
        return;
    };
    // 4 images × 16,384 values a channel: 16 chunks of 4,096.
    let (n, c, hw) = (4, 2, 16_384);
    let mut rng = SeededRng::new(91);
    let mut x: Vec<f32> = (0..n * c * hw)
        .map(|_| 10.0 + rng.uniform(-0.05, 0.05))
        .collect();
    for ch in 0..c {
        x[ch * hw] = 0.0;
    }
    let d = Nchw::new(n, c, hw, 1);
    let gamma = vec![1.0f32; c];
    let beta = vec![0.0f32; c];
    let (mut rm, mut rv) = (vec![0.0f32; c], vec![1.0f32; c]);
    let (_, saved) = reference::batch_norm_train_forward(
        &d,
        &x,
        &gamma,
        &beta,
        &mut rm,
        &mut rv,
        BatchNormConfig::default(),
    );
    let shape = BnShape::new(n, c, hw);
    let (tx, ty) = (up(gpu, &x), poisoned(gpu, x.len()));
    let (tg, tb) = (up(gpu, &gamma), up(gpu, &beta));
    let (trm, trv) = (up(gpu, &[0.0; 2]), up(gpu, &[1.0; 2]));
    let (tsm, tsi) = (poisoned(gpu, c), poisoned(gpu, c));
    let t = BnTensors {
        gamma: &tg,
        beta: &tb,
        running_mean: &trm,
        running_var: &trv,
        saved_mean: &tsm,
        saved_invstd: &tsi,
    };
    let train = BatchNorm2d::new(gpu, shape, &tx, &ty, &t, BnMode::Train).unwrap();
    let mut rec = Recorder::new(gpu);
    train.record(&mut rec);
    let r: Vec<usize> = [&tsm, &tsi, &trv]
        .into_iter()
        .map(|t| rec.read(t))
        .collect();
    let out = rec.submit().unwrap();
    // f32 roundings of sums of 65,536 terms in trees of 17 levels (each 2⁻²⁴ ≈ 6e-8
    // relative): ≲ 1e-6 relative. Measured: the mean and invstd exact in f32, the running
    // variance 5e-8 off; the one-pass statistics were 1.4e-4 off in invstd.
    let stat = Tol {
        abs: 0.0,
        rel: 1e-6,
    };
    assert_close("far first value: mean", out.f32(r[0]), &saved.mean, stat);
    assert_close(
        "far first value: invstd",
        out.f32(r[1]),
        &saved.inv_std,
        stat,
    );
    assert_close("far first value: running var", out.f32(r[2]), &rv, stat);
}

#[test]
fn batch_norm_train_eval_backward() {
    let Some(gpu) = gpu_or_skip("batch_norm") else {
        return;
    };
    for (n, c, hw) in BN_SHAPES {
        check_bn(gpu, n, c, hw);
    }
    let one = poisoned(gpu, 3);
    let t = BnTensors {
        gamma: &one,
        beta: &one,
        running_mean: &one,
        running_var: &one,
        saved_mean: &one,
        saved_invstd: &one,
    };
    let (x, y) = (poisoned(gpu, 12), poisoned(gpu, 12));
    assert!(BatchNorm2d::new(gpu, BnShape::new(2, 3, 2), &x, &y, &t, BnMode::Train).is_ok());
    assert!(BatchNorm2d::new(gpu, BnShape::new(2, 3, 3), &x, &y, &t, BnMode::Train).is_err());
    assert!(BatchNorm2d::new(gpu, BnShape::new(4, 3, 1), &x, &y, &t, BnMode::Eval).is_ok());
    assert!(BatchNorm2d::new(gpu, BnShape::new(2, 2, 3), &x, &y, &t, BnMode::Eval).is_err());
    assert!(BatchNorm2d::new(gpu, BnShape::new(0, 3, 4), &x, &y, &t, BnMode::Eval).is_err());
}

// ---------------------------------------------------------------- pooling

/// A few f32 additions of values ≤ 1 in magnitude (window sums, overlapping gathers).
const SMALL_SUM: Tol = Tol {
    abs: 1e-6,
    rel: 1e-6,
};

fn check_pool(gpu: &Gpu, s: PoolShape, ties: bool) {
    let mut rng = SeededRng::new(500 + (s.n * 7 + s.c * 131 + s.h * 17 + s.k * 3 + s.pad) as u64);
    let d = Nchw::new(s.n, s.c, s.h, s.w);
    let rp = Pool2d {
        k: s.k,
        stride: s.stride,
        pad: s.pad,
    };
    let o = rp.out_dims(&d);
    assert_eq!((o.h, o.w), (s.h_out(), s.w_out()), "{s:?}: output size");
    let mut x = rng.vec_uniform(d.len(), -1.0, 1.0);
    if ties {
        // Quarter steps: many equal values, so the first-maximum rule decides the argmax.
        for v in &mut x {
            *v = (*v * 4.0).round() / 4.0;
        }
    }
    let dy = rng.vec_uniform(o.len(), -1.0, 1.0);
    let (want_max, want_arg) = reference::max_pool2d_forward(&d, &rp, &x);
    let want_max_dx = reference::max_pool2d_backward(&d, &want_arg, &dy);
    let want_avg = reference::avg_pool2d_forward(&d, &rp, &x);
    let want_avg_dx = reference::avg_pool2d_backward(&d, &rp, &dy);

    let (tx, tdy) = (up(gpu, &x), up(gpu, &dy));
    let (tmax, targ, tavg) = (
        poisoned(gpu, o.len()),
        Tensor::from_u32(gpu, &vec![u32::MAX; o.len()], "argmax").unwrap(),
        poisoned(gpu, o.len()),
    );
    let (tmdx, tadx) = (poisoned(gpu, d.len()), poisoned(gpu, d.len()));
    let ops_max = MaxPool2d::new(gpu, s, &tx, &tmax, &targ).unwrap();
    let ops_max_b = MaxPool2dBackward::new(gpu, s, &targ, &tdy, &tmdx).unwrap();
    let ops_avg = AvgPool2d::new(gpu, s, &tx, &tavg).unwrap();
    let ops_avg_b = AvgPool2dBackward::new(gpu, s, &tdy, &tadx).unwrap();
    let mut rec = Recorder::new(gpu);
    ops_max.record(&mut rec);
    ops_max_b.record(&mut rec);
    ops_avg.record(&mut rec);
    ops_avg_b.record(&mut rec);
    let r: Vec<usize> = [&tmax, &targ, &tmdx, &tavg, &tadx]
        .into_iter()
        .map(|t| rec.read(t))
        .collect();
    let out = rec.submit().unwrap();
    let what = format!("pool {s:?} ties {ties}");
    assert_close(&format!("{what} max y"), out.f32(r[0]), &want_max, EXACT);
    assert_eq!(out.u32(r[1]), &want_arg[..], "{what}: argmax");
    assert_close(
        &format!("{what} max dx"),
        out.f32(r[2]),
        &want_max_dx,
        SMALL_SUM,
    );
    assert_close(
        &format!("{what} avg y"),
        out.f32(r[3]),
        &want_avg,
        SMALL_SUM,
    );
    assert_close(
        &format!("{what} avg dx"),
        out.f32(r[4]),
        &want_avg_dx,
        SMALL_SUM,
    );
}

#[test]
fn max_and_avg_pool_forward_backward() {
    let Some(gpu) = gpu_or_skip("pool") else {
        return;
    };
    let shape = |n, c, h, w, k, stride, pad| PoolShape {
        n,
        c,
        h,
        w,
        k,
        stride,
        pad,
    };
    for (s, ties) in [
        (shape(2, 3, 7, 7, 3, 2, 1), false),
        (shape(2, 3, 7, 7, 3, 2, 1), true),
        (shape(3, 5, 7, 7, 3, 1, 1), true),
        (shape(1, 2, 5, 6, 2, 2, 0), false),
        (shape(1, 2, 5, 6, 2, 2, 1), false),
        (shape(2, 17, 9, 9, 3, 2, 0), false),
        (shape(2, 3, 1, 1, 1, 1, 0), false),
        (shape(1, 1, 2, 2, 3, 1, 1), true),
    ] {
        check_pool(gpu, s, ties);
    }
    let (x, y) = (poisoned(gpu, 49), poisoned(gpu, 16));
    let bad = shape(1, 1, 7, 7, 3, 2, 2);
    assert!(AvgPool2d::new(gpu, bad, &x, &y).is_err(), "pad > k/2");
    assert!(AvgPool2d::new(gpu, shape(1, 1, 7, 7, 3, 2, 1), &x, &y).is_ok());
    assert!(
        AvgPool2d::new(gpu, shape(1, 1, 7, 7, 3, 2, 0), &x, &y).is_err(),
        "y is 3x3"
    );
}

#[test]
fn global_avg_pool_forward_backward() {
    let Some(gpu) = gpu_or_skip("global_avg_pool") else {
        return;
    };
    for (n, c, h, w) in [(3, 5, 7, 7), (2, 17, 9, 9), (4, 3, 1, 1), (2, 130, 2, 3)] {
        let mut rng = SeededRng::new(600 + (n * c * h * w) as u64);
        let d = Nchw::new(n, c, h, w);
        let x = rng.vec_uniform(d.len(), -1.0, 1.0);
        let dy = rng.vec_uniform(n * c, -1.0, 1.0);
        let (tx, tdy) = (up(gpu, &x), up(gpu, &dy));
        let (ty, tdx) = (poisoned(gpu, n * c), poisoned(gpu, d.len()));
        let f = GlobalAvgPool::new(gpu, n, c, h * w, &tx, &ty).unwrap();
        let b = GlobalAvgPoolBackward::new(gpu, n, c, h * w, &tdy, &tdx).unwrap();
        let mut rec = Recorder::new(gpu);
        f.record(&mut rec);
        b.record(&mut rec);
        let (iy, idx) = (rec.read(&ty), rec.read(&tdx));
        let out = rec.submit().unwrap();
        let what = format!("gap {d:?}");
        let want_y = reference::global_avg_pool_forward(&d, &x);
        let want_dx = reference::global_avg_pool_backward(&d, &dy);
        assert_close(&format!("{what} y"), out.f32(iy), &want_y, SMALL_SUM);
        assert_close(&format!("{what} dx"), out.f32(idx), &want_dx, SMALL_SUM);
    }
}

// ---------------------------------------------------------------- SGD

#[test]
fn sgd_matches_reference_over_steps() {
    let Some(gpu) = gpu_or_skip("sgd") else {
        return;
    };
    let configs = [
        (0.0, false, 0.0, None),
        (0.9, false, 0.0, None),
        (0.9, true, 5e-4, None),
        (0.9, false, 2.5e-5, Some(0.5)),
        (0.0, false, 1e-2, Some(0.25)),
    ];
    for &len in &[1usize, 37, 1000] {
        for (ci, &(momentum, nesterov, weight_decay, clip)) in configs.iter().enumerate() {
            let mut rng = SeededRng::new(700 + (len * 10 + ci) as u64);
            let mut want_p = rng.vec_uniform(len, -1.0, 1.0);
            let mut want_buf = vec![0.0f32; len];
            let tp = up(gpu, &want_p);
            let tbuf = up(gpu, &want_buf);
            let tg = poisoned(gpu, len);
            let cfg = SgdConfig {
                momentum,
                nesterov,
                weight_decay,
                clip,
            };
            let mut sgd = Sgd::new(gpu, &tp, &tg, &tbuf, cfg).unwrap();
            for (step, lr) in [0.1f32, 0.05, 0.01].into_iter().enumerate() {
                // Gradients in (-2, 2) so clipping at 0.5 / 0.25 bites.
                let g = rng.vec_uniform(len, -2.0, 2.0);
                tg.write_f32(gpu, &g).unwrap();
                sgd.set_lr(gpu, lr);
                let rcfg = reference::SgdConfig {
                    lr,
                    momentum,
                    weight_decay,
                    nesterov,
                    clip,
                };
                reference::sgd_step(&rcfg, &mut want_p, &g, &mut want_buf);
                let mut rec = Recorder::new(gpu);
                sgd.record(&mut rec);
                let (ip, ib) = (rec.read(&tp), rec.read(&tbuf));
                let out = rec.submit().unwrap();
                let what = format!("sgd len {len} config {ci} step {step}");
                // A handful of f32 multiply-adds per step (possibly fused on the GPU).
                let tol = Tol {
                    abs: 2e-6,
                    rel: 1e-6,
                };
                assert_close(&format!("{what} param"), out.f32(ip), &want_p, tol);
                assert_close(&format!("{what} momentum"), out.f32(ib), &want_buf, tol);
            }
        }
    }
    let (a, b) = (poisoned(gpu, 3), poisoned(gpu, 4));
    let cfg = SgdConfig {
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
        clip: None,
    };
    assert!(Sgd::new(gpu, &a, &b, &a, cfg).is_err());
    let (g, m) = (poisoned(gpu, 3), poisoned(gpu, 3));
    assert!(Sgd::new(gpu, &a, &g, &m, cfg).is_ok());
    let nan_clip = SgdConfig {
        clip: Some(f32::NAN),
        ..cfg
    };
    assert!(Sgd::new(gpu, &a, &g, &m, nan_clip).is_err());
}
