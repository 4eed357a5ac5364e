//! Whole-network checks of the GPU executor: the reference small net (conv, BN, ReLU,
//! residual add, pool, GAP, linear, softmax CE with label smoothing) run by `engine::Network`
//! against `reference::net::SmallNet` on the CPU — loss, every parameter gradient, BN running
//! statistics, the SGD update — and a finite-difference check through the GPU loss itself.
//! Plus checkpoint round trips and refusals. GPU tests skip only when no adapter exists.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

mod common;

use common::gpu_or_skip;
use limpq_trainer::checkpoint::{Checkpoint, NamedTensor, TensorKind};
use limpq_trainer::engine::{Network, NetworkConfig, ParamKind, QuantSpec};
use limpq_trainer::model::{Model, Node, Op};
use limpq_trainer::reference::net::{PoolKind, SmallNet, SmallNetConfig};
use limpq_trainer::reference::rng::SeededRng;
use limpq_trainer::reference::{sgd_step, BatchNormConfig, SgdConfig};

/// The graph of `reference::net` as a model description, with the engine's parameter names
/// in the order of `SmallNetParams::NAMES`.
fn small_net_model(cfg: &SmallNetConfig) -> Model {
    let node = |name: &str, op: Op, inputs: &[&str]| Node {
        name: name.to_string(),
        op,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
    };
    let conv = |out| Op::Conv2d {
        out_channels: out,
        kernel: 3,
        stride: 1,
        padding: 1,
        groups: 1,
        bias: false,
    };
    let pool = match cfg.pool {
        PoolKind::Max => Op::MaxPool {
            kernel: 2,
            stride: 2,
            padding: 0,
        },
        PoolKind::Avg => Op::AvgPool {
            kernel: 2,
            stride: 2,
            padding: 0,
        },
    };
    Model {
        name: "small_net".into(),
        input: (cfg.c_in, cfg.h, cfg.w),
        classes: cfg.classes,
        nodes: vec![
            node("conv1", conv(cfg.channels), &["input"]),
            node("bn1", Op::BatchNorm, &["conv1"]),
            node("relu1", Op::Relu, &["bn1"]),
            node("conv2", conv(cfg.channels), &["relu1"]),
            node("bn2", Op::BatchNorm, &["conv2"]),
            node("add", Op::Add, &["bn2", "relu1"]),
            node("relu2", Op::Relu, &["add"]),
            node("pool", pool, &["relu2"]),
            node("gap", Op::GlobalAvgPool, &["pool"]),
            node(
                "fc",
                Op::Linear {
                    out_features: cfg.classes,
                    bias: true,
                },
                &["gap"],
            ),
        ],
    }
}

const ENGINE_NAMES: [&str; 8] = [
    "conv1.weight",
    "bn1.weight",
    "bn1.bias",
    "conv2.weight",
    "bn2.weight",
    "bn2.bias",
    "fc.weight",
    "fc.bias",
];

fn config(pool: PoolKind) -> SmallNetConfig {
    SmallNetConfig {
        n: 4,
        c_in: 2,
        h: 6,
        w: 6,
        channels: 5,
        classes: 7,
        pool,
        label_smoothing: 0.1,
        bn: BatchNormConfig::default(),
    }
}

fn data(cfg: &SmallNetConfig, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut r = SeededRng::new(seed);
    let x = r.vec_uniform(cfg.n * cfg.c_in * cfg.h * cfg.w, -1.0, 1.0);
    let y = (0..cfg.n).map(|_| r.below(cfg.classes) as u32).collect();
    (x, y)
}

/// The GPU network with the reference net's parameters loaded.
fn gpu_net<'g>(
    gpu: &'g limpq_trainer::gpu::Gpu,
    cfg: &SmallNetConfig,
    net: &SmallNet,
    wd: f32,
) -> Network<'g> {
    let model = small_net_model(cfg);
    let ncfg = NetworkConfig {
        batch: cfg.n,
        seed: 1,
        label_smoothing: cfg.label_smoothing,
        momentum: 0.9,
        nesterov: false,
        weight_decay: wd,
        grad_clip: None,
        conv: Default::default(),
        ranks: 1,
    };
    let mut g = Network::new(gpu, &model, ncfg).expect("build network");
    let names: Vec<String> = g.param_infos().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ENGINE_NAMES, "engine parameter names and order");
    for (name, t) in ENGINE_NAMES.iter().zip(net.params.tensors()) {
        g.set_param(name, t).unwrap();
    }
    g
}

/// `max |got - want| ≤ rel · max |want| + abs`, per tensor: a scale-aware bound. A wrong,
/// missing or doubled gradient term moves elements by a sizeable fraction of the tensor's
/// scale; f32 rounding through this depth stays below ~1e-5 of it.
fn assert_tensor_close(what: &str, got: &[f32], want: &[f32], rel: f32, abs: f32) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let mut worst = (0.0f32, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs();
        assert!(!e.is_nan(), "{what}[{i}]: got {g}, want {w}");
        if e > worst.0 {
            worst = (e, i);
        }
    }
    let tol = rel * scale + abs;
    assert!(
        worst.0 <= tol,
        "{what}: worst error {} at {} (got {}, want {}) exceeds {tol} (scale {scale})",
        worst.0,
        worst.1,
        got[worst.1],
        want[worst.1]
    );
    worst.0 / scale.max(f32::MIN_POSITIVE)
}

fn check_against_reference(pool: PoolKind) {
    let Some(gpu) = gpu_or_skip("engine vs reference") else {
        return;
    };
    let cfg = config(pool);
    let mut net = SmallNet::new(cfg, 11);
    let (x, y) = data(&cfg, 12);
    let mut g = gpu_net(gpu, &cfg, &net, 5e-4);
    let want = net.step(&x, &y);
    let got = g.forward_backward(&x, &y).unwrap();
    // Loss is a mean of ~2: f32 softmax vs f64 reference agree to ~1e-6 relative.
    assert!(
        (got.loss - want.loss).abs() <= 1e-5 * want.loss.abs() + 1e-6,
        "{pool:?}: loss {} vs reference {}",
        got.loss,
        want.loss
    );
    assert_eq!(got.correct, want.correct, "{pool:?}: correct count");
    let grads = g.read_grads().unwrap();
    for ((name, got), want) in ENGINE_NAMES.iter().zip(&grads).zip(want.grads.tensors()) {
        let r = assert_tensor_close(&format!("{pool:?} d{name}"), got, want, 1e-4, 1e-7);
        eprintln!("{pool:?} d{name}: worst error / scale = {r:.2e}");
    }
    // Running statistics after one train-mode forward (momentum 0.1, unbiased variance).
    let state = g.export_state().unwrap();
    let run = |n: &str| {
        state
            .iter()
            .find(|t| t.name == n && t.kind == TensorKind::RunningStat)
            .unwrap_or_else(|| panic!("no {n}"))
            .data
            .clone()
    };
    for (name, want) in [
        ("bn1.running_mean", &net.running.bn1_mean),
        ("bn1.running_var", &net.running.bn1_var),
        ("bn2.running_mean", &net.running.bn2_mean),
        ("bn2.running_var", &net.running.bn2_var),
    ] {
        assert_tensor_close(name, &run(name), want, 1e-5, 1e-7);
    }
}

#[test]
fn small_net_max_pool_matches_reference() {
    check_against_reference(PoolKind::Max);
}

#[test]
fn small_net_avg_pool_matches_reference() {
    check_against_reference(PoolKind::Avg);
}

/// One `train_step` = the reference gradients followed by the reference SGD (momentum 0.9,
/// weight decay on conv/linear weights only), for two steps (momentum buffers carry over).
#[test]
fn train_step_applies_sgd_like_the_reference() {
    let Some(gpu) = gpu_or_skip("engine train_step") else {
        return;
    };
    let cfg = config(PoolKind::Avg);
    let mut net = SmallNet::new(cfg, 21);
    let (x, y) = data(&cfg, 22);
    let wd = 5e-4;
    let mut g = gpu_net(gpu, &cfg, &net, wd);
    let kinds: Vec<ParamKind> = g.param_infos().into_iter().map(|p| p.kind).collect();
    let mut bufs: Vec<Vec<f32>> = net
        .params
        .tensors()
        .iter()
        .map(|t| vec![0.0; t.len()])
        .collect();
    for (step, lr) in [(0, 0.1f32), (1, 0.05)] {
        let want = net.step(&x, &y);
        let stats = g.train_step(&x, &y, lr).unwrap();
        assert!((stats.loss - want.loss).abs() <= 1e-5 * want.loss.abs() + 1e-6);
        for (((p, gr), buf), kind) in net
            .params
            .tensors_mut()
            .into_iter()
            .zip(want.grads.tensors())
            .zip(&mut bufs)
            .zip(&kinds)
        {
            let sgd = SgdConfig {
                lr,
                momentum: 0.9,
                weight_decay: if *kind == ParamKind::Weight { wd } else { 0.0 },
                nesterov: false,
                clip: None,
            };
            sgd_step(&sgd, p, gr, buf);
        }
        let got = g.read_params().unwrap();
        for ((name, got), want) in ENGINE_NAMES.iter().zip(&got).zip(net.params.tensors()) {
            assert_tensor_close(&format!("step {step} {name}"), got, want, 1e-5, 1e-6);
        }
    }
}

/// Central differences of the GPU's own train-mode loss for the parameters with the largest
/// gradient in each tensor (avg pool: no max-pool ties). h = 1e-3 on a loss of ~2 in f32:
/// rounding contributes ~1e-4 to the quotient, curvature O(h²) ~1e-5 relative; we allow
/// 3 % of the gradient plus 5e-4, while a wrong term would be off by O(100 %).
#[test]
fn finite_differences_through_the_gpu_loss() {
    let Some(gpu) = gpu_or_skip("engine finite differences") else {
        return;
    };
    let cfg = config(PoolKind::Avg);
    let net = SmallNet::new(cfg, 31);
    let (x, y) = data(&cfg, 32);
    let mut g = gpu_net(gpu, &cfg, &net, 0.0);
    g.forward_backward(&x, &y).unwrap();
    let grads = g.read_grads().unwrap();
    let params = g.read_params().unwrap();
    let h = 1e-3f32;
    let mut checked = 0;
    for (k, name) in ENGINE_NAMES.iter().enumerate() {
        let gk = &grads[k];
        let mut order: Vec<usize> = (0..gk.len()).collect();
        order.sort_by(|&a, &b| gk[b].abs().total_cmp(&gk[a].abs()));
        for &i in order.iter().take(2) {
            let mut p = params[k].clone();
            let orig = p[i];
            p[i] = orig + h;
            g.set_param(name, &p).unwrap();
            let up = g.train_loss(&x, &y).unwrap() as f64;
            p[i] = orig - h;
            g.set_param(name, &p).unwrap();
            let down = g.train_loss(&x, &y).unwrap() as f64;
            p[i] = orig;
            g.set_param(name, &p).unwrap();
            let fd = (up - down) / ((orig + h) as f64 - (orig - h) as f64);
            let an = gk[i] as f64;
            assert!(
                (fd - an).abs() <= 0.03 * an.abs() + 5e-4,
                "d{name}[{i}]: finite difference {fd} vs backward {an}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 16);
}

/// Eval pads a short batch: the real images' logits do not depend on the padding.
#[test]
fn eval_of_a_short_batch_matches_the_full_batch() {
    let Some(gpu) = gpu_or_skip("engine eval padding") else {
        return;
    };
    let cfg = config(PoolKind::Max);
    let net = SmallNet::new(cfg, 41);
    let (x, y) = data(&cfg, 42);
    let mut g = gpu_net(gpu, &cfg, &net, 0.0);
    // Move the running statistics away from 0/1 first.
    g.train_step(&x, &y, 0.0).unwrap();
    let full = g.eval_logits(&x).unwrap();
    let per = cfg.c_in * cfg.h * cfg.w;
    let short = g.eval_logits(&x[..2 * per]).unwrap();
    assert_eq!(short.len(), 2 * cfg.classes);
    assert_eq!(&full[..2 * cfg.classes], &short[..]);
    let stats = g.eval_batch(&x[..3 * per], &y[..3]).unwrap();
    assert_eq!(stats.count, 3);
    assert!(
        g.eval_logits(&vec![0.0; 5 * per]).is_err(),
        "over-long batch"
    );
    assert!(
        g.train_step(&x[..per], &y[..1], 0.1).is_err(),
        "short train batch"
    );
    let mut bad = y.clone();
    bad[0] = cfg.classes as u32;
    let err = g.train_step(&x, &bad, 0.1).unwrap_err().to_string();
    assert!(err.contains("label"), "{err}");
}

/// A network of `batch` images: seed 1, SGD with momentum 0.9, nothing else.
fn plain_config(batch: usize) -> NetworkConfig {
    NetworkConfig {
        batch,
        seed: 1,
        label_smoothing: 0.0,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
        grad_clip: None,
        conv: Default::default(),
        ranks: 1,
    }
}

/// A batch whose tensors cannot fit the adapter is refused when the network is built,
/// naming the batch; `usize::MAX` images made the input's element count wrap (a panic
/// under overflow checks, a wrong count without).
#[test]
fn batches_past_the_adapter_are_refused_at_build() {
    let Some(gpu) = gpu_or_skip("engine huge batch") else {
        return;
    };
    let model = small_net_model(&config(PoolKind::Max));
    for batch in [usize::MAX, usize::MAX / 3, 1 << 40] {
        let ncfg = plain_config(batch);
        let e = Network::new(gpu, &model, ncfg).err().expect("refused");
        let e = e.to_string();
        assert!(
            e.contains(&format!("batch size {batch}")) && e.contains("exceeds"),
            "{e}"
        );
    }
}

/// A layer whose weights cannot fit the adapter is refused when the network is built,
/// naming the layer, before its weights are drawn: a 65535 × 65536 linear layer drew 17 GB
/// of host memory first (an allocation abort where less was free).
#[test]
fn weights_past_the_adapter_are_refused_at_build() {
    let Some(gpu) = gpu_or_skip("engine huge weights") else {
        return;
    };
    let node = |name: &str, out_features, inputs: &str| Node {
        name: name.to_string(),
        op: Op::Linear {
            out_features,
            bias: true,
        },
        inputs: vec![inputs.to_string()],
    };
    let model = Model {
        name: "huge_weights".into(),
        input: (1, 256, 256),
        classes: 10,
        nodes: vec![node("fc1", 65535, "input"), node("fc", 10, "fc1")],
    };
    let ncfg = plain_config(1);
    let e = Network::new(gpu, &model, ncfg).err().expect("refused");
    let e = e.to_string();
    assert!(
        e.contains("layer 'fc1': 4294901760 weights") && e.contains("exceed"),
        "{e}"
    );
}

/// A depthwise conv of more channel blocks than a grid dimension holds runs under the
/// automatic choice: on a CPU adapter the broadcast kernel (channel blocks on z) was chosen
/// and refused ("70000 channel blocks exceed the 65535 workgroups"), where the blocked
/// kernel runs it.
#[test]
fn a_depthwise_conv_past_a_grid_dimension_runs_under_auto() {
    let Some(gpu) = gpu_or_skip("engine wide depthwise") else {
        return;
    };
    let c = 70_000;
    let model = Model {
        name: "wide_depthwise".into(),
        input: (c, 1, 1),
        classes: 10,
        nodes: vec![
            Node {
                name: "dw1".into(),
                op: Op::Conv2d {
                    out_channels: c,
                    kernel: 1,
                    stride: 1,
                    padding: 0,
                    groups: c,
                    bias: false,
                },
                inputs: vec!["input".into()],
            },
            Node {
                name: "fc".into(),
                op: Op::Linear {
                    out_features: 10,
                    bias: true,
                },
                inputs: vec!["dw1".into()],
            },
        ],
    };
    let ncfg = plain_config(2);
    let mut net = Network::new(gpu, &model, ncfg).expect("built under auto");
    let x = vec![0.5f32; 2 * c];
    let stats = net.train_step(&x, &[1, 2], 0.01).expect("a step runs");
    assert!(stats.loss.is_finite(), "{}", stats.loss);
}

/// A Flatten is a view: a network with one trains exactly as the same network without it.
/// A model ending in a Flatten trained with every gradient 0 (the logits' gradient went to
/// the Flatten, whose backward does nothing); a linear layer reading the model input
/// through a Flatten quantized it unsigned, clamping its negative pixels to 0.
#[test]
fn a_flatten_changes_nothing_trained_or_quantized() {
    let Some(gpu) = gpu_or_skip("engine flatten views") else {
        return;
    };
    let node = |name: &str, op: Op, input: &str| Node {
        name: name.to_string(),
        op,
        inputs: vec![input.to_string()],
    };
    let model = |name: &str, input: (usize, usize, usize), nodes: Vec<Node>| Model {
        name: name.into(),
        input,
        classes: 10,
        nodes,
    };
    let conv = Op::Conv2d {
        out_channels: 10,
        kernel: 3,
        stride: 2,
        padding: 1,
        groups: 1,
        bias: true,
    };
    let stem = || {
        vec![
            node("conv1", conv.clone(), "input"),
            node("gap", Op::GlobalAvgPool, "conv1"),
        ]
    };
    let mut flat_last = stem();
    flat_last.push(node("flat", Op::Flatten, "gap"));
    let mut r = SeededRng::new(7);
    let x = r.vec_uniform(2 * 8 * 8, -1.0, 1.0);
    let y = [3u32, 7];
    let mut after = Vec::new();
    for m in [
        model("plain", (1, 8, 8), stem()),
        model("flat", (1, 8, 8), flat_last),
    ] {
        let mut net = Network::new(gpu, &m, plain_config(2)).unwrap();
        net.train_step(&x, &y, 0.5).unwrap();
        let params: Vec<NamedTensor> = net
            .export_state()
            .unwrap()
            .into_iter()
            .filter(|t| t.kind == TensorKind::Param)
            .collect();
        after.push(params);
    }
    assert_eq!(
        after[0], after[1],
        "a trailing Flatten changed the training"
    );

    // The model input read through a Flatten, quantized: signed, as read directly.
    let linear = Op::Linear {
        out_features: 10,
        bias: true,
    };
    let direct = model(
        "direct",
        (2, 3, 3),
        vec![node("fc", linear.clone(), "input")],
    );
    let viewed = model(
        "viewed",
        (2, 3, 3),
        vec![
            node("flat", Op::Flatten, "input"),
            node("fc", linear, "flat"),
        ],
    );
    let x = r.vec_uniform(2 * 18, -1.0, 1.0);
    let mut losses = Vec::new();
    for m in [direct, viewed] {
        let spec = QuantSpec::joint(&m, &[2, 4]).unwrap();
        let mut net = Network::new_quantized(gpu, &m, plain_config(2), &spec).unwrap();
        let all = vec![true; net.quant_layers().len()];
        net.init_steps(&x, &y, &all).unwrap();
        losses.push(net.train_step(&x, &y, 0.0).unwrap().loss);
    }
    assert_eq!(
        losses[0], losses[1],
        "the flattened input was quantized otherwise"
    );
}

/// Export → checkpoint bytes → import into a fresh network gives identical eval logits.
#[test]
fn checkpoint_round_trip_restores_the_network() {
    let Some(gpu) = gpu_or_skip("engine checkpoint") else {
        return;
    };
    let cfg = config(PoolKind::Avg);
    let net = SmallNet::new(cfg, 51);
    let (x, y) = data(&cfg, 52);
    let mut a = gpu_net(gpu, &cfg, &net, 5e-4);
    a.train_step(&x, &y, 0.1).unwrap();
    a.train_step(&x, &y, 0.1).unwrap();
    let ckpt = Checkpoint {
        origin: None,
        model: a.model().clone(),
        seed: 1,
        epoch: 1,
        step: 2,
        meta: vec![("data".into(), "test".into())],
        tensors: a.export_state().unwrap(),
    };
    let back = Checkpoint::from_bytes(&ckpt.to_bytes(), "mem.ckpt".as_ref()).unwrap();
    assert_eq!(back, ckpt);
    let model = small_net_model(&cfg);
    let mut b = Network::new(gpu, &model, *a.config()).unwrap();
    b.import_state(&back.tensors, true).unwrap();
    assert_eq!(a.eval_logits(&x).unwrap(), b.eval_logits(&x).unwrap());
    // Same momentum too: one more identical step keeps them identical.
    a.train_step(&x, &y, 0.1).unwrap();
    b.train_step(&x, &y, 0.1).unwrap();
    assert_eq!(a.read_params().unwrap(), b.read_params().unwrap());
    // A tensor is found by kind and name, and the first of namesakes is the one loaded:
    // later copies with other values, under the same or another kind, change nothing.
    let mut dup = Checkpoint {
        tensors: a.export_state().unwrap(),
        ..back.clone()
    };
    let fc = dup
        .tensors
        .iter()
        .find(|t| t.name == "fc.bias")
        .unwrap()
        .clone();
    for kind in [TensorKind::Param, TensorKind::RunningStat] {
        dup.tensors.push(NamedTensor {
            kind,
            data: vec![f32::NAN; fc.data.len()],
            ..fc.clone()
        });
    }
    let mut c = Network::new(gpu, &model, *a.config()).unwrap();
    c.import_state(&dup.tensors, true).unwrap();
    assert_eq!(a.eval_logits(&x).unwrap(), c.eval_logits(&x).unwrap());
    let mut d = Network::new(gpu, &model, *a.config()).unwrap();
    d.import_state_lenient(&dup.tensors).unwrap();
    assert_eq!(a.eval_logits(&x).unwrap(), d.eval_logits(&x).unwrap());
    // A checkpoint of another model is refused with the tensor named.
    let mut other = back.clone();
    other.tensors.retain(|t| t.name != "fc.bias");
    let err = b
        .import_state(&other.tensors, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("fc.bias"), "{err}");
}

#[test]
fn builtin_models_build_and_step() {
    let Some(gpu) = gpu_or_skip("engine builtins") else {
        return;
    };
    let model = limpq_trainer::model::small_cnn();
    let mut net = Network::new(
        gpu,
        &model,
        NetworkConfig {
            batch: 3,
            ..NetworkConfig::default()
        },
    )
    .unwrap();
    let mut r = SeededRng::new(5);
    let x = r.vec_uniform(3 * 28 * 28, -1.0, 1.0);
    let y = vec![1, 2, 3];
    let s = net.train_step(&x, &y, 0.01).unwrap();
    assert!(s.loss.is_finite() && s.loss > 0.0, "loss {}", s.loss);
    assert!(net.train_dispatches() > 20);
    // Deterministic: a second network from the same seed gives the same loss.
    let mut again = Network::new(gpu, &model, *net.config()).unwrap();
    assert_eq!(again.train_step(&x, &y, 0.01).unwrap().loss, s.loss);
}

#[test]
fn checkpoint_refuses_bad_files() {
    let cfg = config(PoolKind::Avg);
    let ckpt = Checkpoint {
        origin: None,
        model: small_net_model(&cfg),
        seed: 3,
        epoch: 0,
        step: 0,
        meta: Vec::new(),
        tensors: vec![limpq_trainer::checkpoint::NamedTensor {
            name: "w".into(),
            kind: TensorKind::Param,
            data: vec![1.0, -2.5, 3.25],
        }],
    };
    let bytes = ckpt.to_bytes();
    let p = std::path::Path::new("x.ckpt");
    assert_eq!(Checkpoint::from_bytes(&bytes, p).unwrap(), ckpt);
    let err = |b: &[u8]| Checkpoint::from_bytes(b, p).unwrap_err().to_string();
    assert!(err(b"hello world, not a checkpoint").contains("magic"));
    assert!(err(&bytes[..bytes.len() - 5]).contains("truncated"));
    let mut flipped = bytes.clone();
    let at = bytes.len() - 10;
    flipped[at] ^= 1;
    assert!(err(&flipped).contains("checksum"));
    let mut version = bytes.clone();
    version[8] = 9;
    assert!(err(&version).contains("version"));
    assert!(err(&flipped).contains("x.ckpt"), "errors name the file");
    let dir = std::env::temp_dir().join(format!("limpq-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("a.ckpt");
    ckpt.save(&path).unwrap();
    assert!(!dir.join("a.ckpt.tmp").exists());
    assert_eq!(Checkpoint::load(&path).unwrap(), ckpt);
    let missing = Checkpoint::load(dir.join("nope.ckpt"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.ckpt"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The data-parallel step with its gradients exchanged in buckets while the backward runs
/// (every layer its own bucket) equals the step that exchanges them all after the backward,
/// bit for bit, with an exchange that changes the gradients (halves them): so no bucket is
/// read before its gradients are complete or written back where a later op overwrites it.
/// With an exchange that changes nothing, both equal the ordinary one-submission step.
/// Full precision (small_cnn: BN, residual adds) and joint training (two passes per step).
#[test]
fn bucketed_gradient_exchange_equals_the_exchange_after_the_backward() {
    use limpq_trainer::engine::QuantSpec;
    let Some(gpu) = gpu_or_skip("bucketed gradient exchange") else {
        return;
    };
    let model = limpq_trainer::model::small_cnn();
    let n = 4;
    let cfg = NetworkConfig {
        batch: n,
        seed: 11,
        ..NetworkConfig::default()
    };
    let spec = QuantSpec::joint(&model, &[2, 4]).unwrap();
    let mut r = SeededRng::new(23);
    let batches: Vec<(Vec<f32>, Vec<u32>)> = (0..3)
        .map(|k| {
            let x = r.vec_uniform(n * 28 * 28, -1.0, 1.0);
            (x, (0..n as u32).map(|i| (i * 3 + k) % 10).collect())
        })
        .collect();
    let halve = |g: &mut [f32]| g.iter_mut().for_each(|v| *v *= 0.5);
    let keep = |_: &mut [f32]| {};
    for quantized in [false, true] {
        let build = |bucket: usize| {
            let mut net = if quantized {
                Network::new_quantized(gpu, &model, cfg, &spec).unwrap()
            } else {
                Network::new(gpu, &model, cfg).unwrap()
            };
            if quantized {
                let (x, y) = &batches[0];
                let all = vec![true; net.quant_layers().len()];
                net.init_steps(x, y, &all).unwrap();
            }
            net.set_grad_bucket_bytes(bucket);
            net
        };
        // Joint training: every layer at its first variant, then at its last.
        let sels: Option<Vec<Vec<usize>>> = quantized.then(|| {
            let layers = build(0).quant_layers();
            vec![
                vec![0; layers.len()],
                layers.iter().map(|l| l.variants.len() - 1).collect(),
            ]
        });
        let run = |net: &mut Network<'_>, sync: &(dyn Fn(&mut [f32]) + Sync)| -> Vec<f32> {
            let mut losses = Vec::new();
            for (x, y) in &batches {
                let s = net
                    .train_step_synced(x, y, 0.05, sels.as_deref(), sync)
                    .unwrap();
                losses.extend(s.iter().map(|s| s.loss));
            }
            losses
        };
        let state = |net: &Network<'_>| -> Vec<(String, Vec<f32>)> {
            net.export_state()
                .unwrap()
                .into_iter()
                .map(|t| (t.name, t.data))
                .collect()
        };
        let what = if quantized { "joint" } else { "full precision" };
        let mut after = build(0);
        let mut during = build(1);
        assert_eq!(after.grad_bucket_sizes().len(), 1);
        let buckets = during.grad_bucket_sizes();
        assert!(buckets.len() > 5, "{what}: {} buckets", buckets.len());
        let la = run(&mut after, &halve);
        let ld = run(&mut during, &halve);
        assert_eq!(la, ld, "{what}: losses");
        let (sa, sd) = (state(&after), state(&during));
        assert_eq!(sa.len(), sd.len());
        for ((name, a), (_, d)) in sa.iter().zip(&sd) {
            assert!(a == d, "{what}: {name} differs between the two exchanges");
        }
        // The exchange matters: halved gradients end elsewhere than the plain step.
        let mut plain = build(0);
        for (x, y) in &batches {
            match &sels {
                Some(s) => drop(plain.train_passes(x, y, 0.05, s).unwrap()),
                None => drop(plain.train_step(x, y, 0.05).unwrap()),
            }
        }
        let sp = state(&plain);
        assert!(sp.iter().zip(&sd).any(|(p, d)| p.1 != d.1), "{what}");
        let mut kept = build(1);
        run(&mut kept, &keep);
        for ((name, p), (_, k)) in sp.iter().zip(&state(&kept)) {
            assert!(
                p == k,
                "{what}: {name}: bucketed identity exchange vs plain step"
            );
        }
    }
}
