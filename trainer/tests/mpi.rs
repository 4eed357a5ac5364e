//! Data-parallel runs under `mpirun -np 2` on the software adapter (the `mpi` feature).
//!
//! This binary is its own MPI program: the parent (run by `cargo test`) starts
//! `mpirun -np 2` on itself with `LIMPQ_MPI_ROLE` set, each rank runs that role and rank 0
//! writes the result checkpoint; the parent runs the one-process reference in-process and
//! compares. Skips, saying why, when `mpirun`, an adapter or Fashion-MNIST is missing.
//!
//! Model: a CNN without batch norm (conv+bias → ReLU → conv+bias/s2 → ReLU → GAP → fc), so
//! the ranks' separate batch statistics play no part: 2 ranks at global batch 16 follow the
//! 1-rank run at batch 16 up to float rounding. 64 training images, 4 steps an epoch, 2
//! epochs (8 steps).
//!
//! Tolerance: the ranks' gradients are the per-part means averaged in f64, the 1-rank
//! gradients one reduction over the whole batch; the two differ by f32 rounding of sums of
//! at most a few thousand terms (relative ~1e-6). Eight SGD steps at lr 0.05 carry such
//! differences into the weights at about 1e-7 absolute (6e-8 measured; the test prints the
//! worst); the bound used, 1e-5 + 1e-4·|w|, leaves two orders of magnitude for other
//! adapters' rounding and is checked to be at least 100× below what the first step changes
//! (2e-2 measured), so a missing step, a wrong gradient scale or a shifted batch fails it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use limpq_trainer::checkpoint::{Checkpoint, TensorKind};
use limpq_trainer::data::{Dataset, Split, Subset};
use limpq_trainer::dist::{Comm, Dist};
use limpq_trainer::gpu::{Gpu, GpuError, GpuOptions};
use limpq_trainer::model::Model;
use limpq_trainer::train::{train_from, Event, Start, StopFlag, TrainConfig, TrainError};

const FMNIST: &str = "/usr/share/datasets/fashion-mnist";
#[path = "common/mpirun.rs"]
mod mpirun;
use mpirun::{have_mpirun, mpirun, mpirun_env, OUT, ROLE};
const MODEL_RON: &str = r#"Model(
    format_version: 1,
    name: "no_bn_cnn",
    input: (1, 28, 28),
    classes: 10,
    nodes: [
        Node(name: "conv1", op: Conv2d(out_channels: 8, kernel: 3, stride: 2, padding: 1, groups: 1, bias: true), inputs: ["input"]),
        Node(name: "relu1", op: Relu, inputs: ["conv1"]),
        Node(name: "conv2", op: Conv2d(out_channels: 16, kernel: 3, stride: 2, padding: 1, groups: 1, bias: true), inputs: ["relu1"]),
        Node(name: "relu2", op: Relu, inputs: ["conv2"]),
        Node(name: "avgpool", op: GlobalAvgPool, inputs: ["relu2"]),
        Node(name: "fc", op: Linear(out_features: 10, bias: true), inputs: ["avgpool"]),
    ],
)"#;

/// Absolute and relative bound on a weight's difference between the 2-rank and 1-rank
/// runs (module doc).
const ABS: f32 = 1e-5;
const REL: f32 = 1e-4;

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
    let path = dir.join("no_bn_cnn.model.ron");
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
        .subset(Subset::Random { n: 48, seed: 4 })
        .unwrap();
    Ok(Setup {
        gpu,
        model,
        train: Arc::new(train),
        test: Arc::new(test),
    })
}

fn config(dist: Dist, checkpoint: Option<PathBuf>, stop: Option<Arc<AtomicBool>>) -> TrainConfig {
    TrainConfig {
        epochs: 2,
        batch: 16,
        lr: 0.05,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 5e-4,
        seed: 11,
        eval_batch: 16,
        checkpoint,
        stop: StopFlag(stop),
        dist,
        ..TrainConfig::default()
    }
}

/// Runs `cfg` from `start`; `on_step(global step)` after every step.
fn run(
    s: &Setup,
    cfg: &TrainConfig,
    start: Start<'_>,
    on_step: &mut dyn FnMut(usize),
) -> Result<Checkpoint, TrainError> {
    let mut global = match start {
        Start::Resume(ck) => ck.step as usize,
        _ => 0,
    };
    let mut ev = |e: &Event| {
        if let Event::Step { .. } = e {
            global += 1;
            on_step(global);
        }
    };
    train_from(
        &s.gpu,
        &s.model,
        s.train.clone(),
        s.test.clone(),
        cfg,
        start,
        &mut ev,
    )
    .map(|t| t.checkpoint)
}

// ---- the ranks' side ----

/// One rank of a scenario; rank 0 saves what the parent compares to `LIMPQ_MPI_OUT`.
fn rank_main(role: &str) {
    let out = PathBuf::from(std::env::var(OUT).expect("LIMPQ_MPI_OUT"));
    let (comm, session) = limpq_trainer::dist::mpi::init().expect("MPI init");
    let rank = comm.rank();
    let dist = Dist::new(comm.clone());
    let s = setup(out.parent().unwrap()).expect("the parent checked the setup");
    match role {
        // An uninterrupted run: its final state.
        "full" => {
            let ck = run(&s, &config(dist, None, None), Start::Fresh, &mut |_| {}).unwrap();
            if rank == 0 {
                ck.save(&out).unwrap();
            }
        }
        // Stopped after global step 3 (mid-epoch 1): rank 0 saves the stop checkpoint.
        "stop" => {
            let flag = Arc::new(AtomicBool::new(false));
            let cfg = config(dist, Some(out.clone()), Some(flag.clone()));
            match run(&s, &cfg, Start::Fresh, &mut |g| {
                if g == 3 && rank == 0 {
                    // One rank asks; every rank stops at the same step.
                    flag.store(true, Ordering::SeqCst);
                }
            }) {
                Err(TrainError::Stopped(st)) => {
                    assert_eq!(st.position.global_step, 3);
                    // Every rank says where rank 0 saved the state (rank 1 said nothing
                    // was saved).
                    assert_eq!(st.saved.as_deref(), Some(out.as_path()), "rank {rank}");
                }
                other => panic!("rank {rank}: expected a stop, got {:?}", other.map(|_| ())),
            }
        }
        // Rank 1 dies at global step 6 (epoch 2), after the epoch-1 checkpoint.
        "die" => {
            let cfg = config(dist, Some(out.clone()), None);
            let _ = run(&s, &cfg, Start::Fresh, &mut |g| {
                if g == 6 && rank == 1 {
                    eprintln!("rank 1: dying on purpose at step 6");
                    std::process::exit(3);
                }
            });
            panic!("rank {rank}: the run went on after rank 1 died");
        }
        other => panic!("unknown role {other}"),
    }
    comm.barrier();
    drop(session);
}

// ---- the parent's side ----

fn params(ck: &Checkpoint) -> Vec<(String, Vec<f32>)> {
    ck.of_kind(TensorKind::Param)
        .map(|t| (t.name.clone(), t.data.clone()))
        .collect()
}

/// Every parameter of `got` within the bound of `want`'s; returns the worst difference.
fn assert_close(what: &str, got: &Checkpoint, want: &Checkpoint) -> f32 {
    let (g, w) = (params(got), params(want));
    assert_eq!(g.len(), w.len(), "{what}: parameter count");
    let mut worst = 0.0f32;
    for ((gn, gd), (wn, wd)) in g.iter().zip(&w) {
        assert_eq!(gn, wn);
        for (i, (a, b)) in gd.iter().zip(wd).enumerate() {
            let d = (a - b).abs();
            assert!(
                d <= ABS + REL * b.abs(),
                "{what}: {gn}[{i}] = {a}, the 1-rank run has {b} (difference {d})"
            );
            worst = worst.max(d);
        }
    }
    worst
}

/// The largest change of any weight between two states (what the bound must be far below).
fn largest_change(a: &Checkpoint, b: &Checkpoint) -> f32 {
    params(a)
        .iter()
        .zip(params(b))
        .flat_map(|((_, x), (_, y))| {
            x.iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .collect::<Vec<_>>()
        })
        .fold(0.0, f32::max)
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        rank_main(&role);
        return;
    }
    if !have_mpirun() {
        println!("SKIP mpi tests: no mpirun on PATH (install openmpi-bin: scripts/setup.sh --mpi)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("limpq-mpi-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let s = match setup(&dir) {
        Ok(s) => s,
        Err(why) => {
            println!("SKIP mpi tests: {why}");
            return;
        }
    };
    let limit = Duration::from_secs(240);

    // The 1-rank references, in this process.
    let one = run(
        &s,
        &config(Dist::single(), None, None),
        Start::Fresh,
        &mut |_| {},
    )
    .unwrap();
    // The first step's change (at the top of the cosine schedule): what the bound must be
    // far below, so that a missing step or a wrong gradient cannot pass.
    let at = |k: usize| {
        let flag = Arc::new(AtomicBool::new(k == 0));
        let f = flag.clone();
        match run(
            &s,
            &config(Dist::single(), None, Some(flag)),
            Start::Fresh,
            &mut |g| f.store(g == k, Ordering::SeqCst),
        ) {
            Err(TrainError::Stopped(st)) => st.checkpoint,
            other => panic!("expected a stop after step {k}: {:?}", other.map(|_| ())),
        }
    };
    let step = largest_change(&at(1), &at(0));
    assert!(
        step > 100.0 * ABS,
        "one step changes the weights by at most {step}: the bound {ABS} could not tell"
    );

    // (a) 2 ranks at global batch 16 = 1 rank at batch 16.
    let full = dir.join("full.ckpt");
    let (ok, log) = mpirun("full", &full, &full.with_extension("log"), limit);
    assert!(ok, "mpirun full failed:\n{log}");
    let two = Checkpoint::load(&full).unwrap();
    let worst = assert_close("2 ranks vs 1", &two, &one);
    assert_eq!(two.step, one.step);
    let (h2, h1) = (two.meta("position.history"), one.meta("position.history"));
    assert!(h2.is_some() && h1.is_some());
    println!(
        "ok: 2 ranks = 1 rank after 8 steps (worst weight difference {worst:e}, one step \
         moves them up to {step:e})"
    );

    // The exchange in buckets overlapping the backward (above) against all gradients at
    // once after it: with two ranks each sum is rank 0's value plus rank 1's either way,
    // so the two runs agree bit for bit.
    let whole = dir.join("whole.ckpt");
    let (ok, log) = mpirun_env(
        "full",
        &whole,
        &whole.with_extension("log"),
        limit,
        &[("LIMPQ_GRAD_BUCKET_MB", "0")],
    );
    assert!(ok, "mpirun full (no buckets) failed:\n{log}");
    let whole = Checkpoint::load(&whole).unwrap();
    for ((n, a), (_, b)) in params(&two).iter().zip(&params(&whole)) {
        assert!(
            a == b,
            "{n}: bucketed exchange vs exchange after the backward"
        );
    }
    println!("ok: gradients exchanged in buckets during the backward = all at once after it");

    // (b) stopped at 2 ranks after step 3, resumed at 1 rank = uninterrupted.
    let stop = dir.join("stop.ckpt");
    let (ok, log) = mpirun("stop", &stop, &stop.with_extension("log"), limit);
    assert!(ok, "mpirun stop failed:\n{log}");
    let at3 = Checkpoint::load(&stop).unwrap();
    assert_eq!(at3.step, 3, "the stop checkpoint's position");
    let resumed = run(
        &s,
        &config(Dist::single(), None, None),
        Start::Resume(&at3),
        &mut |_| {},
    )
    .unwrap();
    let worst_b = assert_close("stopped at 2 ranks, resumed at 1", &resumed, &one);
    assert_close(
        "stopped at 2 ranks, resumed at 1, vs 2 ranks",
        &resumed,
        &two,
    );
    println!("ok: stopped on 2 ranks, resumed on 1 = uninterrupted (worst {worst_b:e})");

    // (d) a rank dies: the job ends (no hang) with an error, and resumes from the last
    // checkpoint (epoch 1's, written by rank 0).
    let died = dir.join("die.ckpt");
    let started = Instant::now();
    let (ok, log) = mpirun("die", &died, &died.with_extension("log"), limit);
    assert!(!ok, "a job with a dead rank must fail:\n{log}");
    assert!(
        log.contains("dying on purpose") && (log.contains("exit") || log.contains("abort")),
        "mpirun's output names the failure:\n{log}"
    );
    let last = Checkpoint::load(&died).unwrap();
    assert_eq!((last.epoch, last.step), (1, 4), "the epoch-1 checkpoint");
    let after = run(
        &s,
        &config(Dist::single(), None, None),
        Start::Resume(&last),
        &mut |_| {},
    )
    .unwrap();
    let worst_d = assert_close("resumed after a dead rank", &after, &one);
    println!(
        "ok: a dead rank ends the job in {:.1} s; resumed from epoch 1 = uninterrupted \
         (worst {worst_d:e})",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
