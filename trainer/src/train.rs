//! Full-precision training: SGD with momentum and weight decay (conv/linear weights only),
//! a cosine learning rate stepped every batch, the loader thread feeding the GPU, an
//! evaluation of the test split after every epoch, progress [`Event`]s for a bar or a
//! stream, and a checkpoint after every epoch. Deterministic for a fixed seed on one adapter
//! (seeded init, seeded shuffle/augment, deterministic kernels).

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::checkpoint::{Checkpoint, CheckpointError, NamedTensor, TensorKind};
use crate::data::{Batch, DataError, Dataset, Loader, LoaderConfig};
use crate::dist::{Comm, Dist};
use crate::engine::{EngineError, EvalStats, Network, NetworkConfig, StepStats};
use crate::gpu::Gpu;
use crate::model::Model;
use crate::schedule::LrSchedule;

pub mod run_spec;
pub use run_spec::RunSpec;

/// The settings every run shares: full-precision training ([`TrainConfig`]), joint
/// training and finetuning (`method::JointConfig`, `method::FinetuneConfig`, which add only
/// what is theirs). The defaults are full-precision training's.
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    pub epochs: usize,
    pub batch: usize,
    /// Initial learning rate of the cosine schedule.
    pub lr: f32,
    /// How the learning rate falls from `lr`: per step to 0 (full-precision training's
    /// default) or per epoch to a floor (the quantized recipe, [`RunConfig::quantized`]).
    pub schedule: LrSchedule,
    pub momentum: f32,
    pub nesterov: bool,
    /// On conv and linear weights only.
    pub weight_decay: f32,
    pub label_smoothing: f32,
    /// Every gradient element clipped to ±clip before the update; `None`: no clipping.
    pub clip: Option<f32>,
    /// Seeds the initialisation, the batch order and augmentation (and joint training's
    /// random policies).
    pub seed: u64,
    /// Images per evaluation batch.
    pub eval_batch: usize,
    /// The test set is evaluated after every `eval_every`-th epoch and after the last (1:
    /// after every epoch). Skipping evaluations changes no weight and no final figure,
    /// only what the history shows along the way (an epoch not evaluated has no test
    /// loss or accuracy).
    pub eval_every: usize,
    /// Written (atomically) after every epoch, and when the run is stopped, when set, with
    /// the run's exact [`Position`].
    pub checkpoint: Option<PathBuf>,
    /// Free-form facts stored in the checkpoint (`data`, `init`, ...).
    pub meta: Vec<(String, String)>,
    /// Checked before every optimizer step and before each epoch's evaluation: once set,
    /// the run saves its exact position (to `checkpoint` when set) and returns a "stopped"
    /// error ([`TrainError::Stopped`], `MethodError::Stopped`), from which `resume`
    /// continues.
    pub stop: StopFlag,
    /// Continue the run that wrote this checkpoint (a stop, an epoch end or the end) from
    /// its exact position instead of starting afresh or from an init checkpoint: the state
    /// (momentum included), the schedule's step and the remaining batches. The settings and
    /// the model must be the ones it records, else a configuration error names the
    /// difference; the run then ends with the same state, bit for bit, as the run never
    /// stopped (same adapter).
    pub resume: Option<Arc<Checkpoint>>,
    /// The ranks the run is data-parallel over (default: a single process). Every rank
    /// draws the same seeded global batch of `batch` images and trains on its equal part
    /// (`batch` must divide by the number of ranks); gradients are averaged over the ranks
    /// before every update, so the run follows the one-process run of the same `batch`
    /// up to float rounding. Rank 0 alone writes checkpoints; a checkpoint holds nothing of
    /// a rank, so a run stopped at N ranks resumes at any other number.
    pub dist: Dist,
    /// Synchronised batch norm in a data-parallel run: every BN layer (per-bit BN sets
    /// included) normalises by the statistics of the whole global batch, not of the rank's
    /// part, so the run follows the one-process run of the same `batch` with BN too (see
    /// [`Network::set_bn_sync`]). Ignored without peers.
    pub sync_bn: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            epochs: 1,
            batch: 64,
            lr: 0.1,
            schedule: LrSchedule::PerStep,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
            label_smoothing: 0.0,
            clip: None,
            seed: 0,
            eval_batch: 256,
            eval_every: 1,
            checkpoint: None,
            meta: Vec::new(),
            stop: StopFlag::default(),
            resume: None,
            dist: Dist::single(),
            sync_bn: false,
        }
    }
}

impl RunConfig {
    /// The quantization-aware recipe joint training and finetuning default to (the
    /// reference's): lr 0.01 with a cosine stepped once per epoch down to a floor of 1e-5
    /// ([`LrSchedule::reference`]), Nesterov momentum 0.9, weight decay 2.5e-5, label
    /// smoothing 0.1, no clipping.
    pub fn quantized() -> RunConfig {
        RunConfig {
            lr: 0.01,
            schedule: LrSchedule::reference(),
            nesterov: true,
            weight_decay: 2.5e-5,
            label_smoothing: 0.1,
            ..RunConfig::default()
        }
    }

    /// The network settings of the run's training network.
    pub(crate) fn network(&self) -> NetworkConfig {
        NetworkConfig {
            batch: self.local_batch(),
            seed: self.seed,
            label_smoothing: self.label_smoothing,
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            grad_clip: self.clip,
            conv: Default::default(),
            ranks: self.dist.size().max(1),
        }
    }

    /// The settings a resumed run must share with the run that wrote its checkpoint, as
    /// each run records them in the checkpoint's meta (`clip` is left to the caller: the
    /// runs record it differently).
    pub(crate) fn recorded(&self) -> [(&'static str, String); 8] {
        [
            ("lr", self.lr.to_string()),
            ("schedule", self.schedule.text()),
            ("batch", self.batch.to_string()),
            ("epochs", self.epochs.to_string()),
            ("momentum", self.momentum.to_string()),
            ("nesterov", self.nesterov.to_string()),
            ("weight_decay", self.weight_decay.to_string()),
            ("label_smoothing", self.label_smoothing.to_string()),
        ]
    }

    /// Images of each global batch this rank trains on: `batch` over the number of ranks.
    pub fn local_batch(&self) -> usize {
        self.batch / self.dist.size().max(1)
    }

    /// `clip` as a checkpoint records it: the number, or `none`.
    pub(crate) fn clip_text(&self) -> String {
        self.clip.map_or("none".into(), |c| c.to_string())
    }

    /// Refuses what cannot train: batch sizes positive, every rate finite and ≥ 0, label
    /// smoothing in [0, 1). The error is the sentence; each caller wraps it in its own type.
    pub fn check(&self) -> Result<(), String> {
        if self.batch == 0 || self.eval_batch == 0 {
            return Err("batch sizes must be positive".into());
        }
        if self.eval_every == 0 {
            return Err("eval_every must be at least 1 (1: evaluate after every epoch)".into());
        }
        let ranks = self.dist.size();
        if self.batch % ranks != 0 {
            return Err(format!(
                "batch {} does not divide among {ranks} ranks: every rank trains on an equal \
                 part of each batch (use a multiple of {ranks})",
                self.batch
            ));
        }
        let rates = [
            (Some(self.lr), "learning rate"),
            (Some(self.momentum), "momentum"),
            (Some(self.weight_decay), "weight decay"),
            (self.clip, "clip"),
        ];
        for (v, what) in rates {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(format!("{what} {v} must be finite and ≥ 0"));
            }
        }
        self.schedule.check()?;
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(format!(
                "label smoothing {} must be in [0, 1)",
                self.label_smoothing
            ));
        }
        Ok(())
    }
}

/// Full-precision training has no setting of its own: its configuration is the run's.
pub type TrainConfig = RunConfig;

/// A flag another thread sets (Ctrl-C, the daemon's cancel and shutdown) to stop a
/// training, joint or finetune run between two optimizer steps.
/// Two flags compare equal when they are the same flag (or both absent), so configs
/// holding one stay comparable.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(pub Option<Arc<AtomicBool>>);

impl StopFlag {
    /// A flag that [`StopFlag::requested`] reads.
    pub fn new(flag: Arc<AtomicBool>) -> StopFlag {
        StopFlag(Some(flag))
    }
    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f.load(Ordering::SeqCst))
    }
}

impl PartialEq for StopFlag {
    fn eq(&self, o: &StopFlag) -> bool {
        match (&self.0, &o.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// Where a run starts.
#[derive(Clone, Copy, Debug)]
pub enum Start<'a> {
    /// Seeded initialisation, step 0.
    Fresh,
    /// A new run from these parameters and BN statistics (`limpq train --init`,
    /// fine-tuning): step 0, the cosine schedule from the top, momentum zero.
    Init(&'a Checkpoint),
    /// Continue the run that wrote this checkpoint (a stop, an epoch end or the end) from
    /// its exact position: global step for the schedule, momentum buffers, batch order and
    /// augmentation of the remaining batches. The run's settings (epochs, batch, lr,
    /// momentum, weight decay, Nesterov, label smoothing, seed, steps per epoch) must be
    /// the ones the checkpoint records, else [`TrainError::Config`] names the difference.
    Resume(&'a Checkpoint),
}

/// Meta keys of a checkpoint written by [`train_from`] that say where the run stood.
const POS_EPOCH_STEP: &str = "position.epoch_step";
const POS_STEPS: &str = "position.steps_per_epoch";
const POS_EPOCHS: &str = "position.epochs";
const POS_LOSS_SUM: &str = "position.loss_sum";
const POS_CORRECT: &str = "position.correct";
const POS_SEEN: &str = "position.seen";
const POS_HISTORY: &str = "position.history";

/// The exact position of a run, as stored in the checkpoints [`train_from`] writes
/// (`Checkpoint::epoch` = epochs done, `Checkpoint::step` = global step, the rest in meta).
#[derive(Clone, Debug, PartialEq)]
pub struct Position {
    /// Epochs completed (trained and evaluated).
    pub epochs_done: usize,
    /// Optimizer steps done within epoch `epochs_done + 1` (may equal `steps_per_epoch`
    /// when the run stopped before that epoch's evaluation).
    pub epoch_step: usize,
    /// Optimizer steps done in all: the cosine schedule's position.
    pub global_step: usize,
    pub steps_per_epoch: usize,
    /// Length of the run (the schedule ends at `epochs * steps_per_epoch`).
    pub epochs: usize,
    /// Running training figures of the unfinished epoch: Σ loss·n, correct, images.
    pub loss_sum: f64,
    pub correct: usize,
    pub seen: usize,
    /// The summaries of the completed epochs.
    pub history: Vec<EpochSummary>,
}

impl Position {
    /// The start of a new run of `epochs` epochs of `steps_per_epoch` steps.
    pub fn start(epochs: usize, steps_per_epoch: usize) -> Position {
        Position {
            epochs_done: 0,
            epoch_step: 0,
            global_step: 0,
            steps_per_epoch,
            epochs,
            loss_sum: 0.0,
            correct: 0,
            seen: 0,
            history: Vec::new(),
        }
    }

    /// The position a checkpoint carries: `None` for a checkpoint without one (written by
    /// something other than [`train_from`], or an older build); an error naming the key
    /// when it carries a broken one.
    pub fn of(ck: &Checkpoint) -> Result<Option<Position>, TrainError> {
        let Some(epoch_step) = ck.meta(POS_EPOCH_STEP) else {
            return Ok(None);
        };
        fn num<T: std::str::FromStr>(key: &str, v: Option<&str>) -> Result<T, TrainError> {
            let v = v.ok_or_else(|| {
                TrainError::Config(format!("checkpoint position: meta '{key}' is missing"))
            })?;
            v.parse().map_err(|_| {
                TrainError::Config(format!(
                    "checkpoint position: meta '{key}' = {v:?} is not a number"
                ))
            })
        }
        let pos = Position {
            epochs_done: ck.epoch,
            epoch_step: num(POS_EPOCH_STEP, Some(epoch_step))?,
            global_step: usize::try_from(ck.step).map_err(|_| {
                TrainError::Config(format!("checkpoint position: step {} too large", ck.step))
            })?,
            steps_per_epoch: num(POS_STEPS, ck.meta(POS_STEPS))?,
            epochs: num(POS_EPOCHS, ck.meta(POS_EPOCHS))?,
            loss_sum: num(POS_LOSS_SUM, ck.meta(POS_LOSS_SUM))?,
            correct: num(POS_CORRECT, ck.meta(POS_CORRECT))?,
            seen: num(POS_SEEN, ck.meta(POS_SEEN))?,
            history: parse_history(ck.meta(POS_HISTORY).unwrap_or(""))?,
        };
        let consistent = pos.epoch_step <= pos.steps_per_epoch
            && pos.epochs_done <= pos.epochs
            && pos.epochs_done.checked_mul(pos.steps_per_epoch)
                == pos.global_step.checked_sub(pos.epoch_step)
            && pos.history.len() == pos.epochs_done
            && (pos.epochs_done < pos.epochs || pos.epoch_step == 0);
        if !consistent {
            return Err(TrainError::Config(format!(
                "checkpoint position is inconsistent: epoch {} of {}, step {} of {} in the \
                 epoch, global step {}, {} epoch summaries",
                pos.epochs_done,
                pos.epochs,
                pos.epoch_step,
                pos.steps_per_epoch,
                pos.global_step,
                pos.history.len()
            )));
        }
        Ok(Some(pos))
    }

    /// The meta entries that [`Position::of`] reads back (joint training and finetuning
    /// store their positions the same way).
    pub(crate) fn meta(&self) -> Vec<(String, String)> {
        vec![
            (POS_EPOCH_STEP.into(), self.epoch_step.to_string()),
            (POS_STEPS.into(), self.steps_per_epoch.to_string()),
            (POS_EPOCHS.into(), self.epochs.to_string()),
            // `Display` of a float is the shortest text that parses back to the same bits.
            (POS_LOSS_SUM.into(), self.loss_sum.to_string()),
            (POS_CORRECT.into(), self.correct.to_string()),
            (POS_SEEN.into(), self.seen.to_string()),
            (POS_HISTORY.into(), format_history(&self.history)),
        ]
    }
}

/// Epoch summaries as `epoch epochs train_loss train_acc test_loss test_acc seconds ips`,
/// separated by `;` (floats in their exact shortest form; `-` for the test figures of an
/// epoch not evaluated).
fn format_history(h: &[EpochSummary]) -> String {
    h.iter()
        .map(|s| {
            format!(
                "{} {} {} {} {} {} {} {}",
                s.epoch,
                s.epochs,
                s.train_loss,
                s.train_acc,
                opt_text(s.test_loss),
                opt_text(s.test_acc),
                s.seconds,
                s.images_per_sec
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// A figure of [`format_history`]: the number, or `-` when absent.
fn opt_text(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn parse_history(text: &str) -> Result<Vec<EpochSummary>, TrainError> {
    let bad = |part: &str| {
        TrainError::Config(format!(
            "checkpoint position: meta '{POS_HISTORY}' entry {part:?} is not 8 numbers (`-` \
             for the test figures of an epoch not evaluated)"
        ))
    };
    text.split(';')
        .filter(|p| !p.trim().is_empty())
        .map(|part| {
            let f: Vec<&str> = part.split_whitespace().collect();
            if f.len() != 8 {
                return Err(bad(part));
            }
            let u = |i: usize| f[i].parse::<usize>().map_err(|_| bad(part));
            let x = |i: usize| f[i].parse::<f64>().map_err(|_| bad(part));
            let ox = |i: usize| {
                if f[i] == "-" {
                    Ok(None)
                } else {
                    x(i).map(Some)
                }
            };
            Ok(EpochSummary {
                epoch: u(0)?,
                epochs: u(1)?,
                train_loss: x(2)?,
                train_acc: x(3)?,
                test_loss: ox(4)?,
                test_acc: ox(5)?,
                seconds: x(6)?,
                images_per_sec: x(7)?,
            })
        })
        .collect()
}

/// Where and how a run was stopped through [`TrainConfig::stop`].
pub struct Stopped {
    pub position: Position,
    /// The state at the stop, with its position: resume with [`Start::Resume`].
    pub checkpoint: Checkpoint,
    /// Where it was also saved (`TrainConfig::checkpoint`).
    pub saved: Option<PathBuf>,
}

impl fmt::Debug for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stopped")
            .field("position", &self.position)
            .field("tensors", &self.checkpoint.tensors.len())
            .field("saved", &self.saved)
            .finish()
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
    /// `None` for an epoch the run did not evaluate ([`RunConfig::eval_every`]).
    pub test_loss: Option<f64>,
    pub test_acc: Option<f64>,
    pub seconds: f64,
    pub images_per_sec: f64,
}

impl EpochSummary {
    /// ` | test loss L acc A%`, or ` | not evaluated` for an epoch the run did not
    /// evaluate: the test half of an epoch's progress line.
    pub fn test_text(&self) -> String {
        match (self.test_loss, self.test_acc) {
            (Some(l), Some(a)) => format!(" | test loss {l:.4} acc {:.2}%", a * 100.0),
            _ => " | not evaluated".into(),
        }
    }
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
    /// Settings that cannot work together (model vs data, empty data, a resume checkpoint
    /// of another run, ...).
    Config(String),
    /// [`TrainConfig::stop`] was set: the position was saved; not a failure.
    Stopped(Box<Stopped>),
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
            TrainError::Stopped(s) => {
                let p = &s.position;
                write!(
                    f,
                    "training stopped after step {} of {} in epoch {} (global step {})",
                    p.epoch_step,
                    p.steps_per_epoch,
                    p.epochs_done + 1,
                    p.global_step
                )?;
                match &s.saved {
                    Some(path) => write!(f, "; resume from {}", path.display()),
                    None => Ok(()),
                }
            }
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

/// Optimizer steps per epoch: whole batches only (the last partial batch is dropped).
pub(crate) fn steps_per_epoch(images: usize, batch: usize) -> Result<usize, String> {
    match images.checked_div(batch) {
        Some(s) if s > 0 => Ok(s),
        _ => Err(format!(
            "{images} training images make no full batch of {batch} (the last partial batch is dropped)"
        )),
    }
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
    check_not_empty(ds)?;
    let mut stats = EvalStats::default();
    let mut loader = Loader::spawn(ds.clone(), LoaderConfig::eval(ds, net.batch()))?;
    while let Some(b) = loader.next_batch()? {
        stats.add(net.eval_batch(&b.x, &b.y)?);
    }
    Ok(stats)
}

/// [`evaluate`], and every example's logits, `[examples, classes]` in `ds`'s order, from
/// the same forwards: the statistics are those [`evaluate`] gives, counted from these
/// logits.
pub fn evaluate_logits(
    net: &mut Network<'_>,
    ds: &Arc<Dataset>,
) -> Result<(EvalStats, Vec<f32>), TrainError> {
    check_not_empty(ds)?;
    let classes = net.model().classes;
    let mut stats = EvalStats::default();
    let mut out = vec![0.0f32; ds.len() * classes];
    let mut loader = Loader::spawn(ds.clone(), LoaderConfig::eval(ds, net.batch()))?;
    while let Some(b) = loader.next_batch()? {
        let logits = net.eval_logits(&b.x)?;
        stats.add(EvalStats::of_logits(&logits, &b.y, classes)?);
        for (row, &id) in logits.chunks_exact(classes.max(1)).zip(&b.ids) {
            let at = id as usize * classes;
            let Some(dst) = out.get_mut(at..at + classes) else {
                return Err(TrainError::Config(format!(
                    "example {id} is outside the {} examples evaluated",
                    ds.len()
                )));
            };
            dst.copy_from_slice(row);
        }
    }
    Ok((stats, out))
}

/// An accuracy over no examples would be a made-up figure, not 0%: refused.
fn check_not_empty(ds: &Dataset) -> Result<(), TrainError> {
    if ds.is_empty() {
        return Err(TrainError::Config(format!(
            "no {} examples to evaluate on",
            ds.kind.name()
        )));
    }
    Ok(())
}

/// Replaces the BN running statistics of `state` with `net`'s (an evaluation network whose
/// statistics were recalibrated: the state saved is the model evaluated).
pub(crate) fn take_running_stats(
    state: &mut [NamedTensor],
    net: &Network<'_>,
) -> Result<(), EngineError> {
    let recalibrated = net.export_state()?;
    for t in state
        .iter_mut()
        .filter(|t| t.kind == TensorKind::RunningStat)
    {
        if let Some(r) = recalibrated.iter().find(|r| r.name == t.name) {
            t.data.clone_from(&r.data);
        }
    }
    Ok(())
}

/// Train `model` on `train`, evaluating on `test` after every epoch. `init`: start a new run
/// from these parameters and BN statistics (momentum zero, the schedule from the top), i.e.
/// [`train_from`] with [`Start::Init`], else [`Start::Fresh`]. `on_event` sees progress.
pub fn train(
    gpu: &Gpu,
    model: &Model,
    train: Arc<Dataset>,
    test: Arc<Dataset>,
    cfg: &TrainConfig,
    init: Option<&Checkpoint>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Trained, TrainError> {
    let start = init.map_or(Start::Fresh, Start::Init);
    train_from(gpu, model, train, test, cfg, start, on_event)
}

/// Train `model` on `train` from `start`, evaluating on `test` after every epoch. Every
/// checkpoint it writes (epoch ends, a stop, the returned one) carries the run's exact
/// [`Position`], so [`Start::Resume`] continues it: a run stopped after any step and
/// resumed ends with the same parameters as one never stopped (same adapter).
///
/// A resumed run's [`Trained::history`] holds every epoch of the run (the earlier ones from
/// the checkpoint); the `seconds` and `images_per_sec` of the epoch it resumed in cover the
/// resumed part only.
pub fn train_from(
    gpu: &Gpu,
    model: &Model,
    train: Arc<Dataset>,
    test: Arc<Dataset>,
    cfg: &TrainConfig,
    start: Start<'_>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Trained, TrainError> {
    check_data(model, &train)?;
    check_data(model, &test)?;
    cfg.check().map_err(TrainError::Config)?;
    let steps = steps_per_epoch(train.len(), cfg.batch).map_err(TrainError::Config)?;
    let ncfg = cfg.network();
    let mut net = Network::new(gpu, model, ncfg)?;
    // Evaluation runs in its own network (its batch size) sharing nothing but the state
    // copied into it after each epoch.
    let mut eval_net = Network::new(
        gpu,
        model,
        NetworkConfig {
            batch: eval_batch(cfg.eval_batch, test.len()),
            ..ncfg
        },
    )?;
    let mut pos = Position::start(cfg.epochs, steps);
    // `cfg.resume` continues a run whatever `start` says.
    let start = match &cfg.resume {
        Some(ck) => Start::Resume(ck),
        None => start,
    };
    match start {
        Start::Fresh => {}
        Start::Init(ck) => {
            check_checkpoint_model(ck, model, &ck.describe())?;
            net.import_state(&ck.tensors, false)
                .map_err(|e| TrainError::Config(format!("{}: {e}", ck.describe())))?;
        }
        Start::Resume(ck) => {
            check_checkpoint_model(ck, model, "the resume checkpoint")?;
            pos = resume_position(ck, cfg, steps)?;
            net.import_state(&ck.tensors, true)
                .map_err(|e| TrainError::Config(format!("{}: {e}", ck.describe())))?;
        }
    }
    let (pos, state) = run_epochs(
        &mut net,
        &mut eval_net,
        &train,
        &test,
        cfg,
        pos,
        &mut FullPrecision { model, cfg },
        on_event,
    )?;
    Ok(Trained {
        checkpoint: checkpoint(model, cfg, &pos, state),
        history: pos.history,
    })
}

/// What full-precision training adds to the shared epoch loop: one plain pass a step.
struct FullPrecision<'a> {
    model: &'a Model,
    cfg: &'a TrainConfig,
}

impl EpochRun for FullPrecision<'_> {
    type Error = TrainError;

    fn step(
        &mut self,
        net: &mut Network<'_>,
        b: &Batch,
        lr: f32,
        dist: &Dist,
    ) -> Result<Vec<StepStats>, TrainError> {
        Ok(match dist.peers() {
            None => vec![net.train_step(&b.x, &b.y, lr)?],
            Some(c) => net.train_step_synced(&b.x, &b.y, lr, None, &|g| mean_grads(c, g))?,
        })
    }

    fn checkpoint(&self, pos: &Position, tensors: Vec<NamedTensor>) -> Checkpoint {
        checkpoint(self.model, self.cfg, pos, tensors)
    }

    fn diverged(&self, epoch: usize, step: usize, _pass: usize, loss: f32, lr: f32) -> TrainError {
        TrainError::Diverged {
            epoch,
            step,
            loss,
            lr,
        }
    }

    fn stopped(&self, _pos: &Position, stopped: Stopped) -> TrainError {
        TrainError::Stopped(Box::new(stopped))
    }

    fn config(message: String) -> TrainError {
        TrainError::Config(message)
    }
}

/// What differs between the runs that share [`run_epochs`] (full-precision training,
/// joint training, finetuning): what a step does, what a checkpoint holds, and the run's
/// own error type.
pub(crate) trait EpochRun {
    type Error: From<EngineError> + From<DataError> + From<CheckpointError>;

    /// How many passes a step runs (the training accuracy counts each).
    fn passes(&self) -> usize {
        1
    }

    /// Called once per run before the loader starts, with the steps the run has already
    /// done (a resumed run): whatever a step draws is drawn that many times first.
    fn skip_steps(&mut self, _done: usize) {}

    /// On the first training batch of the run (this rank's part of it), before its step
    /// (not on a resumed run past its first step: the state holds the result). Whatever it
    /// derives from the batch must agree across `dist`'s ranks.
    fn first_batch(
        &mut self,
        _net: &mut Network<'_>,
        _b: &Batch,
        _dist: &Dist,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    /// One optimizer step on `b` (this rank's part of the batch) at learning rate `lr`:
    /// the figures of each pass on `b`. With peers in `dist`, the gradients are averaged
    /// over the ranks ([`mean_grads`]) before the update.
    fn step(
        &mut self,
        net: &mut Network<'_>,
        b: &Batch,
        lr: f32,
        dist: &Dist,
    ) -> Result<Vec<StepStats>, Self::Error>;

    /// Prepares the evaluation network once the state is imported into it; `true` when it
    /// changed the network's BN running statistics (a recalibration), which the saved
    /// state then takes from it.
    fn before_eval(&self, _eval_net: &mut Network<'_>) -> Result<bool, Self::Error> {
        Ok(false)
    }

    /// The run's checkpoint at `pos` holding `tensors`.
    fn checkpoint(&self, pos: &Position, tensors: Vec<NamedTensor>) -> Checkpoint;

    /// Pass `pass` of step `step` (from 1) of epoch `epoch` has a non-finite loss.
    fn diverged(&self, epoch: usize, step: usize, pass: usize, loss: f32, lr: f32) -> Self::Error;

    /// The error of a run whose state after `epoch` is not finite: `what` names the value
    /// (`parameter conv1.weight`, `the test loss (NaN)`), `lr` the run's learning rate.
    fn diverged_state(&self, epoch: usize, what: &str, lr: f32) -> Self::Error {
        Self::config(format!(
            "training diverged: {what} is not finite after epoch {epoch} (lr {lr}); try a \
             smaller --lr; nothing was saved for this epoch"
        ))
    }

    /// The run stopped on request at `pos`.
    fn stopped(&self, pos: &Position, stopped: Stopped) -> Self::Error;

    /// Settings or inputs that cannot work together.
    fn config(message: String) -> Self::Error;
}

/// The one epoch loop of every run: `cfg.epochs` epochs from `pos` (a [`Position::start`]
/// or a resumed one) of whole batches from the seeded loader, the learning rate of
/// `cfg.schedule`, stop checks before every step and before each evaluation, divergence checks,
/// progress events, and after every epoch a test evaluation and a checkpoint (to
/// `cfg.checkpoint`, when set). What a step does and what a checkpoint holds come from
/// `run`. Returns the end position (every epoch done, the history of all of them) and the
/// final state.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_epochs<R: EpochRun>(
    net: &mut Network<'_>,
    eval_net: &mut Network<'_>,
    train: &Arc<Dataset>,
    test: &Arc<Dataset>,
    cfg: &RunConfig,
    mut pos: Position,
    run: &mut R,
    on_event: &mut dyn FnMut(&Event),
) -> Result<(Position, Vec<NamedTensor>), R::Error> {
    let steps = steps_per_epoch(train.len(), cfg.batch).map_err(R::config)?;
    let dist = &cfg.dist;
    cfg.check().map_err(R::config)?;
    if cfg.sync_bn && dist.peers().is_some() && !net.bn_synced() {
        net.set_bn_sync(dist.clone());
    }
    if net.batch() != cfg.local_batch() {
        return Err(R::config(format!(
            "internal: a training network of batch {} for {} images per rank",
            net.batch(),
            cfg.local_batch()
        )));
    }
    if pos.steps_per_epoch != steps || pos.epochs != cfg.epochs {
        return Err(R::config(format!(
            "internal: position of a run of {} epochs of {} steps, this run has {} of {steps}",
            pos.epochs, pos.steps_per_epoch, cfg.epochs
        )));
    }
    on_event(&Event::Start {
        epochs: cfg.epochs,
        steps_per_epoch: steps,
        train_images: steps * cfg.batch,
        test_images: test.len(),
    });
    // Every step of the run is counted in a usize (the schedule's, the position's).
    let total = cfg.epochs.checked_mul(steps).ok_or_else(|| {
        R::config(format!(
            "{} epochs of {steps} steps are more steps than can be counted; use fewer epochs",
            cfg.epochs
        ))
    })?;
    let n_passes = run.passes().max(1);
    run.skip_steps(pos.global_step);
    let early = || R::config("the data loader stopped early".into());
    let mut loader = loader_at(train, cfg.batch, cfg.seed, &pos, early)?;
    // The first-batch work ran on the first batch of the run; a resumed state holds its
    // result.
    let mut initialised = pos.global_step > 0;
    let mut state = None;
    let ckpt_path = cfg.checkpoint.as_deref();
    let stop = |net: &Network<'_>, run: &R, pos: &Position| -> R::Error {
        match stop_state::<R::Error>(net, dist, pos, ckpt_path, |t| run.checkpoint(pos, t)) {
            Ok(st) => run.stopped(pos, st),
            Err(e) => e,
        }
    };
    while pos.epochs_done < cfg.epochs {
        let epoch = pos.epochs_done + 1;
        let started = Instant::now();
        let first_step = pos.epoch_step;
        let mut seen_here = 0usize;
        while pos.epoch_step < steps {
            if stop_requested(cfg) {
                return Err(stop(net, run, &pos));
            }
            let global = loader.next_batch()?.ok_or_else(early)?;
            let b = rank_part(global, dist);
            if !initialised {
                run.first_batch(net, &b, dist)?;
                initialised = true;
            }
            let lr = cfg.schedule.lr(cfg.lr, pos.global_step, steps, cfg.epochs);
            let mut stats = run.step(net, &b, lr, dist)?;
            let b = Batch { n: cfg.batch, ..b };
            if let Some(c) = dist.peers() {
                global_stats(c, &mut stats);
            }
            pos.global_step += 1;
            pos.epoch_step += 1;
            let step = pos.epoch_step;
            if let Some((i, st)) = stats
                .iter()
                .enumerate()
                .find(|(_, st)| !st.loss.is_finite())
            {
                return Err(run.diverged(epoch, step, i, st.loss, lr));
            }
            // With one pass, exactly that pass's loss.
            let mean_loss =
                stats.iter().map(|st| st.loss as f64).sum::<f64>() / stats.len().max(1) as f64;
            pos.loss_sum += mean_loss * b.n as f64;
            pos.correct += stats.iter().map(|st| st.correct).sum::<usize>();
            pos.seen += b.n;
            seen_here += b.n;
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            let per_step = secs / (step - first_step) as f64;
            on_event(&Event::Step {
                epoch,
                epochs: cfg.epochs,
                step,
                steps,
                loss: mean_loss as f32,
                accuracy: pos.correct as f64 / (pos.seen * n_passes) as f64,
                lr,
                images_per_sec: seen_here as f64 / secs,
                eta_secs: per_step * (total - pos.global_step) as f64,
            });
        }
        if stop_requested(cfg) {
            return Err(stop(net, run, &pos));
        }
        let train_secs = started.elapsed().as_secs_f64();
        let mut st = export_synced(net, dist)?;
        // A finite loss does not prove finite weights: fake quantization clamps a NaN
        // weight to a level, and a run went on to save all-NaN weights.
        if let Some(t) = st
            .iter()
            .find(|t| t.kind == TensorKind::Param && t.data.iter().any(|v| !v.is_finite()))
        {
            return Err(run.diverged_state(epoch, &format!("parameter {}", t.name), cfg.lr));
        }
        let evaluated = if epoch == cfg.epochs || epoch % cfg.eval_every.max(1) == 0 {
            on_event(&Event::Evaluating { epoch });
            eval_net.import_state(&st, false)?;
            if run.before_eval(eval_net)? {
                take_running_stats(&mut st, eval_net)?;
            }
            let ev = evaluate_part(eval_net, test, dist).map_err(|e| match e {
                TrainError::Engine(e) => R::Error::from(e),
                TrainError::Data(e) => R::Error::from(e),
                TrainError::Checkpoint(e) => R::Error::from(e),
                other => R::config(other.to_string()),
            })?;
            if !ev.mean_loss().is_finite() {
                let what = format!("the test loss ({})", ev.mean_loss());
                return Err(run.diverged_state(epoch, &what, cfg.lr));
            }
            Some(ev)
        } else {
            None
        };
        let summary = EpochSummary {
            epoch,
            epochs: cfg.epochs,
            train_loss: pos.loss_sum / pos.seen.max(1) as f64,
            train_acc: pos.correct as f64 / (pos.seen * n_passes).max(1) as f64,
            test_loss: evaluated.as_ref().map(|ev| ev.mean_loss()),
            test_acc: evaluated.as_ref().map(|ev| ev.accuracy()),
            seconds: started.elapsed().as_secs_f64(),
            images_per_sec: seen_here as f64 / train_secs.max(1e-9),
        };
        pos.history.push(summary.clone());
        pos.epochs_done = epoch;
        pos.epoch_step = 0;
        pos.loss_sum = 0.0;
        pos.correct = 0;
        pos.seen = 0;
        // Rank 0 alone writes the run's files; saved before the epoch is announced, so
        // nothing the listener does can cost the epoch's checkpoint.
        if let Some(path) = ckpt_path.filter(|_| dist.is_root()) {
            run.checkpoint(&pos, st.clone()).save(path)?;
        }
        on_event(&Event::Epoch(summary));
        state = Some(st);
    }
    // Stop the loader thread before handing back.
    drop(loader);
    // A run of no epochs still does its first-batch work (a quantized run's LSQ step
    // init), so its state is where its first step would start, not the network as built.
    if state.is_none() && !initialised {
        // The batch the first step of a one-epoch run would take.
        let mut first = loader_at(
            train,
            cfg.batch,
            cfg.seed,
            &Position::start(1, steps),
            early,
        )?;
        let global = first.next_batch()?.ok_or_else(early)?;
        drop(first);
        run.first_batch(net, &rank_part(global, dist), dist)?;
    }
    // No epoch ran (`epochs` 0, or resumed at the end): the state as it is.
    let state = match state {
        Some(st) => st,
        None => export_synced(net, dist)?,
    };
    Ok((pos, state))
}

/// The batch of a network that evaluates `images` images in batches of `batch`: no more
/// than the images. A larger one only allocates more, and past the adapter's limits it
/// refused an evaluation of a few images (`--eval-batch 100000000`).
pub(crate) fn eval_batch(batch: usize, images: usize) -> usize {
    if images > 0 {
        batch.min(images)
    } else {
        batch
    }
}

/// Whether the run stops before its next step. With peers, every rank takes the same
/// decision (a stop asked on any rank stops all), so none waits for a step the others
/// never take.
fn stop_requested(cfg: &RunConfig) -> bool {
    let here = cfg.stop.requested();
    match cfg.dist.peers() {
        None => here,
        Some(c) => {
            let mut v = [f64::from(u8::from(here))];
            c.sum_f64(&mut v);
            v[0] > 0.0
        }
    }
}

/// This rank's part of a global batch: images `[r·n/N, (r+1)·n/N)` (`n` divides by `N`:
/// [`RunConfig::check`]).
pub(crate) fn rank_part(b: Batch, dist: &Dist) -> Batch {
    let (r, size) = (dist.rank(), dist.size());
    if size <= 1 || b.n == 0 {
        return b;
    }
    let n = b.n / size;
    let per = b.x.len() / b.n;
    let (lo, hi) = (r * n, (r + 1) * n);
    Batch {
        x: b.x[lo * per..hi * per].to_vec(),
        y: b.y[lo..hi].to_vec(),
        n,
        epoch: b.epoch,
        index: b.index,
        ids: b.ids.get(lo..hi).map(<[u32]>::to_vec).unwrap_or_default(),
    }
}

/// Replaces gradients (flattened: all of them, or one bucket of them) by their mean over
/// `c`'s ranks, in a reduction order fixed for a given number of ranks. Each rank's
/// gradients are those of the mean loss over its equal part of the batch, so their mean is
/// the gradient of the mean loss over the whole batch.
pub(crate) fn mean_grads(c: &dyn Comm, grads: &mut [f32]) {
    c.mean_f32(grads);
}

/// A step's figures over the whole batch: each pass's loss the mean of the ranks' (equal
/// parts), its correct predictions their sum.
fn global_stats(c: &dyn Comm, stats: &mut [StepStats]) {
    let mut v: Vec<f64> = stats.iter().map(|s| f64::from(s.loss)).collect();
    v.extend(stats.iter().map(|s| s.correct as f64));
    c.sum_f64(&mut v);
    let k = stats.len();
    let ranks = c.size() as f64;
    for (i, s) in stats.iter_mut().enumerate() {
        s.loss = (v[i] / ranks) as f32;
        s.correct = v[k + i].round() as usize;
    }
}

/// The network's state, with BN running statistics averaged over the ranks (each rank's
/// follow its own part of the batches). The running update is linear, so the average is
/// what a run whose batch statistics were the ranks' average would hold: exact for the
/// means; for the variances it leaves out the spread of the ranks' means (without
/// synchronised BN, each rank normalises by its own part's statistics anyway). Parameters
/// and momentum are the same on every rank (same init, same averaged gradients).
pub(crate) fn export_synced(
    net: &Network<'_>,
    dist: &Dist,
) -> Result<Vec<NamedTensor>, EngineError> {
    let mut st = net.export_state()?;
    if let Some(c) = dist.peers() {
        let mut running: Vec<&mut NamedTensor> = st
            .iter_mut()
            .filter(|t| t.kind == TensorKind::RunningStat)
            .collect();
        let mut flat: Vec<f32> = running
            .iter()
            .flat_map(|t| t.data.iter().copied())
            .collect();
        c.mean_f32(&mut flat);
        let mut at = 0;
        for t in running.iter_mut() {
            let n = t.data.len();
            t.data.copy_from_slice(&flat[at..at + n]);
            at += n;
        }
    }
    Ok(st)
}

/// [`evaluate`] shared among `dist`'s ranks: rank r evaluates batches r, r + N, ... and
/// the sums are added over the ranks (every rank gets the whole test set's figures).
pub(crate) fn evaluate_part(
    net: &mut Network<'_>,
    ds: &Arc<Dataset>,
    dist: &Dist,
) -> Result<EvalStats, TrainError> {
    let Some(c) = dist.peers() else {
        return evaluate(net, ds);
    };
    let mut stats = EvalStats::default();
    let mut loader = Loader::spawn(ds.clone(), LoaderConfig::eval(ds, net.batch()))?;
    let mut i = 0;
    while let Some(b) = loader.next_batch()? {
        if i % c.size() == c.rank() {
            stats.add(net.eval_batch(&b.x, &b.y)?);
        }
        i += 1;
    }
    let mut v = [stats.loss_sum, stats.correct as f64, stats.count as f64];
    c.sum_f64(&mut v);
    Ok(EvalStats {
        loss_sum: v[0],
        correct: v[1].round() as usize,
        count: v[2].round() as usize,
    })
}

/// The settings a resumed run must share with the run that wrote its checkpoint, as
/// stored in the checkpoint's meta (`clip` only when set: runs without it record none).
fn recorded_settings(cfg: &TrainConfig) -> Vec<(&'static str, String)> {
    let mut v = cfg.recorded().to_vec();
    if cfg.clip.is_some() {
        v.push(("clip", cfg.clip_text()));
    }
    v
}

/// The position to resume from, after checking that `ck` belongs to a run with `cfg`.
fn resume_position(
    ck: &Checkpoint,
    cfg: &TrainConfig,
    steps: usize,
) -> Result<Position, TrainError> {
    let pos = Position::of(ck)?.ok_or_else(|| {
        TrainError::Config(
            "the resume checkpoint carries no training position (it was not written by \
             train_from); start a new run from it as an init checkpoint instead"
                .into(),
        )
    })?;
    check_resume(ck, &pos, &recorded_settings(cfg), cfg.seed, steps).map_err(TrainError::Config)?;
    Ok(pos)
}

/// The training loader of a run at `pos`. Batch order and augmentation are seeded per epoch
/// and per batch, so it starts at the first epoch with batches left, and the batches of it
/// already trained are built and dropped (CPU work only, no GPU step): the remaining ones
/// are exactly those an uninterrupted run trains on. `early`: the error when the loader
/// ends before that.
pub(crate) fn loader_at<E: From<DataError>>(
    train: &Arc<Dataset>,
    batch: usize,
    seed: u64,
    pos: &Position,
    early: impl Fn() -> E,
) -> Result<Loader, E> {
    let (first_epoch, skip) = if pos.epoch_step == pos.steps_per_epoch {
        (pos.epochs_done + 1, 0)
    } else {
        (pos.epochs_done, pos.epoch_step)
    };
    let mut cfg = LoaderConfig::train(train, batch, seed, pos.epochs.saturating_sub(first_epoch));
    cfg.start_epoch = first_epoch;
    let mut loader = Loader::spawn(train.clone(), cfg)?;
    for _ in 0..skip {
        loader.next_batch()?.ok_or_else(&early)?;
    }
    Ok(loader)
}

/// Whether `ck`, at `pos`, was written by a run like this one: the same seed, steps per
/// epoch and `settings` (`(meta key, this run's value)`), and a momentum buffer for every
/// parameter. The error names every difference; each caller wraps it in its own type
/// (training, joint training and finetuning resume alike).
pub(crate) fn check_resume(
    ck: &Checkpoint,
    pos: &Position,
    settings: &[(&'static str, String)],
    seed: u64,
    steps: usize,
) -> Result<(), String> {
    let mut diffs = Vec::new();
    if ck.seed != seed {
        diffs.push(format!("seed {} (this run {seed})", ck.seed));
    }
    if pos.steps_per_epoch != steps {
        diffs.push(format!(
            "{} steps per epoch (this run {steps})",
            pos.steps_per_epoch
        ));
    }
    for (key, want) in settings {
        match ck.meta(key) {
            Some(v) if v == want => {}
            // A policy is many lines: say that it differs, not what it is.
            Some(v) if v.contains('\n') || want.contains('\n') => {
                diffs.push(format!("another {key} (not this run's)"))
            }
            Some(v) => diffs.push(format!("{key} {v} (this run {want})")),
            None => diffs.push(format!("no {key} recorded")),
        }
    }
    if !diffs.is_empty() {
        return Err(format!(
            "the resume checkpoint was written by a different run: {}",
            diffs.join(", ")
        ));
    }
    for p in ck.of_kind(TensorKind::Param) {
        let m = format!("{}.momentum", p.name);
        if !ck
            .of_kind(TensorKind::Momentum)
            .any(|t| t.name == m && t.data.len() == p.data.len())
        {
            return Err(format!(
                "the resume checkpoint has no momentum buffer '{m}' of {} values",
                p.data.len()
            ));
        }
    }
    Ok(())
}

/// A run's exact state at a stop: `build` turns the network's state into the run's
/// checkpoint, saved (atomically, by rank 0) to `path` when given. Training, joint training and
/// finetuning stop alike.
pub(crate) fn stop_state<E: From<EngineError> + From<CheckpointError>>(
    net: &Network<'_>,
    dist: &Dist,
    pos: &Position,
    path: Option<&std::path::Path>,
    build: impl FnOnce(Vec<NamedTensor>) -> Checkpoint,
) -> Result<Stopped, E> {
    let checkpoint = build(export_synced(net, dist)?);
    // Rank 0 alone writes the run's files; every rank reports where the state is (another
    // rank said "no checkpoint path was set, so nothing was saved" beside rank 0's "saved").
    if let Some(path) = path.filter(|_| dist.is_root()) {
        checkpoint.save(path)?;
    }
    Ok(Stopped {
        position: pos.clone(),
        checkpoint,
        saved: path.map(std::path::Path::to_path_buf),
    })
}

fn checkpoint(
    model: &Model,
    cfg: &TrainConfig,
    pos: &Position,
    tensors: Vec<NamedTensor>,
) -> Checkpoint {
    let mut meta: Vec<(String, String)> = recorded_settings(cfg)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    if let Some(last) = pos.history.last() {
        if let Some(acc) = last.test_acc {
            meta.push(("test_acc".into(), format!("{acc:.6}")));
        }
        meta.push(("train_loss".into(), format!("{:.6}", last.train_loss)));
    }
    meta.extend(pos.meta());
    meta.extend(cfg.meta.iter().cloned());
    Checkpoint {
        origin: None,
        model: model.clone(),
        seed: cfg.seed,
        epoch: pos.epochs_done,
        step: pos.global_step as u64,
        meta,
        tensors,
    }
}

#[cfg(test)]
mod tests {
    use super::RunConfig;

    #[test]
    fn run_settings_refuse_what_cannot_train() {
        let ok = RunConfig {
            epochs: 1,
            nesterov: true,
            batch: 64,
            eval_batch: 256,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 2.5e-5,
            label_smoothing: 0.1,
            clip: None,
            ..RunConfig::default()
        };
        assert!(ok.check().is_ok());
        assert!(RunConfig {
            clip: Some(1.0),
            lr: 0.0,
            ..ok.clone()
        }
        .check()
        .is_ok());
        let bad = [
            (
                RunConfig {
                    batch: 0,
                    ..ok.clone()
                },
                "batch",
            ),
            (
                RunConfig {
                    eval_batch: 0,
                    ..ok.clone()
                },
                "batch",
            ),
            (
                RunConfig {
                    eval_every: 0,
                    ..ok.clone()
                },
                "eval_every must be at least 1",
            ),
            (
                RunConfig {
                    lr: f32::NAN,
                    ..ok.clone()
                },
                "learning rate NaN",
            ),
            (
                RunConfig {
                    momentum: -0.5,
                    ..ok.clone()
                },
                "momentum -0.5",
            ),
            (
                RunConfig {
                    weight_decay: f32::INFINITY,
                    ..ok.clone()
                },
                "weight decay inf",
            ),
            (
                RunConfig {
                    clip: Some(-1.0),
                    ..ok.clone()
                },
                "clip -1",
            ),
            (
                RunConfig {
                    label_smoothing: 1.0,
                    ..ok.clone()
                },
                "label smoothing 1",
            ),
            (
                RunConfig {
                    label_smoothing: f32::NAN,
                    ..ok.clone()
                },
                "label smoothing NaN",
            ),
        ];
        for (s, want) in bad {
            match s.check() {
                Err(m) => assert!(m.contains(want), "{want}: {m}"),
                other => panic!("{want}: {other:?}"),
            }
        }
    }
}
