//! The pipeline under `mpirun -np 2` on the software adapter (the `mpi` feature): a tiny
//! job (a 4-layer CNN, 256 Fashion-MNIST training images, 64 test images, bits 2–4, one
//! budget, five finetunes) run on 2 ranks gives the report figures of the same job run in
//! one process, and run again on 2 ranks in the same folder it redoes nothing. The same job
//! with the default search (measured sensitivity, no joint run) runs on 2 ranks too, its
//! searched policy the one its written sensitivity file gives.
//!
//! The model has no batch norm, so that the data-parallel stages follow the one-process
//! runs up to float rounding alone (synchronised BN is tested in `tests/mpi_sync_bn.rs`;
//! BN layers make longer runs carry rounding much further). Pretraining and joint training
//! run data-parallel (global batch 32): the pretrained weights are checked within
//! 2e-5 + 2e-4·|w| as in `tests/mpi_sync_bn.rs`, the indicators' step sizes within 1e-3
//! relative (joint training's quantizers may round a few values the other way). The five
//! finetunes are dealt round the ranks (searched and uniform in the first round on ranks 0
//! and 1, random0 and random1 in the second, random2 in the third on rank 0), each a
//! one-process run from the same state as the one-process pipeline's. So the policies (bits, BitOps) must be the same, and each accuracy and loss
//! the same up to what those small differences become through a quantization-aware
//! finetune: accuracies within one test image (1/64), losses within 1e-4 relative (1.5e-5
//! measured; the policies' losses here lie up to 5e-4 apart). Measured: pretrained
//! weights 4e-8 apart, step sizes 9e-5 relative.
//!
//! As `tests/mpi.rs`, this binary is its own MPI program (`LIMPQ_MPI_ROLE`); it skips,
//! saying why, without `mpirun`, an adapter or Fashion-MNIST.

use limpq_solver::format::versioned::ron_from_str;
use std::path::{Path, PathBuf};
use std::time::Duration;

use limpq_solver::IndicatorSet;
use limpq_trainer::checkpoint::{Checkpoint, TensorKind};
use limpq_trainer::dist::{Comm, Dist};
use limpq_trainer::gpu::{Gpu, GpuError, GpuOptions};
use limpq_trainer::pipeline::gpu::{load_data, GpuStages};
use limpq_trainer::pipeline::report::{PolicyResult, Results};
use limpq_trainer::pipeline::{policies, run, Event, Job, Plan, Search};
use limpq_trainer::train::StopFlag;

const FMNIST: &str = "/usr/share/datasets/fashion-mnist";
#[path = "common/mpirun.rs"]
mod mpirun;
use mpirun::{have_mpirun, mpirun, OUT, ROLE};
const TEST_IMAGES: f64 = 64.0;
/// Accuracy: within this many test images.
const IMAGES: f64 = 1.0;
const LOSS_REL: f64 = 1e-4;
const ABS: f32 = 2e-5;
const REL: f32 = 2e-4;
const STEP_REL: f64 = 1e-3;

const MODEL_RON: &str = r#"Model(
    format_version: 1,
    name: "pipe_cnn",
    input: (1, 28, 28),
    classes: 10,
    nodes: [
        Node(name: "conv1", op: Conv2d(out_channels: 8, kernel: 3, stride: 2, padding: 1, groups: 1, bias: true), inputs: ["input"]),
        Node(name: "relu1", op: Relu, inputs: ["conv1"]),
        Node(name: "conv2", op: Conv2d(out_channels: 16, kernel: 3, stride: 2, padding: 1, groups: 1, bias: true), inputs: ["relu1"]),
        Node(name: "relu2", op: Relu, inputs: ["conv2"]),
        Node(name: "conv3", op: Conv2d(out_channels: 16, kernel: 3, stride: 1, padding: 1, groups: 1, bias: true), inputs: ["relu2"]),
        Node(name: "relu3", op: Relu, inputs: ["conv3"]),
        Node(name: "avgpool", op: GlobalAvgPool, inputs: ["relu3"]),
        Node(name: "fc", op: Linear(out_features: 10, bias: true), inputs: ["avgpool"]),
    ],
)"#;

/// The job writing into `out`; its model file is beside `out`. Into a folder named
/// `default`, the same job with the default search (measured sensitivity, no joint run).
fn job(out: &Path) -> Job {
    let model = out.parent().unwrap().join("pipe_cnn.model.ron");
    if !model.exists() {
        std::fs::write(&model, MODEL_RON).unwrap();
    }
    let mut job = learned_job(&model, out);
    if out.ends_with(DEFAULT_SEARCH) {
        job.search = Search::Sensitivity;
    }
    job
}

/// The folder name that selects the default search.
const DEFAULT_SEARCH: &str = "default";

fn learned_job(model: &Path, out: &Path) -> Job {
    Job::from_ron_str(&format!(
        r#"Job(
    model: "{}",
    data: (name: "fashion-mnist", train: Some(256), test: Some(64)),
    seeds: [0],
    pretrain: (epochs: 2, batch: 32, lr: 0.05, sync_bn: true),
    joint: (bits: [2, 3, 4], epochs: 1, batch: 32, lr: 0.01, sync_bn: true),
    budgets: ["w3a3"],
    // The learned indicators: this test is about the data-parallel and resumable
    // stages, not the sensitivity measurement (which every rank makes whole).
    search: learned,
    finetune: (epochs: 1, batch: 32, lr: 0.01),
    random_policies: 3,
    output: "{}",
)"#,
        model.display(),
        out.display()
    ))
    .unwrap()
}

fn gpu() -> Result<Gpu, String> {
    match Gpu::new(&GpuOptions::from_env()) {
        Ok(g) => Ok(g),
        Err(e @ GpuError::NoAdapter { .. }) => Err(format!("{e}")),
        Err(e) => panic!("GPU context failed: {e}"),
    }
}

/// Runs the job into `out`; rank 0 prints one line per stage skipped or done.
fn pipeline(gpu: &Gpu, out: &Path) -> Results {
    let root = Dist::global().is_root();
    let plan = Plan::new(job(out)).unwrap();
    let (train, test) = load_data(&plan.job).unwrap();
    let mut stages = GpuStages {
        gpu,
        model: plan.model.clone(),
        job: plan.job.clone(),
        train,
        test,
        stop: StopFlag::default(),
    };
    run(&plan, &mut stages, &mut |e| match e {
        Event::StageSkipped { name, .. } if root => println!("stage skipped: {name}"),
        Event::StageDone { name, summary, .. } if root => {
            println!("stage done: {name}: {summary}")
        }
        _ => {}
    })
    .unwrap()
}

// ---- the ranks' side ----

fn rank_main() {
    let out = PathBuf::from(std::env::var(OUT).expect("LIMPQ_MPI_OUT"));
    let (comm, session) = limpq_trainer::dist::mpi::init().expect("MPI init");
    let rank = comm.rank();
    assert!(Dist::set_global(Dist::new(comm.clone())));
    let gpu = gpu().expect("the parent checked the setup");
    pipeline(&gpu, &out);
    println!("rank {rank}: pipeline done");
    comm.barrier();
    drop(session);
}

// ---- the parent's side ----

fn same_policy(what: &str, got: &PolicyResult, want: &PolicyResult) {
    assert_eq!(got.layers, want.layers, "{what}: the policy's bits");
    assert_eq!(got.bitops, want.bitops, "{what}: BitOps");
    assert!(
        (got.accuracy - want.accuracy).abs() <= IMAGES / TEST_IMAGES + 1e-9,
        "{what}: accuracy {} on 2 ranks, {} on 1",
        got.accuracy,
        want.accuracy
    );
    assert!(
        (got.loss - want.loss).abs() <= LOSS_REL * want.loss.abs(),
        "{what}: loss {} on 2 ranks, {} on 1",
        got.loss,
        want.loss
    );
    println!(
        "ok: {what}: {} BitOps, accuracy {:.4} / {:.4}, loss {:.6} / {:.6} (2 ranks / 1)",
        got.bitops, got.accuracy, want.accuracy, got.loss, want.loss
    );
}

fn main() {
    if std::env::var(ROLE).is_ok() {
        rank_main();
        return;
    }
    if !have_mpirun() {
        println!("SKIP mpi pipeline test: no mpirun on PATH (scripts/setup.sh --mpi)");
        return;
    }
    if !Path::new(FMNIST).is_dir() {
        println!("SKIP mpi pipeline test: no Fashion-MNIST at {FMNIST}");
        return;
    }
    let gpu = match gpu() {
        Ok(g) => g,
        Err(why) => {
            println!("SKIP mpi pipeline test: {why}");
            return;
        }
    };
    let dir = std::env::temp_dir().join(format!("limpq-mpi-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let one = pipeline(&gpu, &dir.join("one"));
    let two_dir = dir.join("two");
    let limit = Duration::from_secs(400);
    let (ok, log) = mpirun("pipeline", &two_dir, &dir.join("first.log"), limit);
    assert!(ok, "mpirun pipeline failed:\n{log}");
    let text = std::fs::read_to_string(two_dir.join("results.ron")).unwrap();
    let two: Results = ron_from_str(&text).unwrap();

    // The data-parallel stages' outputs.
    let ck = |d: &str| Checkpoint::load(dir.join(d).join("seed0/pretrain.ckpt")).unwrap();
    let (p2, p1) = (ck("two"), ck("one"));
    let mut worst = 0.0f32;
    for (t2, t1) in p2.tensors.iter().zip(&p1.tensors) {
        assert_eq!(t2.name, t1.name);
        if !matches!(t1.kind, TensorKind::Param | TensorKind::RunningStat) {
            continue;
        }
        for (i, (a, b)) in t2.data.iter().zip(&t1.data).enumerate() {
            let d = (a - b).abs();
            assert!(
                d <= ABS + REL * b.abs(),
                "pretrained {}[{i}]: {a} on 2 ranks, {b} on 1",
                t1.name
            );
            worst = worst.max(d);
        }
    }
    println!("ok: pretrained state, 2 ranks = 1 rank (worst difference {worst:e})");
    let ind = |d: &str| {
        let t = std::fs::read_to_string(dir.join(d).join("seed0/indicators.ron")).unwrap();
        IndicatorSet::from_ron_str(&t).unwrap()
    };
    let (i2, i1) = (ind("two"), ind("one"));
    let mut worst = 0.0f64;
    for (l2, l1) in i2.layers.iter().zip(&i1.layers) {
        let steps = |l: &limpq_solver::Layer| {
            l.weight_scale
                .iter()
                .chain(&l.act_scale)
                .copied()
                .collect::<Vec<f64>>()
        };
        for (a, b) in steps(l2).iter().zip(steps(l1)) {
            let r = (a - b).abs() / b.abs().max(1e-12);
            assert!(
                r <= STEP_REL,
                "indicators of {}: {a} on 2 ranks, {b} on 1",
                l1.name
            );
            worst = worst.max(r);
        }
    }
    println!("ok: indicators, 2 ranks = 1 rank (worst relative difference {worst:e})");

    assert_eq!(two.fp32.len(), one.fp32.len());
    for ((s2, a2), (s1, a1)) in two.fp32.iter().zip(&one.fp32) {
        assert_eq!(s2, s1);
        assert!(
            (a2 - a1).abs() <= 1.0 / TEST_IMAGES + 1e-9,
            "FP32 accuracy {a2} on 2 ranks, {a1} on 1"
        );
    }
    assert_eq!(two.budgets.len(), one.budgets.len());
    for (b2, b1) in two.budgets.iter().zip(&one.budgets) {
        assert_eq!(b2.seeds.len(), b1.seeds.len(), "{}: seeds", b1.label);
        for (r2, r1) in b2.seeds.iter().zip(&b1.seeds) {
            same_policy(
                &format!("{} searched", b1.label),
                &r2.searched,
                &r1.searched,
            );
            match (&r2.uniform, &r1.uniform) {
                (Some(u2), Some(u1)) => same_policy(&format!("{} uniform", b1.label), u2, u1),
                (None, None) => {}
                _ => panic!("{}: a uniform result on one side only", b1.label),
            }
            assert_eq!(r2.random.len(), r1.random.len());
            for (k, (p2, p1)) in r2.random.iter().zip(&r1.random).enumerate() {
                same_policy(&format!("{} random{k}", b1.label), p2, p1);
            }
        }
    }
    // Rank 1 ran a finetune (the second of the first round): rank 0 recorded it.
    assert!(
        log.contains("finetune w3a3 uniform: ") && log.contains("% on rank 1 ("),
        "rank 0 names the finetune rank 1 ran:\n{log}"
    );

    // Run again on 2 ranks: every stage, whichever rank finished it, is skipped.
    let (ok, log) = mpirun("pipeline", &two_dir, &dir.join("again.log"), limit);
    assert!(ok, "mpirun pipeline (again) failed:\n{log}");
    let skipped = log.matches("stage skipped:").count();
    assert!(
        skipped == 7 && !log.contains("stage done:"),
        "the second run must skip all 7 stages (pretrain, indicators, 5 finetunes):\n{log}"
    );
    println!("ok: run again on 2 ranks, all {skipped} stages skipped");

    // The default search on 2 ranks: every rank measures the sensitivity (rank 0 writes
    // it), no joint run, and the searched policy is the one the written file gives.
    let def_dir = dir.join(DEFAULT_SEARCH);
    let (ok, log) = mpirun("pipeline", &def_dir, &dir.join("default.log"), limit);
    assert!(ok, "mpirun pipeline (default search) failed:\n{log}");
    assert!(
        !def_dir.join("seed0/indicators.ron").exists(),
        "the default search ran a joint run"
    );
    let sens = std::fs::read_to_string(def_dir.join("seed0/sensitivity.ron")).unwrap();
    let sens = IndicatorSet::from_ron_str(&sens).unwrap();
    let text = std::fs::read_to_string(def_dir.join("results.ron")).unwrap();
    let def: Results = ron_from_str(&text).unwrap();
    let plan = Plan::new(job(&def_dir)).unwrap();
    let want = policies::searched_policy(&sens, policies::SENSITIVITY_ALPHA, plan.bitops[0])
        .unwrap()
        .0;
    assert_eq!(def.budgets[0].seeds[0].searched.layers, want.layers);
    assert_eq!(def.budgets[0].seeds[0].random.len(), 3);
    println!("ok: the default search on 2 ranks, its policy from the written sensitivity");
    let _ = std::fs::remove_dir_all(&dir);
}
