//! The GPU job kinds: `Train` (full-precision training through [`crate::train::train`]) and
//! `Eval` (test accuracy of a checkpoint).
//!
//! Stopping a training run: the job forwards the daemon's stop flag to
//! [`TrainConfig::stop`]; `train_from` then saves the exact position (epoch, step within it,
//! global step, momentum, partial epoch figures) to the job's `current.ckpt` and returns
//! [`TrainError::Stopped`]. Resuming: `current.ckpt` (written at every epoch end and at a
//! stop) is passed as [`Start::Resume`], so the cosine schedule, momentum and the order and
//! augmentation of the remaining batches are those of an uninterrupted run. The spec's
//! `init` is [`Start::Init`]: a new run from those weights.
//!
//! Pipeline jobs: the same flag goes to the pipeline's GPU stages, which pass it to every
//! training run; `pipeline::run` returns [`PipelineError::Stopped`] after the running
//! stage's current step, and a rerun goes on from where it stopped (completed stages
//! skipped, the stopped one from its exact step).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::job::{JobContext, Outcome};
use super::protocol::Progress;
use super::state::write_atomic;
use crate::checkpoint::Checkpoint;
use crate::data::{Dataset, DatasetKind, Split, Subset, TEST_SUBSET_SEED};
use crate::engine::{Network, NetworkConfig};
use crate::gpu::{Gpu, GpuOptions};
use crate::model::Model;
use crate::pipeline::PipelineError;
use crate::train::{
    check_checkpoint_model, check_data, evaluate, train_from, Event, Position, Start, StopFlag,
    TrainConfig, TrainError,
};

/// Full-precision training of a model (see `limpq train`, whose options these mirror).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainJob {
    /// Built-in model (small_cnn, resnet20, resnet20-cifar, resnet18) or MODEL.ron.
    pub model: String,
    #[serde(default = "default_data")]
    pub data: String,
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    #[serde(default = "one")]
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default = "default_lr")]
    pub lr: f32,
    #[serde(default = "default_momentum")]
    pub momentum: f32,
    #[serde(default)]
    pub nesterov: bool,
    #[serde(default = "default_wd")]
    pub weight_decay: f32,
    #[serde(default)]
    pub label_smoothing: f32,
    /// Train on N training images drawn with the seed (default: all).
    #[serde(default)]
    pub subset: Option<usize>,
    /// Evaluate on N test images (default: all).
    #[serde(default)]
    pub test_subset: Option<usize>,
    #[serde(default)]
    pub seed: u64,
    /// Start from this checkpoint's parameters and BN statistics.
    #[serde(default)]
    pub init: Option<PathBuf>,
    #[serde(default = "default_eval_batch")]
    pub eval_batch: usize,
}

/// Test accuracy of a checkpoint (see `limpq eval`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalJob {
    pub ckpt: PathBuf,
    /// Default: the checkpoint's `data`, else fashion-mnist.
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub subset: Option<usize>,
    #[serde(default = "default_eval_batch")]
    pub batch: usize,
}

fn default_data() -> String {
    "fashion-mnist".into()
}
fn one() -> usize {
    1
}
fn default_batch() -> usize {
    64
}
fn default_lr() -> f32 {
    0.1
}
fn default_momentum() -> f32 {
    0.9
}
fn default_wd() -> f32 {
    5e-4
}
fn default_eval_batch() -> usize {
    256
}

fn check_hyper(field: &str, v: f32) -> Result<(), String> {
    if !v.is_finite() || v < 0.0 {
        return Err(format!("train.{field}: {v} must be finite and ≥ 0"));
    }
    Ok(())
}

/// `resnet20` with CIFAR-10 means its 3×32×32 sibling (as in `limpq train`).
fn resolve_model(name: &str, data: &str) -> Result<Model, String> {
    let name = if name == "resnet20" && data.to_ascii_lowercase().starts_with("cifar") {
        "resnet20-cifar"
    } else {
        name
    };
    Model::resolve(name).map_err(|e| format!("train.model: {e}"))
}

fn check_data_dir(data: &str, dir: Option<&Path>) -> Result<(), String> {
    let kind = DatasetKind::parse(data).map_err(|e| format!("data: {e}"))?;
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| kind.default_dir());
    if !dir.is_dir() {
        return Err(format!(
            "data: no {} folder at {}",
            kind.name(),
            dir.display()
        ));
    }
    Ok(())
}

impl TrainJob {
    pub fn validate(&self) -> Result<(), String> {
        resolve_model(&self.model, &self.data)?;
        check_data_dir(&self.data, self.data_dir.as_deref())?;
        if self.epochs == 0 || self.epochs > 100_000 {
            return Err(format!(
                "train.epochs: {} must be in 1..=100000",
                self.epochs
            ));
        }
        if self.batch == 0 || self.eval_batch == 0 {
            return Err("train.batch and train.eval_batch must be positive".into());
        }
        check_hyper("lr", self.lr)?;
        check_hyper("momentum", self.momentum)?;
        check_hyper("weight_decay", self.weight_decay)?;
        check_hyper("label_smoothing", self.label_smoothing)?;
        if self.label_smoothing >= 1.0 {
            return Err(format!(
                "train.label_smoothing: {} must be below 1",
                self.label_smoothing
            ));
        }
        if let Some(p) = &self.init {
            if !p.is_file() {
                return Err(format!("train.init: no checkpoint at {}", p.display()));
            }
        }
        Ok(())
    }

    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.data_dir, &mut self.init].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        // A model given as a relative file path (not a built-in name).
        if self.model.ends_with(".ron") && Path::new(&self.model).is_relative() {
            self.model = base.join(&self.model).display().to_string();
        }
    }
}

impl EvalJob {
    pub fn validate(&self) -> Result<(), String> {
        if !self.ckpt.is_file() {
            return Err(format!(
                "eval.ckpt: no checkpoint at {}",
                self.ckpt.display()
            ));
        }
        if let Some(d) = &self.data {
            check_data_dir(d, self.data_dir.as_deref())?;
        }
        if self.batch == 0 {
            return Err("eval.batch must be positive".into());
        }
        Ok(())
    }

    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [Some(&mut self.ckpt), self.data_dir.as_mut()]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

fn load_split(
    data: &str,
    dir: Option<&Path>,
    split: Split,
    subset: Option<usize>,
    seed: u64,
) -> Result<Arc<Dataset>, String> {
    let ds = Dataset::load(data, dir, split).map_err(|e| e.to_string())?;
    let ds = match subset {
        Some(n) => ds
            .subset(Subset::Random { n, seed })
            .map_err(|e| e.to_string())?,
        None => ds,
    };
    Ok(Arc::new(ds))
}

fn gpu(ctx: &mut JobContext<'_>) -> Result<Gpu, String> {
    let g = Gpu::new(&GpuOptions::from_env()).map_err(|e| format!("GPU: {e}"))?;
    ctx.log(format!(
        "adapter: {} ({})",
        g.summary.name, g.summary.backend
    ));
    Ok(g)
}

pub fn run_train(job: &TrainJob, ctx: &mut JobContext<'_>) -> Result<Outcome, String> {
    let model = resolve_model(&job.model, &job.data)?;
    let current = ctx.checkpoint_dir.join("current.ckpt");
    // What the job starts from: its own last checkpoint (an exact position), else the
    // spec's init (weights only, a new run), else a fresh initialisation.
    let resume = if current.is_file() {
        let ck = Checkpoint::load(&current).map_err(|e| e.to_string())?;
        check_checkpoint_model(&ck, &model, &current.display().to_string())
            .map_err(|e| e.to_string())?;
        let pos = Position::of(&ck)
            .map_err(|e| format!("{}: {e}", current.display()))?
            .ok_or_else(|| {
                format!(
                    "{}: this checkpoint carries no training position (written by an older \
                     limpq); delete it to restart the job from the beginning",
                    current.display()
                )
            })?;
        ctx.log(format!(
            "resumed from checkpoint at epoch {} of {}, step {} of {} in the next epoch \
             (global step {}); schedule, momentum and batch order continue exactly",
            pos.epochs_done, job.epochs, pos.epoch_step, pos.steps_per_epoch, pos.global_step
        ));
        Some(ck)
    } else {
        None
    };
    let init = match (&resume, &job.init) {
        (None, Some(p)) => Some(Checkpoint::load(p).map_err(|e| e.to_string())?),
        _ => None,
    };
    let start = match (&resume, &init) {
        (Some(ck), _) => Start::Resume(ck),
        (None, Some(ck)) => Start::Init(ck),
        (None, None) => Start::Fresh,
    };
    let dir = job.data_dir.as_deref();
    let train_ds = load_split(&job.data, dir, Split::Train, job.subset, job.seed)?;
    let test_ds = load_split(
        &job.data,
        dir,
        Split::Test,
        job.test_subset,
        TEST_SUBSET_SEED,
    )?;
    let gpu = gpu(ctx)?;
    // The daemon's stop flag (cancel or shutdown) is an AtomicU8 owned by the worker; the
    // progress callback, which runs after every step, forwards it to train's own flag,
    // which train checks before the next step and before each evaluation.
    let stop = Arc::new(AtomicBool::new(false));
    let cfg = TrainConfig {
        epochs: job.epochs,
        batch: job.batch,
        lr: job.lr,
        momentum: job.momentum,
        nesterov: job.nesterov,
        weight_decay: job.weight_decay,
        label_smoothing: job.label_smoothing,
        seed: job.seed,
        eval_batch: job.eval_batch,
        checkpoint: Some(current.clone()),
        meta: vec![("data".into(), train_ds.kind.name().to_string())],
        stop: StopFlag::new(stop.clone()),
        ..TrainConfig::default()
    };
    let total = job.epochs as u64;
    let ran = {
        let ctx = &mut *ctx;
        let mut on_event = |e: &Event| {
            match e {
                Event::Start { .. } => {}
                Event::Step {
                    epoch,
                    step,
                    steps,
                    loss,
                    accuracy,
                    images_per_sec,
                    eta_secs,
                    ..
                } => ctx.progress(Progress {
                    stage: "training".into(),
                    epoch: Some((*epoch as u64, total)),
                    step: Some((*step as u64, *steps as u64)),
                    loss: Some(*loss as f64),
                    accuracy: Some(*accuracy),
                    images_per_sec: Some(*images_per_sec),
                    eta_secs: Some(*eta_secs),
                }),
                Event::Evaluating { epoch } => ctx.progress(Progress {
                    stage: "evaluating".into(),
                    epoch: Some((*epoch as u64, total)),
                    ..Progress::default()
                }),
                Event::Epoch(s) => ctx.log(format!(
                    "epoch {}/{}: train loss {:.4} acc {:.2}% | test loss {:.4} acc {:.2}% | {:.1} s, {:.0} img/s",
                    s.epoch,
                    total,
                    s.train_loss,
                    s.train_acc * 100.0,
                    s.test_loss,
                    s.test_acc * 100.0,
                    s.seconds,
                    s.images_per_sec
                )),
            }
            if ctx.should_stop() {
                stop.store(true, Ordering::SeqCst);
            }
        };
        train_from(&gpu, &model, train_ds, test_ds, &cfg, start, &mut on_event)
    };
    let trained = match ran {
        Ok(t) => t,
        Err(TrainError::Stopped(s)) => {
            let p = &s.position;
            ctx.log(format!(
                "stopped after step {} of {} in epoch {} (global step {}); resumes from there",
                p.epoch_step,
                p.steps_per_epoch,
                p.epochs_done + 1,
                p.global_step
            ));
            return Ok(Outcome::Stopped);
        }
        Err(e) => return Err(e.to_string()),
    };
    let out = ctx.output_dir.join("model.ckpt");
    trained.checkpoint.save(&out).map_err(|e| e.to_string())?;
    let history = ron::ser::to_string_pretty(
        &trained
            .history
            .iter()
            .map(|s| (s.epoch, s.train_loss, s.train_acc, s.test_loss, s.test_acc))
            .collect::<Vec<_>>(),
        ron::ser::PrettyConfig::default(),
    )
    .map_err(|e| e.to_string())?;
    write_atomic(&ctx.output_dir.join("history.ron"), history.as_bytes())?;
    ctx.log(format!("checkpoint written to {}", out.display()));
    Ok(Outcome::Completed)
}

/// The figures an eval job writes to `eval.ron`.
#[derive(Serialize)]
struct EvalResult {
    model: String,
    data: String,
    images: usize,
    correct: usize,
    accuracy: f64,
    loss: f64,
}

pub fn run_eval(job: &EvalJob, ctx: &mut JobContext<'_>) -> Result<Outcome, String> {
    ctx.progress(Progress {
        stage: "evaluating".into(),
        ..Progress::default()
    });
    let ckpt = Checkpoint::load(&job.ckpt).map_err(|e| e.to_string())?;
    let data = match (&job.data, ckpt.meta("data")) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => d.to_string(),
        (None, None) => default_data(),
    };
    let test = load_split(
        &data,
        job.data_dir.as_deref(),
        Split::Test,
        job.subset,
        TEST_SUBSET_SEED,
    )?;
    check_data(&ckpt.model, &test).map_err(|e| e.to_string())?;
    let gpu = gpu(ctx)?;
    let cfg = NetworkConfig {
        batch: job.batch,
        ..NetworkConfig::default()
    };
    let mut net = Network::new(&gpu, &ckpt.model, cfg).map_err(|e| e.to_string())?;
    net.import_state(&ckpt.tensors, false)
        .map_err(|e| format!("{}: {e}", job.ckpt.display()))?;
    let stats = evaluate(&mut net, &test).map_err(|e| e.to_string())?;
    let r = EvalResult {
        model: ckpt.model.name.clone(),
        data,
        images: stats.count,
        correct: stats.correct,
        accuracy: stats.accuracy(),
        loss: stats.mean_loss(),
    };
    ctx.log(format!(
        "accuracy {:.2}% ({}/{}), loss {:.4}",
        r.accuracy * 100.0,
        r.correct,
        r.images,
        r.loss
    ));
    let text = ron::ser::to_string_pretty(&r, ron::ser::PrettyConfig::default())
        .map_err(|e| e.to_string())?;
    write_atomic(&ctx.output_dir.join("eval.ron"), text.as_bytes())?;
    Ok(Outcome::Completed)
}

/// A whole pipeline run (pretrain → indicators → search → finetunes → report), the job file
/// of `limpq pipeline`. It resumes stage by stage from the `state.ron` in its output folder.
pub type PipelineJob = crate::pipeline::Job;

pub fn validate_pipeline(job: &PipelineJob) -> Result<(), String> {
    crate::pipeline::Plan::new(job.clone()).map_err(|e| format!("pipeline: {e}"))?;
    check_data_dir(&job.data.name, job.data.dir.as_deref())?;
    if let Some(p) = &job.pretrain.init {
        if !p.is_file() {
            return Err(format!(
                "pipeline.pretrain.init: no checkpoint at {}",
                p.display()
            ));
        }
    }
    Ok(())
}

pub fn resolve_pipeline_paths(job: &mut PipelineJob, base: &Path) {
    for p in [
        job.data.dir.as_mut(),
        job.pretrain.init.as_mut(),
        Some(&mut job.output),
    ]
    .into_iter()
    .flatten()
    {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    if job.model.ends_with(".ron") && Path::new(&job.model).is_relative() {
        job.model = base.join(&job.model).display().to_string();
    }
}

pub fn run_pipeline(job: &PipelineJob, ctx: &mut JobContext<'_>) -> Result<Outcome, String> {
    use crate::pipeline::{self, Event as PEvent};
    let plan = pipeline::Plan::new(job.clone()).map_err(|e| e.to_string())?;
    let (train_ds, test_ds) = pipeline::gpu::load_data(job)?;
    let gpu = gpu(ctx)?;
    // As for train jobs: the callback forwards the daemon's flag to the stages' own.
    let stop = Arc::new(AtomicBool::new(false));
    let mut stages = pipeline::gpu::GpuStages {
        gpu: &gpu,
        model: plan.model.clone(),
        job: job.clone(),
        train: train_ds,
        test: test_ds,
        stop: StopFlag::new(stop.clone()),
    };
    let ran = {
        let ctx = &mut *ctx;
        let mut stage = String::new();
        let mut on_event = |e: &PEvent| {
            match e {
                PEvent::Plan { total } => ctx.log(format!("{total} stages")),
                PEvent::StageStart { index, total, name } => {
                    stage = format!("[{index}/{total}] {name}");
                    ctx.progress(Progress {
                        stage: stage.clone(),
                        ..Progress::default()
                    });
                }
                PEvent::StageSkipped { index, total, name } => {
                    ctx.log(format!("[{index}/{total}] {name}: done earlier, skipped"))
                }
                PEvent::StageDone {
                    index,
                    total,
                    name,
                    summary,
                } => ctx.log(format!("[{index}/{total}] {name}: {summary}")),
                PEvent::Note(n) => ctx.log(format!("note: {n}")),
                PEvent::Train(Event::Step {
                    epoch,
                    epochs,
                    step,
                    steps,
                    loss,
                    accuracy,
                    images_per_sec,
                    eta_secs,
                    ..
                }) => ctx.progress(Progress {
                    stage: stage.clone(),
                    epoch: Some((*epoch as u64, *epochs as u64)),
                    step: Some((*step as u64, *steps as u64)),
                    loss: Some(*loss as f64),
                    accuracy: Some(*accuracy),
                    images_per_sec: Some(*images_per_sec),
                    eta_secs: Some(*eta_secs),
                }),
                PEvent::Train(_) => {}
            }
            if ctx.should_stop() {
                stop.store(true, Ordering::SeqCst);
            }
        };
        pipeline::run(&plan, &mut stages, &mut on_event)
    };
    match ran {
        Ok(_) => {
            ctx.log(format!("report written to {}", job.output.display()));
            Ok(Outcome::Completed)
        }
        Err(PipelineError::Stopped { stage }) => {
            ctx.log(format!(
                "stopped during {stage}; resumes from the last completed stage"
            ));
            Ok(Outcome::Stopped)
        }
        Err(e) => Err(e.to_string()),
    }
}
