//! Stop and exact resume of joint indicator training and finetuning on the software
//! adapter: small_cnn, 128 Fashion-MNIST images, batch 32 (4 steps per epoch), 2 epochs.
//! A run stopped through its `StopFlag` after step k and resumed (`resume`) from the
//! checkpoint it saved ends with the same state (weights, switchable BN sets, step sizes,
//! momentum), the same indicators and the same per-epoch figures as the run never stopped:
//! bitwise, because every kernel is deterministic on one adapter and the stop carries the
//! exact state and position. What a resume must restore — the schedule's step, momentum, the
//! remaining batches, the random policies still to draw, no second step-size init —
//! each changes the bits when missing.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{first_difference, gpu_or_skip, on_steps, TempDir};
use limpq_solver::{IndicatorSet, LayerBits, Policy};
use limpq_trainer::checkpoint::Checkpoint;
use limpq_trainer::data::{Dataset, Split, Subset};
use limpq_trainer::gpu::Gpu;
use limpq_trainer::method::{
    finetune, joint_train_full, FinetuneConfig, Finetuned, JointConfig, JointTrained, MethodError,
    StopFlag, Stopped,
};
use limpq_trainer::model::{Model, FIXED_BITS};
use limpq_trainer::train::{train, EpochSummary, Position, RunConfig, TrainConfig};

const FMNIST: &str = "/usr/share/datasets/fashion-mnist";
/// 128 images / batch 32 × 2 epochs.
const STEPS: usize = 8;

struct Setup {
    gpu: &'static Gpu,
    model: Model,
    train: Arc<Dataset>,
    test: Arc<Dataset>,
    /// The seeded full-precision init (no training: the bits are what is compared).
    init: Checkpoint,
}

fn setup(test: &str) -> Option<Setup> {
    let gpu = gpu_or_skip(test)?;
    if !Path::new(FMNIST).is_dir() {
        eprintln!("SKIP {test}: no Fashion-MNIST at {FMNIST}");
        return None;
    }
    let dir = Some(Path::new(FMNIST));
    let train_ds = Dataset::load("fashion-mnist", dir, Split::Train)
        .unwrap()
        .subset(Subset::Random { n: 128, seed: 3 })
        .unwrap();
    let test_ds = Dataset::load("fashion-mnist", dir, Split::Test)
        .unwrap()
        .subset(Subset::Random { n: 64, seed: 4 })
        .unwrap();
    let model = Model::resolve("small_cnn").unwrap();
    let (train_ds, test_ds) = (Arc::new(train_ds), Arc::new(test_ds));
    let init = train(
        gpu,
        &model,
        train_ds.clone(),
        test_ds.clone(),
        &TrainConfig {
            epochs: 0,
            batch: 32,
            seed: 2,
            ..TrainConfig::default()
        },
        None,
        &mut |_| {},
    )
    .unwrap()
    .checkpoint;
    Some(Setup {
        gpu,
        model,
        train: train_ds,
        test: test_ds,
        init,
    })
}

fn joint_config(
    checkpoint: Option<PathBuf>,
    stop: Option<Arc<AtomicBool>>,
    resume: Option<&Checkpoint>,
) -> JointConfig {
    JointConfig {
        bits: vec![2, 4],
        run: RunConfig {
            epochs: 2,
            batch: 32,
            lr: 0.05,
            seed: 11,
            eval_batch: 64,
            meta: vec![("data".into(), "fashion-mnist subset 128".into())],
            checkpoint,
            stop: StopFlag(stop),
            resume: resume.map(|c| Arc::new(c.clone())),
            ..JointConfig::default().run
        },
        ..JointConfig::default()
    }
}

fn finetune_config(
    checkpoint: Option<PathBuf>,
    stop: Option<Arc<AtomicBool>>,
    resume: Option<&Checkpoint>,
) -> FinetuneConfig {
    FinetuneConfig {
        run: RunConfig {
            epochs: 2,
            batch: 32,
            lr: 0.05,
            seed: 12,
            eval_batch: 64,
            checkpoint,
            stop: StopFlag(stop),
            resume: resume.map(|c| Arc::new(c.clone())),
            ..FinetuneConfig::default().run
        },
        ..FinetuneConfig::default()
    }
}

/// Searchable layers alternately at W2A4 and W4A2, the stem and the classifier fixed.
fn policy(model: &Model) -> Policy {
    let layers = model
        .quantizable_layers()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (weight, act) = match (l.fixed, i % 2) {
                (true, _) => FIXED_BITS,
                (false, 0) => (2, 4),
                (false, _) => (4, 2),
            };
            LayerBits {
                name: l.name.clone(),
                weight,
                act,
            }
        })
        .collect();
    Policy {
        model: model.name.clone(),
        layers,
        objective: 0.0,
        bitops: 0,
        weight_bits_total: 0,
        optimal: false,
        bitops_budget: None,
        size_budget_bits: None,
    }
}

/// Runs with `on_step(global step)` after every step's event.
fn run_joint(
    s: &Setup,
    cfg: &JointConfig,
    on_step: &mut dyn FnMut(usize),
) -> Result<JointTrained, MethodError> {
    joint_train_full(
        s.gpu,
        &s.model,
        &s.init,
        s.train.clone(),
        s.test.clone(),
        cfg,
        &mut on_steps(on_step),
    )
}

fn run_finetune(
    s: &Setup,
    cfg: &FinetuneConfig,
    on_step: &mut dyn FnMut(usize),
) -> Result<Finetuned, MethodError> {
    finetune(
        s.gpu,
        &s.model,
        &s.init,
        &policy(&s.model),
        None,
        s.train.clone(),
        s.test.clone(),
        cfg,
        &mut on_steps(on_step),
    )
}

fn stop_of<T>(r: Result<T, MethodError>, what: &str) -> Box<Stopped> {
    match r {
        Err(MethodError::Stopped { state, .. }) => state,
        Err(e) => panic!("{what}: expected a stop, got error {e}"),
        Ok(_) => panic!("{what}: the run ignored the stop flag"),
    }
}

/// An epoch's number, training loss and accuracy, test loss and accuracy.
type Figures = (usize, f64, f64, Option<f64>, Option<f64>);

/// Per-epoch training and test figures (not the timings).
fn figures(h: &[EpochSummary]) -> Vec<Figures> {
    h.iter()
        .map(|h| (h.epoch, h.train_loss, h.train_acc, h.test_loss, h.test_acc))
        .collect()
}

/// Indicator files without their date.
fn undated(ind: &IndicatorSet) -> IndicatorSet {
    let mut i = ind.clone();
    i.meta.retain(|(k, _)| k != "date");
    i
}

/// Stops a run after global step `k` and checks the stop: position, the saved file, the
/// message. Returns the saved checkpoint.
fn check_stop(st: &Stopped, path: &Path, k: usize, what: &str) -> Checkpoint {
    assert_eq!(
        st.position.global_step, k,
        "{what}: stopped at the next check"
    );
    assert_eq!(
        st.position.epochs_done * 4 + st.position.epoch_step,
        k,
        "{what}"
    );
    assert_eq!(st.saved.as_deref(), Some(path));
    let saved = Checkpoint::load(path).unwrap();
    assert_eq!(
        &saved, &st.checkpoint,
        "{what}: the file holds the stop state"
    );
    assert_eq!(Position::of(&saved).unwrap().as_ref(), Some(&st.position));
    saved
}

fn joint_stop_and_resume(s: &Setup, a: &JointTrained, k: usize, tag: &str) {
    let what = format!("joint k={k}");
    let dir = TempDir::new(&format!("joint-{tag}"));
    let path = dir.0.join("joint.ckpt");
    let flag = Arc::new(AtomicBool::new(false));
    let cfg = joint_config(Some(path.clone()), Some(flag.clone()), None);
    let r = run_joint(s, &cfg, &mut |g| {
        if g == k {
            flag.store(true, Ordering::SeqCst);
        }
    });
    let err = match r {
        Err(e) => e,
        Ok(_) => panic!("{what}: the run ignored the stop flag"),
    };
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("saved in {}", path.display())),
        "{what}: {msg}"
    );
    let st = stop_of::<()>(Err(err), &what);
    let saved = check_stop(&st, &path, k, &what);
    let mut steps_run = 0;
    let b = run_joint(
        s,
        &joint_config(Some(path), None, Some(&saved)),
        &mut |_| steps_run += 1,
    )
    .unwrap_or_else(|e| panic!("{what}: resume failed: {e}"));
    assert_eq!(steps_run, STEPS - k, "{what}: only the remaining steps run");
    compare_joint(a, &b, &what);
}

fn compare_joint(a: &JointTrained, b: &JointTrained, what: &str) {
    if let Some(d) = first_difference(&a.checkpoint.tensors, &b.checkpoint.tensors) {
        panic!("{what}: resumed run ends with different state: {d}");
    }
    assert_eq!(
        undated(&b.indicators),
        undated(&a.indicators),
        "{what}: indicators"
    );
    assert_eq!(b.non_monotone, a.non_monotone, "{what}");
    assert_eq!(figures(&b.history), figures(&a.history), "{what}: figures");
    assert_eq!((b.checkpoint.epoch, b.checkpoint.step), (2, STEPS as u64));
}

#[test]
fn joint_training_stopped_anywhere_resumes_bitwise() {
    let Some(s) = setup("joint resume") else {
        return;
    };
    let t0 = std::time::Instant::now();
    // The uninterrupted run; its checkpoint file as it stands after epoch 1 is kept (what
    // a crash during epoch 2 leaves).
    let dir = TempDir::new("joint-full");
    let path = dir.0.join("joint.ckpt");
    let epoch1 = dir.0.join("epoch1.ckpt");
    let a = run_joint(
        &s,
        &joint_config(Some(path.clone()), None, None),
        &mut |g| {
            if g == 5 {
                std::fs::copy(&path, &epoch1).unwrap();
            }
        },
    )
    .unwrap();
    eprintln!(
        "uninterrupted joint run: {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(Checkpoint::load(&path).unwrap(), a.checkpoint);
    let end = Position::of(&a.checkpoint).unwrap().unwrap();
    assert_eq!(
        (end.epochs_done, end.epoch_step, end.global_step),
        (2, 0, 8)
    );
    assert_eq!(figures(&end.history), figures(&a.history));

    // Mid-epoch 2 (two batches of the epoch are skipped on resume).
    joint_stop_and_resume(&s, &a, 6, "mid");
    // After the last step of epoch 1, before its evaluation (the resume evaluates it).
    joint_stop_and_resume(&s, &a, 4, "edge");
    // After the first step (the step-size init must not run again).
    joint_stop_and_resume(&s, &a, 1, "first");

    // A crash after epoch 1: the epoch-end checkpoint continues the run as well.
    let ck = Checkpoint::load(&epoch1).unwrap();
    let pos = Position::of(&ck).unwrap().unwrap();
    assert_eq!(
        (pos.epochs_done, pos.epoch_step, pos.global_step),
        (1, 0, 4)
    );
    let mut steps_run = 0;
    let b = run_joint(&s, &joint_config(None, None, Some(&ck)), &mut |_| {
        steps_run += 1
    })
    .unwrap();
    assert_eq!(steps_run, 4);
    compare_joint(&a, &b, "joint from the epoch-1 checkpoint");
    eprintln!("joint resume test: {:.1}s", t0.elapsed().as_secs_f64());
}

#[test]
fn finetuning_stopped_mid_run_resumes_bitwise() {
    let Some(s) = setup("finetune resume") else {
        return;
    };
    let t0 = std::time::Instant::now();
    let a = run_finetune(&s, &finetune_config(None, None, None), &mut |_| {}).unwrap();
    assert_eq!(a.checkpoint.step, STEPS as u64);
    let k = 5;
    let dir = TempDir::new("finetune");
    let path = dir.0.join("ft.ckpt");
    let flag = Arc::new(AtomicBool::new(false));
    let cfg = finetune_config(Some(path.clone()), Some(flag.clone()), None);
    let st = stop_of(
        run_finetune(&s, &cfg, &mut |g| {
            if g == k {
                flag.store(true, Ordering::SeqCst);
            }
        }),
        "finetune",
    );
    let saved = check_stop(&st, &path, k, "finetune");
    let mut steps_run = 0;
    let b = run_finetune(
        &s,
        &finetune_config(Some(path.clone()), None, Some(&saved)),
        &mut |_| steps_run += 1,
    )
    .unwrap_or_else(|e| panic!("finetune resume failed: {e}"));
    assert_eq!(steps_run, STEPS - k);
    if let Some(d) = first_difference(&a.checkpoint.tensors, &b.checkpoint.tensors) {
        panic!("finetune: resumed run ends with different state: {d}");
    }
    assert_eq!(figures(&b.history), figures(&a.history));
    assert_eq!(
        (b.test_accuracy, b.test_loss),
        (a.test_accuracy, a.test_loss)
    );
    assert_eq!(Checkpoint::load(&path).unwrap(), b.checkpoint);
    eprintln!("finetune resume test: {:.1}s", t0.elapsed().as_secs_f64());
}

#[test]
fn resume_refuses_another_runs_state_naming_the_difference() {
    let Some(s) = setup("method resume mismatch") else {
        return;
    };
    // Stops before the first step: the state of the run at step 0, nothing saved.
    let now = || Some(Arc::new(AtomicBool::new(true)));
    let joint = stop_of(
        run_joint(&s, &joint_config(None, now(), None), &mut |_| {}),
        "joint",
    );
    assert_eq!(joint.position.global_step, 0);
    assert!(joint.saved.is_none());
    let ft = stop_of(
        run_finetune(&s, &finetune_config(None, now(), None), &mut |_| {}),
        "finetune",
    );

    let refused = |r: Result<(), MethodError>, want: &[&str]| match r {
        Err(MethodError::Config(m)) => {
            for w in want {
                assert!(m.contains(w), "want {w:?} in: {m}");
            }
        }
        Err(e) => panic!("want {want:?}, got error {e}"),
        Ok(()) => panic!("want {want:?}, the resume was accepted"),
    };
    let joint_with = |cfg: JointConfig| run_joint(&s, &cfg, &mut |_| {}).map(|_| ());
    let finetune_with = |cfg: FinetuneConfig| run_finetune(&s, &cfg, &mut |_| {}).map(|_| ());

    let mut other = joint_config(None, None, Some(&joint.checkpoint));
    other.run.lr = 0.1;
    other.bits = vec![2, 3, 4];
    other.run.seed = 13;
    refused(
        joint_with(other),
        &[
            "lr 0.05 (this run 0.1)",
            "bits 2,4 (this run 2,3,4)",
            "seed 11 (this run 13)",
        ],
    );
    let mut other = joint_config(None, None, Some(&joint.checkpoint));
    other.run.batch = 16;
    refused(
        joint_with(other),
        &["batch 32 (this run 16)", "4 steps per epoch (this run 8)"],
    );
    let mut other = joint_config(None, None, Some(&joint.checkpoint));
    other.run.epochs = 3;
    other.run.clip = Some(0.5);
    refused(
        joint_with(other),
        &["epochs 2 (this run 3)", "clip 1 (this run 0.5)"],
    );
    // A joint state is not a finetune run's, nor the other way round.
    refused(
        finetune_with(finetune_config(None, None, Some(&joint.checkpoint))),
        &["stage joint (this run finetune)", "no policy recorded"],
    );
    refused(
        joint_with(joint_config(None, None, Some(&ft.checkpoint))),
        &["stage finetune (this run joint)", "no bits recorded"],
    );
    // Another policy.
    let mut p = policy(&s.model);
    let i = p.layers.iter().position(|l| l.weight == 2).unwrap();
    p.layers[i].weight = 3;
    let r = finetune(
        s.gpu,
        &s.model,
        &s.init,
        &p,
        None,
        s.train.clone(),
        s.test.clone(),
        &finetune_config(None, None, Some(&ft.checkpoint)),
        &mut |_| {},
    )
    .map(|_| ());
    refused(r, &["another policy"]);
    // Another model.
    let mut foreign = joint.checkpoint.clone();
    foreign.model.nodes.pop();
    refused(
        joint_with(joint_config(None, None, Some(&foreign))),
        &["the resume checkpoint holds model"],
    );
    // No position: a checkpoint that records no position cannot be resumed.
    for (ck, which) in [(&joint.checkpoint, "joint"), (&ft.checkpoint, "finetune")] {
        let mut bare = ck.clone();
        bare.meta.retain(|(k, _)| !k.starts_with("position."));
        let r = if which == "joint" {
            joint_with(joint_config(None, None, Some(&bare)))
        } else {
            finetune_with(finetune_config(None, None, Some(&bare)))
        };
        refused(r, &["carries no position"]);
    }
    // No momentum: the state cannot continue exactly.
    let mut light = joint.checkpoint.clone();
    light
        .tensors
        .retain(|t| t.kind != limpq_trainer::checkpoint::TensorKind::Momentum);
    refused(
        joint_with(joint_config(None, None, Some(&light))),
        &["no momentum buffer"],
    );
}

/// A finetune of no epochs still runs the LSQ step init on its first batch: it ends with
/// the step sizes that a one-epoch run at learning rate 0 starts from and keeps, not the
/// network's values as built.
#[test]
fn finetune_of_no_epochs_initialises_its_step_sizes() {
    let Some(s) = setup("finetune of no epochs") else {
        return;
    };
    let steps = |f: &Finetuned| -> Vec<(String, Vec<f32>)> {
        f.checkpoint
            .tensors
            .iter()
            .filter(|t| t.name.ends_with("_step"))
            .map(|t| (t.name.clone(), t.data.clone()))
            .collect()
    };
    let mut cfg = finetune_config(None, None, None);
    cfg.run.epochs = 0;
    let none = run_finetune(&s, &cfg, &mut |_| {}).unwrap();
    assert!(none.history.is_empty());
    cfg.run.epochs = 1;
    cfg.run.lr = 0.0;
    let still = run_finetune(&s, &cfg, &mut |_| {}).unwrap();
    let (a, b) = (steps(&none), steps(&still));
    assert_eq!(a.len(), 2 * policy(&s.model).layers.len(), "{a:?}");
    assert_eq!(a, b);
}
