//! The pipeline's job file (RON) and its validation.
//!
//! ```text
//! Job(
//!     model: "small_cnn",
//!     data: (name: "fashion-mnist", dir: None, train: Some(2000), test: Some(1000)),
//!     seeds: [0, 1],
//!     pretrain: (epochs: 3, batch: 64, lr: 0.1, init: None),
//!     joint: (bits: [2, 3, 4, 5, 6], epochs: 1, batch: 64, lr: 0.01),
//!     budgets: ["w2a3", "w3a3", "w4a4", 1500000],
//!     alpha: 2.0,
//!     finetune: (epochs: 1, batch: 64, lr: 0.01),
//!     random_policies: 3,
//!     keep_finetuned: true,
//!     output: "runs/small_cnn",
//! )
//! ```
//!
//! Relative paths (`output`, `data.dir`, `pretrain.init`) are taken from the current
//! directory. A budget is a uniform `"wXaY"` (BitOps of every searchable layer at X/Y bits)
//! or an absolute number of BitOps (a number, or a string of digits).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::PipelineError;

/// A BitOps budget of the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// Every searchable layer at `weight`/`act` bits: also the uniform policy compared.
    Uniform { weight: u32, act: u32 },
    /// An absolute number of BitOps (no uniform policy to compare against).
    Absolute(u64),
}

impl Budget {
    /// Parses `"w2a3"` (any case) or a string of digits.
    pub fn parse(s: &str) -> Result<Budget, String> {
        let t = s.trim().to_ascii_lowercase();
        if let Some(rest) = t.strip_prefix('w') {
            let (w, a) = rest
                .split_once('a')
                .ok_or_else(|| format!("budget {s:?}: expected wXaY, e.g. \"w2a3\""))?;
            let parse = |v: &str, what: &str| {
                v.parse::<u32>()
                    .ok()
                    .filter(|&b| (1..=32).contains(&b))
                    .ok_or_else(|| format!("budget {s:?}: {what} bits {v:?} must be 1..=32"))
            };
            return Ok(Budget::Uniform {
                weight: parse(w, "weight")?,
                act: parse(a, "activation")?,
            });
        }
        let digits: String = t.chars().filter(|c| *c != '_').collect();
        match digits.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Budget::Absolute(n)),
            _ => Err(format!(
                "budget {s:?}: expected \"wXaY\" or a positive number of BitOps"
            )),
        }
    }

    /// `w2a3` or the number; also the budget's file-name stem.
    pub fn label(&self) -> String {
        match self {
            Budget::Uniform { weight, act } => format!("w{weight}a{act}"),
            Budget::Absolute(n) => n.to_string(),
        }
    }

    /// BitOps of this budget for searchable layers with these MACs.
    pub fn bitops(&self, searchable_macs: &[u64]) -> u64 {
        match *self {
            Budget::Uniform { weight, act } => searchable_macs
                .iter()
                .map(|m| m.saturating_mul(u64::from(weight) * u64::from(act)))
                .fold(0u64, u64::saturating_add),
            Budget::Absolute(n) => n,
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl Serialize for Budget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Budget::Uniform { .. } => s.serialize_str(&self.label()),
            Budget::Absolute(n) => s.serialize_u64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Budget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Budget, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Budget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a budget: \"wXaY\" or a positive number of BitOps")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Budget, E> {
                Budget::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Budget, E> {
                if v == 0 {
                    return Err(E::custom("a BitOps budget must be positive"));
                }
                Ok(Budget::Absolute(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Budget, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("BitOps budget {v} is negative")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Budget, E> {
                if !(v.is_finite() && v >= 1.0 && v < u64::MAX as f64) {
                    return Err(E::custom(format!(
                        "BitOps budget {v} must be a finite positive number"
                    )));
                }
                Ok(Budget::Absolute(v as u64))
            }
        }
        d.deserialize_any(V)
    }
}

/// Which data to train and test on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// `fashion-mnist`, `mnist` or `cifar10`.
    pub name: String,
    /// Folder of the files (default: `$LIMPQ_DATA`, else `/usr/share/datasets/NAME`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Training images: a seeded random subset of this size (default: all).
    #[serde(default)]
    pub train: Option<usize>,
    /// Test images: a random subset with a fixed seed (default: all).
    #[serde(default)]
    pub test: Option<usize>,
}

/// Full-precision pretraining, or a checkpoint to start from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainSpec {
    #[serde(default)]
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default = "default_pretrain_lr")]
    pub lr: f32,
    /// Load this full-precision checkpoint instead of training (every seed shares it).
    #[serde(default)]
    pub init: Option<PathBuf>,
}

/// Joint indicator training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JointSpec {
    /// Candidate bit-widths, for weights and activations alike.
    #[serde(default = "default_bits")]
    pub bits: Vec<u32>,
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default = "default_qat_lr")]
    pub lr: f32,
}

/// Quantization-aware finetuning, the same recipe for every policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneSpec {
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default = "default_qat_lr")]
    pub lr: f32,
}

fn default_batch() -> usize {
    64
}
fn default_pretrain_lr() -> f32 {
    0.1
}
fn default_qat_lr() -> f32 {
    0.01
}
fn default_bits() -> Vec<u32> {
    vec![2, 3, 4, 5, 6]
}
fn default_alpha() -> f64 {
    2.0
}
fn default_random() -> usize {
    3
}
fn default_true() -> bool {
    true
}

/// A whole pipeline run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// A built-in model name or a MODEL.ron path.
    pub model: String,
    pub data: DataSpec,
    /// One whole run (pretrain, indicators, finetunes) per seed.
    pub seeds: Vec<u64>,
    pub pretrain: PretrainSpec,
    pub joint: JointSpec,
    pub budgets: Vec<Budget>,
    /// Weight of the weight indicators in the search objective.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    pub finetune: FinetuneSpec,
    /// Random policies drawn and finetuned per budget and seed (at least 3).
    #[serde(default = "default_random")]
    pub random_policies: usize,
    /// Keep every finetuned model (`seed<S>/finetune/<budget>_<kind>.ckpt`, one per policy;
    /// ResNet-20: ~2 MB each). `false` keeps only their accuracies (state.ron, the report):
    /// a small run folder, e.g. to carry between machines. Not part of any fingerprint.
    #[serde(default = "default_true")]
    pub keep_finetuned: bool,
    /// Folder for every output (created).
    pub output: PathBuf,
}

impl Job {
    /// Reads and validates a job file; errors name the file.
    pub fn from_file(path: &Path) -> Result<Job, PipelineError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            PipelineError::Job(format!("{}: cannot read the job file: {e}", path.display()))
        })?;
        let job = Job::from_ron_str(&text)
            .map_err(|e| PipelineError::Job(format!("{}: {e}", path.display())))?;
        Ok(job)
    }

    /// Parses and validates RON text (model existence and budgets are checked later,
    /// against the model: see [`super::Plan::new`]).
    pub fn from_ron_str(text: &str) -> Result<Job, String> {
        // An optional top-level `format_version` (docs/FORMATS.md); a newer one is refused.
        let job: Job = limpq_solver::format::versioned::from_ron(text, Job::FORMAT_VERSION)
            .map_err(|e| format!("not a valid pipeline job: {e}"))?;
        job.validate()?;
        Ok(job)
    }

    /// The newest `format_version` of pipeline jobs this build reads and writes.
    pub const FORMAT_VERSION: u32 = 1;

    /// Pretty RON that [`Job::from_ron_str`] reads back, with the current `format_version`.
    pub fn to_ron(&self) -> String {
        let cfg = ron::ser::PrettyConfig::new().struct_names(true);
        // A Job holds strings, numbers, options and lists: always representable.
        limpq_solver::format::versioned::to_ron_pretty(self, Self::FORMAT_VERSION, cfg)
            .unwrap_or_else(|e| format!("/* {e} */"))
    }

    /// Checks every number and list that does not need the model.
    pub fn validate(&self) -> Result<(), String> {
        let lr = |v: f32, field: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "field `{field}`: learning rate {v} must be finite and > 0"
                ))
            }
        };
        let pos = |v: usize, field: &str| {
            if v > 0 {
                Ok(())
            } else {
                Err(format!("field `{field}`: must be at least 1"))
            }
        };
        if self.model.trim().is_empty() {
            return Err("field `model`: empty".into());
        }
        if self.seeds.is_empty() {
            return Err("field `seeds`: give at least one seed".into());
        }
        let mut seen = self.seeds.clone();
        seen.sort_unstable();
        if seen.windows(2).any(|w| w[0] == w[1]) {
            return Err("field `seeds`: a seed is listed twice".into());
        }
        if let Some(n) = self.data.train {
            pos(n, "data.train")?;
        }
        if let Some(n) = self.data.test {
            pos(n, "data.test")?;
        }
        if self.pretrain.init.is_none() {
            pos(self.pretrain.epochs, "pretrain.epochs")?;
            pos(self.pretrain.batch, "pretrain.batch")?;
            lr(self.pretrain.lr, "pretrain.lr")?;
        }
        pos(self.joint.epochs, "joint.epochs")?;
        pos(self.joint.batch, "joint.batch")?;
        lr(self.joint.lr, "joint.lr")?;
        pos(self.finetune.epochs, "finetune.epochs")?;
        pos(self.finetune.batch, "finetune.batch")?;
        lr(self.finetune.lr, "finetune.lr")?;
        if self.joint.bits.len() < 2 {
            return Err("field `joint.bits`: give at least two candidate bit-widths".into());
        }
        if self.joint.bits.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "field `joint.bits`: {:?} must be ascending, each bit-width once",
                self.joint.bits
            ));
        }
        if let Some(b) = self.joint.bits.iter().find(|b| !(2..=16).contains(*b)) {
            return Err(format!(
                "field `joint.bits`: {b} bits is outside 2..=16 (LSQ needs a sign bit and a step)"
            ));
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(format!(
                "field `alpha`: {} must be finite and ≥ 0",
                self.alpha
            ));
        }
        if self.budgets.is_empty() {
            return Err("field `budgets`: give at least one budget".into());
        }
        for (i, b) in self.budgets.iter().enumerate() {
            if self.budgets[..i].contains(b) {
                return Err(format!("field `budgets`: {b} is listed twice"));
            }
            if let Budget::Uniform { weight, act } = *b {
                for (v, what) in [(weight, "weight"), (act, "activation")] {
                    if !self.joint.bits.contains(&v) {
                        return Err(format!(
                            "field `budgets`: {b} needs {what} bits {v}, which is not among \
                             joint.bits {:?}",
                            self.joint.bits
                        ));
                    }
                }
            }
        }
        if self.random_policies < 3 {
            return Err(format!(
                "field `random_policies`: {} is too few for a median; give at least 3",
                self.random_policies
            ));
        }
        if self.output.as_os_str().is_empty() {
            return Err("field `output`: empty path".into());
        }
        Ok(())
    }
}
