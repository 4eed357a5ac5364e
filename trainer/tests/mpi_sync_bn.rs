//! Synchronised batch norm under `mpirun -np 2` on the software adapter (the `mpi`
//! feature): 2 ranks at global batch 16 with `sync_bn` follow 1 rank at batch 16, for
//! full-precision training and for joint (indicator) training with per-bit BN; without
//! `sync_bn` they do not (each rank normalises by its own 8 images), which shows the
//! comparison can fail.
//!
//! Like `tests/mpi.rs`, this binary is its own MPI program: the parent starts
//! `mpirun -np 2` on itself with `LIMPQ_MPI_ROLE` set; the ranks run every scenario in
//! turn, rank 0 saving each result, and the parent compares them with the one-process runs
//! it makes itself. Skips, saying why, without `mpirun`, an adapter or Fashion-MNIST.
//!
//! Model: conv → BN → ReLU → conv/s2 → BN → ReLU → global average pool → fc, on 64
//! Fashion-MNIST images; training: 2 epochs of 4 steps; joint training: bits 2 and 4 (the
//! middle conv searchable, its BN one set per bit-width), 1 epoch of 4 steps from the
//! trained full-precision state.
//!
//! Tolerance: every parameter (weights, biases, BN γ/β and, in joint training, every LSQ
//! step size) and running statistic within 2e-5 + 2e-4·|w| of the 1-rank run, each epoch's
//! training loss within 1e-4 relative. The 2-rank statistics are sums of per-rank sums in
//! f64, the 1-rank ones one f32 tree over the whole batch: they differ by f32 rounding
//! (relative ~1e-6), which BN's division by the standard deviation and 8 steps carry into
//! the weights at about 1e-7 (the test prints the worst, as a share of the bound). The bound is twice the one of
//! the test without BN (BN amplifies rounding) and is checked to be below what the
//! unsynchronised run's per-part statistics change: that run must break it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use limpq_trainer::checkpoint::{Checkpoint, TensorKind};
use limpq_trainer::data::{Dataset, Split, Subset};
use limpq_trainer::dist::{Comm, Dist};
use limpq_trainer::gpu::{Gpu, GpuError, GpuOptions};
use limpq_trainer::method::{joint_train_full, JointConfig};
use limpq_trainer::model::Model;
use limpq_trainer::train::{train_from, RunConfig, Start, TrainConfig};

const FMNIST: &str = "/usr/share/datasets/fashion-mnist";
#[path = "common/mpirun.rs"]
mod mpirun;
use mpirun::{have_mpirun, mpirun, OUT, ROLE};
const MODEL_RON: &str = r#"Model(
    format_version: 1,
    name: "bn_cnn",
    input: (1, 28, 28),
    classes: 10,
    nodes: [
        Node(name: "conv1", op: Conv2d(out_channels: 8, kernel: 3, stride: 2, padding: 1, groups: 1, bias: false), inputs: ["input"]),
        Node(name: "bn1", op: BatchNorm, inputs: ["conv1"]),
        Node(name: "relu1", op: Relu, inputs: ["bn1"]),
        Node(name: "conv2", op: Conv2d(out_channels: 16, kernel: 3, stride: 2, padding: 1, groups: 1, bias: false), inputs: ["relu1"]),
        Node(name: "bn2", op: BatchNorm, inputs: ["conv2"]),
        Node(name: "relu2", op: Relu, inputs: ["bn2"]),
        Node(name: "avgpool", op: GlobalAvgPool, inputs: ["relu2"]),
        Node(name: "fc", op: Linear(out_features: 10, bias: true), inputs: ["avgpool"]),
    ],
)"#;

const ABS: f32 = 2e-5;
const REL: f32 = 2e-4;
const LOSS_REL: f64 = 1e-4;

struct Setup {
    gpu: Gpu,
    model: Model,
    train: Arc<Dataset>,
    test: Arc<Dataset>,
}

fn setup(dir: &Path) -> Result<Setup, String> {
    let gpu = match Gpu::new(&GpuOptions::from_env()) {
        Ok(g) => g,
        Err(e @ GpuError::NoAdapter { .. }) => return Err(format!("{e}")),
        Err(e) => panic!("GPU context failed: {e}"),
    };
    if !Path::new(FMNIST).is_dir() {
        return Err(format!("no Fashion-MNIST at {FMNIST}"));
    }
    let path = dir.join("bn_cnn.model.ron");
    if !path.exists() {
        std::fs::write(&path, MODEL_RON).unwrap();
    }
    let model = Model::resolve(path.to_str().unwrap()).unwrap();
    let d = Some(Path::new(FMNIST));
    let train = Dataset::load("fashion-mnist", d, Split::Train)
        .unwrap()
        .subset(Subset::Random { n: 64, seed: 3 })
        .unwrap();
    let test = Dataset::load("fashion-mnist", d, Split::Test)
        .unwrap()
        .subset(Subset::Random { n: 32, seed: 4 })
        .unwrap();
    Ok(Setup {
        gpu,
        model,
        train: Arc::new(train),
        test: Arc::new(test),
    })
}

fn train_config(dist: Dist, sync_bn: bool) -> TrainConfig {
    TrainConfig {
        epochs: 2,
        batch: 16,
        lr: 0.05,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 5e-4,
        seed: 11,
        eval_batch: 16,
        dist,
        sync_bn,
        ..TrainConfig::default()
    }
}

fn joint_config(dist: Dist, sync_bn: bool) -> JointConfig {
    JointConfig {
        bits: vec![2, 4],
        run: RunConfig {
            epochs: 1,
            batch: 16,
            seed: 7,
            eval_batch: 16,
            dist,
            sync_bn,
            ..JointConfig::default().run
        },
        ..JointConfig::default()
    }
}

fn train(s: &Setup, cfg: &TrainConfig) -> Checkpoint {
    train_from(
        &s.gpu,
        &s.model,
        s.train.clone(),
        s.test.clone(),
        cfg,
        Start::Fresh,
        &mut |_| {},
    )
    .unwrap()
    .checkpoint
}

fn joint(s: &Setup, init: &Checkpoint, cfg: &JointConfig) -> Checkpoint {
    joint_train_full(
        &s.gpu,
        &s.model,
        init,
        s.train.clone(),
        s.test.clone(),
        cfg,
        &mut |_| {},
    )
    .unwrap()
    .checkpoint
}

// ---- the ranks' side ----

/// Every scenario on 2 ranks; rank 0 saves `OUT.{name}`.
fn rank_main() {
    let out = PathBuf::from(std::env::var(OUT).expect("LIMPQ_MPI_OUT"));
    let (comm, session) = limpq_trainer::dist::mpi::init().expect("MPI init");
    let root = comm.rank() == 0;
    let dist = Dist::new(comm.clone());
    let s = setup(out.parent().unwrap()).expect("the parent checked the setup");
    let save = |ck: &Checkpoint, name: &str| {
        if root {
            ck.save(out.with_extension(name)).unwrap();
        }
    };
    for sync in [true, false] {
        let name = if sync { "train_sync" } else { "train_plain" };
        save(&train(&s, &train_config(dist.clone(), sync)), name);
    }
    // Joint training starts from the 1-rank trained state the parent saved.
    let init = Checkpoint::load(out.with_extension("init")).unwrap();
    for sync in [true, false] {
        let name = if sync { "joint_sync" } else { "joint_plain" };
        save(&joint(&s, &init, &joint_config(dist.clone(), sync)), name);
    }
    comm.barrier();
    drop(session);
}

// ---- the parent's side ----

/// Parameters (step sizes included) and running statistics, by name.
fn state(ck: &Checkpoint) -> Vec<(String, Vec<f32>)> {
    ck.tensors
        .iter()
        .filter(|t| matches!(t.kind, TensorKind::Param | TensorKind::RunningStat))
        .map(|t| (t.name.clone(), t.data.clone()))
        .collect()
}

/// Each epoch's training loss from the checkpoint's history.
fn losses(ck: &Checkpoint) -> Vec<f64> {
    ck.meta("position.history")
        .expect("a history")
        .split(';')
        .map(|e| e.split(' ').nth(2).unwrap().parse().unwrap())
        .collect()
}

/// The first value of `got` outside the bound of `want`'s, or the worst difference as a
/// fraction of its bound, and where it is.
fn compare(got: &Checkpoint, want: &Checkpoint) -> Result<(f32, String), String> {
    let (g, w) = (state(got), state(want));
    assert_eq!(g.len(), w.len(), "tensor count");
    let mut worst = (0.0f32, String::new());
    for ((gn, gd), (wn, wd)) in g.iter().zip(&w) {
        assert_eq!(gn, wn);
        for (i, (a, b)) in gd.iter().zip(wd).enumerate() {
            let d = (a - b).abs();
            if d.is_nan() || d > ABS + REL * b.abs() {
                return Err(format!(
                    "{gn}[{i}] = {a}, the 1-rank run has {b} (difference {d})"
                ));
            }
            let share = d / (ABS + REL * b.abs());
            if share > worst.0 {
                worst = (share, format!("{gn}[{i}]: {a} vs {b}"));
            }
        }
    }
    for (a, b) in losses(got).iter().zip(losses(want)) {
        if (a - b).abs() > LOSS_REL * b.abs() {
            return Err(format!("training loss {a}, the 1-rank run has {b}"));
        }
    }
    Ok(worst)
}

fn main() {
    if std::env::var(ROLE).is_ok() {
        rank_main();
        return;
    }
    if !have_mpirun() {
        println!("SKIP sync-BN tests: no mpirun on PATH (scripts/setup.sh --mpi)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("limpq-mpi-bn-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let s = match setup(&dir) {
        Ok(s) => s,
        Err(why) => {
            println!("SKIP sync-BN tests: {why}");
            return;
        }
    };
    let out = dir.join("run");

    // The 1-rank references; sync_bn without peers changes nothing.
    let one = train(&s, &train_config(Dist::single(), true));
    one.save(out.with_extension("init")).unwrap();
    let one_joint = joint(&s, &one, &joint_config(Dist::single(), true));

    let (ok, log) = mpirun(
        "all",
        &out,
        &out.with_extension("log"),
        Duration::from_secs(400),
    );
    assert!(ok, "mpirun failed:\n{log}");
    let load = |name: &str| Checkpoint::load(out.with_extension(name)).unwrap();

    for (what, want) in [("train", &one), ("joint", &one_joint)] {
        let synced = load(&format!("{what}_sync"));
        let worst = compare(&synced, want)
            .unwrap_or_else(|e| panic!("{what}, 2 ranks with sync_bn vs 1 rank: {e}"));
        let plain = compare(&load(&format!("{what}_plain")), want);
        assert!(
            plain.is_err(),
            "{what}: 2 ranks WITHOUT sync_bn also match 1 rank (worst {:e}): the test \
             cannot tell synchronised BN from per-rank BN",
            plain.unwrap_or_default().0
        );
        println!(
            "ok: {what}, 2 ranks with sync_bn = 1 rank (worst {:.3} of the bound, {}); \
             without: {}",
            worst.0,
            worst.1,
            plain.unwrap_err()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
