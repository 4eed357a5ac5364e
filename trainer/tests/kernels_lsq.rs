//! LSQ fake-quantisation kernels (and the deterministic sum they use) against
//! `reference::lsq` on seeded data: forward, straight-through dx, and the step-size gradient
//! with g = 1/sqrt(N·Qp), signed and unsigned, values outside [Qn, Qp], exact ties (round
//! half to even), the step clamp to [1e-5, 1], and several bit-widths in one submission.
//! Skips (with a printed reason) only when no GPU adapter exists; lavapipe runs them.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

mod common;

use common::{assert_close, gpu_or_skip, Tol};
use limpq_trainer::gpu::Gpu;
use limpq_trainer::kernels::lsq::{LsqBackward, LsqConfig, LsqQuantize};
use limpq_trainer::kernels::reduce::Sum;
use limpq_trainer::kernels::{Recorder, Tensor};
use limpq_trainer::reference;
use limpq_trainer::reference::rng::SeededRng;

fn up(gpu: &Gpu, data: &[f32]) -> Tensor {
    Tensor::from_f32(gpu, data, "test").unwrap()
}

fn poisoned(gpu: &Gpu, len: usize) -> Tensor {
    up(gpu, &vec![f32::NAN; len])
}

const EXACT: Tol = Tol { abs: 0.0, rel: 0.0 };

/// Tolerance of ds = g·Σ dy·t over n terms, |dy| ≤ 1, |t| ≤ max(|Qn|, Qp): f32 summation
/// error ≲ n·2⁻²⁴·max|t|; 1e-6·n·max|t|·g is ~16× that, and below one missing term
/// (~0.1·max|t|·g) for every n used here.
fn ds_tol(n: usize, bits: u32, signed: bool) -> Tol {
    let (qn, qp) = reference::lsq_range(bits, signed);
    let g = 1.0 / (n as f64 * qp as f64).sqrt();
    Tol {
        abs: (1e-6 * n as f64 * qn.abs().max(qp) as f64 * g) as f32,
        rel: 1e-5,
    }
}

/// One bit-width on `x`: returns how many elements fell outside [Qn, Qp] (to show the case is
/// exercised) and the GPU's step gradient. `step_raw` is what the steps tensor holds; the
/// reference clamps it as the model does (`lsq_clamped_backward`).
fn check_lsq(
    gpu: &Gpu,
    x: &[f32],
    dy: &[f32],
    step_raw: f32,
    bits: u32,
    signed: bool,
) -> (usize, f32) {
    let n = x.len();
    let s = step_raw.clamp(1e-5, 1.0);
    let want_y = reference::lsq_quantize_forward(x, s, bits, signed);
    let (want_dx, want_ds) = reference::lsq_clamped_backward(x, step_raw, bits, signed, dy);
    // Slot 1 of 3; the others hold sentinels that must survive.
    let steps = up(gpu, &[0.5, step_raw, 0.5]);
    let dsteps = up(gpu, &[7.0, f32::NAN, -7.0]);
    let (tx, tdy) = (up(gpu, x), up(gpu, dy));
    let (ty, tdx) = (poisoned(gpu, n), poisoned(gpu, n));
    let cfg = LsqConfig {
        index: 1,
        bits,
        signed,
    };
    let f = LsqQuantize::new(gpu, &tx, &ty, &steps, cfg).unwrap();
    let b = LsqBackward::new(gpu, &tx, &tdy, &tdx, &steps, &dsteps, cfg).unwrap();
    let mut rec = Recorder::new(gpu);
    f.record(&mut rec);
    b.record(&mut rec);
    let (iy, idx, ids) = (rec.read(&ty), rec.read(&tdx), rec.read(&dsteps));
    let out = rec.submit().unwrap();
    let what = format!("lsq n {n} bits {bits} signed {signed} step {step_raw}");
    assert_close(&format!("{what} y"), out.f32(iy), &want_y, EXACT);
    assert_close(&format!("{what} dx"), out.f32(idx), &want_dx, EXACT);
    let ds = out.f32(ids);
    assert_eq!(
        (ds[0], ds[2]),
        (7.0, -7.0),
        "{what}: other dsteps entries changed"
    );
    assert_close(
        &format!("{what} ds"),
        &ds[1..2],
        &[want_ds],
        ds_tol(n, bits, signed),
    );
    let (qn, qp) = reference::lsq_range(bits, signed);
    let outside = x.iter().filter(|v| *v / s < qn || *v / s > qp).count();
    (outside, ds[1])
}

#[test]
fn lsq_matches_reference_signed_and_unsigned() {
    let Some(gpu) = gpu_or_skip("lsq") else {
        return;
    };
    // Lengths: below a workgroup, uneven, batched, and > 4096 (two partial sums).
    for &n in &[37usize, 3 * 5 * 7 * 7, 2 * 17 * 9 * 9, 9001] {
        let mut rng = SeededRng::new(800 + n as u64);
        let x = rng.vec_uniform(n, -1.0, 1.0);
        let dy = rng.vec_uniform(n, -1.0, 1.0);
        for (bits, signed, step) in [
            (2, true, 0.3),
            (3, true, 0.1),
            (4, true, 0.05),
            (8, true, 0.004),
            (2, false, 0.2),
            (3, false, 0.07),
            (4, false, 0.03),
            (1, false, 0.6),
        ] {
            let (outside, _) = check_lsq(gpu, &x, &dy, step, bits, signed);
            assert!(
                outside > 0 && outside < n,
                "n {n} bits {bits} signed {signed}: {outside} of {n} outside; want both cases"
            );
        }
    }
}

#[test]
fn lsq_step_is_clamped_when_used() {
    let Some(gpu) = gpu_or_skip("lsq clamp") else {
        return;
    };
    let mut rng = SeededRng::new(900);
    let x: Vec<f32> = rng.vec_uniform(300, -3.0, 3.0);
    let dy = rng.vec_uniform(300, -1.0, 1.0);
    // Above 1: used as 1 (values beyond ±Qp·1 saturate); below 1e-5 (and negative): used as
    // 1e-5, nearly every value saturates. Outside the range the step gets no gradient (the
    // clamp's derivative is 0 there, as torch.clamp's): it freezes.
    for step in [2.5f32, 1.0 + 1e-6, 1e-9, 9.9e-6, -0.5] {
        for (bits, signed) in [(2, true), (3, false)] {
            let (_, ds) = check_lsq(gpu, &x, &dy, step, bits, signed);
            assert_eq!(ds, 0.0, "step {step} bits {bits}: a frozen step's gradient");
        }
    }
    // On the bounds (included) and inside, the step learns.
    for step in [1.0f32, 1e-5, 0.5] {
        for (bits, signed) in [(2, true), (3, false)] {
            let (_, ds) = check_lsq(gpu, &x, &dy, step, bits, signed);
            assert!(ds != 0.0, "step {step} bits {bits}: no gradient");
        }
    }
    // The clamp must actually change the result (else the test above proves nothing).
    let at_1 = reference::lsq_quantize_forward(&x, 1.0, 2, true);
    let raw = reference::lsq_quantize_forward(&x, 2.5, 2, true);
    assert_ne!(at_1, raw);
}

#[test]
fn lsq_rounds_half_to_even_and_keeps_bounds_inside() {
    let Some(gpu) = gpu_or_skip("lsq ties") else {
        return;
    };
    // s = 0.25 (a power of two): x / s is exact, so v = k + 0.5 exactly.
    let s = 0.25f32;
    let x: Vec<f32> = [
        0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, // ties
        3.0, -4.0, 7.0, 0.0, // exactly Qp / Qn of 3-bit signed, 3-bit unsigned Qp, 0
        3.2, -4.2, 7.9, // just outside
    ]
    .iter()
    .map(|v| v * s)
    .collect();
    let dy: Vec<f32> = (0..x.len()).map(|i| 0.1 * (i as f32 + 1.0)).collect();
    let y = reference::lsq_quantize_forward(&x, s, 3, true);
    // Half to even: 0.5 → 0, 1.5 → 2, 2.5 → 2, -0.5 → -0, -1.5 → -2, -2.5 → -2, 3.5 → Qp 3.
    assert_eq!(
        &y[..7],
        &[0.0, 2.0 * s, 2.0 * s, 0.0, -2.0 * s, -2.0 * s, 3.0 * s]
    );
    for (bits, signed) in [(3, true), (3, false)] {
        check_lsq(gpu, &x, &dy, s, bits, signed);
    }
    // Bounds are inside: the gradient passes at v = Qp and v = Qn.
    let (dx, _) = reference::lsq_quantize_backward(&x, s, 3, true, &dy);
    assert_eq!((dx[7], dx[8]), (dy[7], dy[8]));
}

#[test]
fn lsq_several_bit_widths_in_one_submission() {
    let Some(gpu) = gpu_or_skip("lsq multi") else {
        return;
    };
    let mut rng = SeededRng::new(1000);
    let n = 2 * 17 * 9 * 9;
    let x = rng.vec_uniform(n, -1.0, 1.0);
    let dy = rng.vec_uniform(n, -1.0, 1.0);
    let bits = [2u32, 3, 4, 5, 6];
    let step_vals = [0.4f32, 0.2, 0.1, 0.05, 0.025];
    let tx = up(gpu, &x);
    let tdy = up(gpu, &dy);
    let steps = up(gpu, &step_vals);
    let dsteps = poisoned(gpu, bits.len());
    let ys: Vec<Tensor> = bits.iter().map(|_| poisoned(gpu, n)).collect();
    let dxs: Vec<Tensor> = bits.iter().map(|_| poisoned(gpu, n)).collect();
    let mut ops = Vec::new();
    for (i, &b) in bits.iter().enumerate() {
        let cfg = LsqConfig {
            index: i,
            bits: b,
            signed: true,
        };
        ops.push((
            LsqQuantize::new(gpu, &tx, &ys[i], &steps, cfg).unwrap(),
            LsqBackward::new(gpu, &tx, &tdy, &dxs[i], &steps, &dsteps, cfg).unwrap(),
        ));
    }
    let mut rec = Recorder::new(gpu);
    for (f, b) in &ops {
        f.record(&mut rec);
        b.record(&mut rec);
    }
    let iys: Vec<usize> = ys.iter().map(|t| rec.read(t)).collect();
    let ids = rec.read(&dsteps);
    let out = rec.submit().unwrap();
    for (i, &b) in bits.iter().enumerate() {
        let want_y = reference::lsq_quantize_forward(&x, step_vals[i], b, true);
        let (_, want_ds) = reference::lsq_quantize_backward(&x, step_vals[i], b, true, &dy);
        assert_close(
            &format!("multi {b} bits y"),
            out.f32(iys[i]),
            &want_y,
            EXACT,
        );
        assert_close(
            &format!("multi {b} bits ds"),
            &out.f32(ids)[i..i + 1],
            &[want_ds],
            ds_tol(n, b, true),
        );
    }
    // Kept for the determinism check at the end.
    let first = out.f32(ids).to_vec();
    // A second (e.g. random-policy) pass at 3 bits with another dy ADDS to slot 1 only.
    let dy2 = rng.vec_uniform(n, -1.0, 1.0);
    let tdy2 = up(gpu, &dy2);
    let dx2 = poisoned(gpu, n);
    let cfg3 = LsqConfig {
        index: 1,
        bits: 3,
        signed: true,
    };
    let acc =
        LsqBackward::new_accumulating(gpu, &tx, &tdy2, &dx2, &steps, &dsteps, cfg3, 1).unwrap();
    let mut rec = Recorder::new(gpu);
    acc.record(&mut rec);
    let (ids2, idx2) = (rec.read(&dsteps), rec.read(&dx2));
    let out2 = rec.submit().unwrap();
    let (want_dx2, want_ds2) = reference::lsq_quantize_backward(&x, step_vals[1], 3, true, &dy2);
    assert_close("accumulating dx", out2.f32(idx2), &want_dx2, EXACT);
    let got = out2.f32(ids2);
    for i in [0, 2, 3, 4] {
        assert_eq!(got[i].to_bits(), first[i].to_bits(), "slot {i} changed");
    }
    assert_close(
        "accumulated ds",
        &got[1..2],
        &[first[1] + want_ds2],
        ds_tol(n, 3, true),
    );
    // Deterministic: the overwriting passes again give bit-identical step gradients.
    let mut rec = Recorder::new(gpu);
    for (_, b) in &ops {
        b.record(&mut rec);
    }
    let ids = rec.read(&dsteps);
    let again = rec.submit().unwrap();
    assert_eq!(
        first.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        again
            .f32(ids)
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    );
}

#[test]
fn lsq_rejects_bad_config() {
    let Some(gpu) = gpu_or_skip("lsq config") else {
        return;
    };
    let (x, y, steps) = (poisoned(gpu, 5), poisoned(gpu, 5), poisoned(gpu, 2));
    let cfg = |index, bits, signed| LsqConfig {
        index,
        bits,
        signed,
    };
    assert!(LsqQuantize::new(gpu, &x, &y, &steps, cfg(1, 4, true)).is_ok());
    assert!(LsqQuantize::new(gpu, &x, &y, &steps, cfg(2, 4, true)).is_err());
    assert!(LsqQuantize::new(gpu, &x, &y, &steps, cfg(0, 1, true)).is_err());
    assert!(LsqQuantize::new(gpu, &x, &y, &steps, cfg(0, 17, false)).is_err());
    let short = poisoned(gpu, 4);
    assert!(LsqBackward::new(gpu, &x, &y, &short, &steps, &steps, cfg(0, 4, true)).is_err());
    assert!(LsqBackward::new(gpu, &x, &y, &x, &steps, &short, cfg(0, 4, true)).is_err());
}

#[test]
fn sum_is_deterministic_and_matches_f64() {
    let Some(gpu) = gpu_or_skip("sum") else {
        return;
    };
    for &n in &[1usize, 255, 4097, 10_000] {
        let mut rng = SeededRng::new(1100 + n as u64);
        let x = rng.vec_uniform(n, -1.0, 1.0);
        let want = x.iter().map(|v| *v as f64).sum::<f64>() * 0.5;
        let tx = up(gpu, &x);
        let out_t = up(gpu, &[1.0, 2.0, 3.0]);
        let op = Sum::new(gpu, &tx, &out_t, 2, 0.5).unwrap();
        let mut rec = Recorder::new(gpu);
        op.record(&mut rec);
        let i = rec.read(&out_t);
        let out = rec.submit().unwrap();
        let got = out.f32(i);
        assert_eq!(&got[..2], &[1.0, 2.0], "sum n {n}: other entries changed");
        // Sum of n values |v| < 1 in f32: ≲ n·2⁻²⁴ worst case; 1e-6·n is ~16× that.
        assert_close(
            &format!("sum n {n}"),
            &got[2..],
            &[want as f32],
            Tol {
                abs: 1e-6 * n as f32,
                rel: 1e-6,
            },
        );
    }
}
