//! Full-precision training: SGD with momentum and weight decay (conv/linear weights only),
//! a cosine learning rate stepped every batch, the loader thread feeding the GPU, an
//! evaluation of the test split after every epoch, progress [`Event`]s for a bar or a
//! stream, and a checkpoint after every epoch. Deterministic for a fixed seed on one adapter
//! (seeded init, seeded shuffle/augment, deterministic kernels).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::data::{DataError, Dataset, Loader, LoaderConfig};
use crate::engine::{EngineError, EvalStats, Network, NetworkConfig};
use crate::gpu::Gpu;
use crate::model::Model;
use crate::reference::cosine_lr;

/// Hyper-parameters of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    /// Initial learning rate of the cosine schedule (per step, to 0 at the end).
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    /// On conv and linear weights only.
    pub weight_decay: f32,
    pub label_smoothing: f32,
    pub seed: u64,
    /// Images per evaluation batch.
    pub eval_batch: usize,
    /// Written (atomically) after every epoch when set.
    pub checkpoint: Option<PathBuf>,
    /// Free-form facts stored in the checkpoint (`data`, ...).
    pub meta: Vec<(String, String)>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 1,
            batch: 64,
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
            label_smoothing: 0.0,
            seed: 0,
            eval_batch: 256,
            checkpoint: None,
            meta: Vec::new(),
        }
    }
}

/// Progress of a run, for a progress bar or a daemon's event stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Start {
        epochs: usize,
        steps_per_epoch: usize,
        train_images: usize,
        test_images: usize,
    },
    /// After every optimizer step. `epoch` counts from 1, `step` from 1 within the epoch.
    Step {
        epoch: usize,
        epochs: usize,
        step: usize,
        steps: usize,
        loss: f32,
        /// Running training accuracy of this epoch so far.
        accuracy: f64,
        lr: f32,
        images_per_sec: f64,
        /// Seconds left for the remaining training steps at this epoch's rate.
        eta_secs: f64,
    },
    /// Evaluation of the test split is running.
    Evaluating {
        epoch: usize,
    },
    Epoch(EpochSummary),
}

/// What one epoch achieved.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochSummary {
    pub epoch: usize,
    pub epochs: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    pub seconds: f64,
    pub images_per_sec: f64,
}

/// Why a run stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum TrainError {
    Engine(EngineError),
    Data(DataError),
    Checkpoint(CheckpointError),
    /// The loss became NaN or infinite.
    Diverged {
        epoch: usize,
        step: usize,
        loss: f32,
        lr: f32,
    },
    /// Settings that cannot work together (model vs data, empty data, ...).
    Config(String),
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::Engine(e) => write!(f, "{e}"),
            TrainError::Data(e) => write!(f, "{e}"),
            TrainError::Checkpoint(e) => write!(f, "{e}"),
            TrainError::Diverged {
                epoch,
                step,
                loss,
                lr,
            } => write!(
                f,
                "training diverged: loss is {loss} at epoch {epoch} step {step} (lr {lr}); \
                 try a smaller --lr"
            ),
            TrainError::Config(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for TrainError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TrainError::Engine(e) => Some(e),
            TrainError::Data(e) => Some(e),
            TrainError::Checkpoint(e) => Some(e),
            _ => None,
        }
    }
}

impl From<EngineError> for TrainError {
    fn from(e: EngineError) -> Self {
        TrainError::Engine(e)
    }
}
impl From<DataError> for TrainError {
    fn from(e: DataError) -> Self {
        TrainError::Data(e)
    }
}
impl From<CheckpointError> for TrainError {
    fn from(e: CheckpointError) -> Self {
        TrainError::Checkpoint(e)
    }
}

/// The result of a run: the final state as a checkpoint, and each epoch's figures.
#[derive(Clone, Debug)]
pub struct Trained {
    pub checkpoint: Checkpoint,
    pub history: Vec<EpochSummary>,
}

/// The dataset fits the model: same image shape, labels within its classes.
pub fn check_data(model: &Model, ds: &Dataset) -> Result<(), TrainError> {
    if ds.shape != model.input {
        return Err(TrainError::Config(format!(
            "model '{}' takes {:?} images, {} has {:?}",
            model.name,
            model.input,
            ds.kind.name(),
            ds.shape
        )));
    }
    if ds.classes > model.classes {
        return Err(TrainError::Config(format!(
            "model '{}' has {} classes, {} has {}",
            model.name,
            model.classes,
            ds.kind.name(),
            ds.classes
        )));
    }
    Ok(())
}

/// A checkpoint holds `model` (same graph), or an error naming both.
pub fn check_checkpoint_model(
    ckpt: &Checkpoint,
    model: &Model,
    what: &str,
) -> Result<(), TrainError> {
    if ckpt.model.nodes != model.nodes
        || ckpt.model.input != model.input
        || ckpt.model.classes != model.classes
    {
        return Err(TrainError::Config(format!(
            "{what} holds model '{}', which differs from '{}'",
            ckpt.model.name, model.name
        )));
    }
    Ok(())
}

/// Evaluate `net` (eval-mode BN) on every example of `ds`.
pub fn evaluate(net: &mut Network<'_>, ds: &Arc<Dataset>) -> Result<EvalStats, TrainError> {
    let mut stats = EvalStats::default();
    let loader = Loader::spawn(ds.clone(), LoaderConfig::eval(ds, net.batch()))?;
    for b in loader {
        stats.add(net.eval_batch(&b.x, &b.y)?);
    }
    Ok(stats)
}

/// Train `model` on `train`, evaluating on `test` after every epoch. `init`: start from
/// these parameters and BN statistics (momentum starts at zero). `on_event` sees progress.
pub fn train(
    gpu: &Gpu,
    model: &Model,
    train: Arc<Dataset>,
    test: Arc<Dataset>,
    cfg: &TrainConfig,
    init: Option<&Checkpoint>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Trained, TrainError> {
    check_data(model, &train)?;
    check_data(model, &test)?;
    if cfg.batch == 0 || cfg.eval_batch == 0 {
        return Err(TrainError::Config("batch sizes must be positive".into()));
    }
    if !(cfg.lr.is_finite() && cfg.lr >= 0.0) {
        return Err(TrainError::Config(format!(
            "learning rate {} must be finite and ≥ 0",
            cfg.lr
        )));
    }
    let steps = train.len() / cfg.batch;
    if steps == 0 {
        return Err(TrainError::Config(format!(
            "{} training images make no full batch of {} (the last partial batch is dropped)",
            train.len(),
            cfg.batch
        )));
    }
    let ncfg = NetworkConfig {
        batch: cfg.batch,
        seed: cfg.seed,
        label_smoothing: cfg.label_smoothing,
        momentum: cfg.momentum,
        nesterov: cfg.nesterov,
        weight_decay: cfg.weight_decay,
        grad_clip: None,
    };
    let mut net = Network::new(gpu, model, ncfg)?;
    // Evaluation runs in its own network (its batch size) sharing nothing but the state
    // copied into it after each epoch.
    let mut eval_net = Network::new(
        gpu,
        model,
        NetworkConfig {
            batch: cfg.eval_batch,
            ..ncfg
        },
    )?;
    if let Some(ck) = init {
        check_checkpoint_model(ck, model, "the --init checkpoint")?;
        net.import_state(&ck.tensors, false)?;
    }
    on_event(&Event::Start {
        epochs: cfg.epochs,
        steps_per_epoch: steps,
        train_images: steps * cfg.batch,
        test_images: test.len(),
    });
    let total = cfg.epochs * steps;
    let mut loader_cfg = LoaderConfig::train(&train, cfg.batch, cfg.seed, cfg.epochs);
    loader_cfg.drop_last = true;
    let mut loader = Loader::spawn(train.clone(), loader_cfg)?;
    let mut history = Vec::new();
    let mut global = 0usize;
    let mut state = Vec::new();
    for epoch in 1..=cfg.epochs {
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for step in 1..=steps {
            let b = loader
                .next()
                .ok_or_else(|| TrainError::Config("the data loader stopped early".into()))?;
            let lr = cosine_lr(cfg.lr, global, total);
            let s = net.train_step(&b.x, &b.y, lr)?;
            global += 1;
            if !s.loss.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    step,
                    loss: s.loss,
                    lr,
                });
            }
            loss_sum += s.loss as f64 * b.n as f64;
            correct += s.correct;
            seen += b.n;
            let secs = start.elapsed().as_secs_f64().max(1e-9);
            let per_step = secs / step as f64;
            on_event(&Event::Step {
                epoch,
                epochs: cfg.epochs,
                step,
                steps,
                loss: s.loss,
                accuracy: correct as f64 / seen as f64,
                lr,
                images_per_sec: seen as f64 / secs,
                eta_secs: per_step * (total - global) as f64,
            });
        }
        let train_secs = start.elapsed().as_secs_f64();
        on_event(&Event::Evaluating { epoch });
        state = net.export_state()?;
        eval_net.import_state(&state, false)?;
        let ev = evaluate(&mut eval_net, &test)?;
        let summary = EpochSummary {
            epoch,
            epochs: cfg.epochs,
            train_loss: loss_sum / seen as f64,
            train_acc: correct as f64 / seen as f64,
            test_loss: ev.mean_loss(),
            test_acc: ev.accuracy(),
            seconds: start.elapsed().as_secs_f64(),
            images_per_sec: seen as f64 / train_secs.max(1e-9),
        };
        on_event(&Event::Epoch(summary.clone()));
        history.push(summary);
        if let Some(path) = &cfg.checkpoint {
            checkpoint(model, cfg, epoch, global, &history, state.clone()).save(path)?;
        }
    }
    if cfg.epochs == 0 {
        state = net.export_state()?;
    }
    // Stop the loader thread before handing back.
    drop(loader);
    Ok(Trained {
        checkpoint: checkpoint(model, cfg, cfg.epochs, global, &history, state),
        history,
    })
}

fn checkpoint(
    model: &Model,
    cfg: &TrainConfig,
    epoch: usize,
    step: usize,
    history: &[EpochSummary],
    tensors: Vec<crate::checkpoint::NamedTensor>,
) -> Checkpoint {
    let mut meta = cfg.meta.clone();
    meta.push(("lr".into(), cfg.lr.to_string()));
    meta.push(("batch".into(), cfg.batch.to_string()));
    meta.push(("epochs".into(), cfg.epochs.to_string()));
    if let Some(last) = history.last() {
        meta.push(("test_acc".into(), format!("{:.6}", last.test_acc)));
        meta.push(("train_loss".into(), format!("{:.6}", last.train_loss)));
    }
    Checkpoint {
        model: model.clone(),
        seed: cfg.seed,
        epoch,
        step: step as u64,
        meta,
        tensors,
    }
}
