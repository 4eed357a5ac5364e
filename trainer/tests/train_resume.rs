//! Stop and exact resume of `train_from` on the software adapter: small_cnn, 128
//! Fashion-MNIST images, batch 32 (4 steps per epoch), 2 epochs. A run stopped through
//! `TrainConfig::stop` after step k and resumed from the checkpoint it saved ends with the
//! same parameters, BN statistics and momentum as the run never stopped: bitwise, because
//! every kernel is deterministic on one adapter, the state crosses the stop as exact f32
//! copies (read back from the GPU, written to the file, written back), and the schedule
//! position, momentum and the remaining batches (order and augmentation) are restored. A
//! wrong global step (schedule), zeroed momentum or a shifted batch order changes the bits;
//! the weights-only restart below shows that such a difference is detected.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{first_difference, gpu_or_skip, on_steps, TempDir};
use limpq_trainer::checkpoint::Checkpoint;
use limpq_trainer::data::{Dataset, Split, Subset};
use limpq_trainer::gpu::Gpu;
use limpq_trainer::model::Model;
use limpq_trainer::train::{
    train_from, Event, Position, Start, StopFlag, TrainConfig, TrainError, Trained,
};

const FMNIST: &str = "/usr/share/datasets/fashion-mnist";

struct Setup {
    gpu: &'static Gpu,
    model: Model,
    train: Arc<Dataset>,
    test: Arc<Dataset>,
}

fn setup(test: &str) -> Option<Setup> {
    let gpu = gpu_or_skip(test)?;
    if !Path::new(FMNIST).is_dir() {
        eprintln!("SKIP {test}: no Fashion-MNIST at {FMNIST}");
        return None;
    }
    let dir = Some(Path::new(FMNIST));
    let train = Dataset::load("fashion-mnist", dir, Split::Train)
        .unwrap()
        .subset(Subset::Random { n: 128, seed: 3 })
        .unwrap();
    let test = Dataset::load("fashion-mnist", dir, Split::Test)
        .unwrap()
        .subset(Subset::Random { n: 64, seed: 4 })
        .unwrap();
    Some(Setup {
        gpu,
        model: Model::resolve("small_cnn").unwrap(),
        train: Arc::new(train),
        test: Arc::new(test),
    })
}

fn config(checkpoint: Option<PathBuf>, stop: Option<Arc<AtomicBool>>) -> TrainConfig {
    TrainConfig {
        epochs: 2,
        batch: 32,
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 5e-4,
        seed: 7,
        eval_batch: 64,
        checkpoint,
        stop: StopFlag(stop),
        ..TrainConfig::default()
    }
}

fn run(
    s: &Setup,
    cfg: &TrainConfig,
    start: Start<'_>,
    on_step: &mut dyn FnMut(usize),
) -> Result<Trained, TrainError> {
    run_events(s, cfg, start, &mut on_steps(on_step))
}

/// [`run`] with every event.
fn run_events(
    s: &Setup,
    cfg: &TrainConfig,
    start: Start<'_>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Trained, TrainError> {
    train_from(
        s.gpu,
        &s.model,
        s.train.clone(),
        s.test.clone(),
        cfg,
        start,
        on_event,
    )
}

/// Stop after global step `k` (flag set from the progress callback, as the daemon does),
/// resume from the saved file, and compare with the uninterrupted run.
fn stop_and_resume(s: &Setup, a: &Trained, k: usize, tag: &str) {
    let dir = TempDir::new(tag);
    let path = dir.0.join("run.ckpt");
    let flag = Arc::new(AtomicBool::new(false));
    let cfg = config(Some(path.clone()), Some(flag.clone()));
    let stopped = run(s, &cfg, Start::Fresh, &mut |g| {
        if g == k {
            flag.store(true, Ordering::SeqCst);
        }
    });
    let st = match stopped {
        Err(TrainError::Stopped(st)) => st,
        Err(e) => panic!("k={k}: expected a stop, got error {e}"),
        Ok(_) => panic!("k={k}: the run ignored the stop flag"),
    };
    assert_eq!(
        st.position.global_step, k,
        "k={k}: stopped at the next check"
    );
    assert_eq!(st.position.epochs_done * 4 + st.position.epoch_step, k);
    assert_eq!(st.saved.as_deref(), Some(path.as_path()));
    let saved = Checkpoint::load(&path).unwrap();
    assert_eq!(saved, st.checkpoint, "k={k}: the file holds the stop state");
    assert_eq!(Position::of(&saved).unwrap().as_ref(), Some(&st.position));

    // Resume with no stop flag; count the steps it runs.
    let mut steps_run = 0;
    let b = run(
        s,
        &config(Some(path.clone()), None),
        Start::Resume(&saved),
        &mut |_| steps_run += 1,
    )
    .unwrap_or_else(|e| panic!("k={k}: resume failed: {e}"));
    assert_eq!(steps_run, 8 - k, "k={k}: only the remaining steps run");
    if let Some(d) = first_difference(&a.checkpoint.tensors, &b.checkpoint.tensors) {
        panic!("k={k}: resumed run ends with different state: {d}");
    }
    assert_eq!(b.checkpoint.step, 8);
    assert_eq!(b.checkpoint.epoch, 2);
    let figures = |t: &Trained| {
        t.history
            .iter()
            .map(|h| (h.epoch, h.train_loss, h.train_acc, h.test_loss, h.test_acc))
            .collect::<Vec<_>>()
    };
    assert_eq!(figures(&b), figures(a), "k={k}: per-epoch figures");

    // Control: the same checkpoint as weights only (schedule from the top, momentum zero)
    // over the remaining epochs ends elsewhere, so the comparison above can fail.
    let mut weights_only = config(None, None);
    weights_only.epochs = 2 - st.position.epochs_done;
    let c = run(s, &weights_only, Start::Init(&saved), &mut |_| {}).unwrap();
    assert!(
        first_difference(&a.checkpoint.tensors, &c.checkpoint.tensors).is_some(),
        "k={k}: a weights-only restart matched the uninterrupted run"
    );
}

#[test]
fn a_stopped_run_resumes_bitwise_where_it_stopped() {
    let Some(s) = setup("train resume") else {
        return;
    };
    let a = run(&s, &config(None, None), Start::Fresh, &mut |_| {}).unwrap();
    assert_eq!(a.checkpoint.step, 8);
    // Mid-epoch 2 (step 2 of 4: two batches of the epoch are skipped on resume).
    stop_and_resume(&s, &a, 6, "mid");
    // After the last step of epoch 1, before its evaluation (the resume evaluates it).
    stop_and_resume(&s, &a, 4, "edge");
    // Mid-epoch 1.
    stop_and_resume(&s, &a, 1, "first");
}

/// Evaluating after every second epoch (and the last) changes no weight, no statistic and
/// no final figure, only the test figures of the epochs it skips, which the checkpoint's
/// position records as absent and a resume reads back.
#[test]
fn skipped_evaluations_change_only_the_history() {
    let Some(s) = setup("train eval_every") else {
        return;
    };
    // The run and how many evaluations it made.
    let counted = |cfg: &TrainConfig, start: Start<'_>, stop_at: Option<(usize, &AtomicBool)>| {
        let (mut evals, mut steps) = (0, 0);
        let t = run_events(&s, cfg, start, &mut |e| match e {
            Event::Evaluating { .. } => evals += 1,
            Event::Step { .. } => {
                steps += 1;
                if let Some((k, flag)) = stop_at {
                    if steps == k {
                        flag.store(true, Ordering::SeqCst);
                    }
                }
            }
            _ => {}
        });
        (t, evals)
    };
    let every = TrainConfig {
        epochs: 3,
        ..config(None, None)
    };
    let (a, na) = counted(&every, Start::Fresh, None);
    let a = a.unwrap();
    let second = TrainConfig {
        eval_every: 2,
        ..every.clone()
    };
    let (b, nb) = counted(&second, Start::Fresh, None);
    let b = b.unwrap();
    assert_eq!(
        (na, nb),
        (3, 2),
        "evaluations: every epoch, then epochs 2 and 3"
    );
    assert_eq!(
        first_difference(&a.checkpoint.tensors, &b.checkpoint.tensors),
        None
    );
    assert_eq!(a.history.len(), 3);
    for (x, y) in a.history.iter().zip(&b.history) {
        assert_eq!(
            (x.epoch, x.train_loss, x.train_acc),
            (y.epoch, y.train_loss, y.train_acc)
        );
        if y.epoch == 1 {
            assert_eq!((y.test_loss, y.test_acc), (None, None));
            assert!(x.test_acc.is_some());
        } else {
            assert!(y.test_acc.is_some());
            assert_eq!((x.test_loss, x.test_acc), (y.test_loss, y.test_acc));
        }
    }
    assert!(
        b.checkpoint.meta("test_acc").is_some(),
        "the last epoch's accuracy"
    );

    // Stopped in epoch 2, after epoch 1 went unevaluated: the absent figures cross the file.
    let dir = TempDir::new("eval_every");
    let path = dir.0.join("run.ckpt");
    let flag = Arc::new(AtomicBool::new(false));
    let stopping = TrainConfig {
        checkpoint: Some(path.clone()),
        stop: StopFlag(Some(flag.clone())),
        ..second.clone()
    };
    let (stopped, _) = counted(&stopping, Start::Fresh, Some((6, &flag)));
    assert!(matches!(stopped, Err(TrainError::Stopped(_))), "stopped");
    let saved = Checkpoint::load(&path).unwrap();
    let pos = Position::of(&saved).unwrap().unwrap();
    assert_eq!(pos.history.len(), 1);
    assert_eq!(pos.history[0].test_acc, None);
    let (c, nc) = counted(&second, Start::Resume(&saved), None);
    let c = c.unwrap();
    assert_eq!(nc, 2);
    assert_eq!(
        first_difference(&b.checkpoint.tensors, &c.checkpoint.tensors),
        None
    );
    let figures = |t: &Trained| {
        t.history
            .iter()
            .map(|h| (h.epoch, h.train_loss, h.train_acc, h.test_loss, h.test_acc))
            .collect::<Vec<_>>()
    };
    assert_eq!(figures(&b), figures(&c));
}

#[test]
fn resume_refuses_a_checkpoint_of_another_run() {
    let Some(s) = setup("train resume mismatch") else {
        return;
    };
    let flag = Arc::new(AtomicBool::new(true));
    let st = match run(&s, &config(None, Some(flag)), Start::Fresh, &mut |_| {}) {
        Err(TrainError::Stopped(st)) => st,
        other => panic!("expected an immediate stop, got {:?}", other.map(|_| ())),
    };
    assert_eq!(st.position.global_step, 0);
    let mut other = config(None, None);
    other.lr = 0.2;
    other.seed = 8;
    let err = run(&s, &other, Start::Resume(&st.checkpoint), &mut |_| {})
        .expect_err("a different lr and seed are refused");
    let msg = err.to_string();
    assert!(
        msg.contains("lr 0.1 (this run 0.2)") && msg.contains("seed 7 (this run 8)"),
        "{msg}"
    );

    // A checkpoint without a position (weights only) cannot be resumed, only used as init.
    let mut bare = st.checkpoint.clone();
    bare.meta.retain(|(k, _)| !k.starts_with("position."));
    let err =
        run(&s, &config(None, None), Start::Resume(&bare), &mut |_| {}).expect_err("no position");
    assert!(err.to_string().contains("no training position"), "{err}");
}

/// Settings that cannot train are refused before anything runs, with the setting named
/// (they used to reach the kernels' own checks after the network was built, or pass).
#[test]
fn settings_that_cannot_train_are_refused_by_name() {
    let Some(s) = setup("train settings") else {
        return;
    };
    let bad = [
        ("momentum NaN", {
            let mut c = config(None, None);
            c.momentum = f32::NAN;
            c
        }),
        ("weight decay -1", {
            let mut c = config(None, None);
            c.weight_decay = -1.0;
            c
        }),
        ("label smoothing 1 must be in [0, 1)", {
            let mut c = config(None, None);
            c.label_smoothing = 1.0;
            c
        }),
        ("128 training images make no full batch of 256", {
            let mut c = config(None, None);
            c.batch = 256;
            c
        }),
    ];
    let mut steps = 0;
    for (want, cfg) in bad {
        match run(&s, &cfg, Start::Fresh, &mut |_| steps += 1) {
            Err(TrainError::Config(m)) => assert!(m.contains(want), "{want}: {m}"),
            other => panic!("{want}: {:?}", other.map(|_| ())),
        }
    }
    assert_eq!(steps, 0, "no step ran");
}
