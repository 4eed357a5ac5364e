//! The method on the GPU engine (issue 4): a quantized network's forward/backward against a
//! CPU composition of the reference ops (LSQ step-size and STE weight gradients included),
//! gradient accumulation over the passes of a joint step, and on the software adapter a
//! tiny joint run → indicators the solver accepts → finetune of the solved policy.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::gpu_or_skip;
use limpq_solver::{BitOpsBudget, Problem};
use limpq_trainer::data::{Dataset, Split, Subset};
use limpq_trainer::engine::{Network, NetworkConfig, ParamKind, QuantSpec};
use limpq_trainer::method::{
    evaluate_quantized, finetune, joint_train_full, FinetuneConfig, JointConfig, MethodError,
    StopFlag,
};
use limpq_trainer::model::{Model, Node, Op};
use limpq_trainer::reference::conv::{
    conv2d_backward_bias, conv2d_backward_data, conv2d_backward_weight, conv2d_forward,
};
use limpq_trainer::reference::elementwise::{relu_backward, relu_forward};
use limpq_trainer::reference::linear::{linear_backward, linear_forward};
use limpq_trainer::reference::loss::softmax_cross_entropy;
use limpq_trainer::reference::lsq::{
    lsq_init_weight_scale, lsq_quantize_backward, lsq_quantize_forward,
};
use limpq_trainer::reference::pool::{global_avg_pool_backward, global_avg_pool_forward};
use limpq_trainer::reference::rng::SeededRng;
use limpq_trainer::reference::Nchw;
use limpq_trainer::shapes::Conv2dShape;
use limpq_trainer::train::{train, Event, RunConfig, TrainConfig};

const FMNIST: &str = "/usr/share/datasets/fashion-mnist";

fn node(name: &str, op: Op, input: &str) -> Node {
    Node {
        name: name.into(),
        op,
        inputs: vec![input.into()],
    }
}

/// input 1×6×6 → conv1 (stem, fixed 8-bit, signed input) → relu → conv2 (searchable) →
/// relu → GAP → fc (fixed 8-bit) → 3 classes; every layer with a bias.
fn tiny() -> Model {
    let conv = |c| Op::Conv2d {
        out_channels: c,
        kernel: 3,
        stride: 1,
        padding: 1,
        groups: 1,
        // Biases keep conv outputs off exact zeros: without them a quantized conv's output
        // is s_a·s_w·(integer), often exactly 0 mathematically, and the sign of the f32
        // rounding error (summation order differs between GPU and CPU) decides the ReLU mask.
        bias: true,
    };
    Model {
        name: "tiny_q".into(),
        input: (1, 6, 6),
        classes: 3,
        nodes: vec![
            node("conv1", conv(4), "input"),
            node("relu1", Op::Relu, "conv1"),
            node("conv2", conv(5), "relu1"),
            node("relu2", Op::Relu, "conv2"),
            node("gap", Op::GlobalAvgPool, "relu2"),
            node(
                "fc",
                Op::Linear {
                    out_features: 3,
                    bias: true,
                },
                "gap",
            ),
        ],
    }
}

fn close(what: &str, got: &[f32], want: &[f32], abs: f32, rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    if std::env::var("DBG").is_ok() {
        eprintln!(
            "{what}: {:?}\n   vs {:?}",
            &got[..got.len().min(8)],
            &want[..want.len().min(8)]
        );
        return;
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= abs + rel * w.abs(),
            "{what}[{i}]: GPU {g} vs CPU {w}"
        );
    }
}

struct CpuGrads {
    loss: f32,
    /// name → gradient
    grads: Vec<(String, Vec<f32>)>,
}

/// The tiny network's loss and gradients composed from the reference ops; `b` is conv2's
/// bit-width, `s` the steps used: (conv1 w, conv1 a, conv2 w, conv2 a, fc w, fc a).
/// `fp_fixed`: conv1 and fc in full precision (their steps unused, no step gradients).
#[allow(clippy::too_many_arguments)]
fn cpu_tiny(
    n: usize,
    x: &[f32],
    y: &[u32],
    w1: &[f32],
    b1: &[f32],
    w2: &[f32],
    b2: &[f32],
    w3: &[f32],
    b3: &[f32],
    s: [f32; 6],
    b: u32,
    fp_fixed: bool,
) -> CpuGrads {
    // Quantized at 8 bits, or passed through unchanged (full precision).
    let q8 = |x: &[f32], s: f32, signed: bool| {
        if fp_fixed {
            x.to_vec()
        } else {
            lsq_quantize_forward(x, s, 8, signed)
        }
    };
    let q8_back = |x: &[f32], s: f32, signed: bool, dy: &[f32]| {
        if fp_fixed {
            (dy.to_vec(), 0.0)
        } else {
            lsq_quantize_backward(x, s, 8, signed, dy)
        }
    };
    let c1 = Conv2dShape {
        n,
        c_in: 1,
        h: 6,
        w: 6,
        c_out: 4,
        kh: 3,
        kw: 3,
        stride: 1,
        pad: 1,
        groups: 1,
    };
    let c2 = Conv2dShape {
        c_in: 4,
        c_out: 5,
        ..c1
    };
    let xq1 = q8(x, s[1], true);
    let w1q = q8(w1, s[0], true);
    let y1 = conv2d_forward(&c1, &xq1, &w1q, Some(b1));
    let r1 = relu_forward(&y1);
    let xq2 = lsq_quantize_forward(&r1, s[3], b, false);
    let w2q = lsq_quantize_forward(w2, s[2], b, true);
    let y2 = conv2d_forward(&c2, &xq2, &w2q, Some(b2));
    let r2 = relu_forward(&y2);
    let d2 = Nchw::new(n, 5, 6, 6);
    let g = global_avg_pool_forward(&d2, &r2);
    let xq3 = q8(&g, s[5], false);
    let w3q = q8(w3, s[4], true);
    let logits = linear_forward(n, 5, 3, &xq3, &w3q, Some(b3));
    let ce = softmax_cross_entropy(n, 3, &logits, y, 0.1);
    let (dxq3, dw3q, db3) = linear_backward(n, 5, 3, &xq3, &w3q, &ce.dlogits);
    let (dg, ds3a) = q8_back(&g, s[5], false, &dxq3);
    let (dw3, ds3w) = q8_back(w3, s[4], true, &dw3q);
    let dr2 = global_avg_pool_backward(&d2, &dg);
    let dy2 = relu_backward(&y2, &dr2);
    let dxq2 = conv2d_backward_data(&c2, &dy2, &w2q);
    let dw2q = conv2d_backward_weight(&c2, &xq2, &dy2);
    let (dr1, ds2a) = lsq_quantize_backward(&r1, s[3], b, false, &dxq2);
    let (dw2, ds2w) = lsq_quantize_backward(w2, s[2], b, true, &dw2q);
    let db2 = conv2d_backward_bias(&c2, &dy2);
    let dy1 = relu_backward(&y1, &dr1);
    let db1 = conv2d_backward_bias(&c1, &dy1);
    let dw1q = conv2d_backward_weight(&c1, &xq1, &dy1);
    let dxq1 = conv2d_backward_data(&c1, &dy1, &w1q);
    let (_, ds1a) = q8_back(x, s[1], true, &dxq1);
    let (dw1, ds1w) = q8_back(w1, s[0], true, &dw1q);
    let mut grads: Vec<(String, Vec<f32>)> = vec![
        ("conv1.weight".into(), dw1),
        ("conv1.bias".into(), db1),
        ("conv2.bias".into(), db2),
        ("conv1.weight_step".into(), vec![ds1w]),
        ("conv1.act_step".into(), vec![ds1a]),
        ("conv2.weight".into(), dw2),
        ("conv2.weight_step".into(), vec![ds2w]),
        ("conv2.act_step".into(), vec![ds2a]),
        ("fc.weight".into(), dw3),
        ("fc.bias".into(), db3),
        ("fc.weight_step".into(), vec![ds3w]),
        ("fc.act_step".into(), vec![ds3a]),
    ];
    if fp_fixed {
        grads.retain(|(n, _)| {
            !(n.starts_with("conv1.") || n.starts_with("fc.")) || !n.ends_with("_step")
        });
    }
    CpuGrads {
        loss: ce.loss,
        grads,
    }
}

/// Forward/backward of the quantized tiny network (conv2 at variant `k` of bits [2, 4])
/// equals the reference composition: loss, STE weight gradients, every step-size gradient
/// (at the selected entry; the other entry's gradient stays 0). Then a two-pass step at
/// lr 0 leaves the SUM of both passes' gradients.
#[test]
fn quantized_network_matches_reference_composition() {
    let Some(gpu) = gpu_or_skip("quantized network") else {
        return;
    };
    let model = tiny();
    let n = 3;
    let spec = QuantSpec::joint(&model, &[2, 4]).unwrap();
    assert_eq!(spec.layers[0].1, vec![(8, 8)], "stem fixed at 8 bits");
    assert_eq!(spec.layers[1].1, vec![(2, 2), (4, 4)]);
    assert_eq!(spec.layers[2].1, vec![(8, 8)], "classifier fixed at 8 bits");
    let cfg = NetworkConfig {
        batch: n,
        seed: 3,
        label_smoothing: 0.1,
        ..NetworkConfig::default()
    };
    let mut net = Network::new_quantized(gpu, &model, cfg, &spec).unwrap();
    let infos = net.param_infos();
    let mut rng = SeededRng::new(17);
    let x = rng.vec_uniform(n * 36, -1.0, 1.5);
    let y = vec![0u32, 2, 1];
    let params = net.read_params().unwrap();
    let get = |name: &str| -> Vec<f32> {
        let i = infos.iter().position(|p| p.name == name).unwrap();
        params[i].clone()
    };
    let (w1, b1, w2, b2, w3, b3) = (
        get("conv1.weight"),
        get("conv1.bias"),
        get("conv2.weight"),
        get("conv2.bias"),
        get("fc.weight"),
        get("fc.bias"),
    );
    // Steps: init rule for weights; activations chosen so that some values clip.
    net.init_steps(&x, &y, &[true, true, true]).unwrap();
    let steps = net.read_steps().unwrap();
    for (l, (w, a)) in net.quant_layers().iter().zip(&steps) {
        assert!(
            w.iter().chain(a).all(|v| v.is_finite() && *v > 0.0),
            "{}: {w:?} {a:?}",
            l.name
        );
    }
    // Weight init rule: a 4-bit step is a quarter... of the 2-bit one (2^(b-1) ratio).
    assert!((steps[1].0[0] / steps[1].0[1] - 4.0).abs() < 1e-4);
    let s2a = [0.09f32, 0.03];
    net.write_steps(1, &steps[1].0, &s2a).unwrap();
    for k in 0..2 {
        let bits = [2, 4][k];
        net.set_selection(&[0, k, 0]).unwrap();
        let st = net.forward_backward(&x, &y).unwrap();
        let grads = net.read_grads().unwrap();
        let s = [
            steps[0].0[0],
            steps[0].1[0],
            steps[1].0[k],
            s2a[k],
            steps[2].0[0],
            steps[2].1[0],
        ];
        let cpu = cpu_tiny(n, &x, &y, &w1, &b1, &w2, &b2, &w3, &b3, s, bits, false);
        if std::env::var("DBG").is_ok() {
            eprintln!("loss {} vs {} steps {s:?}", st.loss, cpu.loss);
        }
        assert!(
            (st.loss - cpu.loss).abs() < 1e-5 + 1e-5 * cpu.loss.abs(),
            "loss {} vs {}",
            st.loss,
            cpu.loss
        );
        for (name, want) in &cpu.grads {
            let i = infos.iter().position(|p| p.name == *name).unwrap();
            let got = &grads[i];
            let got: Vec<f32> = if name == "conv2.weight_step" || name == "conv2.act_step" {
                assert_eq!(got[1 - k], 0.0, "{name}: unselected entry untouched");
                vec![got[k]]
            } else {
                got.clone()
            };
            close(&format!("{name} at {bits} bits"), &got, want, 2e-5, 1e-3);
        }
        // The STE gradient really differs from the unquantized one (the test can see it).
        if k == 0 {
            let dw2 = &cpu.grads[3].1;
            assert!(dw2.iter().any(|v| *v != 0.0));
            let st = &grads[infos
                .iter()
                .position(|p| p.name == "conv2.act_step")
                .unwrap()];
            assert!(st[0] != 0.0, "2-bit act step gradient");
        }
    }
    // Accumulation: a two-pass step (2-bit, then 4-bit) at lr 0 sums the gradients.
    let mut single = Vec::new();
    for k in 0..2 {
        net.set_selection(&[0, k, 0]).unwrap();
        net.forward_backward(&x, &y).unwrap();
        single.push(net.read_grads().unwrap());
    }
    let stats = net
        .train_passes(&x, &y, 0.0, &[vec![0, 0, 0], vec![0, 1, 0]])
        .unwrap();
    assert_eq!(stats.len(), 2);
    let summed = net.read_grads().unwrap();
    for (i, p) in infos.iter().enumerate() {
        let want: Vec<f32> = single[0][i]
            .iter()
            .zip(&single[1][i])
            .map(|(a, b)| a + b)
            .collect();
        close(&format!("summed {}", p.name), &summed[i], &want, 1e-6, 1e-5);
    }
    // The two-pass submission records both variants' LSQ ops.
    let one = net.passes_dispatches(&[vec![0, 0, 0]]);
    let two = net.passes_dispatches(&[vec![0, 0, 0], vec![0, 1, 0]]);
    assert!(two > one, "{two} vs {one}");
}

/// The reference's joint training keeps the stem and the classifier in full precision:
/// with `QuantSpec::joint_with(.., None)` they get no quantizer and no step tensor, the
/// network's loss and gradients equal the reference composition with those two layers
/// unquantized, and a two-pass step still sums every gradient, the full-precision layers'
/// included.
/// Data parallelism (docs/SCALING.md): two ranks at half the batch each, their gradients
/// averaged, give one process's gradients at the whole batch, the activation step sizes'
/// among them: their gradient scale counts the global batch (`NetworkConfig::ranks`). The
/// model has no BN, so the halves compute the same forward as the whole. Built for one
/// process instead, each half's activation steps get √2 times the gradient.
#[test]
fn two_ranks_at_half_the_batch_average_to_one_process_gradients() {
    let Some(gpu) = gpu_or_skip("data-parallel step-size gradients") else {
        return;
    };
    let model = tiny();
    let spec = QuantSpec::joint(&model, &[2, 4]).unwrap();
    let b = 8;
    let config = |batch, ranks| NetworkConfig {
        batch,
        seed: 3,
        ranks,
        ..NetworkConfig::default()
    };
    let mut whole = Network::new_quantized(gpu, &model, config(b, 1), &spec).unwrap();
    let mut rng = SeededRng::new(17);
    let x = rng.vec_uniform(b * 36, -1.0, 1.5);
    let y: Vec<u32> = (0..b as u32).map(|i| i % 3).collect();
    whole.init_steps(&x, &y, &[true, true, true]).unwrap();
    let infos = whole.param_infos();
    let params = whole.read_params().unwrap();
    let steps = whole.read_steps().unwrap();
    let mut halves = Vec::new();
    for ranks in [2, 1] {
        let mut half = Network::new_quantized(gpu, &model, config(b / 2, ranks), &spec).unwrap();
        for (info, p) in infos.iter().zip(&params) {
            half.set_param(&info.name, p).unwrap();
        }
        for (l, (w, a)) in steps.iter().enumerate() {
            half.write_steps(l, w, a).unwrap();
        }
        halves.push(half);
    }
    let n = x.len() / 2;
    for k in 0..2 {
        whole.set_selection(&[0, k, 0]).unwrap();
        whole.forward_backward(&x, &y).unwrap();
        let want = whole.read_grads().unwrap();
        let mut ratios = Vec::new();
        for half in &mut halves {
            half.set_selection(&[0, k, 0]).unwrap();
            half.forward_backward(&x[..n], &y[..b / 2]).unwrap();
            let g0 = half.read_grads().unwrap();
            half.forward_backward(&x[n..], &y[b / 2..]).unwrap();
            let g1 = half.read_grads().unwrap();
            let mut act = (0.0f64, 0.0f64);
            for (i, info) in infos.iter().enumerate() {
                let mean: Vec<f32> = g0[i]
                    .iter()
                    .zip(&g1[i])
                    .map(|(a, c)| (a + c) / 2.0)
                    .collect();
                if info.name.ends_with(".act_step") {
                    act.0 += want[i].iter().map(|v| f64::from(v.abs())).sum::<f64>();
                    act.1 += mean.iter().map(|v| f64::from(v.abs())).sum::<f64>();
                }
                ratios.push((info.name.clone(), mean, want[i].clone()));
            }
            assert!(
                act.0 > 0.0,
                "variant {k}: no activation step gradient to compare"
            );
            ratios.push(("act ratio".into(), vec![(act.1 / act.0) as f32], vec![]));
        }
        let (two, one) = ratios.split_at(ratios.len() / 2);
        for (name, got, want) in &two[..two.len() - 1] {
            close(&format!("variant {k} {name}"), got, want, 1e-6, 1e-4);
        }
        assert!((two.last().unwrap().1[0] - 1.0).abs() < 1e-4, "variant {k}");
        // The same halves built for one process: the activation steps' gradients are
        // √2 too large, which is what the test would see without `ranks`.
        let r = one.last().unwrap().1[0];
        assert!(
            (r - std::f32::consts::SQRT_2).abs() < 1e-3,
            "variant {k}: ratio {r}"
        );
    }
}

#[test]
fn joint_network_with_full_precision_fixed_layers_matches_reference() {
    let Some(gpu) = gpu_or_skip("full-precision fixed layers") else {
        return;
    };
    let model = tiny();
    let n = 3;
    let spec = QuantSpec::joint_with(&model, &[2, 4], None).unwrap();
    assert!(spec.layers[0].1.is_empty() && spec.layers[2].1.is_empty());
    assert_eq!(spec.layers[1].1, vec![(2, 2), (4, 4)]);
    let cfg = NetworkConfig {
        batch: n,
        seed: 3,
        label_smoothing: 0.1,
        ..NetworkConfig::default()
    };
    let mut net = Network::new_quantized(gpu, &model, cfg, &spec).unwrap();
    let quantized: Vec<String> = net.quant_layers().into_iter().map(|l| l.name).collect();
    assert_eq!(quantized, ["conv2"]);
    let infos = net.param_infos();
    let steps_of: Vec<&str> = infos
        .iter()
        .filter(|p| p.kind == ParamKind::LsqStep)
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(steps_of, ["conv2.weight_step", "conv2.act_step"]);
    let mut rng = SeededRng::new(17);
    let x = rng.vec_uniform(n * 36, -1.0, 1.5);
    let y = vec![0u32, 2, 1];
    let params = net.read_params().unwrap();
    let get = |name: &str| -> Vec<f32> {
        let i = infos.iter().position(|p| p.name == name).unwrap();
        params[i].clone()
    };
    let (w1, b1, w2, b2, w3, b3) = (
        get("conv1.weight"),
        get("conv1.bias"),
        get("conv2.weight"),
        get("conv2.bias"),
        get("fc.weight"),
        get("fc.bias"),
    );
    net.init_steps(&x, &y, &[true]).unwrap();
    let steps = net.read_steps().unwrap();
    let s2a = [0.09f32, 0.03];
    net.write_steps(0, &steps[0].0, &s2a).unwrap();
    for k in 0..2 {
        let bits = [2, 4][k];
        net.set_selection(&[k]).unwrap();
        let st = net.forward_backward(&x, &y).unwrap();
        let grads = net.read_grads().unwrap();
        // conv1's and fc's steps are unused in full precision.
        let s = [1.0, 1.0, steps[0].0[k], s2a[k], 1.0, 1.0];
        let cpu = cpu_tiny(n, &x, &y, &w1, &b1, &w2, &b2, &w3, &b3, s, bits, true);
        assert!(
            (st.loss - cpu.loss).abs() < 1e-5 + 1e-5 * cpu.loss.abs(),
            "loss {} vs {}",
            st.loss,
            cpu.loss
        );
        // The 8-bit stem and classifier would give another loss: the test can tell.
        let q8 = cpu_tiny(n, &x, &y, &w1, &b1, &w2, &b2, &w3, &b3, s, bits, false);
        assert!(
            (q8.loss - cpu.loss).abs() > 1e-4,
            "{} vs {}",
            q8.loss,
            cpu.loss
        );
        for (name, want) in &cpu.grads {
            let i = infos.iter().position(|p| p.name == *name).unwrap();
            let got = &grads[i];
            let got: Vec<f32> = if name.ends_with("_step") {
                assert_eq!(got[1 - k], 0.0, "{name}: unselected entry untouched");
                vec![got[k]]
            } else {
                got.clone()
            };
            close(&format!("{name} at {bits} bits"), &got, want, 2e-5, 1e-3);
        }
    }
    // A two-pass step at lr 0 sums both passes' gradients, full-precision layers' too.
    let mut single = Vec::new();
    for k in 0..2 {
        net.set_selection(&[k]).unwrap();
        net.forward_backward(&x, &y).unwrap();
        single.push(net.read_grads().unwrap());
    }
    net.train_passes(&x, &y, 0.0, &[vec![0], vec![1]]).unwrap();
    let summed = net.read_grads().unwrap();
    for (i, p) in infos.iter().enumerate() {
        let want: Vec<f32> = single[0][i]
            .iter()
            .zip(&single[1][i])
            .map(|(a, b)| a + b)
            .collect();
        close(&format!("summed {}", p.name), &summed[i], &want, 1e-6, 1e-5);
    }
}

/// BN recalibration (the reference's, before evaluating a quantized model): the running
/// statistics become the mean over the given batches of each batch's mean and unbiased
/// variance, computed here on the CPU from the reference conv, in a quantized network
/// (the conv's input and weight quantized) and in a full-precision one.
#[test]
fn bn_recalibration_is_the_mean_of_the_batch_statistics() {
    let Some(gpu) = gpu_or_skip("bn recalibration") else {
        return;
    };
    let conv = Op::Conv2d {
        out_channels: 4,
        kernel: 3,
        stride: 1,
        padding: 1,
        groups: 1,
        bias: false,
    };
    let model = Model {
        name: "tiny_bn".into(),
        input: (1, 6, 6),
        classes: 3,
        nodes: vec![
            node("conv1", conv, "input"),
            node("bn1", Op::BatchNorm, "conv1"),
            node("relu1", Op::Relu, "bn1"),
            node("gap", Op::GlobalAvgPool, "relu1"),
            node(
                "fc",
                Op::Linear {
                    out_features: 3,
                    bias: true,
                },
                "gap",
            ),
        ],
    };
    let n = 5;
    let shape = Conv2dShape {
        n,
        c_in: 1,
        h: 6,
        w: 6,
        c_out: 4,
        kh: 3,
        kw: 3,
        stride: 1,
        pad: 1,
        groups: 1,
    };
    let cfg = NetworkConfig {
        batch: n,
        seed: 4,
        ..NetworkConfig::default()
    };
    let mut rng = SeededRng::new(23);
    let batches: Vec<(Vec<f32>, Vec<u32>)> = (0..3)
        .map(|k| {
            // Batches with different statistics, so that a mean differs from each.
            let x = rng.vec_uniform(n * 36, -1.0 + k as f32, 1.5 + 2.0 * k as f32);
            (x, vec![0u32; n])
        })
        .collect();
    for quantized in [false, true] {
        let spec = QuantSpec {
            layers: vec![("conv1".into(), vec![(4, 4)]), ("fc".into(), vec![(8, 8)])],
        };
        let mut net = if quantized {
            Network::new_quantized(gpu, &model, cfg, &spec).unwrap()
        } else {
            Network::new(gpu, &model, cfg).unwrap()
        };
        let infos = net.param_infos();
        let params = net.read_params().unwrap();
        let w = params[infos.iter().position(|p| p.name == "conv1.weight").unwrap()].clone();
        let (sw, sa) = (0.05f32, 0.2f32);
        // What the conv reads: its input and weight quantized at 4 bits, or as they are.
        let xq = |x: &[f32]| -> Vec<f32> {
            if quantized {
                lsq_quantize_forward(x, sa, 4, true)
            } else {
                x.to_vec()
            }
        };
        let wq = if quantized {
            net.write_steps(0, &[sw], &[sa]).unwrap();
            lsq_quantize_forward(&w, sw, 4, true)
        } else {
            w.clone()
        };
        let mut it = batches.iter().cloned();
        let used = net.recalibrate_bn(&mut || it.next()).unwrap();
        assert_eq!(used, 3);
        let (mut want_m, mut want_v) = (vec![0f64; 4], vec![0f64; 4]);
        for (x, _) in &batches {
            let y = conv2d_forward(&shape, &xq(x), &wq, None);
            for c in 0..4 {
                let vals: Vec<f64> = (0..n)
                    .flat_map(|i| y[(i * 4 + c) * 36..(i * 4 + c + 1) * 36].iter())
                    .map(|&v| v as f64)
                    .collect();
                let m = vals.iter().sum::<f64>() / vals.len() as f64;
                let var =
                    vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (vals.len() - 1) as f64;
                want_m[c] += m / 3.0;
                want_v[c] += var / 3.0;
            }
        }
        let st = net.export_state().unwrap();
        let get = |name: &str| st.iter().find(|t| t.name == name).unwrap().data.clone();
        let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let what = if quantized {
            "quantized"
        } else {
            "full precision"
        };
        close(
            &format!("{what} running mean"),
            &get("bn1.running_mean"),
            &f(&want_m),
            1e-5,
            1e-4,
        );
        close(
            &format!("{what} running var"),
            &get("bn1.running_var"),
            &f(&want_v),
            1e-5,
            1e-4,
        );
        // Not the statistics of any one batch (the mean over the batches is really taken).
        let last = {
            let y = conv2d_forward(&shape, &xq(&batches[2].0), &wq, None);
            y[..36].iter().sum::<f32>() / 36.0
        };
        assert!((get("bn1.running_mean")[0] - last).abs() > 1e-3);
    }
}

/// Pretrain small_cnn briefly, learn indicators jointly on a few hundred images, check them,
/// solve at the BitOps of uniform W3A3, finetune the policy and evaluate it.
///
/// Measured on lavapipe (2 shared cores): see the asserted thresholds' comments.
#[test]
fn tiny_joint_run_solve_and_finetune() {
    let Some(gpu) = gpu_or_skip("joint run") else {
        return;
    };
    if !std::path::Path::new(FMNIST).is_dir() {
        eprintln!("SKIP joint run: no Fashion-MNIST at {FMNIST}");
        return;
    }
    let dir = Some(std::path::Path::new(FMNIST));
    let all = Dataset::load("fashion-mnist", dir, Split::Train).unwrap();
    let pre = Arc::new(all.subset(Subset::Random { n: 512, seed: 1 }).unwrap());
    let joint_ds = Arc::new(all.subset(Subset::Random { n: 128, seed: 2 }).unwrap());
    let test = Arc::new(
        Dataset::load("fashion-mnist", dir, Split::Test)
            .unwrap()
            .subset(Subset::Random { n: 200, seed: 3 })
            .unwrap(),
    );
    let model = Model::resolve("small_cnn").unwrap();
    let t0 = std::time::Instant::now();
    let fp = train(
        gpu,
        &model,
        pre,
        test.clone(),
        &TrainConfig {
            epochs: 2,
            batch: 32,
            lr: 0.2,
            seed: 1,
            eval_batch: 100,
            ..TrainConfig::default()
        },
        None,
        &mut |_| {},
    )
    .unwrap();
    let fp_acc = fp.history.last().unwrap().test_acc.unwrap();
    eprintln!(
        "fp: {:.1}% in {:.1}s",
        100.0 * fp_acc,
        t0.elapsed().as_secs_f64()
    );
    let t1 = std::time::Instant::now();
    let jcfg = JointConfig {
        bits: vec![2, 3, 4, 5, 6],
        run: RunConfig {
            epochs: 1,
            batch: 32,
            seed: 5,
            eval_batch: 100,
            meta: vec![("data".into(), "fashion-mnist subset 256".into())],
            ..JointConfig::default().run
        },
        ..JointConfig::default()
    };
    let mut lrs = Vec::new();
    let jt = joint_train_full(
        gpu,
        &model,
        &fp.checkpoint,
        joint_ds.clone(),
        test.clone(),
        &jcfg,
        &mut |e| {
            if let Event::Step { lr, .. } = e {
                lrs.push(*lr);
            }
        },
    )
    .unwrap();
    // The library refuses what every face refuses: one bit-width, or one LSQ cannot use.
    for bad in [vec![4], vec![1, 2]] {
        let cfg = JointConfig {
            bits: bad.clone(),
            ..jcfg.clone()
        };
        let e = joint_train_full(
            gpu,
            &model,
            &fp.checkpoint,
            joint_ds.clone(),
            test.clone(),
            &cfg,
            &mut |_| {},
        )
        .err()
        .unwrap_or_else(|| panic!("bits {bad:?} were accepted"));
        assert!(
            e.to_string().starts_with("candidate bits: "),
            "{bad:?}: {e}"
        );
    }
    // The reference's schedule steps once per epoch: a one-epoch run keeps the base rate.
    assert_eq!(lrs.len(), 128 / 32);
    assert!(lrs.iter().all(|&lr| lr == jcfg.run.lr), "{lrs:?}");
    let ind = &jt.indicators;
    eprintln!(
        "joint: {:.1}s, 6-bit test acc {:.1}%",
        t1.elapsed().as_secs_f64(),
        100.0 * jt.history[0].test_acc.unwrap()
    );
    // Shape of the file: every conv/linear, stem and fc fixed, provenance recorded.
    let q = model.quantizable_layers().unwrap();
    assert_eq!(ind.layers.len(), q.len());
    assert_eq!(ind.layers[0].fixed, Some((8, 8)));
    assert_eq!(ind.layers.last().unwrap().fixed, Some((8, 8)));
    for key in ["seed", "model", "epochs", "bits", "date", "data"] {
        assert!(ind.meta.iter().any(|(k, _)| k == key), "meta {key}");
    }
    // Step sizes fall as bits rise: count monotone (layer, bit) pairs.
    let (mut w_ok, mut a_ok, mut pairs) = (0, 0, 0);
    for l in ind.layers.iter().filter(|l| l.fixed.is_none()) {
        eprintln!("{}: w {:?} a {:?}", l.name, l.weight_scale, l.act_scale);
        for k in 0..4 {
            pairs += 1;
            w_ok += usize::from(l.weight_scale[k] > l.weight_scale[k + 1]);
            a_ok += usize::from(l.act_scale[k] > l.act_scale[k + 1]);
        }
    }
    eprintln!("monotone pairs: weights {w_ok}/{pairs}, activations {a_ok}/{pairs}");
    assert!(pairs > 0);
    assert!(w_ok * 10 >= pairs * 8, "weights {w_ok}/{pairs}");
    assert!(a_ok * 10 >= pairs * 8, "activations {a_ok}/{pairs}");
    assert_eq!(
        jt.non_monotone.len(),
        2 * pairs - w_ok - a_ok,
        "every non-monotone pair is reported"
    );
    // The joint state records the step sizes the run started from; the weights' are the
    // LSQ init rule's, computed here from the FP32 weights.
    let init_text = &jt
        .checkpoint
        .meta
        .iter()
        .find(|(k, _)| k == "init_steps")
        .expect("the joint state records the init step sizes")
        .1;
    let parse =
        |t: &str| -> Vec<f32> { t.split_whitespace().map(|x| x.parse().unwrap()).collect() };
    let init: Vec<(Vec<f32>, Vec<f32>)> = init_text
        .split(';')
        .map(|l| {
            let (w, a) = l.split_once('|').unwrap();
            (parse(w), parse(a))
        })
        .collect();
    // The stem and the classifier ran in full precision: no steps, no step tensors.
    let searchable: Vec<_> = ind.layers.iter().filter(|l| l.fixed.is_none()).collect();
    assert_eq!(init.len(), searchable.len());
    for l in ind.layers.iter().filter(|l| l.fixed.is_some()) {
        let step = format!("{}.weight_step", l.name);
        assert!(
            !jt.checkpoint.tensors.iter().any(|t| t.name == step),
            "{step} in the joint state"
        );
    }
    let (mut dw, mut da) = (Vec::new(), Vec::new());
    for (l, (w0, a0)) in searchable.into_iter().zip(&init) {
        let wname = format!("{}.weight", l.name);
        let wt = &fp
            .checkpoint
            .tensors
            .iter()
            .find(|t| t.name == wname)
            .unwrap_or_else(|| panic!("no {wname}"))
            .data;
        for (k, &b) in jcfg.bits.iter().enumerate() {
            let want = lsq_init_weight_scale(wt, b);
            assert!(
                (w0[k] - want).abs() <= 1e-4 * want,
                "{} init weight step at {b} bits: {} vs CPU {want}",
                l.name,
                w0[k]
            );
            assert!(
                a0[k] > 0.0 && a0[k].is_finite(),
                "{} act init {}",
                l.name,
                a0[k]
            );
            dw.push((l.weight_scale[k] / w0[k] as f64 - 1.0).abs());
            da.push((l.act_scale[k] / a0[k] as f64 - 1.0).abs());
        }
    }
    // The drift the run reports is the one from those values to the indicators.
    let upper_median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() - 1])
    };
    let d = jt.drift.expect("a fresh run reports its drift");
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.max(1e-3);
    let (wm, wx) = upper_median(&mut dw);
    let (am, ax) = upper_median(&mut da);
    assert!(
        close(d.weight_median, wm) && close(d.weight_max, wx),
        "{d:?} vs {wm} {wx}"
    );
    assert!(
        close(d.act_median, am) && close(d.act_max, ax),
        "{d:?} vs {am} {ax}"
    );
    assert!(
        wx > 0.0 && ax > 0.0,
        "the step sizes learned something: {d}"
    );
    for key in ["step_drift.weight.median", "step_drift.act.max"] {
        assert!(ind.meta.iter().any(|(k, _)| k == key), "meta {key}");
    }
    eprintln!("step sizes moved from their init {d}");
    // The solver accepts the file unchanged (through its text form, as `limpq solve` reads it).
    let text = ind.to_ron_string();
    let back = limpq_solver::IndicatorSet::from_ron_str(&text).unwrap();
    assert_eq!(&back, ind);
    let sol = Problem::new(back)
        .non_monotone_rule(false)
        .bitops(BitOpsBudget::Uniform { weight: 3, act: 3 })
        .solve()
        .unwrap();
    let policy = sol.policy;
    let macs: u64 = ind
        .layers
        .iter()
        .filter(|l| l.fixed.is_none())
        .map(|l| l.macs)
        .sum();
    assert!(
        policy.bitops <= macs * 9,
        "{} > {}",
        policy.bitops,
        macs * 9
    );
    eprintln!("policy: {:?}", policy.layers);
    // Finetune the policy from the fp checkpoint, steps from the indicators.
    let t2 = std::time::Instant::now();
    let ft = finetune(
        gpu,
        &model,
        &fp.checkpoint,
        &policy,
        Some(ind),
        joint_ds.clone(),
        test.clone(),
        &FinetuneConfig {
            run: RunConfig {
                epochs: 1,
                batch: 32,
                seed: 6,
                eval_batch: 100,
                ..FinetuneConfig::default().run
            },
            ..FinetuneConfig::default()
        },
        &mut |_| {},
    )
    .unwrap();
    eprintln!(
        "finetune: {:.1}% in {:.1}s",
        100.0 * ft.test_accuracy,
        t2.elapsed().as_secs_f64()
    );
    // Where finetuning's step sizes start: at lr 0 they stay there. By default the LSQ
    // init rule at the policy's bits (the reference re-initialises them), computed here
    // from the FP32 weights; with steps_from_indicators, the indicators at those bits.
    for from_ind in [false, true] {
        let still = finetune(
            gpu,
            &model,
            &fp.checkpoint,
            &policy,
            Some(ind),
            joint_ds.clone(),
            test.clone(),
            &FinetuneConfig {
                run: RunConfig {
                    epochs: 1,
                    batch: 64,
                    lr: 0.0,
                    eval_batch: 100,
                    ..FinetuneConfig::default().run
                },
                steps_from_indicators: from_ind,
                ..FinetuneConfig::default()
            },
            &mut |_| {},
        )
        .unwrap();
        let tensor = |ck: &limpq_trainer::checkpoint::Checkpoint, name: &str| -> Vec<f32> {
            let t = ck.tensors.iter().find(|t| t.name == name);
            t.unwrap_or_else(|| panic!("no {name}")).data.clone()
        };
        let mut moved = 0;
        for p in &policy.layers {
            let l = ind.layers.iter().find(|l| l.name == p.name).unwrap();
            if l.fixed.is_some() {
                continue;
            }
            let got = tensor(&still.checkpoint, &format!("{}.weight_step", p.name))[0];
            let k = ind.weight_bits.iter().position(|&b| b == p.weight).unwrap();
            let learned = l.weight_scale[k] as f32;
            let rule = lsq_init_weight_scale(
                &tensor(&fp.checkpoint, &format!("{}.weight", p.name)),
                p.weight,
            );
            let want = if from_ind { learned } else { rule };
            assert!(
                (got - want).abs() <= 1e-5 * want,
                "{} (from indicators: {from_ind}): weight step {got}, want {want}",
                p.name
            );
            moved += usize::from((learned / rule - 1.0).abs() > 1e-4);
        }
        assert!(
            moved > 0,
            "the indicators equal the init rule: the test tells nothing"
        );
    }
    assert!(ft.test_accuracy > 0.3, "accuracy {}", ft.test_accuracy);
    // The checkpoint evaluates to the same accuracy through evaluate_quantized, and it
    // carries its policy.
    let ev = evaluate_quantized(gpu, &model, &ft.checkpoint, &policy, test.clone(), 100).unwrap();
    assert!((ev.accuracy() - ft.test_accuracy).abs() < 1e-9);
    let stored = limpq_trainer::method::checkpoint_policy(&ft.checkpoint)
        .unwrap()
        .unwrap();
    assert_eq!(stored, policy);

    // A stop flag set after the second step's event stops both runs before step 3.
    for which in ["joint", "finetune"] {
        let flag = Arc::new(AtomicBool::new(false));
        let mut on_event = |e: &Event| {
            if matches!(e, Event::Step { step: 2, .. }) {
                flag.store(true, Ordering::SeqCst);
            }
        };
        let stop = StopFlag::new(flag.clone());
        let err = if which == "joint" {
            let cfg = JointConfig {
                run: RunConfig {
                    stop,
                    ..jcfg.run.clone()
                },
                ..jcfg.clone()
            };
            let r = joint_train_full(
                gpu,
                &model,
                &fp.checkpoint,
                joint_ds.clone(),
                test.clone(),
                &cfg,
                &mut on_event,
            );
            r.err()
        } else {
            let cfg = FinetuneConfig {
                run: RunConfig {
                    epochs: 1,
                    batch: 32,
                    stop,
                    ..FinetuneConfig::default().run
                },
                ..FinetuneConfig::default()
            };
            let r = finetune(
                gpu,
                &model,
                &fp.checkpoint,
                &policy,
                Some(ind),
                joint_ds.clone(),
                test.clone(),
                &cfg,
                &mut on_event,
            );
            r.err()
        };
        match err {
            Some(MethodError::Stopped {
                epoch: 1, step: 3, ..
            }) => {}
            other => panic!("{which}: expected a stop before step 3, got {other:?}"),
        }
    }
}

/// Joint-step throughput (a pass per bit-width of 2..=6 plus a random-policy pass, one
/// submission, SGD included) of small_cnn and resnet20 at batch 64 on random data.
/// `cargo test --release -p limpq-trainer --test method -- --ignored --nocapture`.
#[test]
#[ignore]
fn joint_step_throughput() {
    let Some(gpu) = gpu_or_skip("joint throughput") else {
        return;
    };
    for name in ["small_cnn", "resnet20"] {
        let model = Model::resolve(name).unwrap();
        let bits = [2, 3, 4, 5, 6];
        let spec = QuantSpec::joint(&model, &bits).unwrap();
        let batch = 64;
        let cfg = NetworkConfig {
            batch,
            label_smoothing: 0.1,
            grad_clip: Some(1.0),
            weight_decay: 2.5e-5,
            ..NetworkConfig::default()
        };
        let mut net = Network::new_quantized(gpu, &model, cfg, &spec).unwrap();
        let (c, h, w) = model.input;
        let mut rng = SeededRng::new(1);
        let x = rng.vec_uniform(batch * c * h * w, -1.0, 2.0);
        let y: Vec<u32> = (0..batch).map(|i| (i % 10) as u32).collect();
        let layers = net.quant_layers();
        net.init_steps(&x, &y, &vec![true; layers.len()]).unwrap();
        let mut sels: Vec<Vec<usize>> = (0..bits.len())
            .map(|k| {
                layers
                    .iter()
                    .map(|l| if l.variants.len() > 1 { k } else { 0 })
                    .collect()
            })
            .collect();
        sels.push(
            layers
                .iter()
                .map(|l| {
                    if l.variants.len() > 1 {
                        rng.below(bits.len())
                    } else {
                        0
                    }
                })
                .collect(),
        );
        net.train_passes(&x, &y, 0.01, &sels).unwrap();
        let steps = if name == "small_cnn" { 5 } else { 2 };
        let t = std::time::Instant::now();
        for _ in 0..steps {
            let s = net.train_passes(&x, &y, 0.01, &sels).unwrap();
            assert!(s.iter().all(|s| s.loss.is_finite()));
        }
        let dt = t.elapsed().as_secs_f64() / steps as f64;
        eprintln!(
            "{name}: joint step (6 passes) {:.2} s, {:.1} images/s, {} dispatches",
            dt,
            batch as f64 / dt,
            net.passes_dispatches(&sels)
        );
    }
}

/// Under `LIMPQ_CONV_ALGO=f16gemm` a quantized network's convs run on f16 operands holding
/// the LSQ integer codes (exact), and the f16 convs are really in the step (more dispatches:
/// pack, im2col, product, scale). small_cnn at 2 and 4 bits: the training loss, the logits
/// and every gradient match the f32 network's to f32 rounding — no f16 allowance.
/// The BN biases start at 0.05, not 0: with β = 0 the exact path puts some BN outputs at
/// exactly ±0 (a conv output on the lattice of step products equal to the batch mean), where
/// ReLU's mask is decided by rounding, and at 2 bits the gradients then differ where the two
/// paths break that tie differently (seen: bn3.bias off by 3% while bn3.weight agreed to
/// 1e-8). Both are valid subgradients; the offset keeps the comparison about the convs.
/// Skips without SHADER_F16.
#[test]
fn f16_code_convs_leave_a_quantized_network_unchanged() {
    let Some(gpu) = gpu_or_skip("f16 code convs") else {
        return;
    };
    let Some(gpu16) = common::f16_override_gpu_or_skip("f16 code convs") else {
        return;
    };
    let model = limpq_trainer::model::small_cnn();
    let n = 4;
    let spec = QuantSpec::joint(&model, &[2, 4]).unwrap();
    let cfg = NetworkConfig {
        batch: n,
        seed: 11,
        label_smoothing: 0.1,
        ..NetworkConfig::default()
    };
    let mut rng = SeededRng::new(29);
    let x = rng.vec_uniform(n * 28 * 28, -0.8, 2.5);
    let y = vec![0u32, 3, 7, 9];
    let cfg16 = NetworkConfig {
        conv: common::F16_OVERRIDE,
        ..cfg
    };
    let mut nets = [(gpu, cfg), (&gpu16, cfg16)]
        .map(|(g, c)| Network::new_quantized(g, &model, c, &spec).unwrap());
    let layers = nets[0].quant_layers().len();
    // The same step sizes in both: the f32 net's (the f16 net's activation steps come out an
    // ulp away, which at 2 bits can move a value across a rounding boundary).
    for net in nets.iter_mut() {
        net.init_steps(&x, &y, &vec![true; layers]).unwrap();
    }
    for net in nets.iter_mut() {
        for p in net.param_infos() {
            if p.kind == ParamKind::BnBeta {
                net.set_param(&p.name, &vec![0.05; p.len]).unwrap();
            }
        }
    }
    for (l, (w, a)) in nets[0].read_steps().unwrap().iter().enumerate() {
        nets[1].write_steps(l, w, a).unwrap();
    }
    let infos = nets[0].param_infos();
    for k in 0..2 {
        let sel: Vec<usize> = spec
            .layers
            .iter()
            .map(|(_, v)| k.min(v.len() - 1))
            .collect();
        let mut out = Vec::new();
        for net in nets.iter_mut() {
            net.set_selection(&sel).unwrap();
            let st = net.forward_backward(&x, &y).unwrap();
            out.push((st.loss, net.read_grads().unwrap()));
        }
        let (l32, l16) = (out[0].0, out[1].0);
        assert!(
            (l32 - l16).abs() <= 1e-5 * (1.0 + l32.abs()),
            "loss at selection {sel:?}: f32 {l32} vs f16 codes {l16}"
        );
        let logits = [0, 1].map(|i| nets[i].eval_logits(&x).unwrap());
        close(
            &format!("eval logits at selection {sel:?}"),
            &logits[1],
            &logits[0],
            1e-5,
            1e-4,
        );
        for (i, p) in infos.iter().enumerate() {
            close(
                &format!("{} at selection {sel:?}", p.name),
                &out[1].1[i],
                &out[0].1[i],
                2e-5,
                1e-3,
            );
        }
        let d32 = nets[0].passes_dispatches(std::slice::from_ref(&sel));
        let d16 = nets[1].passes_dispatches(std::slice::from_ref(&sel));
        assert!(
            d16 > d32,
            "f16 convs not in the step: {d16} vs {d32} dispatches"
        );
    }
}

/// The full-precision network under `LIMPQ_CONV_ALGO=f16gemm`: its convs round their
/// operands to f16 (≈ 3·10⁻⁴ relative per operand, docs/PERFORMANCE.md), all sharing one
/// im2col buffer. small_cnn's training loss and logits stay within what that rounding
/// allows of the f32 network's (1e-3 relative: ~3× the operand rounding, far below what
/// a wrong or missing term would move), and the f16 convs are in the step.
#[test]
fn f16_convs_of_a_full_precision_network_round_only() {
    let Some(gpu) = gpu_or_skip("f16 fp convs") else {
        return;
    };
    let Some(gpu16) = common::f16_override_gpu_or_skip("f16 fp convs") else {
        return;
    };
    let model = limpq_trainer::model::small_cnn();
    let n = 4;
    let cfg = NetworkConfig {
        batch: n,
        seed: 5,
        ..NetworkConfig::default()
    };
    let mut rng = SeededRng::new(31);
    let x = rng.vec_uniform(n * 28 * 28, -0.8, 2.5);
    let y = vec![1u32, 4, 6, 8];
    let cfg16 = NetworkConfig {
        conv: common::F16_OVERRIDE,
        ..cfg
    };
    let mut nets = [(gpu, cfg), (&gpu16, cfg16)].map(|(g, c)| Network::new(g, &model, c).unwrap());
    let loss = nets
        .each_mut()
        .map(|net| net.forward_backward(&x, &y).unwrap().loss);
    assert!(
        (loss[0] - loss[1]).abs() <= 1e-3 * loss[0].abs(),
        "loss: f32 {} vs f16 operands {}",
        loss[0],
        loss[1]
    );
    let logits = nets.each_mut().map(|net| net.eval_logits(&x).unwrap());
    close("eval logits", &logits[1], &logits[0], 1e-4, 1e-3);
    let (d32, d16) = (nets[0].train_dispatches(), nets[1].train_dispatches());
    assert!(
        d16 > d32,
        "f16 convs not in the step: {d16} vs {d32} dispatches"
    );
}
