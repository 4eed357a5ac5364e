//! The pipeline without a GPU: job validation, budgets, random policy draws (checked
//! independently of the code that draws them), resume from `state.ron`, and the report.
//! A fake [`Stages`] stands in for the GPU work and counts what it was asked to do.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

#[cfg(unix)]
#[path = "common/blocking.rs"]
mod blocking;

#[path = "common/scratch.rs"]
mod scratch;

use limpq_solver::format::versioned::ron_from_str;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use limpq_solver::{IndicatorSet, LayerBits, Policy};
use limpq_trainer::checkpoint::Checkpoint;
use limpq_trainer::model::Model;
use limpq_trainer::pipeline::policies::{self, RANDOM_FLOOR};
use limpq_trainer::pipeline::report::{
    self, BudgetResult, ControlResult, PolicyResult, Results, SeedResult,
};
use limpq_trainer::pipeline::{
    run, Eval, Event, Job, Partial, PipelineError, Plan, Search, SensitivitySpec, StageError,
    Stages, State,
};
use limpq_trainer::train::Event as TrainEvent;

fn tmpdir(name: &str) -> (tempfile::TempDir, PathBuf) {
    scratch::dir(&format!("pipeline-{name}"))
}

fn job_text(out: &Path) -> String {
    format!(
        r#"Job(
    model: "small_cnn",
    data: (name: "fashion-mnist", train: Some(256), test: Some(128)),
    seeds: [0, 1],
    pretrain: (epochs: 1, batch: 32, lr: 0.1),
    joint: (bits: [2, 3, 4, 5, 6], epochs: 1, batch: 32),
    budgets: ["w2a3", "w3a3", "w4a4"],
    search: learned,
    alpha: 2.0,
    finetune: (epochs: 1, batch: 32, lr: 0.01),
    random_policies: 3,
    output: "{}",
)"#,
        out.display()
    )
}

/// Stands in for the GPU: deterministic numbers, every call counted.
#[derive(Default)]
struct Fake {
    model: Option<Model>,
    pretrain: usize,
    evaluated: usize,
    indicators: usize,
    finetunes: Vec<String>,
    /// Fail the finetune call with this index (0-based, counting calls).
    fail_finetune_at: Option<usize>,
    /// Ask for a stop during the finetune call with this index: the call then fails as a
    /// training run does when its stop flag is set.
    stop_during_finetune: Option<usize>,
    stopped: bool,
    /// Fail the finetune call with this index while a stop is requested: still a failure.
    fail_while_stopping_at: Option<usize>,
    /// Sensitivity measurements made.
    sensitivity: usize,
    /// The `source` meta of the indicators each finetune was given.
    finetune_sources: Vec<String>,
    /// In the first pretraining: say so on the sender, then wait for the receiver (a run
    /// held in the middle, its output folder locked).
    hold_in_pretrain: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
    /// Write the stage's progress file in pretraining, as a real run does.
    write_partials: bool,
}

fn ckpt(model: &Model, seed: u64) -> Checkpoint {
    Checkpoint {
        origin: None,
        model: model.clone(),
        seed,
        epoch: 1,
        step: 1,
        meta: vec![],
        tensors: vec![],
    }
}

impl Stages for Fake {
    fn stop_requested(&self) -> bool {
        self.stopped
    }
    fn pretrain(
        &mut self,
        seed: u64,
        partial: &Partial,
        on_event: &mut dyn FnMut(&TrainEvent),
    ) -> Result<(Checkpoint, Eval), StageError> {
        self.pretrain += 1;
        if self.write_partials {
            std::fs::write(&partial.path, b"progress").unwrap();
        }
        if let Some((entered, release)) = self.hold_in_pretrain.take() {
            entered.send(()).unwrap();
            let _ = release.recv();
        }
        on_event(&TrainEvent::Evaluating { epoch: 1 });
        let m = self.model.clone().unwrap();
        Ok((
            ckpt(&m, seed),
            Eval {
                accuracy: 0.9 + seed as f64 * 0.001,
                loss: 0.3,
            },
        ))
    }
    fn evaluate_fp(&mut self, _ckpt: &Checkpoint) -> Result<Eval, StageError> {
        self.evaluated += 1;
        Ok(Eval {
            accuracy: 0.9,
            loss: 0.3,
        })
    }
    fn indicators(
        &mut self,
        _init: &Checkpoint,
        seed: u64,
        _partial: &Partial,
        _on_event: &mut dyn FnMut(&TrainEvent),
    ) -> Result<IndicatorSet, StageError> {
        self.indicators += 1;
        let m = self.model.clone().unwrap();
        let mut ind = m
            .indicator_skeleton(&[2, 3, 4, 5, 6], &[2, 3, 4, 5, 6])
            .unwrap();
        for (l, layer) in ind.layers.iter_mut().enumerate() {
            let c = 1.0 + l as f64 * 0.37 + seed as f64 * 0.01;
            layer.weight_scale = [2u32, 3, 4, 5, 6]
                .iter()
                .map(|b| c / f64::from(1u32 << b))
                .collect();
            layer.act_scale = [2u32, 3, 4, 5, 6]
                .iter()
                .map(|b| 2.0 * c / f64::from(1u32 << b) / (1.0 + l as f64))
                .collect();
        }
        // What a joint run records of its step sizes' drift from their init.
        ind.meta.push((
            "step_drift.weight.median".into(),
            format!("{:.6}", 0.01 + 0.1 * seed as f64),
        ));
        ind.meta
            .push(("step_drift.act.median".into(), "0.020000".into()));
        Ok(ind)
    }
    fn data_sizes(&self) -> (usize, usize) {
        (256, 128)
    }
    fn sensitivity(
        &mut self,
        _init: &Checkpoint,
        bits: &[u32],
        spec: &SensitivitySpec,
        seed: u64,
    ) -> Result<IndicatorSet, StageError> {
        // The jobs' images (80 where the report's count of whole batches is checked).
        assert!(matches!(spec.images, 64 | 80), "{}", spec.images);
        self.sensitivity += 1;
        let m = self.model.clone().unwrap();
        let mut ind = m.indicator_skeleton(bits, bits).unwrap();
        let n = ind.layers.len();
        // Loss increases that rank the layers the other way round from the indicators.
        for (l, layer) in ind.layers.iter_mut().enumerate() {
            if layer.fixed.is_some() {
                continue;
            }
            let c = (n - l) as f64 * 0.1 + seed as f64 * 0.001;
            layer.weight_scale = bits.iter().map(|b| c / f64::from(1u32 << b)).collect();
            layer.act_scale = bits
                .iter()
                .map(|b| 0.5 * c / f64::from(1u32 << b))
                .collect();
        }
        ind.meta.push(("source".into(), "sensitivity".into()));
        Ok(ind)
    }
    fn finetune(
        &mut self,
        init: &Checkpoint,
        policy: &Policy,
        indicators: &IndicatorSet,
        seed: u64,
        _partial: &Partial,
        _on_event: &mut dyn FnMut(&TrainEvent),
    ) -> Result<(Checkpoint, Eval), StageError> {
        if self.fail_finetune_at == Some(self.finetunes.len()) {
            return Err("injected failure".into());
        }
        if self.fail_while_stopping_at == Some(self.finetunes.len()) {
            self.stopped = true;
            return Err(StageError::Failed("disk full".into()));
        }
        if self.stop_during_finetune == Some(self.finetunes.len()) {
            self.stopped = true;
            return Err(StageError::Stopped);
        }
        let bits: Vec<String> = policy
            .layers
            .iter()
            .map(|l| format!("{}{}", l.weight, l.act))
            .collect();
        self.finetunes.push(bits.join(","));
        self.finetune_sources.push(
            indicators
                .meta
                .iter()
                .find(|(k, _)| k == "source")
                .map_or("learned".to_string(), |(_, v)| v.clone()),
        );
        let acc = 0.8 + (policy.bitops as f64).ln() * 0.005 - policy.objective * 0.001;
        Ok((
            ckpt(&init.model, seed),
            Eval {
                accuracy: acc,
                loss: 0.5,
            },
        ))
    }
}

fn plan_for(out: &Path) -> Plan {
    let job = Job::from_ron_str(&job_text(out)).unwrap();
    Plan::new(job).unwrap()
}

fn fake_for(plan: &Plan) -> Fake {
    Fake {
        model: Some(plan.model.clone()),
        ..Fake::default()
    }
}

#[test]
fn example_jobs_parse_and_plan() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".pipeline.ron") {
            let job = Job::from_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            Plan::new(job).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 1, "no examples/*.pipeline.ron found");
}

/// The job file and the output folder's own files (`state.ron`, a stage's indicator file)
/// are read only when they are regular files: `limpq pipeline /dev/zero` read until memory
/// ran out, and a FIFO in the output folder blocked the run.
#[cfg(unix)]
#[test]
fn devices_and_fifos_are_refused_as_job_and_state_files() {
    use blocking::{mkfifo, within_20s};
    let e = within_20s(|| {
        Job::from_file(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string()
    });
    assert!(
        e.contains("/dev/zero") && e.contains("not a regular file"),
        "{e}"
    );
    let (_out_dir, out) = tmpdir("fifo");
    if !mkfifo(&out.join("job.ron")) || !mkfifo(&out.join("state.ron")) {
        return;
    }
    let job = out.join("job.ron");
    let e = within_20s(move || Job::from_file(&job).unwrap_err().to_string());
    assert!(e.contains("job.ron") && e.contains("FIFO"), "{e}");
    let o = out.clone();
    let e = within_20s(move || State::load(&o).unwrap_err());
    assert!(matches!(e, PipelineError::File(_)), "{e:?}");
    assert!(e.to_string().contains("state.ron"), "{e}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn invalid_jobs_are_refused_naming_the_field() {
    let (_out_dir, out) = tmpdir("invalid");
    let base = job_text(&out);
    let cases = [
        ("lr: 0.1)", "lr: NaN)", "pretrain.lr"),
        ("lr: 0.01)", "lr: -0.01)", "finetune.lr"),
        (
            "random_policies: 3",
            "random_policies: 2",
            "random_policies",
        ),
        (
            "random_policies: 3",
            "random_policies: 100000",
            "random_policies`: 100000 is more than 1000",
        ),
        ("seeds: [0, 1]", "seeds: []", "seeds"),
        ("seeds: [0, 1]", "seeds: [1, 1]", "seeds"),
        ("alpha: 2.0", "alpha: -1.0", "alpha"),
        ("\"w4a4\"]", "\"w4a8\"]", "budgets"),
        ("\"w4a4\"]", "\"w4a4\", \"w4a4\"]", "budgets"),
        ("\"w4a4\"]", "\"fast\"]", "budget"),
        ("\"w4a4\"]", "-5]", "negative"),
        ("bits: [2, 3, 4, 5, 6]", "bits: [2, 2, 3]", "joint.bits"),
        (
            "epochs: 1, batch: 32, lr: 0.01)",
            "epochs: 0, batch: 32, lr: 0.01)",
            "finetune.epochs",
        ),
    ];
    for (from, to, needle) in cases {
        assert!(base.contains(from), "{from}");
        let text = base.replacen(from, to, 1);
        let err = Job::from_ron_str(&text).expect_err(to);
        assert!(err.contains(needle), "{to}: {err}");
    }
    // Unknown model and a budget below the smallest possible BitOps: caught by the plan.
    let job = Job::from_ron_str(&base.replace("small_cnn", "no_such_model")).unwrap();
    let err = Plan::new(job).unwrap_err().to_string();
    assert!(err.contains("unknown model 'no_such_model'"), "{err}");
    let job = Job::from_ron_str(&base.replace("\"w4a4\"]", "1000]")).unwrap();
    let err = Plan::new(job).unwrap_err().to_string();
    assert!(err.contains("below the smallest possible"), "{err}");
    // The all-lowest budget is skipped (degenerate), not an error.
    let job = Job::from_ron_str(&base.replace("\"w4a4\"]", "\"w2a2\"]")).unwrap();
    let plan = Plan::new(job).unwrap();
    assert!(plan.skipped[2]
        .as_deref()
        .unwrap()
        .contains("only the all-W2A2"));
    assert!(plan.skipped[..2].iter().all(Option::is_none));
}

/// BitOps of a policy over searchable layers, computed here from the model.
fn bitops_by_hand(model: &Model, layers: &[LayerBits]) -> u64 {
    let q = model.quantizable_layers().unwrap();
    assert_eq!(q.len(), layers.len());
    q.iter()
        .zip(layers)
        .filter(|(l, _)| !l.fixed)
        .map(|(l, b)| {
            assert_eq!(l.name, b.name);
            l.macs * u64::from(b.weight) * u64::from(b.act)
        })
        .sum()
}

#[test]
fn random_policies_respect_the_budget() {
    for name in ["small_cnn", "resnet20"] {
        let model = Model::resolve(name).unwrap();
        let mut fake = Fake {
            model: Some(model.clone()),
            ..Fake::default()
        };
        let unused = Partial {
            path: PathBuf::new(),
            fingerprint: String::new(),
        };
        let ind = fake
            .indicators(&ckpt(&model, 0), 0, &unused, &mut |_| {})
            .unwrap();
        let q = model.quantizable_layers().unwrap();
        let searchable_macs: u64 = q.iter().filter(|l| !l.fixed).map(|l| l.macs).sum();
        for (w, a) in [(2u64, 3u64), (3, 3), (4, 4), (3, 5)] {
            let budget = searchable_macs * w * a;
            for seed in 0..4u64 {
                let ps = policies::random_policies(&ind, 2.0, budget, 5, seed).unwrap();
                assert_eq!(ps.len(), 5);
                for p in &ps {
                    let b = bitops_by_hand(&model, &p.layers);
                    assert_eq!(b, p.bitops, "{name}");
                    assert!(b <= budget, "{name} w{w}a{a}: {b} > {budget}");
                    assert!(
                        b as f64 >= RANDOM_FLOOR * budget as f64,
                        "{name} w{w}a{a}: {b} < {RANDOM_FLOOR} of {budget}"
                    );
                    for (l, lb) in q.iter().zip(&p.layers) {
                        if l.fixed {
                            assert_eq!((lb.weight, lb.act), (8, 8));
                        } else {
                            assert!((2..=6).contains(&lb.weight) && (2..=6).contains(&lb.act));
                        }
                    }
                }
                // Seeded: the same seed draws the same policies, another seed others.
                let again = policies::random_policies(&ind, 2.0, budget, 5, seed).unwrap();
                assert_eq!(ps, again);
                if name == "resnet20" {
                    let other =
                        policies::random_policies(&ind, 2.0, budget, 5, seed + 100).unwrap();
                    assert_ne!(ps, other);
                    // Distinct draws within one budget.
                    for i in 0..ps.len() {
                        for j in 0..i {
                            assert_ne!(ps[i].layers, ps[j].layers);
                        }
                    }
                    // Not all uniform: mixed precision.
                    assert!(ps.iter().any(|p| {
                        let s: Vec<_> = p.layers.iter().filter(|l| l.weight != 8).collect();
                        s.iter()
                            .any(|l| (l.weight, l.act) != (s[0].weight, s[0].act))
                    }));
                }
            }
            // The searched policy too, and it is no worse than uniform in the objective.
            let (s, _) = policies::searched_policy(&ind, 2.0, budget).unwrap();
            assert!(bitops_by_hand(&model, &s.layers) <= budget);
            let u = policies::uniform_policy(&ind, 2.0, w as u32, a as u32, budget).unwrap();
            assert_eq!(bitops_by_hand(&model, &u.layers), budget);
            assert!(s.objective <= u.objective + 1e-12);
        }
    }
}

#[test]
fn random_draw_with_arbitrary_macs_stays_within_budget() {
    let mut rng = limpq_trainer::reference::rng::SeededRng::new(7);
    for case in 0..300 {
        let n = 1 + rng.below(12);
        let macs: Vec<u64> = (0..n).map(|_| 1 + rng.below(100_000) as u64).collect();
        let lo: u64 = macs.iter().map(|m| m * 4).sum();
        let hi: u64 = macs.iter().map(|m| m * 36).sum();
        let budget = lo + (rng.unit_f64() * (hi - lo) as f64) as u64;
        let bits = [2, 3, 4, 5, 6];
        let d = policies::draw_random_bits(&macs, &bits, &bits, budget, &mut rng)
            .unwrap_or_else(|| panic!("case {case}: no draw"));
        let total: u64 = macs
            .iter()
            .zip(&d)
            .map(|(m, (w, a))| m * u64::from(*w) * u64::from(*a))
            .sum();
        assert!(total <= budget, "case {case}");
        // Maximal: no single one-step raise fits.
        for (l, &(w, a)) in d.iter().enumerate() {
            if w < 6 {
                assert!(
                    total + macs[l] * u64::from(a) > budget,
                    "case {case} layer {l}"
                );
            }
            if a < 6 {
                assert!(
                    total + macs[l] * u64::from(w) > budget,
                    "case {case} layer {l}"
                );
            }
        }
    }
    // Below the smallest BitOps nothing fits.
    assert!(policies::draw_random_bits(&[10, 10], &[2, 4], &[2, 4], 79, &mut rng).is_none());
}

fn event_names(events: &[Event]) -> (Vec<String>, Vec<String>) {
    let mut ran = Vec::new();
    let mut skipped = Vec::new();
    for e in events {
        match e {
            Event::StageStart { name, .. } => ran.push(name.clone()),
            Event::StageSkipped { name, .. } => skipped.push(name.clone()),
            _ => {}
        }
    }
    (ran, skipped)
}

#[test]
fn a_rerun_resumes_and_skips_completed_stages() {
    let (_out_dir, out) = tmpdir("resume");
    let plan = plan_for(&out);
    // 2 seeds × (pretrain + indicators + 3 budgets × (searched + uniform + 3 random)).
    assert_eq!(plan.stage_count(), 2 * (2 + 3 * 5));

    // First run fails at the 7th finetune: what finished before is kept.
    let mut fake = fake_for(&plan);
    fake.fail_finetune_at = Some(6);
    let err = run(&plan, &mut fake, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("seed 0: finetune w3a3") && err.contains("injected"),
        "{err}"
    );
    assert_eq!(
        (fake.pretrain, fake.indicators, fake.finetunes.len()),
        (1, 1, 6)
    );
    let state = State::load(&out).unwrap();
    assert_eq!(state.stages.len(), 2 + 6);

    // The re-run skips those 8 stages and runs the rest.
    let mut fake = fake_for(&plan);
    let mut events = Vec::new();
    let first = run(&plan, &mut fake, &mut |e| events.push(e.clone())).unwrap();
    let (ran, skipped) = event_names(&events);
    assert_eq!(skipped.len(), 8, "{skipped:?}");
    assert_eq!(ran.len(), plan.stage_count() - 8);
    assert_eq!((fake.pretrain, fake.indicators), (1, 1)); // seed 1 only
    assert!(skipped.contains(&"seed 0: pretrain".to_string()));
    assert!(ran.contains(&"seed 1: pretrain".to_string()));

    // Everything done: a third run does no GPU work and gives the same results.
    let mut fake = fake_for(&plan);
    let again = run(&plan, &mut fake, &mut |_| {}).unwrap();
    assert_eq!(
        (fake.pretrain, fake.indicators, fake.finetunes.len()),
        (0, 0, 0)
    );
    assert_eq!(first, again);

    // A lost finetune output reruns only that finetune.
    std::fs::remove_file(out.join("seed1/finetune/w4a4_random2.ckpt")).unwrap();
    let mut fake = fake_for(&plan);
    run(&plan, &mut fake, &mut |_| {}).unwrap();
    assert_eq!(
        (fake.pretrain, fake.indicators, fake.finetunes.len()),
        (0, 0, 1)
    );

    // A corrupt indicator file reruns the indicators; same indicators → same policies, so
    // the finetunes stay done.
    std::fs::write(out.join("seed0/indicators.ron"), "IndicatorSet(garbage").unwrap();
    let mut fake = fake_for(&plan);
    run(&plan, &mut fake, &mut |_| {}).unwrap();
    assert_eq!(
        (fake.pretrain, fake.indicators, fake.finetunes.len()),
        (0, 1, 0)
    );

    // A changed finetune recipe reruns every finetune but not pretrain or indicators.
    let job = Job::from_ron_str(&job_text(&out).replace(
        "epochs: 1, batch: 32, lr: 0.01)",
        "epochs: 2, batch: 32, lr: 0.01)",
    ))
    .unwrap();
    let plan2 = Plan::new(job).unwrap();
    let mut fake = fake_for(&plan2);
    run(&plan2, &mut fake, &mut |_| {}).unwrap();
    assert_eq!(
        (fake.pretrain, fake.indicators, fake.finetunes.len()),
        (0, 0, 30)
    );

    // A changed seed-1 pretraining recipe... is shared by both seeds: all reruns.
    let job = Job::from_ron_str(&job_text(&out).replace("lr: 0.1)", "lr: 0.05)")).unwrap();
    let plan3 = Plan::new(job).unwrap();
    let mut fake = fake_for(&plan3);
    run(&plan3, &mut fake, &mut |_| {}).unwrap();
    assert_eq!(
        (fake.pretrain, fake.indicators, fake.finetunes.len()),
        (2, 2, 30)
    );
}

#[test]
fn a_stop_ends_the_run_as_stopped_and_a_rerun_resumes() {
    let (_out_dir, out) = tmpdir("stop");
    let plan = plan_for(&out);
    let mut fake = fake_for(&plan);
    fake.stop_during_finetune = Some(4);
    let err = run(&plan, &mut fake, &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, PipelineError::Stopped { stage } if stage.starts_with("seed 0: finetune")),
        "{err:?}"
    );
    assert!(err.to_string().contains("goes on"), "{err}");
    // The four finished finetunes are kept; the interrupted one is not recorded.
    assert_eq!(State::load(&out).unwrap().stages.len(), 2 + 4);

    // A stop asked before a stage starts: no stage runs at all.
    let mut fake = fake_for(&plan);
    fake.stopped = true;
    let err = run(&plan, &mut fake, &mut |_| {}).unwrap_err();
    assert!(matches!(err, PipelineError::Stopped { .. }), "{err:?}");
    assert_eq!(fake.finetunes.len() + fake.pretrain + fake.indicators, 0);

    // A stage that fails while a stop is requested failed: the error says so, not "stopped".
    let mut fake = fake_for(&plan);
    fake.fail_while_stopping_at = Some(0);
    let err = run(&plan, &mut fake, &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, PipelineError::Stage { stage, message }
            if stage.starts_with("seed 0: finetune") && message == "disk full"),
        "{err:?}"
    );
    assert!(!err.is_stop());

    // The rerun skips the six completed stages and finishes.
    let mut fake = fake_for(&plan);
    let mut events = Vec::new();
    run(&plan, &mut fake, &mut |e| events.push(e.clone())).unwrap();
    let (ran, skipped) = event_names(&events);
    assert_eq!(skipped.len(), 6, "{skipped:?}");
    assert_eq!(ran.len(), plan.stage_count() - 6);
}

/// Starts a run of `plan` on a thread, held in its first pretraining (its output folder
/// locked): returns once it is there, with the sender that lets it go on and its handle.
fn held_run(
    plan: &Plan,
) -> (
    mpsc::Sender<()>,
    std::thread::JoinHandle<Result<Fake, PipelineError>>,
) {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let mut fake = fake_for(plan);
    fake.hold_in_pretrain = Some((entered_tx, release_rx));
    let plan = plan.clone();
    let handle = std::thread::spawn(move || run(&plan, &mut fake, &mut |_| {}).map(|_| fake));
    entered
        .recv_timeout(Duration::from_secs(60))
        .expect("the held run did not reach its pretraining");
    (release, handle)
}

/// The error of a run of `plan` that must fail at once; a run that waits fails the test
/// instead of hanging it.
fn refused_at_once(plan: &Plan) -> (String, Fake) {
    let (tx, rx) = mpsc::channel();
    let plan = plan.clone();
    std::thread::spawn(move || {
        let mut fake = fake_for(&plan);
        let r = run(&plan, &mut fake, &mut |_| {});
        let _ = tx.send((r.map(|_| ()), fake));
    });
    let (r, fake) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the second run waited for the first instead of failing");
    (
        r.expect_err("a second run on a locked folder ran")
            .to_string(),
        fake,
    )
}

/// Two runs on one output folder (`limpq pipeline JOB --seeds 0 & limpq pipeline JOB
/// --seeds 1`) each wrote back their own copy of `state.ron`, losing the other's stages: the
/// second is refused at once, naming the folder, and runs again once the first has ended.
#[test]
fn a_second_run_on_the_same_folder_is_refused_while_one_runs() {
    let (_out_dir, out) = tmpdir("locked");
    let mut seed0 = plan_for(&out);
    seed0.job.seeds = vec![0];
    let mut seed1 = plan_for(&out);
    seed1.job.seeds = vec![1];
    let (release, first) = held_run(&seed0);

    let (err, fake) = refused_at_once(&seed1);
    assert!(
        err.contains(&out.display().to_string()) && err.contains("another pipeline run holds"),
        "{err}"
    );
    assert_eq!(fake.pretrain + fake.indicators + fake.finetunes.len(), 0);
    // Rewriting the report (`--report-only`) waits its turn as well (the results it
    // would read need not even parse: the lock comes first).
    std::fs::write(out.join("results.ron"), "not read").unwrap();
    let err = limpq_trainer::pipeline::rewrite_report(&seed1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("another pipeline run holds"), "{err}");

    release.send(()).unwrap();
    let first = first.join().unwrap().unwrap();
    assert_eq!((first.pretrain, first.indicators), (1, 1));
    // Released when the run returned: seed 1 runs now, and both seeds' stages are kept.
    let mut fake = fake_for(&seed1);
    run(&seed1, &mut fake, &mut |_| {}).unwrap();
    assert_eq!((fake.pretrain, fake.indicators), (1, 1));
    let plan = plan_for(&out);
    let mut fake = fake_for(&plan);
    let mut events = Vec::new();
    run(&plan, &mut fake, &mut |e| events.push(e.clone())).unwrap();
    let (ran, skipped) = event_names(&events);
    assert!(ran.is_empty(), "{ran:?}");
    assert_eq!(skipped.len(), plan.stage_count());
    std::fs::remove_dir_all(&out).unwrap();
}

/// Set for the child process of `a_killed_run_leaves_its_folder_unlocked`: the folder it
/// holds a run in until it is killed.
const HOLD_ENV: &str = "LIMPQ_TEST_PIPELINE_HOLD";

/// The lock is the system's: a run whose process is killed leaves no lock behind, and a
/// run in another process is refused while it holds the folder.
#[test]
fn a_killed_run_leaves_its_folder_unlocked() {
    use std::io::BufRead;
    if let Some(dir) = std::env::var_os(HOLD_ENV) {
        // The child: hold a run in the folder and wait to be killed.
        let (_release, _run) = held_run(&plan_for(Path::new(&dir)));
        println!("holding");
        std::thread::sleep(Duration::from_secs(300));
        return;
    }
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let (_out_dir, out) = tmpdir("killed");
    let plan = plan_for(&out);
    let mut child = Kill(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_killed_run_leaves_its_folder_unlocked",
                "--nocapture",
            ])
            .env(HOLD_ENV, &out)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if line.is_ok_and(|l| l == "holding") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the child run did not start");
    let (err, _) = refused_at_once(&plan);
    assert!(err.contains("another pipeline run holds"), "{err}");

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let mut fake = fake_for(&plan);
    run(&plan, &mut fake, &mut |_| {}).unwrap();
    assert_eq!((fake.pretrain, fake.indicators), (2, 2));
    drop(child);
    std::fs::remove_dir_all(&out).unwrap();
}

/// `state.ron` of a newer version (a newer limpq's) is refused, naming the file, and left
/// as it was: it used to be read as this version's and written back as version 1.
#[test]
fn a_state_of_a_newer_version_is_refused_and_kept() {
    let (_out_dir, out) = tmpdir("state-version");
    let plan = plan_for(&out);
    let newer = "State(version: 99, stages: [])";
    std::fs::write(out.join("state.ron"), newer).unwrap();
    let err = State::load(&out).unwrap_err().to_string();
    assert!(
        err.contains("state.ron")
            && err.contains("version 99 is newer")
            && err.contains("use a newer limpq"),
        "{err}"
    );
    let mut fake = fake_for(&plan);
    let err = run(&plan, &mut fake, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("state.ron") && err.contains("version 99"),
        "{err}"
    );
    assert_eq!(fake.pretrain, 0);
    assert_eq!(
        std::fs::read_to_string(out.join("state.ron")).unwrap(),
        newer
    );
    // This version reads back.
    std::fs::write(out.join("state.ron"), "State(version: 1, stages: [])").unwrap();
    assert_eq!(State::load(&out).unwrap().version, State::VERSION);
    std::fs::remove_dir_all(&out).unwrap();
}

/// The plan's errors (checked against the model) name the job file as the job's own
/// checks do; a job given as text has no file to name.
#[test]
fn plan_errors_name_the_job_file() {
    let (_out_dir, out) = tmpdir("plan-errors");
    let file = out.join("bad.ron");
    let base = job_text(&out.join("run"));
    for (from, to, needle) in [
        (
            "\"w4a4\"]",
            "5]",
            "field `budgets`: 5 = 5 BitOps is below the smallest",
        ),
        (
            "small_cnn",
            "no_such_model",
            "unknown model 'no_such_model'",
        ),
        ("lr: 0.1)", "lr: -1.0)", "field `pretrain.lr`"),
    ] {
        std::fs::write(&file, base.replacen(from, to, 1)).unwrap();
        let err = Job::from_file(&file)
            .and_then(Plan::new)
            .unwrap_err()
            .to_string();
        let named = format!("pipeline job: {}: ", file.display());
        assert!(
            err.starts_with(&named) && err.contains(needle),
            "{to}: {err}"
        );
    }
    let job = Job::from_ron_str(&base.replacen("\"w4a4\"]", "5]", 1)).unwrap();
    assert_eq!(job.file(), None);
    let err = Plan::new(job).unwrap_err().to_string();
    assert!(err.starts_with("pipeline job: field `budgets`: "), "{err}");
    // Where the job came from does not make two jobs differ.
    std::fs::write(&file, &base).unwrap();
    let read = Job::from_file(&file).unwrap();
    assert_eq!(read.file(), Some(file.as_path()));
    assert_eq!(read, Job::from_ron_str(&base).unwrap());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn run_writes_report_files_with_the_measured_numbers() {
    let (_out_dir, out) = tmpdir("report-run");
    let plan = plan_for(&out);
    let mut fake = fake_for(&plan);
    let res = run(&plan, &mut fake, &mut |_| {}).unwrap();
    for f in [
        "report.md",
        "results.ron",
        "accuracy_vs_bitops.svg",
        "bits_w2a3.svg",
        "bits_w2a3_seed1.svg",
        "bits_w4a4.svg",
        "state.ron",
        "job.ron",
        "seed0/indicators.ron",
        "seed0/policies/w3a3_searched.ron",
        "seed1/finetune/w3a3_random1.ckpt",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // Policy files are what the solver crate reads.
    let text = std::fs::read_to_string(out.join("seed0/policies/w3a3_searched.ron")).unwrap();
    let p = Policy::from_ron_str(&text).unwrap();
    assert_eq!(p, {
        let ind = IndicatorSet::from_ron_str(
            &std::fs::read_to_string(out.join("seed0/indicators.ron")).unwrap(),
        )
        .unwrap();
        policies::searched_policy(&ind, 2.0, plan.bitops[1])
            .unwrap()
            .0
    });
    assert_eq!(res.budgets.len(), 3);
    assert_eq!(res.fp32.len(), 2);
    for b in &res.budgets {
        assert_eq!(b.seeds.len(), 2);
        for s in &b.seeds {
            assert!(s.uniform.is_some());
            assert_eq!(s.random.len(), 3);
        }
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| w2a3 |"), "{md}");
    assert!(md.contains("2 seeds"), "{md}");
    // The settings name the recipe, including the data's augmentation.
    assert!(md.contains("finetune (every policy): 1 epoch,"), "{md}");
    // The indicators' drift from their init, seed by seed, from the indicator files.
    assert!(
        md.contains("(weights / activations) of seed 0 1.00 / 2.00 %, seed 1 11.00 / 2.00 %"),
        "{md}"
    );
    assert!(
        !md.contains("a longer joint run"),
        "seed 1's drift is not small: {md}"
    );
    assert!(
        md.contains("training augmentation: random crop with zero padding 2, horizontal flip"),
        "{md}"
    );
}

#[test]
fn a_report_is_rendered_again_from_results_alone() {
    let (_out_dir, out) = tmpdir("report-again");
    let plan = plan_for(&out);
    // Before any run there is nothing to render: the error names the file.
    let err = limpq_trainer::pipeline::rewrite_report(&plan)
        .unwrap_err()
        .to_string();
    assert!(err.contains("results.ron"), "{err}");
    let mut fake = fake_for(&plan);
    let res = run(&plan, &mut fake, &mut |_| {}).unwrap();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let svg = std::fs::read_to_string(out.join("bits_w3a3.svg")).unwrap();
    // Stale or missing report files, and nothing else of the run: the run folder's
    // stages are not needed.
    std::fs::write(out.join("report.md"), "stale").unwrap();
    std::fs::remove_file(out.join("bits_w3a3.svg")).unwrap();
    std::fs::remove_dir_all(out.join("seed0")).unwrap();
    let again = limpq_trainer::pipeline::rewrite_report(&plan).unwrap();
    assert_eq!(again, res);
    assert_eq!(std::fs::read_to_string(out.join("report.md")).unwrap(), md);
    assert_eq!(
        std::fs::read_to_string(out.join("bits_w3a3.svg")).unwrap(),
        svg
    );
    // Results of another model are refused, naming both.
    let text = std::fs::read_to_string(out.join("results.ron")).unwrap();
    let other = text.replacen(&format!("model: \"{}\"", res.model), "model: \"other\"", 1);
    assert_ne!(other, text);
    std::fs::write(out.join("results.ron"), other).unwrap();
    let err = limpq_trainer::pipeline::rewrite_report(&plan)
        .unwrap_err()
        .to_string();
    assert!(err.contains("'other'") && err.contains(&res.model), "{err}");
    std::fs::write(out.join("results.ron"), "Results(").unwrap();
    let err = limpq_trainer::pipeline::rewrite_report(&plan)
        .unwrap_err()
        .to_string();
    assert!(err.contains("results.ron"), "{err}");
}

fn pr(bitops: u64, acc: f64) -> PolicyResult {
    PolicyResult {
        bitops,
        accuracy: acc,
        loss: 0.1,
        layers: vec![
            LayerBits {
                name: "conv1".into(),
                weight: 8,
                act: 8,
            },
            LayerBits {
                name: "conv2".into(),
                weight: 3,
                act: 4,
            },
            LayerBits {
                name: "fc".into(),
                weight: 8,
                act: 8,
            },
        ],
    }
}

fn synthetic(seeds: &[u64]) -> Results {
    let budgets = [("w2a3", 600u64), ("w3a3", 900), ("w4a4", 1600)]
        .iter()
        .enumerate()
        .map(|(i, &(label, n))| BudgetResult {
            label: label.into(),
            bitops_budget: n,
            skipped: None,
            seeds: seeds
                .iter()
                .map(|&s| {
                    let d = s as f64 * 0.01;
                    SeedResult {
                        seed: s,
                        uniform: Some(pr(n, 0.80 + i as f64 * 0.02 + d)),
                        searched: pr(n - 10, 0.81 + i as f64 * 0.02 + d),
                        random: vec![
                            pr(n - 20, 0.70 + d),
                            pr(n - 30, 0.75 + d),
                            pr(n - 40, 0.60 + d),
                        ],
                        controls: vec![],
                    }
                })
                .collect(),
        })
        .chain(std::iter::once(BudgetResult {
            label: "w2a2".into(),
            bitops_budget: 400,
            seeds: vec![],
            skipped: Some("degenerate".into()),
        }))
        .collect();
    Results {
        model: "toy".into(),
        data: "fashion-mnist".into(),
        train_images: 1000,
        test_images: 500,
        fp32: seeds.iter().map(|&s| (s, 0.9 + s as f64 * 0.01)).collect(),
        budgets,
        settings: vec!["finetune: 1 epoch".into()],
        notes: vec!["a note".into()],
    }
}

#[test]
fn markdown_table_from_synthetic_results() {
    let md = report::markdown(&synthetic(&[0]));
    // Single seed: plain values, the random median is the middle of 70 / 75 / 60.
    assert!(
        md.contains("| w2a3 | 600 | 590 | 80.00 | 81.00 | 70.00 | 70.00, 75.00, 60.00 | 90.00 |"),
        "{md}"
    );
    assert!(md.contains("| w2a2 | 400 | – |"), "{md}");
    assert!(md.contains("skipped: degenerate"), "{md}");
    assert!(md.contains("| conv2 | W3A4 | W3A4 | W3A4 |"), "{md}");
    assert!(md.contains("- a note"));

    // Two seeds: mean ± sample std. Seeds 0 and 2: uniform 80 and 82 → 81.00 ± 1.41.
    let md = report::markdown(&synthetic(&[0, 2]));
    assert!(
        md.contains("| w2a3 | 600 | 590 | 81.00 ± 1.41 | 82.00 ± 1.41 | 71.00 ± 1.41 |"),
        "{md}"
    );
    assert!(md.contains("91.00 ± 1.41 |"), "{md}");
    // Paired differences: searched is 1 point above uniform and 11 (w2a3) / 13 (w3a3)
    // above the random median in every seed.
    assert!(
        md.contains("| budget | seed 0 | seed 2 | mean − uniform | mean − random median |"),
        "{md}"
    );
    assert!(
        md.contains("| w2a3 | +1.00 / +11.00 | +1.00 / +11.00 | +1.00 ± 0.00 | +11.00 ± 0.00 |"),
        "{md}"
    );
    assert!(
        md.contains("| w3a3 | +1.00 / +13.00 | +1.00 / +13.00 | +1.00 ± 0.00 | +13.00 ± 0.00 |"),
        "{md}"
    );
    assert!(
        !md.contains("| w2a2 | +"),
        "skipped budgets have no paired row: {md}"
    );
    // One seed: no paired section (the table already is the difference).
    assert!(!report::markdown(&synthetic(&[0])).contains("seed by seed"));
}

/// Minimal well-formedness check: tags balance and every `<` opens a known element.
fn check_svg(svg: &str) {
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find('<') {
        let j = rest[i..].find('>').expect("unclosed tag") + i;
        let tag = &rest[i + 1..j];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap().to_string();
            stack.push(name);
        }
        assert!(
            tag.matches('"').count() % 2 == 0,
            "unbalanced quotes in <{tag}>"
        );
        rest = &rest[j + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert!(
        !svg.contains("NaN") && !svg.contains("inf"),
        "non-finite coordinate"
    );
}

/// Centres of the searched series' circles (r=5), in drawing order.
fn circles(svg: &str, color: &str) -> Vec<(f64, f64)> {
    svg.lines()
        .filter(|l| l.starts_with("<circle") && l.contains(&format!("fill=\"{color}\"")))
        .map(|l| {
            let num = |k: &str| -> f64 {
                let s = &l[l.find(k).unwrap() + k.len()..];
                s[..s.find('"').unwrap()].parse().unwrap()
            };
            (num("cx=\""), num("cy=\""))
        })
        .collect()
}

#[test]
fn svg_plots_are_well_formed_and_place_points_in_order() {
    for seeds in [&[0u64][..], &[0, 1, 2]] {
        let r = synthetic(seeds);
        let svg = report::accuracy_svg(&r);
        check_svg(&svg);
        for label in [
            "uniform",
            "searched",
            "random median",
            "FP32",
            "w2a3",
            "w4a4",
        ] {
            assert!(svg.contains(label), "{label}");
        }
        // Searched markers: BitOps rise left to right, accuracy rises upwards (smaller y).
        let pts = circles(&svg, "#d62728");
        assert_eq!(pts.len(), 3 + 1, "3 points and the legend marker");
        let data = &pts[..3];
        assert!(data[0].0 < data[1].0 && data[1].0 < data[2].0, "{data:?}");
        assert!(data[0].1 > data[1].1 && data[1].1 > data[2].1, "{data:?}");
        // Random values as grey dots: 3 per seed per budget (+1 legend).
        assert_eq!(circles(&svg, "#999").len(), 9 * seeds.len() + 1);
        assert_eq!(svg.contains("± std over"), seeds.len() > 1);
    }
    let layers = pr(1, 0.5).layers;
    let svg = report::bits_svg("bits <w2a3> & more", &layers, &[true, false, true]);
    check_svg(&svg);
    assert!(svg.contains("bits &lt;w2a3&gt; &amp; more"));
    assert!(svg.contains("conv1 (fixed)") && svg.contains(">conv2<"));
    // One bar per layer for weights and one for activations.
    assert_eq!(svg.matches("fill=\"#1f77b4\" fill-opacity").count(), 3);
    assert_eq!(svg.matches("fill=\"#ff7f0e\" fill-opacity").count(), 3);
}

#[test]
fn median_and_mean_std() {
    assert_eq!(report::median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(report::median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    assert!(report::median(&[]).is_nan());
    let (m, s) = report::mean_std(&[1.0, 3.0]);
    assert_eq!(m, 2.0);
    assert!((s - 2f64.sqrt()).abs() < 1e-12);
    assert_eq!(report::mean_std(&[5.0]), (5.0, 0.0));
}

#[test]
fn a_given_fp_checkpoint_replaces_pretraining() {
    let (_out_dir, out) = tmpdir("init");
    let plan = plan_for(&out);
    let init = out.join("given.ckpt");
    ckpt(&plan.model, 9).save(&init).unwrap();
    let text = job_text(&out).replace(
        "pretrain: (epochs: 1, batch: 32, lr: 0.1)",
        &format!("pretrain: (init: Some(\"{}\"))", init.display()),
    );
    let plan = Plan::new(Job::from_ron_str(&text).unwrap()).unwrap();
    let mut fake = fake_for(&plan);
    let res = run(&plan, &mut fake, &mut |_| {}).unwrap();
    assert_eq!((fake.pretrain, fake.evaluated, fake.indicators), (0, 2, 2));
    assert_eq!(res.fp32, vec![(0, 0.9), (1, 0.9)]);
    assert!(!out.join("seed0/pretrain.ckpt").exists());
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("FP32 model loaded from"), "{md}");
    // Re-run: nothing to do.
    let mut fake = fake_for(&plan);
    run(&plan, &mut fake, &mut |_| {}).unwrap();
    assert_eq!(
        (fake.evaluated, fake.indicators, fake.finetunes.len()),
        (0, 0, 0)
    );
    // Another model at the same path (trained again): every stage after it reruns (a
    // rerun that went by the path kept the old model's results).
    ckpt(&plan.model, 10).save(&init).unwrap();
    let mut fake = fake_for(&plan);
    run(&plan, &mut fake, &mut |_| {}).unwrap();
    assert_eq!((fake.evaluated, fake.indicators), (2, 2));
    assert!(!fake.finetunes.is_empty());
    // A missing checkpoint is named with the field.
    let text = text.replace("given.ckpt", "missing.ckpt");
    let plan = Plan::new(Job::from_ron_str(&text).unwrap()).unwrap();
    let mut fake = fake_for(&plan);
    let err = run(&plan, &mut fake, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("pretrain.init") && err.contains("missing.ckpt"),
        "{err}"
    );
}

/// `keep_finetuned: false`: no finetuned model is written, a rerun still skips every
/// finished finetune (its accuracy is in state.ron), and switching it back on reruns the
/// finetunes whose model is missing, writing them.
#[test]
fn keep_finetuned_false_writes_no_models_and_still_resumes() {
    let (_out_dir, out) = tmpdir("keep");
    let mut job = Job::from_ron_str(&job_text(&out)).unwrap();
    job.seeds = vec![0];
    job.keep_finetuned = false;
    let plan = Plan::new(job.clone()).unwrap();
    let mut fake = fake_for(&plan);
    let first = run(&plan, &mut fake, &mut |_| {}).unwrap();
    assert_eq!(fake.finetunes.len(), 15);
    let models = |out: &Path| {
        std::fs::read_dir(out.join("seed0/finetune"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(models(&out), 0, "finetuned models were written");
    assert!(out.join("seed0/policies/w2a3_searched.ron").is_file());

    let mut again = fake_for(&plan);
    let mut events = Vec::new();
    let second = run(&plan, &mut again, &mut |e| events.push(e.clone())).unwrap();
    let (ran, skipped) = event_names(&events);
    assert!(ran.is_empty(), "reran: {ran:?}");
    assert_eq!(skipped.len(), plan.stage_count());
    assert_eq!(second.budgets, first.budgets);

    job.keep_finetuned = true;
    let plan = Plan::new(job).unwrap();
    let mut keep = fake_for(&plan);
    run(&plan, &mut keep, &mut |_| {}).unwrap();
    assert_eq!(
        keep.finetunes.len(),
        15,
        "the finetunes without a model reran"
    );
    assert_eq!(keep.pretrain + keep.indicators, 0);
    assert_eq!(models(&out), 15);
}

/// Every job file in the repository (examples/, docs/results/) parses, and the pipeline's
/// ones mean what they meant when the stage settings were three plain fields: the numbers
/// read from the file itself (with the old defaults: pretraining 0 epochs, batch 64, lr
/// 0.1 / 0.01) are the runs' settings, and the stages' fingerprints hash the same text as
/// before (plus, for joint training and finetuning, the recipe's version), so runs started
/// from those files resume instead of starting over wherever the recipe did not change.
#[test]
fn every_job_file_in_the_repository_parses_and_keeps_its_meaning() {
    use limpq_trainer::daemon::job::JobSpec;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    let mut dirs = vec![root.join("examples"), root.join("docs/results")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "ron") {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                if name == "job.ron"
                    || name.ends_with(".job.ron")
                    || name.ends_with(".pipeline.ron")
                {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    let mut pipelines = 0;
    for p in &files {
        JobSpec::from_file(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let text = std::fs::read_to_string(p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy();
        if name.ends_with(".job.ron") {
            continue;
        }
        pipelines += 1;
        let job = Job::from_ron_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let back = Job::from_ron_str(&job.to_ron()).unwrap();
        assert_eq!(back, job, "{}", p.display());
        // The stage settings as the file writes them, read without the job types.
        let value: ron::Value = ron_from_str(&text).unwrap();
        let stage = |key: &str| -> std::collections::BTreeMap<String, ron::Value> {
            let ron::Value::Map(m) = &value else {
                panic!("{}: not a struct", p.display())
            };
            let v = m
                .iter()
                .find(|(k, _)| **k == ron::Value::String(key.into()))
                .map(|(_, v)| v.clone())
                .unwrap();
            let ron::Value::Map(s) = v else {
                panic!("{}: {key} is not a struct", p.display())
            };
            s.iter()
                .map(|(k, v)| match k {
                    ron::Value::String(k) => (k.clone(), v.clone()),
                    k => panic!("{}: key {k:?}", p.display()),
                })
                .collect()
        };
        let num = |m: &std::collections::BTreeMap<String, ron::Value>, k: &str, d: f64| -> f64 {
            match m.get(k) {
                Some(ron::Value::Number(n)) => n.into_f64(),
                None => d,
                Some(v) => panic!("{}: {k} = {v:?}", p.display()),
            }
        };
        let (pre, joint, fine) = (stage("pretrain"), stage("joint"), stage("finetune"));
        let pre_run = job.pretrain.config(7);
        assert_eq!(pre_run.epochs as f64, num(&pre, "epochs", 0.0));
        assert_eq!(pre_run.batch as f64, num(&pre, "batch", 64.0));
        assert_eq!(pre_run.lr, num(&pre, "lr", 0.1) as f32);
        assert_eq!(
            (pre_run.momentum, pre_run.nesterov, pre_run.weight_decay),
            (0.9, true, 5e-4)
        );
        assert_eq!((pre_run.label_smoothing, pre_run.seed), (0.1, 7));
        let j = job.joint.config(7).run;
        assert_eq!(j.epochs as f64, num(&joint, "epochs", f64::NAN));
        assert_eq!(j.batch as f64, num(&joint, "batch", 64.0));
        assert_eq!(j.lr, num(&joint, "lr", 0.01) as f32);
        assert_eq!((j.clip, j.nesterov, j.seed), (Some(1.0), true, 7));
        let f = job.finetune.config(7).run;
        assert_eq!(f.epochs as f64, num(&fine, "epochs", f64::NAN));
        assert_eq!(f.batch as f64, num(&fine, "batch", 64.0));
        assert_eq!(f.lr, num(&fine, "lr", 0.01) as f32);
        assert_eq!((f.clip, f.nesterov, f.seed), (None, true, 7));
        assert_eq!(
            job.pretrain.fingerprint_text(),
            format!(
                "PretrainSpec {{ epochs: {}, batch: {}, lr: {:?}, init: {:?} }}",
                num(&pre, "epochs", 0.0),
                num(&pre, "batch", 64.0),
                num(&pre, "lr", 0.1) as f32,
                job.pretrain.init
            ),
            "{}",
            p.display()
        );
        // Joint training and finetuning also hash the recipe's version: their defaults
        // changed (recipe 2), so run folders made with the old ones redo those stages.
        assert_eq!(
            job.finetune.fingerprint_text(),
            format!(
                "FinetuneSpec {{ epochs: {}, batch: {}, lr: {:?} }} {}",
                num(&fine, "epochs", 0.0),
                num(&fine, "batch", 64.0),
                num(&fine, "lr", 0.01) as f32,
                limpq_trainer::pipeline::job::RECIPE
            )
        );
        assert!(job.joint.fingerprint_text().starts_with(&format!(
            "JointSpec {{ bits: {:?}, epochs: {}, batch: {}, lr: {:?} }} {}",
            job.joint.bits,
            num(&joint, "epochs", 0.0),
            num(&joint, "batch", 64.0),
            num(&joint, "lr", 0.01) as f32,
            limpq_trainer::pipeline::job::RECIPE
        )));
        assert!(limpq_trainer::pipeline::job::RECIPE.starts_with("recipe 2"));
    }
    assert!(pipelines >= 7, "{files:?}");
}

#[test]
fn a_stage_takes_any_run_setting_and_refuses_unknown_or_bad_ones() {
    let (_out_dir, out) = tmpdir("run-settings");
    let text = job_text(&out).replace(
        "finetune: (epochs: 1, batch: 32, lr: 0.01)",
        "finetune: (epochs: 1, batch: 32, lr: 0.01, momentum: 0.8, nesterov: false, \
         weight_decay: 1e-4, label_smoothing: 0.0, clip: 2.0, eval_batch: 50)",
    );
    let job = Job::from_ron_str(&text).unwrap();
    let f = job.finetune.config(3).run;
    assert_eq!(
        (f.momentum, f.nesterov, f.weight_decay, f.label_smoothing),
        (0.8, false, 1e-4, 0.0)
    );
    assert_eq!((f.clip, f.eval_batch, f.seed), (Some(2.0), 50, 3));
    // A setting beyond epochs/batch/lr changes the stage's fingerprint.
    let plain = Job::from_ron_str(&job_text(&out)).unwrap();
    assert_ne!(
        plain.finetune.fingerprint_text(),
        job.finetune.fingerprint_text()
    );
    assert_eq!(Job::from_ron_str(&job.to_ron()).unwrap(), job);
    for (from, to, want) in [
        ("lr: 0.01)", "lr: 0.01, momentun: 0.9)", "momentun"),
        ("lr: 0.01)", "lr: 0.01, lr: 0.02)", "lr"),
        (
            "lr: 0.01)",
            "lr: 0.01, label_smoothing: 1.0)",
            "field `finetune`",
        ),
        ("finetune: (epochs: 1, ", "finetune: (", "epochs"),
        (
            "lr: 0.01)",
            "lr: 0.01, eval_every: 0)",
            "eval_every must be at least 1",
        ),
    ] {
        let err = Job::from_ron_str(&job_text(&out).replace(from, to)).unwrap_err();
        assert!(err.contains(want), "{to}: {err}");
    }
    // `eval_every` reaches the run but not the fingerprint: it changes no result, so a
    // file that adds it keeps the stages already done.
    let sparse = Job::from_ron_str(&job_text(&out).replace(
        "finetune: (epochs: 1, batch: 32, lr: 0.01)",
        "finetune: (epochs: 1, batch: 32, lr: 0.01, eval_every: 3)",
    ))
    .unwrap();
    assert_eq!(sparse.finetune.config(3).run.eval_every, 3);
    assert_eq!(
        sparse.finetune.fingerprint_text(),
        plain.finetune.fingerprint_text()
    );
    assert_eq!(Job::from_ron_str(&sparse.to_ron()).unwrap(), sparse);
}

/// The recipe's choices a job may change: the stem's and classifier's bits in joint
/// training, and the finetune's step-size start and BN recalibration. Each reaches the run's
/// config, survives a write and read, and changes its stage's fingerprint only when set (a
/// job without them resumes the run folders earlier versions wrote).
#[test]
fn a_job_chooses_the_recipes_fixed_bits_steps_and_recalibration() {
    let (_out_dir, out) = tmpdir("recipe-choices");
    let plain = Job::from_ron_str(&job_text(&out)).unwrap();
    let joint = plain.joint.config(1);
    let fine = plain.finetune.config(1);
    assert_eq!(
        joint.fixed_bits, None,
        "recipe: full-precision stem and classifier"
    );
    assert!(
        !fine.steps_from_indicators,
        "recipe: steps from the init rule"
    );
    assert_eq!(
        fine.bn_recalibration, 6000,
        "recipe: the reference's 6000 images"
    );
    let text = job_text(&out)
        .replace(
            "finetune: (epochs: 1, batch: 32, lr: 0.01)",
            "finetune: (epochs: 1, batch: 32, lr: 0.01, steps_from_indicators: true, \
             bn_recalibration: 0)",
        )
        .replace(
            "joint: (bits: [2, 3, 4, 5, 6]",
            "joint: (fixed_bits: Some((8, 6)), bits: [2, 3, 4, 5, 6]",
        );
    assert_ne!(
        text,
        job_text(&out),
        "the job text has the fields to replace"
    );
    let job = Job::from_ron_str(&text).unwrap();
    assert_eq!(job.joint.config(1).fixed_bits, Some((8, 6)));
    let f = job.finetune.config(1);
    assert!(f.steps_from_indicators);
    assert_eq!(f.bn_recalibration, 0);
    assert_eq!(f.run, fine.run, "the run settings are the recipe's still");
    assert_eq!(Job::from_ron_str(&job.to_ron()).unwrap(), job);
    for (a, b) in [
        (plain.joint.fingerprint_text(), job.joint.fingerprint_text()),
        (
            plain.finetune.fingerprint_text(),
            job.finetune.fingerprint_text(),
        ),
    ] {
        assert_ne!(a, b);
        assert!(
            !a.contains("fixed_bits:") && !a.contains("bn_recalibration:"),
            "{a}"
        );
    }
    for (from, to, want) in [
        (
            "bn_recalibration: 0",
            "bn_recalibration: -1",
            "bn_recalibration",
        ),
        (
            "bn_recalibration: 0",
            "bn_recalibration: 0, bn_recalibration: 5",
            "bn_recalibration",
        ),
        (
            "Some((8, 6))",
            "Some((8, 6)), fixed_bits: None",
            "fixed_bits",
        ),
        (
            "steps_from_indicators: true",
            "steps_from_indicator: true",
            "steps_from_indicators",
        ),
    ] {
        let err = Job::from_ron_str(&text.replace(from, to)).unwrap_err();
        assert!(err.contains(want), "{to}: {err}");
    }
}

#[test]
fn control_searches_run_beside_the_others_and_resume() {
    let (_out_dir, out) = tmpdir("controls");
    let text = job_text(&out).replace(
        "random_policies: 3,",
        "random_policies: 3,\n    controls: [macs_only, shuffled, sensitivity],\n    sensitivity: (images: 64, batch: 32),",
    );
    let plan = Plan::new(Job::from_ron_str(&text).unwrap()).unwrap();
    // Per seed: pretrain, indicators, sensitivity; per budget searched, uniform, 3 random and
    // the 3 controls.
    assert_eq!(plan.stage_count(), 2 * (3 + 3 * 8));
    let mut fake = fake_for(&plan);
    let res = run(&plan, &mut fake, &mut |_| {}).unwrap();
    assert_eq!(fake.sensitivity, 2, "once per seed");
    assert_eq!(fake.finetunes.len(), 2 * 3 * 8);
    assert!(
        fake.finetune_sources.iter().all(|s| s == "learned"),
        "every policy finetunes from the learned indicators: {:?}",
        fake.finetune_sources
    );
    let read = |rel: &str| std::fs::read_to_string(out.join(rel)).unwrap();
    let ind = IndicatorSet::from_ron_str(&read("seed1/indicators.ron")).unwrap();
    let sens = IndicatorSet::from_ron_str(&read("seed1/sensitivity.ron")).unwrap();
    assert!(sens.meta.contains(&("source".into(), "sensitivity".into())));
    let policy = |rel: &str| Policy::from_ron_str(&read(rel)).unwrap();
    let n = plan.bitops[0];
    let want = [
        (
            "macs_only",
            policies::searched_policy(&policies::macs_only_indicators(&ind), 2.0, n),
        ),
        (
            "shuffled",
            policies::searched_policy(&policies::shuffled_indicators(&ind, 1), 2.0, n),
        ),
        (
            "sensitivity",
            policies::searched_policy(&sens, policies::SENSITIVITY_ALPHA, n),
        ),
    ];
    for (kind, p) in want {
        assert_eq!(
            policy(&format!("seed1/policies/w2a3_{kind}.ron")),
            p.unwrap().0,
            "{kind}"
        );
    }
    for b in &res.budgets {
        for s in &b.seeds {
            let kinds: Vec<&str> = s.controls.iter().map(|c| c.kind.as_str()).collect();
            assert_eq!(kinds, ["macs_only", "shuffled", "sensitivity"]);
            assert_eq!(s.random.len(), 3);
        }
    }
    let md = read("report.md");
    assert!(md.contains("## How sure"), "{md}");
    assert!(md.contains("| w2a3 | sensitivity |"), "{md}");
    // The fake's weight increments grow with the layer index and its measured ones shrink
    // (rho -1); both activation increments shrink (rho +1).
    assert!(
        md.contains("weights 2-3 -1.00, 3-4 -1.00, 4-5 -1.00, 5-6 -1.00; activations 2-3 +1.00"),
        "{md}"
    );
    assert!(md.contains("limpq compare seed1/indicators.ron seed1/sensitivity.ron"));
    // A rerun measures and finetunes nothing again.
    let mut again = fake_for(&plan);
    run(&plan, &mut again, &mut |_| {}).unwrap();
    assert_eq!((again.sensitivity, again.finetunes.len()), (0, 0));
    // A control listed twice, or a calibration smaller than a batch, is refused.
    let twice = text.replace("[macs_only, shuffled, sensitivity]", "[shuffled, shuffled]");
    assert!(Job::from_ron_str(&twice)
        .unwrap_err()
        .contains("`controls`"));
    let small = text.replace("images: 64", "images: 16");
    assert!(Job::from_ron_str(&small)
        .unwrap_err()
        .contains("`sensitivity`"));
}

/// A budget listed twice is refused by name, and a long list is checked for repeats in
/// time linear in its length: 200,000 budgets within a 20 s deadline (~0.2 s; a search
/// of the budgets before each missed it).
#[test]
fn budgets_listed_twice_are_refused_and_long_lists_checked_quickly() {
    let (_out_dir, out) = tmpdir("budgets-twice");
    let text = job_text(&out);
    let twice = text.replace(
        r#"["w2a3", "w3a3", "w4a4"]"#,
        r#"["w2a3", 1500000, "w2a3"]"#,
    );
    let e = Job::from_ron_str(&twice).unwrap_err();
    assert!(e.contains("`budgets`: w2a3 is listed twice"), "{e}");
    let many: Vec<String> = (1..=200_000u64).map(|b| (b * 1000).to_string()).collect();
    let long = text.replace(
        r#"["w2a3", "w3a3", "w4a4"]"#,
        &format!("[{}]", many.join(", ")),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(Job::from_ron_str(&long).map(|j| j.budgets.len())));
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("checked within 20 s");
    assert_eq!(got, Ok(200_000));
    let _ = std::fs::remove_dir_all(&out);
}

/// With `search` left out the searched policy comes from measured sensitivity (α = 1), the
/// `learned` control searches the joint run's step sizes with the job's α, and the shuffled
/// control permutes what the search uses; every finetune still starts from the joint run.
#[test]
fn the_default_search_uses_measured_sensitivity_and_learned_is_a_control() {
    let (_out_dir, out) = tmpdir("search-sensitivity");
    let text = job_text(&out)
        .replace("    search: learned,\n", "")
        .replace(
            "random_policies: 3,",
            "random_policies: 3,\n    controls: [learned, shuffled],\n    sensitivity: (images: 64, batch: 32),",
        );
    let job = Job::from_ron_str(&text).unwrap();
    assert_eq!(job.search, Search::Sensitivity);
    assert!(
        job.to_ron().contains("search: sensitivity"),
        "{}",
        job.to_ron()
    );
    let plan = Plan::new(job).unwrap();
    // Per seed: pretrain, indicators, sensitivity; per budget searched, uniform, 3 random and
    // the 2 controls.
    assert_eq!(plan.stage_count(), 2 * (3 + 3 * 7));
    let mut fake = fake_for(&plan);
    let res = run(&plan, &mut fake, &mut |_| {}).unwrap();
    assert_eq!((fake.sensitivity, fake.indicators), (2, 2));
    assert!(
        fake.finetune_sources.iter().all(|s| s == "learned"),
        "{:?}",
        fake.finetune_sources
    );
    let read = |rel: &str| std::fs::read_to_string(out.join(rel)).unwrap();
    let ind = IndicatorSet::from_ron_str(&read("seed1/indicators.ron")).unwrap();
    let sens = IndicatorSet::from_ron_str(&read("seed1/sensitivity.ron")).unwrap();
    let policy = |rel: &str| Policy::from_ron_str(&read(rel)).unwrap();
    for (bi, label) in ["w2a3", "w3a3", "w4a4"].iter().enumerate() {
        let n = plan.bitops[bi];
        let by_sens = policies::searched_policy(&sens, policies::SENSITIVITY_ALPHA, n)
            .unwrap()
            .0;
        let by_learned = policies::searched_policy(&ind, 2.0, n).unwrap().0;
        let shuffled = policies::searched_policy(
            &policies::shuffled_indicators(&sens, 1),
            policies::SENSITIVITY_ALPHA,
            n,
        )
        .unwrap()
        .0;
        assert_eq!(
            policy(&format!("seed1/policies/{label}_searched.ron")),
            by_sens
        );
        assert_eq!(
            policy(&format!("seed1/policies/{label}_learned.ron")),
            by_learned
        );
        assert_eq!(
            policy(&format!("seed1/policies/{label}_shuffled.ron")),
            shuffled
        );
    }
    // The fake's measured and learned increments rank the layers the other way round, so
    // the two searches must differ somewhere for this test to tell them apart.
    assert_ne!(
        read("seed1/policies/w2a3_searched.ron"),
        read("seed1/policies/w2a3_learned.ron")
    );
    for b in &res.budgets {
        for s in &b.seeds {
            let kinds: Vec<&str> = s.controls.iter().map(|c| c.kind.as_str()).collect();
            assert_eq!(kinds, ["learned", "shuffled"]);
        }
    }
    let md = read("report.md");
    assert!(
        md.contains(
            "search: exact solver, measured sensitivity (64 calibration images) with alpha 1,"
        ),
        "{md}"
    );
    assert!(md.contains("| w2a3 | learned |"), "{md}");
    // The control that would repeat the search is refused, naming the field.
    for (search, control) in [("", "sensitivity"), ("    search: learned,\n", "learned")] {
        let t = text
            .replace(
                "controls: [learned, shuffled]",
                &format!("controls: [{control}]"),
            )
            .replace("    alpha: 2.0,", &format!("{search}    alpha: 2.0,"));
        let err = Job::from_ron_str(&t).unwrap_err();
        assert!(err.contains("`controls`") && err.contains(control), "{err}");
    }
}

/// When nothing uses the learned step sizes (the default search, no `learned` control,
/// finetunes from the LSQ init rule) no seed runs joint training; asking for the steps in
/// the finetunes brings it back.
#[test]
fn the_joint_run_runs_only_when_something_uses_it() {
    let (_out_dir, out) = tmpdir("no-joint");
    // 80 images in batches of 32: the measurement takes whole batches, 64 images.
    let text = job_text(&out).replace("    search: learned,\n", "").replace(
        "random_policies: 3,",
        "random_policies: 3,\n    controls: [macs_only, shuffled],\n    sensitivity: (images: 80, batch: 32),",
    );
    let job = Job::from_ron_str(&text).unwrap();
    assert!(!job.runs_joint());
    let plan = Plan::new(job).unwrap();
    // Per seed: pretrain, sensitivity; per budget searched, uniform, 3 random, 2 controls.
    assert_eq!(plan.stage_count(), 2 * (2 + 3 * 7));
    let mut fake = fake_for(&plan);
    let mut events = Vec::new();
    let res = run(&plan, &mut fake, &mut |e| events.push(e.clone())).unwrap();
    assert_eq!((fake.indicators, fake.sensitivity), (0, 2));
    assert!(!out.join("seed0/indicators.ron").exists());
    let (ran, _) = event_names(&events);
    assert!(!ran.iter().any(|n| n.contains("indicators")), "{ran:?}");
    let read = |rel: &str| std::fs::read_to_string(out.join(rel)).unwrap();
    let sens = IndicatorSet::from_ron_str(&read("seed0/sensitivity.ron")).unwrap();
    let n = plan.bitops[1];
    let policy = |rel: &str| Policy::from_ron_str(&read(rel)).unwrap();
    assert_eq!(
        policy("seed0/policies/w3a3_searched.ron"),
        policies::searched_policy(&sens, policies::SENSITIVITY_ALPHA, n)
            .unwrap()
            .0
    );
    // The control is the same search with other indicators: the searched policy's alpha
    // (1 for measured sensitivity), not the job's alpha of the learned search (2).
    let macs_only = |alpha| {
        policies::searched_policy(&policies::macs_only_indicators(&sens), alpha, n)
            .unwrap()
            .0
            .layers
    };
    assert_eq!(
        policy("seed0/policies/w3a3_macs_only.ron").layers,
        macs_only(policies::SENSITIVITY_ALPHA)
    );
    assert_ne!(macs_only(policies::SENSITIVITY_ALPHA), macs_only(2.0));
    // The uniform policy's objective is given in the search's terms.
    assert_eq!(
        policy("seed0/policies/w3a3_uniform.ron"),
        policies::uniform_policy(&sens, policies::SENSITIVITY_ALPHA, 3, 3, n).unwrap()
    );
    assert_eq!(res.budgets[1].seeds[0].controls.len(), 2);
    let md = read("report.md");
    assert!(md.contains("no joint indicator training"), "{md}");
    assert!(!md.contains("joint training moved"), "{md}");
    // A rerun skips every stage.
    let mut again = fake_for(&plan);
    run(&plan, &mut again, &mut |_| {}).unwrap();
    assert_eq!(
        (again.sensitivity, again.indicators, again.finetunes.len()),
        (0, 0, 0)
    );
    // Finetunes that start from the learned steps need the joint run.
    let steps = text.replace(
        "finetune: (epochs: 1, batch: 32, lr: 0.01),",
        "finetune: (epochs: 1, batch: 32, lr: 0.01, steps_from_indicators: true),",
    );
    assert_ne!(steps, text);
    let job = Job::from_ron_str(&steps).unwrap();
    assert!(job.runs_joint());
    assert_eq!(Plan::new(job).unwrap().stage_count(), 2 * (3 + 3 * 7));
}

#[test]
fn confidence_intervals_from_synthetic_results() {
    let mut r = synthetic(&[0, 1, 2]);
    // w2a3: searched minus uniform 1, 2 and 3 points over the three seeds: mean 2, sample
    // std 1, SE 1/√3 = 0.577, t(2) = 4.303, so the 95 % interval is 2 ± 2.48. Test losses
    // likewise: uniform 0.1, searched 0.1 − 0.01·(k + 1).
    for (k, s) in r.budgets[0].seeds.iter_mut().enumerate() {
        let u = s.uniform.as_ref().unwrap().accuracy;
        s.searched.accuracy = u + 0.01 * (k as f64 + 1.0);
        s.searched.loss = 0.1 - 0.01 * (k as f64 + 1.0);
        s.controls.push(ControlResult {
            kind: "macs_only".into(),
            result: pr(500, u - 0.005),
        });
    }
    let md = report::markdown(&r);
    assert!(md.contains("## How sure"), "{md}");
    assert!(
        md.contains(
            "| w2a3 | searched | 83.00 ± 2.00 | +2.00 ± 0.58 [-0.48, +4.48] (n=3) | \
             +12.00 ± 0.58 [+9.52, +14.48] (n=3) | – |"
        ),
        "{md}"
    );
    // A constant difference has no spread: the interval is the point.
    assert!(
        md.contains(
            "| w2a3 | macs_only | 80.50 ± 1.00 | -0.50 ± 0.00 [-0.50, -0.50] (n=3) | \
             +9.50 ± 0.00 [+9.50, +9.50] (n=3) | -2.50 ± 0.58 [-4.98, -0.02] (n=3) |"
        ),
        "{md}"
    );
    // The test-loss table: every kind with its paired difference to uniform.
    assert!(md.contains("## Test loss"), "{md}");
    assert!(
        md.contains("| w2a3 | uniform | 0.1000 ± 0.0000 | – |"),
        "{md}"
    );
    assert!(
        md.contains(
            "| w2a3 | searched | 0.0800 ± 0.0100 | -0.0200 ± 0.0058 [-0.0448, +0.0048] (n=3) | – |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| w2a3 | random median | 0.1000 ± 0.0000 | +0.0000 ± 0.0000"),
        "{md}"
    );
    assert!(
        md.contains(
            "| w2a3 | macs_only | 0.1000 ± 0.0000 | +0.0000 ± 0.0000 [+0.0000, +0.0000] (n=3) | \
             +0.0200 ± 0.0058 [-0.0048, +0.0448] (n=3) |"
        ),
        "{md}"
    );
    assert!((report::t95(1) - 12.706).abs() < 1e-9);
    assert!((report::t95(9) - 2.262).abs() < 1e-9);
    assert!((report::t95(120) - 1.980).abs() < 0.002);
    assert!(report::mean_se_ci(&[0.1]).is_none());
}

/// A folder with no `state.ron` is no earlier run's: its `report.md`, `results.ron` or a
/// `job.ron` of another job would be replaced, and are refused by name. A `job.ron` that
/// holds this job (the user's own job file, comments and all) is run and left as it is,
/// unless `--seeds` / `--output` changed the job it holds.
#[test]
fn files_of_the_folder_that_no_run_wrote_are_kept() {
    let (_out_dir, out) = tmpdir("foreign-files");
    let run_plan = |job: Job| {
        let plan = Plan::new(job).unwrap();
        let mut fake = fake_for(&plan);
        run(&plan, &mut fake, &mut |_| {}).map(|_| ())
    };
    std::fs::write(out.join("report.md"), "my notes\n").unwrap();
    let job = Job::from_ron_str(&job_text(&out)).unwrap();
    let err = run_plan(job.clone()).unwrap_err().to_string();
    assert!(
        err.contains("report.md") && err.contains("no state.ron"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("report.md")).unwrap(),
        "my notes\n"
    );
    std::fs::remove_file(out.join("report.md")).unwrap();

    // Another job's file named job.ron: refused, kept.
    let other = job_text(&out).replace("seeds: [0, 1]", "seeds: [7]");
    std::fs::write(out.join("job.ron"), &other).unwrap();
    let err = run_plan(job.clone()).unwrap_err().to_string();
    assert!(err.contains("job.ron"), "{err}");
    assert_eq!(std::fs::read_to_string(out.join("job.ron")).unwrap(), other);

    // The job's own file in the folder, with a comment: run from it, left byte for byte.
    let mine = format!("// my job\n{}\n", job_text(&out));
    let path = out.join("job.ron");
    std::fs::write(&path, &mine).unwrap();
    let from_file = Job::from_file(&path).unwrap();
    run_plan(from_file.clone()).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), mine);
    // The same file with other seeds (`--seeds`): refused before it is rewritten.
    let mut seeds = from_file;
    seeds.seeds = vec![0];
    let err = run_plan(seeds).unwrap_err().to_string();
    assert!(err.contains("--seeds or --output change that job"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), mine);

    // Once a run has written state.ron, the folder's files are the runs' own: a run of a
    // changed job (from elsewhere) records it in job.ron.
    let changed =
        Job::from_ron_str(&job_text(&out).replace("random_policies: 3", "random_policies: 4"))
            .unwrap();
    run_plan(changed.clone()).unwrap();
    let recorded = Job::from_file(&path).unwrap();
    assert_eq!(recorded.random_policies, 4);
}

/// A stage's progress file is removed only once `state.ron` records the stage: when the
/// record cannot be written, the progress stays for the rerun to resume from (it was
/// removed first, and a crash in between reran the whole stage).
#[test]
fn a_stage_keeps_its_progress_until_the_state_records_it() {
    let (_out_dir, out) = tmpdir("partial-until-recorded");
    let plan = plan_for(&out);
    let mut fake = fake_for(&plan);
    fake.write_partials = true;
    let state = out.join("state.ron");
    let err = run(&plan, &mut fake, &mut |e| {
        if let Event::StageStart { name, .. } = e {
            if name == "seed 0: pretrain" {
                // The record of the stage cannot be written: a folder where the file goes.
                std::fs::remove_file(&state).unwrap();
                std::fs::create_dir(&state).unwrap();
            }
        }
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("state.ron"), "{err}");
    assert_eq!(fake.pretrain, 1);
    assert!(out.join("seed0/pretrain.partial.ckpt").exists());
    // Once the record can be written, the rerun records the stage and removes the file.
    std::fs::remove_dir(&state).unwrap();
    let mut fake = fake_for(&plan);
    fake.write_partials = true;
    run(&plan, &mut fake, &mut |_| {}).unwrap();
    assert!(!out.join("seed0/pretrain.partial.ckpt").exists());
    assert!(!out.join("seed1/pretrain.partial.ckpt").exists());
}

/// `--report-only` on results kept without their run (no `state.ron`, as under
/// docs/results) rewrites the report and leaves no lock file there.
#[test]
fn a_report_of_kept_results_leaves_no_lock_file() {
    let (_ran_dir, ran) = tmpdir("report-source");
    let plan = plan_for(&ran);
    run(&plan, &mut fake_for(&plan), &mut |_| {}).unwrap();
    let (_kept_dir, kept) = tmpdir("report-kept");
    std::fs::copy(ran.join("results.ron"), kept.join("results.ron")).unwrap();
    let results = limpq_trainer::pipeline::rewrite_report(&plan_for(&kept)).unwrap();
    assert!(!results.budgets.is_empty());
    assert!(kept.join("report.md").is_file());
    assert!(!kept.join("pipeline.lock").exists());
    // A missing results.ron is named, and leaves nothing either.
    let (_empty_dir, empty) = tmpdir("report-empty");
    let e = limpq_trainer::pipeline::rewrite_report(&plan_for(&empty))
        .unwrap_err()
        .to_string();
    assert!(e.contains("results.ron") && e.contains("not found"), "{e}");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}
