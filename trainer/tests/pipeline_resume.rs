//! The pipeline on the GPU stages, stopped inside its joint-training stage and inside a
//! finetuning stage and continued: each stage resumes from the exact position its partial
//! checkpoint holds (not from its first step), the partial files go once their stage is
//! done, and the results equal those of a run never stopped. small_cnn on a few
//! Fashion-MNIST images; skips without an adapter or the data.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{gpu_or_skip, TempDir};
use limpq_trainer::pipeline::gpu::{load_data, GpuStages};
use limpq_trainer::pipeline::report::Results;
use limpq_trainer::pipeline::{run, Event, Job, PipelineError, Plan};
use limpq_trainer::train::{Event as TrainEvent, StopFlag};

const FMNIST: &str = "/usr/share/datasets/fashion-mnist";

/// 64 training images at batch 32: every training stage has 2 steps per epoch.
fn job(out: &Path) -> Job {
    Job::from_ron_str(&format!(
        r#"Job(
    model: "small_cnn",
    data: (name: "fashion-mnist", train: Some(64), test: Some(32)),
    seeds: [0],
    pretrain: (epochs: 1, batch: 32, lr: 0.05),
    joint: (bits: [2, 3], epochs: 2, batch: 32, lr: 0.01),
    budgets: ["w3a3"],
    // The learned indicators: this test stops and resumes training stages; the
    // sensitivity measurement has no partial state.
    search: learned,
    finetune: (epochs: 2, batch: 32, lr: 0.01),
    random_policies: 3,
    output: "{}",
)"#,
        out.display()
    ))
    .unwrap()
}

/// What one pipeline run did: per stage it started, the global step of its first
/// training step (1 = from the start).
struct Ran {
    result: Result<Results, PipelineError>,
    first_steps: Vec<(String, usize)>,
}

/// Runs the job in `out`; with `stop_in = Some((stage, k))`, asks for a stop once the
/// stage whose name contains `stage` has reported its `k`-th training step.
fn run_job(out: &Path, stop_in: Option<(&str, usize)>) -> Ran {
    let gpu = gpu_or_skip("pipeline resume").unwrap();
    let plan = Plan::new(job(out)).unwrap();
    let (train, test) = load_data(&plan.job).unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let mut stages = GpuStages {
        gpu,
        model: plan.model.clone(),
        job: plan.job.clone(),
        train,
        test,
        stop: StopFlag::new(flag.clone()),
    };
    let mut stage = String::new();
    let mut steps_in_stage = 0;
    let mut first_steps = Vec::new();
    let result = run(&plan, &mut stages, &mut |e| match e {
        Event::StageStart { name, .. } => {
            stage = name.clone();
            steps_in_stage = 0;
        }
        Event::Train(TrainEvent::Step {
            epoch, step, steps, ..
        }) => {
            if steps_in_stage == 0 {
                first_steps.push((stage.clone(), (epoch - 1) * steps + step));
            }
            steps_in_stage += 1;
            if let Some((s, k)) = stop_in {
                if stage.contains(s) && steps_in_stage == k {
                    flag.store(true, Ordering::SeqCst);
                }
            }
        }
        _ => {}
    });
    Ran {
        result,
        first_steps,
    }
}

fn first_step(r: &Ran, stage: &str) -> usize {
    r.first_steps
        .iter()
        .find(|(s, _)| s.contains(stage))
        .unwrap_or_else(|| panic!("no training step of '{stage}': {:?}", r.first_steps))
        .1
}

#[test]
fn stages_stopped_mid_run_resume_where_they_stopped() {
    if gpu_or_skip("pipeline resume").is_none() {
        return;
    }
    if !Path::new(FMNIST).is_dir() {
        eprintln!("SKIP pipeline resume: no Fashion-MNIST at {FMNIST}");
        return;
    }
    let dir = TempDir::new("resume");
    let straight = run_job(&dir.0.join("straight"), None);
    let want = straight.result.expect("the uninterrupted run");

    let out = dir.0.join("stopped");
    // 1. Stop joint training after its 3rd of 4 steps (inside its second epoch).
    let r = run_job(&out, Some(("indicators", 3)));
    assert!(
        matches!(&r.result, Err(PipelineError::Stopped { stage }) if stage.contains("indicators")),
        "{:?}",
        r.result.as_ref().map(|_| ())
    );
    let joint_partial = out.join("seed0/indicators.partial.ckpt");
    assert!(joint_partial.is_file(), "no partial joint-training state");

    // 2. Continue; this time stop the first finetuning after its 1st step.
    let r = run_job(&out, Some(("finetune", 1)));
    assert!(
        matches!(&r.result, Err(PipelineError::Stopped { stage }) if stage.contains("finetune")),
        "{:?}",
        r.result.as_ref().map(|_| ())
    );
    assert_eq!(
        first_step(&r, "indicators"),
        4,
        "joint training went on from step 4"
    );
    assert!(
        !joint_partial.exists(),
        "the joint partial outlived its stage"
    );
    let ft = r
        .first_steps
        .iter()
        .find(|(s, _)| s.contains("finetune"))
        .unwrap()
        .0
        .clone();
    let stem = ft.rsplit(' ').next().unwrap();
    let ft_partial = out.join(format!("seed0/finetune/w3a3_{stem}.partial.ckpt"));
    assert!(
        ft_partial.is_file(),
        "no partial finetune state at {ft_partial:?}"
    );

    // 3. Finish: the stopped finetune goes on from its step 2; nothing else reruns.
    let r = run_job(&out, None);
    assert_eq!(first_step(&r, &ft), 2, "{ft} went on from step 2");
    assert!(
        !r.first_steps
            .iter()
            .any(|(s, _)| s.contains("pretrain") || s.contains("indicators")),
        "finished stages reran: {:?}",
        r.first_steps
    );
    assert!(
        !ft_partial.exists(),
        "the finetune partial outlived its stage"
    );
    let got = r.result.expect("the continued run");

    // The same numbers as the run never stopped (same adapter: bit for bit).
    let ind = |p: &Path| {
        let t = std::fs::read_to_string(p.join("seed0/indicators.ron")).unwrap();
        let mut s = limpq_solver::IndicatorSet::from_ron_str(&t).unwrap();
        s.meta.retain(|(k, _)| k != "date" && k != "pipeline");
        s
    };
    assert_eq!(ind(&out), ind(&dir.0.join("straight")));
    assert_eq!(got.fp32, want.fp32);
    assert_eq!(got.budgets, want.budgets);
}
