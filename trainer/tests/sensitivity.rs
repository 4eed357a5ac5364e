//! Measured sensitivity (`method::measure_sensitivity`) against a direct computation: the
//! loss increases of a tiny network with batch norm, composed on the CPU from the reference
//! ops, one layer's weights (or input) quantized at a time; and the 16-bit stand-in for full
//! precision against true full precision.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

mod common;

use std::sync::Arc;

use common::gpu_or_skip;
use limpq_solver::{BitOpsBudget, Problem};
use limpq_trainer::checkpoint::Checkpoint;
use limpq_trainer::data::{Dataset, DatasetKind, Loader, LoaderConfig};
use limpq_trainer::engine::{Network, NetworkConfig};
use limpq_trainer::method::{measure_sensitivity, monotone, SensitivityConfig};
use limpq_trainer::model::{Model, Node, Op};
use limpq_trainer::reference::conv::conv2d_forward;
use limpq_trainer::reference::elementwise::relu_forward;
use limpq_trainer::reference::linear::linear_forward;
use limpq_trainer::reference::loss::softmax_cross_entropy;
use limpq_trainer::reference::lsq::{
    lsq_init_act_scale, lsq_init_weight_scale, lsq_quantize_forward,
};
use limpq_trainer::reference::norm::{batch_norm_train_forward, BatchNormConfig};
use limpq_trainer::reference::pool::global_avg_pool_forward;
use limpq_trainer::reference::rng::SeededRng;
use limpq_trainer::reference::Nchw;
use limpq_trainer::shapes::Conv2dShape;

const BITS: [u32; 3] = [2, 3, 4];
const BATCH: usize = 8;
const HW: usize = 6;

fn node(name: &str, op: Op, input: &str) -> Node {
    Node {
        name: name.into(),
        op,
        inputs: vec![input.into()],
    }
}

fn conv(c: usize) -> Op {
    Op::Conv2d {
        out_channels: c,
        kernel: 3,
        stride: 1,
        padding: 1,
        groups: 1,
        bias: false,
    }
}

/// 1×6×6 → conv1 (stem, fixed) → bn1 → relu → conv2 (searchable) → bn2 → relu → conv3
/// (searchable) → bn3 → relu → GAP → fc (fixed) → 3 classes.
fn tiny() -> Model {
    Model {
        name: "tiny_sens".into(),
        input: (1, HW, HW),
        classes: 3,
        nodes: vec![
            node("conv1", conv(4), "input"),
            node("bn1", Op::BatchNorm, "conv1"),
            node("relu1", Op::Relu, "bn1"),
            node("conv2", conv(5), "relu1"),
            node("bn2", Op::BatchNorm, "conv2"),
            node("relu2", Op::Relu, "bn2"),
            node("conv3", conv(4), "relu2"),
            node("bn3", Op::BatchNorm, "conv3"),
            node("relu3", Op::Relu, "bn3"),
            node("gap", Op::GlobalAvgPool, "relu3"),
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

/// Which quantizer the CPU forward puts at `bits`: none, a layer's weight or its input.
#[derive(Clone, Copy, PartialEq)]
enum Quantize {
    /// No quantizer at all: true full precision.
    Float,
    /// Every quantizer at 16 bits: the stand-in for full precision.
    Nothing,
    Weight(&'static str, u32),
    Input(&'static str, u32),
}

/// The quantized layers in node order: (name, input channels, output channels).
const LAYERS: [(&str, usize, usize); 4] = [
    ("conv1", 1, 4),
    ("conv2", 4, 5),
    ("conv3", 5, 4),
    ("fc", 4, 3),
];

/// The recipe of `measure_sensitivity` composed from the reference ops: every quantizer
/// but the measured one at 16 bits with steps that clip nothing (weights `max|w|/(2^15-1)`,
/// inputs `2·max|x|/Qp` on the first batch, set layer by layer), the measured one at its
/// LSQ init step.
struct Cpu<'a> {
    ck: &'a Checkpoint,
    /// The 16-bit input step of each layer, once set.
    full_act: [Option<f32>; 4],
    /// Input steps of each searchable layer's quantizer at each bit-width (LSQ init rule on
    /// its 16-bit-network input on the first batch).
    act_steps: Vec<(&'static str, u32, f32)>,
}

impl Cpu<'_> {
    fn t(&self, name: &str) -> Vec<f32> {
        self.ck
            .tensors
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
            .data
            .clone()
    }

    /// The loss of one batch, and every layer's raw input.
    fn loss(&self, x: &[f32], y: &[u32], q: Quantize) -> (f64, Vec<Vec<f32>>) {
        let n = y.len();
        let mut inputs = Vec::new();
        let mut h = x.to_vec();
        for (li, (name, c_in, c_out)) in LAYERS.into_iter().enumerate() {
            if name == "fc" {
                // The classifier reads the pooled features (and quantizes those).
                h = global_avg_pool_forward(&Nchw::new(n, c_in, HW, HW), &h);
            }
            inputs.push(h.clone());
            let mut w = self.t(&format!("{name}.weight"));
            match q {
                Quantize::Weight(l, b) if l == name => {
                    w = lsq_quantize_forward(&w, lsq_init_weight_scale(&w, b), b, true);
                }
                Quantize::Float => {}
                _ => {
                    let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
                    w = lsq_quantize_forward(&w, max / 32767.0, 16, true);
                }
            }
            match q {
                Quantize::Input(l, b) if l == name => {
                    let step = self
                        .act_steps
                        .iter()
                        .find(|(n, bb, _)| *n == name && *bb == b)
                        .expect("an input step")
                        .2;
                    h = lsq_quantize_forward(&h, step, b, false);
                }
                Quantize::Float => {}
                _ => {
                    if let Some(step) = self.full_act[li] {
                        // The model input is signed, every later input unsigned.
                        h = lsq_quantize_forward(&h, step, 16, li == 0);
                    }
                }
            }
            if name == "fc" {
                let logits = linear_forward(n, c_in, c_out, &h, &w, Some(&self.t("fc.bias")));
                let ce = softmax_cross_entropy(n, c_out, &logits, y, 0.0);
                return (ce.loss as f64, inputs);
            }
            let s = Conv2dShape::square(n, c_in, HW, HW, c_out, 3, 1, 1, 1);
            let y1 = conv2d_forward(&s, &h, &w, None);
            let bn = format!("bn{}", li + 1);
            let (mut rm, mut rv) = (vec![0.0; c_out], vec![1.0; c_out]);
            let (y2, _) = batch_norm_train_forward(
                &Nchw::new(n, c_out, HW, HW),
                &y1,
                &self.t(&format!("{bn}.weight")),
                &self.t(&format!("{bn}.bias")),
                &mut rm,
                &mut rv,
                BatchNormConfig::default(),
            );
            h = relu_forward(&y2);
        }
        unreachable!("the last layer is fc")
    }
}

#[test]
fn sensitivity_equals_the_loss_increases_computed_directly() {
    let Some(gpu) = gpu_or_skip("sensitivity_equals_the_loss_increases_computed_directly") else {
        return;
    };
    let model = tiny();
    // A full-precision checkpoint: the engine's seeded init, with BN scales and shifts
    // moved off 1 and 0 so that they matter.
    let net = Network::new(
        gpu,
        &model,
        NetworkConfig {
            batch: BATCH,
            seed: 7,
            ..NetworkConfig::default()
        },
    )
    .unwrap();
    let mut tensors = net.export_state().unwrap();
    let mut rng = SeededRng::new(11);
    for t in tensors.iter_mut().filter(|t| t.name.starts_with("bn")) {
        if t.name.ends_with(".weight") {
            t.data.iter_mut().for_each(|v| *v = rng.uniform(0.5, 1.5));
        } else if t.name.ends_with(".bias") {
            t.data.iter_mut().for_each(|v| *v = rng.uniform(-0.5, 0.5));
        }
    }
    let ck = Checkpoint {
        model: model.clone(),
        seed: 7,
        epoch: 0,
        step: 0,
        meta: Vec::new(),
        tensors,
        origin: None,
    };
    // 3 whole batches of random images and labels (and a partial one, which is left out).
    let count = 3 * BATCH + 3;
    let ds = Arc::new(Dataset {
        kind: DatasetKind::FashionMnist,
        images: (0..count * HW * HW)
            .map(|_| (rng.next_u64() % 256) as u8)
            .collect(),
        labels: (0..count).map(|_| (rng.next_u64() % 3) as u16).collect(),
        shape: (1, HW, HW),
        classes: 3,
        folder: None,
    });
    let cfg = SensitivityConfig {
        bits: BITS.to_vec(),
        batch: BATCH,
        ..SensitivityConfig::default()
    };
    let mut calls = Vec::new();
    let got = measure_sensitivity(gpu, &model, &ck, ds.clone(), &cfg, &mut |d, t| {
        calls.push((d, t))
    })
    .unwrap();
    assert_eq!(got.images, 3 * BATCH);
    assert_eq!(
        calls.last(),
        Some(&(2 * 2 * BITS.len(), 2 * 2 * BITS.len()))
    );

    // The CPU side: the same batches, truly full precision around the measured quantizer.
    let batches: Vec<_> = Loader::spawn(ds.clone(), LoaderConfig::eval(&ds, BATCH))
        .unwrap()
        .filter(|b| b.n == BATCH)
        .collect();
    assert_eq!(batches.len(), 3);
    let mut cpu = Cpu {
        ck: &ck,
        full_act: [None; 4],
        act_steps: Vec::new(),
    };
    let first = &batches[0];
    for li in 0..LAYERS.len() {
        let (_, inputs) = cpu.loss(&first.x, &first.y, Quantize::Nothing);
        let max = inputs[li].iter().fold(0f32, |m, v| m.max(v.abs()));
        let qp = if li == 0 { 32767.0 } else { 65535.0 };
        cpu.full_act[li] = Some(2.0 * max / qp);
    }
    let (_, inputs) = cpu.loss(&first.x, &first.y, Quantize::Nothing);
    for (li, name) in [(1, "conv2"), (2, "conv3")] {
        for b in BITS {
            cpu.act_steps
                .push((name, b, lsq_init_act_scale(&inputs[li], b)));
        }
    }
    let mean = |q: Quantize| {
        batches
            .iter()
            .map(|b| cpu.loss(&b.x, &b.y, q).0)
            .sum::<f64>()
            / batches.len() as f64
    };
    let base = mean(Quantize::Nothing);
    // The same recipe on both sides; only the summation order differs (f32 on the GPU, f64
    // sums in the reference), which moves a loss of ~1.1 by a few 1e-7. A quantized value
    // on a rounding boundary could go either way and move one loss by more: none does here.
    let tol = |_want: f64| 5e-6;
    assert!(
        (got.base_loss - base).abs() < 5e-6,
        "base loss GPU {} CPU {base}",
        got.base_loss
    );
    assert_eq!(got.raw.len(), 2, "two searchable layers");
    // The 16-bit stand-in is full precision for all purposes.
    let float = mean(Quantize::Float);
    assert!(
        (base - float).abs() < 1e-5,
        "16-bit loss {base}, float {float}"
    );
    let mut some_large = false;
    for (name, dw, da) in &got.raw {
        let name: &'static str = if name == "conv2" { "conv2" } else { "conv3" };
        for (k, b) in BITS.into_iter().enumerate() {
            let want_w = mean(Quantize::Weight(name, b)) - base;
            let want_a = mean(Quantize::Input(name, b)) - base;
            eprintln!("{name} {b} bits: weight GPU {:.6} CPU {want_w:.6}, input GPU {:.6} CPU {want_a:.6}", dw[k], da[k]);
            assert!(
                (dw[k] - want_w).abs() <= tol(want_w),
                "{name} weight at {b}: GPU {} CPU {want_w}",
                dw[k]
            );
            assert!(
                (da[k] - want_a).abs() <= tol(want_a),
                "{name} input at {b}: GPU {} CPU {want_a}",
                da[k]
            );
            if b == 2 {
                some_large |= want_w.abs() > 1e-3 || want_a.abs() > 1e-3;
            }
        }
    }
    assert!(
        some_large,
        "2 bits should change the loss measurably (else the test shows little)"
    );

    // The file: the raw increases clamped and made non-increasing in bits; fixed layers as
    // the skeleton has them; the source in the meta; and the solver takes it as it is.
    let ind = &got.indicators;
    for (name, dw, da) in &got.raw {
        let l = ind.layers.iter().find(|l| &l.name == name).unwrap();
        assert_eq!(l.weight_scale, monotone(dw));
        assert_eq!(l.act_scale, monotone(da));
    }
    let meta = |k: &str| {
        ind.meta
            .iter()
            .find(|(m, _)| m == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(meta("source"), Some("sensitivity"));
    assert_eq!(meta("calibration_images"), Some("24"));
    let back = limpq_solver::IndicatorSet::from_ron_str(&ind.to_ron_string()).unwrap();
    Problem::new(back)
        .bitops(BitOpsBudget::Uniform { weight: 3, act: 3 })
        .solve()
        .unwrap();
}
