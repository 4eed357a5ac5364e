//! The GPU job kinds as a client sends them: `Train`, `Eval` and `Pipeline` specs, their
//! checks at submission and their path resolution. They run in `server::gpu`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::DatasetKind;
use crate::model::Model;

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

pub(crate) fn default_data() -> String {
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
pub(crate) fn resolve_model(name: &str, data: &str) -> Result<Model, String> {
    check_model_file("train.model", name)?;
    Model::resolve_for_data(name, data).map_err(|e| format!("train.model: {e}"))
}

/// A model given as a file must be a regular file under the cap before it is read (a FIFO
/// would block the reader, `/dev/zero` would grow it without bound).
fn check_model_file(field: &str, name: &str) -> Result<(), String> {
    let path = Path::new(name);
    if crate::model::builtin(name).is_none() && (name.ends_with(".ron") || path.exists()) {
        super::job::check_regular(field, path)?;
    }
    Ok(())
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
    pub(crate) fn validate(&self) -> Result<(), String> {
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
    pub(crate) fn validate(&self) -> Result<(), String> {
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

/// A whole pipeline run (pretrain → indicators → search → finetunes → report), the job file
/// of `limpq pipeline`. It resumes stage by stage from the `state.ron` in its output folder.
pub type PipelineJob = crate::pipeline::Job;

pub(crate) fn validate_pipeline(job: &PipelineJob) -> Result<(), String> {
    check_model_file("pipeline.model", &job.model)?;
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
