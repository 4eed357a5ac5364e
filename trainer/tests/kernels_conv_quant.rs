//! Quantize-on-load conv kernels (`QuantX`): conv2d forward (direct, implicit GEMM, blocked)
//! and backward weight (per-weight reduction, blocked) that fake-quantize their input `x` as
//! they read it, against
//! - the CPU reference conv applied to the CPU LSQ-quantized `x` (`reference::lsq`), and
//! - the unfused GPU path (`LsqQuantize` into a buffer, then the plain conv on it), which
//!   must agree BIT FOR BIT: the fused kernels replace that path inside the quantized engine,
//!   whose whole-network tests compare against the CPU.
//!
//! Signed and unsigned quantizers, 2 to 8 bits, step sizes inside and outside the clamp
//! range [1e-5, 1], 1×1 / 3×3 / stride 2 / grouped / several GEMM tiles. Skips (with a
//! printed reason) only when no GPU adapter exists; lavapipe runs them.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

mod common;

use common::{assert_close, gpu_or_skip, Tol};
use limpq_trainer::gpu::Gpu;
use limpq_trainer::kernels::conv::{Conv2dBackwardWeight, Conv2dForward, ConvAlgo, QuantX};
use limpq_trainer::kernels::lsq::{LsqConfig, LsqQuantize};
use limpq_trainer::kernels::{Recorder, Tensor};
use limpq_trainer::reference;
use limpq_trainer::reference::rng::SeededRng;
use limpq_trainer::shapes::Conv2dShape;

fn up(gpu: &Gpu, data: &[f32], label: &str) -> Tensor {
    Tensor::from_f32(gpu, data, label).unwrap()
}

fn nan(gpu: &Gpu, len: usize, label: &str) -> Tensor {
    up(gpu, &vec![f32::NAN; len], label)
}

fn same_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length differs");
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| got[i].to_bits() != want[i].to_bits())
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} elements differ from the unfused path; first: index {} fused {} unfused {}",
        bad.len(),
        got.len(),
        bad[0],
        got[bad[0]],
        want[bad[0]]
    );
}

/// One shape, algorithm and quantizer. `x` spans about ±(Qp + 2)·s so that values fall
/// below, inside and above the range; the step sits in slot 1 of 3 (`step_raw`, clamped by
/// the kernels). Returns how many x values the quantizer clamped (to show the case ran).
#[allow(clippy::too_many_arguments)]
fn check(
    gpu: &Gpu,
    s: Conv2dShape,
    algo: ConvAlgo,
    bits: u32,
    signed: bool,
    step_raw: f32,
    accumulate: bool,
    seed: u64,
) -> usize {
    let step = step_raw.clamp(1e-5, 1.0);
    let (qn, qp) = reference::lsq_range(bits, signed);
    let mut rng = SeededRng::new(seed);
    let span = (qp + 2.0) * step;
    let x = rng.vec_uniform(s.input_len(), -span, span);
    let w = rng.vec_uniform(s.weight_len(), -1.0, 1.0);
    let bias = rng.vec_uniform(s.c_out, -1.0, 1.0);
    let dy = rng.vec_uniform(s.output_len(), -1.0, 1.0);
    let dw0 = rng.vec_uniform(s.weight_len(), -1.0, 1.0);

    let xq = reference::lsq_quantize_forward(&x, step, bits, signed);
    let want_y = reference::conv2d_forward(&s, &xq, &w, Some(&bias));
    let mut want_dw = reference::conv2d_backward_weight(&s, &xq, &dy);
    if accumulate {
        for (v, o) in want_dw.iter_mut().zip(&dw0) {
            *v += o;
        }
    }

    let steps = up(gpu, &[0.25, step_raw, 0.5], "steps");
    let cfg = LsqConfig {
        index: 1,
        bits,
        signed,
    };
    let q = Some(QuantX {
        steps: &steps,
        config: cfg,
    });
    let (tx, tw, tb, tdy) = (
        up(gpu, &x, "x"),
        up(gpu, &w, "w"),
        up(gpu, &bias, "bias"),
        up(gpu, &dy, "dy"),
    );
    let dw_start = |label: &str| {
        if accumulate {
            up(gpu, &dw0, label)
        } else {
            nan(gpu, s.weight_len(), label)
        }
    };
    // Fused.
    let ty = nan(gpu, s.output_len(), "y fused");
    let tdw = dw_start("dw fused");
    let fwd = Conv2dForward::with_input_quant(gpu, &s, &tx, &tw, Some(&tb), &ty, algo, q).unwrap();
    let bw = Conv2dBackwardWeight::with_input_quant(gpu, &s, &tx, &tdy, &tdw, accumulate, algo, q)
        .unwrap();
    assert_eq!(fwd.algo, algo);
    assert_eq!(fwd.quant, Some(cfg));
    assert_eq!(bw.quant, Some(cfg));
    // Unfused: LsqQuantize into a buffer, then the plain kernels of the same algorithm.
    let txq = nan(gpu, s.input_len(), "xq");
    let ty_u = nan(gpu, s.output_len(), "y unfused");
    let tdw_u = dw_start("dw unfused");
    let lsq = LsqQuantize::new(gpu, &tx, &txq, &steps, cfg).unwrap();
    let fwd_u = Conv2dForward::with_algo(gpu, &s, &txq, &tw, Some(&tb), &ty_u, algo).unwrap();
    let bw_u =
        Conv2dBackwardWeight::with_algo(gpu, &s, &txq, &tdy, &tdw_u, accumulate, algo).unwrap();
    assert_eq!(fwd_u.quant, None);

    let mut rec = Recorder::new(gpu);
    fwd.record(&mut rec);
    bw.record(&mut rec);
    lsq.record(&mut rec);
    fwd_u.record(&mut rec);
    bw_u.record(&mut rec);
    let r: Vec<usize> = [&ty, &tdw, &txq, &ty_u, &tdw_u]
        .into_iter()
        .map(|t| rec.read(t))
        .collect();
    let out = rec.submit().unwrap();

    let tag =
        format!("{s:?} {algo:?} bits {bits} signed {signed} step {step_raw} acc {accumulate}");
    // The quantized input itself matches the CPU reference exactly (as kernels_lsq checks).
    assert_close(
        &format!("xq {tag}"),
        out.f32(r[2]),
        &xq,
        Tol { abs: 0.0, rel: 0.0 },
    );
    // |x_q| ≤ max(|Qn|, Qp)·s ≤ ~1: the conv tolerances of kernels_gemm_conv.rs apply.
    let k2 = s.kh * s.kw;
    let mag = (qn.abs().max(qp) * step).max(1.0);
    let scale = |t: Tol| Tol {
        abs: t.abs * mag,
        rel: t.rel,
    };
    assert_close(
        &format!("forward {tag}"),
        out.f32(r[0]),
        &want_y,
        scale(Tol::sum_of(s.c_in / s.groups * k2 + 1)),
    );
    assert_close(
        &format!("backward weight {tag}"),
        out.f32(r[1]),
        &want_dw,
        scale(Tol::sum_of(s.n * s.h_out() * s.w_out() + 1)),
    );
    same_bits(&format!("forward {tag}"), out.f32(r[0]), out.f32(r[3]));
    same_bits(
        &format!("backward weight {tag}"),
        out.f32(r[1]),
        out.f32(r[4]),
    );
    x.iter()
        .filter(|v| **v / step < qn || **v / step > qp)
        .count()
}

fn run_shape(s: Conv2dShape, seed: u64) {
    let Some(gpu) = gpu_or_skip("conv quantize-on-load") else {
        return;
    };
    let mut clamped = 0;
    for algo in common::conv_algos(gpu) {
        for (k, &(bits, signed, step)) in [
            (2, false, 0.3),
            (4, true, 0.08),
            (8, false, 0.004),
            (3, true, 0.5),
        ]
        .iter()
        .enumerate()
        {
            let seed = seed * 100 + k as u64;
            clamped += check(gpu, s, algo, bits, signed, step, k % 2 == 1, seed);
        }
    }
    assert!(clamped > 0, "{s:?}: no value fell outside the range");
}

#[test]
fn quant_conv_1x1_stride2_and_tiny() {
    run_shape(Conv2dShape::square(1, 1, 1, 1, 1, 1, 1, 0, 1), 1);
    // 1×1 stride-2 projection shortcut, uneven spatial size.
    run_shape(Conv2dShape::square(3, 4, 6, 5, 8, 1, 2, 0, 1), 2);
}

#[test]
fn quant_conv_3x3_stride_padding() {
    run_shape(Conv2dShape::square(2, 3, 5, 7, 4, 3, 1, 1, 1), 3);
    run_shape(Conv2dShape::square(2, 5, 9, 8, 6, 3, 2, 1, 1), 4);
}

#[test]
fn quant_conv_groups_and_tiles() {
    run_shape(Conv2dShape::square(2, 4, 9, 8, 6, 3, 2, 1, 2), 5);
    // More than one 64×64 GEMM tile and K longer than one 16-step.
    run_shape(Conv2dShape::square(2, 20, 9, 9, 70, 1, 1, 0, 1), 6);
    run_shape(Conv2dShape::square(1, 70, 5, 5, 4, 3, 2, 1, 1), 7);
    // Depthwise (MobileNetV2) on odd sizes, stride 2 and 1, and with channel multiplier 2.
    run_shape(Conv2dShape::square(2, 5, 7, 7, 5, 3, 2, 1, 5), 8);
    run_shape(Conv2dShape::square(1, 3, 5, 5, 6, 3, 1, 1, 3), 9);
}

/// Steps outside [1e-5, 1] are clamped as LsqQuantize clamps them.
#[test]
fn quant_conv_step_clamp() {
    let Some(gpu) = gpu_or_skip("conv quantize-on-load clamp") else {
        return;
    };
    let s = Conv2dShape::square(2, 3, 5, 5, 4, 3, 1, 1, 1);
    for algo in common::conv_algos(gpu) {
        check(gpu, s, algo, 4, false, 3.0, false, 11);
        check(gpu, s, algo, 5, true, 1e-8, true, 12);
    }
}

#[test]
fn quant_conv_rejects_bad_quantizers() {
    let Some(gpu) = gpu_or_skip("conv quantize-on-load errors") else {
        return;
    };
    let s = Conv2dShape::square(1, 2, 4, 4, 2, 3, 1, 1, 1);
    let x = Tensor::zeros(gpu, s.input_len(), "x").unwrap();
    let w = Tensor::zeros(gpu, s.weight_len(), "w").unwrap();
    let y = Tensor::zeros(gpu, s.output_len(), "y").unwrap();
    let steps = Tensor::zeros(gpu, 2, "steps").unwrap();
    let q = |index, bits, signed| {
        Some(QuantX {
            steps: &steps,
            config: LsqConfig {
                index,
                bits,
                signed,
            },
        })
    };
    let f = |quant| {
        Conv2dForward::with_input_quant(gpu, &s, &x, &w, None, &y, ConvAlgo::Auto, quant)
            .unwrap_err()
            .to_string()
    };
    let e = f(q(2, 4, false));
    assert!(e.contains("step index 2"), "{e}");
    let e = f(q(0, 1, true));
    assert!(e.contains("bits 1"), "{e}");
    let e = f(q(0, 17, false));
    assert!(e.contains("bits 17"), "{e}");
    let e = Conv2dBackwardWeight::with_input_quant(
        gpu,
        &s,
        &x,
        &y,
        &w,
        false,
        ConvAlgo::Auto,
        q(5, 4, false),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("conv2d_backward_weight") && e.contains("step index 5"),
        "{e}"
    );
}

/// The f16 conv of a quantized layer (`Conv2dForwardHalf::quantized`, what the engine runs
/// under `LIMPQ_CONV_ALGO=f16gemm`): the LSQ codes of the input (quantized on load) and of
/// the fake-quantized weight in f16, the product scaled by both steps. Codes are exact in
/// f16, so it must match the CPU conv of the CPU-quantized operands to f32 summation
/// tolerance — the same tolerance as the f32 kernels, no f16 allowance — and the fused f32
/// conv the engine runs otherwise. Skips without SHADER_F16 (with the reason).
#[test]
fn quant_conv_f16_codes_are_exact() {
    use limpq_trainer::kernels::conv_f16::Conv2dForwardHalf;
    use limpq_trainer::kernels::gemm_f16::HalfKind;
    let Some(gpu) = gpu_or_skip("f16 code conv") else {
        return;
    };
    if !HalfKind::F16.available(gpu) {
        return eprintln!("SKIP f16 code conv: {}", HalfKind::F16.missing(gpu));
    }
    let cases = [
        // shape, (act bits, act signed, act step), (weight bits, weight step)
        (
            Conv2dShape::square(2, 3, 9, 7, 5, 3, 1, 1, 1),
            (2, false, 0.3f32),
            (2, 0.4f32),
        ),
        (
            Conv2dShape::square(1, 16, 8, 8, 24, 3, 2, 1, 1),
            (4, false, 0.08),
            (3, 0.2),
        ),
        (
            Conv2dShape::square(2, 5, 6, 6, 70, 1, 1, 0, 1),
            (8, true, 0.01),
            (8, 0.004),
        ),
        (
            Conv2dShape::square(3, 8, 5, 4, 9, 3, 1, 1, 1),
            (6, false, 2.0),
            (5, 1e-7),
        ),
    ];
    // Odd cases gather into one scratch sized for the largest (as the engine shares one).
    let scratch_len = cases
        .iter()
        .map(|c| Conv2dForwardHalf::scratch_len(&c.0))
        .max()
        .unwrap();
    let scratch = nan(gpu, scratch_len, "shared im2col");
    for (i, (s, (ab, asg, a_step), (wb, w_step))) in cases.into_iter().enumerate() {
        let (qn, qp) = reference::lsq_range(ab, asg);
        let mut rng = SeededRng::new(0xC0DE + i as u64);
        let a_eff = a_step.clamp(1e-5, 1.0);
        let span = (qp + 2.0) * a_eff;
        let lo = if asg { -span } else { -0.2 * span };
        let x = rng.vec_uniform(s.input_len(), lo, span);
        let w = rng.vec_uniform(s.weight_len(), -1.0, 1.0);
        let xq = reference::lsq_quantize_forward(&x, a_eff, ab, asg);
        let wq = reference::lsq_quantize_forward(&w, w_step.clamp(1e-5, 1.0), wb, true);
        let want = reference::conv2d_forward(&s, &xq, &wq, None);

        let a_steps = up(gpu, &[0.25, a_step, 0.5], "act steps");
        let w_steps = up(gpu, &[0.3, 0.7, w_step], "weight steps");
        let qx = QuantX {
            steps: &a_steps,
            config: LsqConfig {
                index: 1,
                bits: ab,
                signed: asg,
            },
        };
        let qw = QuantX {
            steps: &w_steps,
            config: LsqConfig {
                index: 2,
                bits: wb,
                signed: true,
            },
        };
        let (tx, tw) = (up(gpu, &x, "x"), up(gpu, &w, "w"));
        let twq = nan(gpu, s.weight_len(), "wq");
        let (ty, ty32) = (
            nan(gpu, s.output_len(), "y f16"),
            nan(gpu, s.output_len(), "y f32"),
        );
        let lsq_w = LsqQuantize::new(gpu, &tw, &twq, &w_steps, qw.config).unwrap();
        let shared = (i % 2 == 1).then_some(&scratch);
        let half =
            Conv2dForwardHalf::quantized(gpu, &s, &tx, &twq, &ty, HalfKind::F16, &qx, &qw, shared)
                .unwrap();
        let f32_conv = Conv2dForward::with_input_quant(
            gpu,
            &s,
            &tx,
            &twq,
            None,
            &ty32,
            ConvAlgo::Direct,
            Some(qx),
        )
        .unwrap();
        let mut rec = Recorder::new(gpu);
        lsq_w.record(&mut rec);
        half.record(&mut rec);
        f32_conv.record(&mut rec);
        let (r, r32) = (rec.read(&ty), rec.read(&ty32));
        let out = rec.submit().unwrap();
        let tag = format!("case {i} {s:?} a{ab} w{wb}");
        let mag = (qn.abs().max(qp) * a_eff).max(1.0);
        let t = Tol::sum_of(s.c_in * s.kh * s.kw + 1);
        let tol = Tol {
            abs: t.abs * mag,
            rel: t.rel,
        };
        assert_close(&format!("f16 codes vs CPU, {tag}"), out.f32(r), &want, tol);
        assert_close(
            &format!("f16 codes vs fused f32, {tag}"),
            out.f32(r),
            out.f32(r32),
            tol,
        );
    }
    // Codes wider than f16 holds exactly are refused, not rounded.
    let s = Conv2dShape::square(1, 2, 4, 4, 3, 3, 1, 1, 1);
    let (tx, tw, ty) = (
        nan(gpu, s.input_len(), "x"),
        nan(gpu, s.weight_len(), "w"),
        nan(gpu, s.output_len(), "y"),
    );
    let steps = up(gpu, &[0.1], "steps");
    let wide = QuantX {
        steps: &steps,
        config: LsqConfig {
            index: 0,
            bits: 12,
            signed: false,
        },
    };
    let qw = QuantX {
        steps: &steps,
        config: LsqConfig {
            index: 0,
            bits: 4,
            signed: true,
        },
    };
    let r = Conv2dForwardHalf::quantized(gpu, &s, &tx, &tw, &ty, HalfKind::F16, &wide, &qw, None);
    assert!(
        matches!(r, Err(limpq_trainer::gpu::GpuError::Unsupported(_))),
        "{r:?}"
    );
    // A scratch too small for the im2col is refused.
    let small = nan(gpu, Conv2dForwardHalf::scratch_len(&s) - 1, "small scratch");
    let qx = QuantX {
        steps: &steps,
        config: LsqConfig {
            index: 0,
            bits: 4,
            signed: false,
        },
    };
    let r = Conv2dForwardHalf::quantized(
        gpu,
        &s,
        &tx,
        &tw,
        &ty,
        HalfKind::F16,
        &qx,
        &qw,
        Some(&small),
    );
    assert!(
        matches!(&r, Err(limpq_trainer::gpu::GpuError::Shape(m)) if m.contains("scratch")),
        "{r:?}"
    );
}
