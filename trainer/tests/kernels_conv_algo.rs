//! The whole-network conv override (`ConvPolicy`, `LIMPQ_CONV_ALGO`, `--conv-algo`):
//! parsing, which kernel `ConvAlgo::Auto` resolves to under the rule each override makes,
//! that explicit choices are untouched, and that the forced kernels still match the CPU
//! reference. Skips (with a printed reason) only when no GPU adapter exists.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

mod common;

use common::{assert_close, Tol};
use limpq_trainer::gpu::{Gpu, GpuError, Recorder, Tensor};
use limpq_trainer::kernels::conv::{
    Conv2dBackwardData, Conv2dBackwardWeight, Conv2dForward, ConvAlgo, ConvPolicy, ConvRule,
};
use limpq_trainer::kernels::gemm_f16::round_f16;
use limpq_trainer::reference;
use limpq_trainer::reference::rng::SeededRng;
use limpq_trainer::shapes::Conv2dShape;

#[test]
fn conv_algo_parses_the_override_values() {
    let ok = [
        ("auto", ConvAlgo::Auto),
        ("direct", ConvAlgo::Direct),
        ("gemm", ConvAlgo::ImplicitGemm),
        ("implicit-gemm", ConvAlgo::ImplicitGemm),
        (" Blocked ", ConvAlgo::Blocked),
        ("broadcast", ConvAlgo::Broadcast),
        ("f16gemm", ConvAlgo::F16Gemm),
        ("F16-GEMM", ConvAlgo::F16Gemm),
    ];
    for (s, want) in ok {
        assert_eq!(s.parse::<ConvAlgo>(), Ok(want), "{s:?}");
    }
    for a in [
        ConvAlgo::Auto,
        ConvAlgo::Direct,
        ConvAlgo::ImplicitGemm,
        ConvAlgo::Blocked,
        ConvAlgo::Broadcast,
        ConvAlgo::F16Gemm,
    ] {
        assert_eq!(a.name().parse::<ConvAlgo>(), Ok(a), "round trip of {a}");
    }
    for bad in ["", "fast", "pointwise", "direct,gemm"] {
        let e = bad.parse::<ConvAlgo>().unwrap_err();
        assert!(
            e.contains("auto, direct, gemm, blocked, broadcast, f16gemm"),
            "{bad:?}: the error must list the allowed values: {e}"
        );
    }
}

/// A device and the rule `algo` as the override makes on it, or `None` (skip) without any
/// adapter.
fn gpu_with(algo: ConvAlgo) -> Option<(Gpu, ConvRule)> {
    match Gpu::new(&common::gpu_options()) {
        Ok(g) => {
            let rule = ConvPolicy::Force(algo)
                .rule(&g)
                .unwrap_or_else(|e| panic!("override {algo}: {e}"));
            Some((g, rule))
        }
        Err(e @ GpuError::NoAdapter { .. }) => {
            eprintln!("SKIP: no GPU adapter: {e}");
            None
        }
        Err(e) => panic!("Gpu::new: {e}"),
    }
}

/// The f16 override: forward convs the f16 path supports take it (and match the CPU
/// reference on f16-rounded operands), everything else — backward ops, a biased or grouped
/// forward conv — gets the adapter's `Auto` pick and the f32 result. Without SHADER_F16 the
/// device is refused with the reason.
#[test]
fn f16gemm_override_takes_the_forward_convs_it_supports() {
    let Some(gpu) = common::f16_override_gpu_or_skip("f16gemm override") else {
        return;
    };
    let rule = ConvPolicy::Force(ConvAlgo::F16Gemm).rule(&gpu).unwrap();
    let Some((plain, _)) = gpu_with(ConvAlgo::Auto) else {
        return;
    };
    let s = SHAPE;
    let mut rng = SeededRng::new(0xF16);
    let x = rng.vec_uniform(s.input_len(), -1.0, 1.0);
    let w = rng.vec_uniform(s.weight_len(), -1.0, 1.0);
    let dy = rng.vec_uniform(s.output_len(), -1.0, 1.0);
    let t = |d: &[f32], l: &str| Tensor::from_f32(&gpu, d, l).unwrap();
    let (tx, tw, tdy) = (t(&x, "x"), t(&w, "w"), t(&dy, "dy"));
    let ty = t(&vec![f32::NAN; s.output_len()], "y");
    let tyb = t(&vec![f32::NAN; s.output_len()], "y biased");
    let tb = t(&vec![0.25; s.c_out], "bias");
    let tdx = t(&vec![f32::NAN; s.input_len()], "dx");
    let f = rule.forward(&gpu, &s, &tx, &tw, None, &ty).unwrap();
    let fb = rule.forward(&gpu, &s, &tx, &tw, Some(&tb), &tyb).unwrap();
    let d = rule
        .backward_data(&gpu, &s, &tdy, &tw, &tdx, false)
        .unwrap();
    // What Auto picks on this adapter without the override, for the same ops.
    let p = |d: &[f32], l: &str| Tensor::from_f32(&plain, d, l).unwrap();
    let (px, pw, pdy) = (p(&x, "x"), p(&w, "w"), p(&dy, "dy"));
    let (py, pb, pdx) = (
        p(&vec![0.0; s.output_len()], "y"),
        p(&vec![0.25; s.c_out], "b"),
        p(&vec![0.0; s.input_len()], "dx"),
    );
    let auto_fwd = Conv2dForward::new(&plain, &s, &px, &pw, Some(&pb), &py)
        .unwrap()
        .algo;
    let auto_bwd = Conv2dBackwardData::new(&plain, &s, &pdy, &pw, &pdx, false)
        .unwrap()
        .algo;
    assert_eq!(f.algo, ConvAlgo::F16Gemm);
    assert_eq!(
        (fb.algo, d.algo),
        (auto_fwd, auto_bwd),
        "biased forward and backward: Auto"
    );
    let grouped = Conv2dShape {
        c_in: 6,
        groups: 2,
        ..s
    };
    let gx = t(&vec![0.5; grouped.input_len()], "x grouped");
    let gw = t(&vec![0.5; grouped.weight_len()], "w grouped");
    let gy = t(&vec![0.0; grouped.output_len()], "y grouped");
    let fg = rule.forward(&gpu, &grouped, &gx, &gw, None, &gy).unwrap();
    assert_ne!(
        fg.algo,
        ConvAlgo::F16Gemm,
        "grouped forward: not the f16 path"
    );

    let mut rec = Recorder::new(&gpu);
    f.record(&mut rec);
    fb.record(&mut rec);
    d.record(&mut rec);
    let r: Vec<usize> = [&ty, &tyb, &tdx].into_iter().map(|t| rec.read(t)).collect();
    let out = rec.submit().unwrap();
    let half = |v: &[f32]| -> Vec<f32> { v.iter().map(|&a| round_f16(a)).collect() };
    let k = s.c_in * s.kh * s.kw;
    let want_y = reference::conv2d_forward(&s, &half(&x), &half(&w), None);
    assert_close("f16 forward", out.f32(r[0]), &want_y, Tol::sum_of(k));
    let want_yb = reference::conv2d_forward(&s, &x, &w, Some(&vec![0.25; s.c_out]));
    assert_close(
        "biased forward (f32)",
        out.f32(r[1]),
        &want_yb,
        Tol::sum_of(k),
    );
    let want_dx = reference::conv2d_backward_data(&s, &dy, &w);
    let bd = Tol::sum_of(s.c_out * s.kh * s.kw);
    assert_close("backward data (f32)", out.f32(r[2]), &want_dx, bd);
}

const SHAPE: Conv2dShape = Conv2dShape {
    n: 2,
    c_in: 5,
    h: 7,
    w: 6,
    c_out: 6,
    kh: 3,
    kw: 3,
    stride: 2,
    pad: 1,
    groups: 1,
};

/// Under each override, `Auto` resolves to the forced kernel (backward weight: `Blocked` /
/// `Broadcast`, or the per-weight reduction `Direct` for the others), an explicit algorithm
/// is kept, and the forced `Auto` ops agree with the CPU reference. `Broadcast` where the
/// adapter has subgroups of 8; elsewhere the device with that override is refused.
#[test]
fn override_forces_auto_and_keeps_explicit_choices() {
    let s = SHAPE;
    let mut rng = SeededRng::new(0xA160);
    let x = rng.vec_uniform(s.input_len(), -1.0, 1.0);
    let w = rng.vec_uniform(s.weight_len(), -1.0, 1.0);
    let dy = rng.vec_uniform(s.output_len(), -1.0, 1.0);
    let want_y = reference::conv2d_forward(&s, &x, &w, None);
    let want_dx = reference::conv2d_backward_data(&s, &dy, &w);
    let want_dw = reference::conv2d_backward_weight(&s, &x, &dy);
    let Some((plain, _)) = gpu_with(ConvAlgo::Auto) else {
        return;
    };
    for forced in [
        ConvAlgo::Direct,
        ConvAlgo::ImplicitGemm,
        ConvAlgo::Blocked,
        ConvAlgo::Broadcast,
    ] {
        if forced == ConvAlgo::Broadcast && !plain.subgroup8 {
            let Err(e) = ConvPolicy::Force(forced).rule(&plain) else {
                panic!("override broadcast without subgroups of 8 must be refused");
            };
            assert!(e.to_string().contains("broadcast"), "{e}");
            eprintln!("note: {}: {e}", plain.summary.name);
            continue;
        }
        let Some((gpu, rule)) = gpu_with(forced) else {
            return;
        };
        assert_eq!(rule.auto(), forced);
        let t = |d: &[f32], l: &str| Tensor::from_f32(&gpu, d, l).unwrap();
        let (tx, tw, tdy) = (t(&x, "x"), t(&w, "w"), t(&dy, "dy"));
        let ty = t(&vec![f32::NAN; s.output_len()], "y");
        let tdx = t(&vec![f32::NAN; s.input_len()], "dx");
        let tdw = t(&vec![f32::NAN; s.weight_len()], "dw");
        let f = rule.forward(&gpu, &s, &tx, &tw, None, &ty).unwrap();
        let d = rule
            .backward_data(&gpu, &s, &tdy, &tw, &tdx, false)
            .unwrap();
        let wt = rule
            .backward_weight(&gpu, &s, &tx, &tdy, &tdw, false, None)
            .unwrap();
        assert_eq!(
            (f.algo, d.algo, wt.algo),
            (forced, forced, common::backward_weight_algo(forced)),
            "override {forced}"
        );
        // An explicit algorithm wins over the override.
        let other = if forced == ConvAlgo::Direct {
            ConvAlgo::ImplicitGemm
        } else {
            ConvAlgo::Direct
        };
        let scratch = Tensor::zeros(&gpu, s.output_len(), "scratch").unwrap();
        let f2 = Conv2dForward::with_algo(&gpu, &s, &tx, &tw, None, &scratch, other).unwrap();
        assert_eq!(f2.algo, other, "explicit {other} under override {forced}");

        let mut rec = Recorder::new(&gpu);
        f.record(&mut rec);
        d.record(&mut rec);
        wt.record(&mut rec);
        let r: Vec<usize> = [&ty, &tdx, &tdw].into_iter().map(|t| rec.read(t)).collect();
        let out = rec.submit().unwrap();
        let k2 = s.kh * s.kw;
        let tag = format!("override {forced}");
        let fwd_tol = Tol::sum_of(s.c_in * k2);
        assert_close(&format!("forward {tag}"), out.f32(r[0]), &want_y, fwd_tol);
        let bd_tol = Tol::sum_of(s.c_out * k2);
        assert_close(
            &format!("backward data {tag}"),
            out.f32(r[1]),
            &want_dx,
            bd_tol,
        );
        let bw_tol = Tol::sum_of(s.n * s.h_out() * s.w_out());
        assert_close(
            &format!("backward weight {tag}"),
            out.f32(r[2]),
            &want_dw,
            bw_tol,
        );
    }
}

/// With the override `Auto`, the built-in rule applies: on a software adapter every op takes
/// `Broadcast` (subgroups of 8) or `Blocked`; elsewhere forward / backward data take implicit
/// GEMM for ≥ 32 GEMM rows or the direct kernel, and backward weight the per-weight reduction.
#[test]
fn auto_override_keeps_the_built_in_rule() {
    let Some((gpu, rule)) = gpu_with(ConvAlgo::Auto) else {
        return;
    };
    let s = SHAPE;
    let x = Tensor::zeros(&gpu, s.input_len(), "x").unwrap();
    let w = Tensor::zeros(&gpu, s.weight_len(), "w").unwrap();
    let y = Tensor::zeros(&gpu, s.output_len(), "y").unwrap();
    let dw = Tensor::zeros(&gpu, s.weight_len(), "dw").unwrap();
    let f = rule.forward(&gpu, &s, &x, &w, None, &y).unwrap();
    let wt = rule
        .backward_weight(&gpu, &s, &x, &y, &dw, false, None)
        .unwrap();
    if gpu.adapter.get_info().device_type == wgpu::DeviceType::Cpu {
        let cpu = common::software_conv_algo(&gpu);
        assert_eq!((f.algo, wt.algo), (cpu, cpu));
    } else {
        // 6 output channels: below the 32-row threshold.
        assert_eq!((f.algo, wt.algo), (ConvAlgo::Direct, ConvAlgo::Direct));
    }
}

fn pointwise(n: usize, c_in: usize, h: usize, w: usize, c_out: usize) -> Conv2dShape {
    Conv2dShape::square(n, c_in, h, w, c_out, 1, 1, 0, 1)
}

/// `ConvAlgo::Pointwise` (1×1 stride-1 convs as one batched GEMM with the weight shared):
/// forward and backward data (overwrite and accumulate) against the CPU reference, on shapes
/// with several 64-row / 64-column tiles, uneven edges and a single element.
#[test]
fn pointwise_matches_the_cpu_reference() {
    let Some(gpu) = common::gpu_or_skip("pointwise_matches_the_cpu_reference") else {
        return;
    };
    for s in [
        pointwise(1, 1, 1, 1, 1),
        pointwise(3, 5, 3, 7, 6),
        pointwise(2, 70, 9, 9, 20),
        pointwise(2, 20, 9, 9, 70),
    ] {
        let mut rng = SeededRng::new(s.input_len() as u64 * 7 + s.weight_len() as u64);
        let x = rng.vec_uniform(s.input_len(), -1.0, 1.0);
        let w = rng.vec_uniform(s.weight_len(), -1.0, 1.0);
        let dy = rng.vec_uniform(s.output_len(), -1.0, 1.0);
        let dx0 = rng.vec_uniform(s.input_len(), -1.0, 1.0);
        let want_y = reference::conv2d_forward(&s, &x, &w, None);
        let want_dx = reference::conv2d_backward_data(&s, &dy, &w);
        let want_dx_acc: Vec<f32> = want_dx.iter().zip(&dx0).map(|(a, b)| a + b).collect();
        let t = |d: &[f32], l: &str| Tensor::from_f32(gpu, d, l).unwrap();
        let (tx, tw, tdy) = (t(&x, "x"), t(&w, "w"), t(&dy, "dy"));
        let ty = t(&vec![f32::NAN; s.output_len()], "y");
        let tdx = t(&vec![f32::NAN; s.input_len()], "dx");
        let tdx_acc = t(&dx0, "dx acc");
        let p = ConvAlgo::Pointwise;
        let f = Conv2dForward::with_algo(gpu, &s, &tx, &tw, None, &ty, p).unwrap();
        let d = Conv2dBackwardData::with_algo(gpu, &s, &tdy, &tw, &tdx, false, p).unwrap();
        let da = Conv2dBackwardData::with_algo(gpu, &s, &tdy, &tw, &tdx_acc, true, p).unwrap();
        assert_eq!((f.algo, d.algo, da.algo), (p, p, p));
        let mut rec = Recorder::new(gpu);
        f.record(&mut rec);
        d.record(&mut rec);
        da.record(&mut rec);
        let r: Vec<usize> = [&ty, &tdx, &tdx_acc]
            .into_iter()
            .map(|t| rec.read(t))
            .collect();
        let out = rec.submit().unwrap();
        let tag = format!("pointwise {s:?}");
        assert_close(
            &format!("forward {tag}"),
            out.f32(r[0]),
            &want_y,
            Tol::sum_of(s.c_in),
        );
        let bd_tol = Tol::sum_of(s.c_out + 1);
        assert_close(
            &format!("backward data {tag}"),
            out.f32(r[1]),
            &want_dx,
            bd_tol,
        );
        assert_close(
            &format!("backward data accumulate {tag}"),
            out.f32(r[2]),
            &want_dx_acc,
            bd_tol,
        );
    }
}

/// Everything `Pointwise` cannot do is `Unsupported` (never a wrong result): other kernel
/// sizes, stride, padding, groups, bias, input quantization, backward weight.
#[test]
fn pointwise_refuses_what_it_cannot_compute() {
    let Some(gpu) = common::gpu_or_skip("pointwise_refuses_what_it_cannot_compute") else {
        return;
    };
    let p = ConvAlgo::Pointwise;
    let unsupported = |r: Result<ConvAlgo, GpuError>, what: &str| match r {
        Err(GpuError::Unsupported(m)) => assert!(m.contains("Pointwise"), "{what}: {m}"),
        Err(e) => panic!("{what}: wrong error {e}"),
        Ok(a) => panic!("{what}: built as {a}"),
    };
    let base = pointwise(2, 4, 5, 5, 6);
    let bad = [
        (
            "3×3",
            Conv2dShape {
                kh: 3,
                kw: 3,
                pad: 1,
                ..base
            },
        ),
        ("stride 2", Conv2dShape { stride: 2, ..base }),
        ("pad 1", Conv2dShape { pad: 1, ..base }),
        ("groups 2", Conv2dShape { groups: 2, ..base }),
    ];
    let zeros = |len: usize| Tensor::zeros(gpu, len, "z").unwrap();
    for (what, s) in bad {
        let (x, w, y) = (
            zeros(s.input_len()),
            zeros(s.weight_len()),
            zeros(s.output_len()),
        );
        unsupported(
            Conv2dForward::with_algo(gpu, &s, &x, &w, None, &y, p).map(|o| o.algo),
            &format!("forward {what}"),
        );
        unsupported(
            Conv2dBackwardData::with_algo(gpu, &s, &y, &w, &x, false, p).map(|o| o.algo),
            &format!("backward data {what}"),
        );
    }
    let s = base;
    let (x, w, y) = (
        zeros(s.input_len()),
        zeros(s.weight_len()),
        zeros(s.output_len()),
    );
    let b = zeros(s.c_out);
    unsupported(
        Conv2dForward::with_algo(gpu, &s, &x, &w, Some(&b), &y, p).map(|o| o.algo),
        "forward with bias",
    );
    let steps = Tensor::from_f32(gpu, &[0.1], "steps").unwrap();
    let q = limpq_trainer::kernels::conv::QuantX {
        steps: &steps,
        config: limpq_trainer::kernels::lsq::LsqConfig {
            index: 0,
            bits: 4,
            signed: false,
        },
    };
    unsupported(
        Conv2dForward::with_input_quant(gpu, &s, &x, &w, None, &y, p, Some(q)).map(|o| o.algo),
        "forward with input quantization",
    );
    let dw = zeros(s.weight_len());
    unsupported(
        Conv2dBackwardWeight::with_algo(gpu, &s, &x, &y, &dw, false, p).map(|o| o.algo),
        "backward weight",
    );
    // Not a whole-network override either.
    assert!("pointwise".parse::<ConvAlgo>().is_err());
    assert!(matches!(
        ConvPolicy::Force(p).rule(gpu),
        Err(GpuError::InvalidOption(_))
    ));
}
