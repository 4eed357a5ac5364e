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
//!     search: sensitivity,
//!     alpha: 2.0,
//!     finetune: (epochs: 1, batch: 64, lr: 0.01),
//!     random_policies: 3,
//!     controls: [macs_only, shuffled, learned],
//!     sensitivity: (images: 1024, batch: 256),
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

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::PipelineError;
use crate::method::{FinetuneChoices, FinetuneConfig, JointConfig};
use crate::train::run_spec::{once, read_fields, with_run_fields, write_opt};
pub use crate::train::RunSpec;
use crate::train::{RunConfig, TrainConfig};

/// A BitOps budget of the job: `"w2a3"` (every searchable layer at W2 A3; also the uniform
/// policy compared) or a number of BitOps (no uniform policy to compare against). The
/// solver's own budget type, so the job file, the command line and the solver read it alike.
pub use limpq_solver::BitOpsBudget as Budget;

/// Which data to train and test on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// `fashion-mnist`, `mnist`, `cifar10`, or `folder` (an image folder at `dir`).
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
    /// Image folders: how the images become inputs (default: docs/DATA.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<crate::data::Transform>,
}

impl DataSpec {
    /// The text the stages' fingerprints hash: what earlier versions hashed (the derived
    /// `Debug` of the four first fields) when there is no transform, so their runs resume.
    pub fn fingerprint_text(&self) -> String {
        let base = format!(
            "DataSpec {{ name: {:?}, dir: {:?}, train: {:?}, test: {:?}",
            self.name, self.dir, self.train, self.test
        );
        match &self.transform {
            None => format!("{base} }}"),
            Some(t) => format!("{base}, transform: {t:?} }}"),
        }
    }
}

/// Full-precision pretraining, or a checkpoint to start from. Recipe: SGD with Nesterov
/// momentum 0.9, lr 0.1, weight decay 5e-4, label smoothing 0.1, batch 64.
#[derive(Clone, Debug, PartialEq)]
pub struct PretrainSpec {
    /// `epochs` is needed unless `init` is set.
    pub run: RunSpec,
    /// Load this full-precision checkpoint instead of training (every seed shares it).
    pub init: Option<PathBuf>,
}

/// Joint indicator training. Recipe: [`JointConfig::default`] (`epochs` needed).
#[derive(Clone, Debug, PartialEq)]
pub struct JointSpec {
    /// Candidate bit-widths, for weights and activations alike.
    pub bits: Vec<u32>,
    /// The stem's and classifier's bits during joint training ([`JointConfig::fixed_bits`]):
    /// absent or `None`, full precision (the recipe); `Some((8, 8))` quantizes them.
    pub fixed_bits: Option<(u32, u32)>,
    pub run: RunSpec,
}

/// Quantization-aware finetuning, the same recipe for every policy: [`FinetuneConfig::default`]
/// (`epochs` needed).
#[derive(Clone, Debug, PartialEq)]
pub struct FinetuneSpec {
    pub run: RunSpec,
    /// `steps_from_indicators` (absent: the recipe's `false`) and `bn_recalibration`
    /// (absent: the recipe's 6000 images; 0: none).
    pub choices: FinetuneChoices,
}

/// The fields of the stages' parentheses (the run settings and each stage's own), as the
/// parser names them in its errors and docs/schemas/pipeline-job.schema.json lists them.
pub const PRETRAIN_FIELDS: &[&str] = with_run_fields!("init");
pub const JOINT_FIELDS: &[&str] = with_run_fields!("bits", "fixed_bits");
pub const FINETUNE_FIELDS: &[&str] = with_run_fields!("steps_from_indicators", "bn_recalibration");

impl PretrainSpec {
    /// The pretraining run of `seed`: the recipe with the job's settings.
    pub fn config(&self, seed: u64) -> TrainConfig {
        self.run.apply(RunConfig {
            epochs: 0,
            nesterov: true,
            label_smoothing: 0.1,
            seed,
            ..RunConfig::default()
        })
    }

    /// The text the stage's fingerprint hashes: every setting the stage depends on (for
    /// a job without the newer settings, the text earlier versions hashed, so their runs
    /// resume).
    pub fn fingerprint_text(&self) -> String {
        let r = self.config(0);
        format!(
            "PretrainSpec {{ epochs: {:?}, batch: {:?}, lr: {:?}, init: {:?}{} }}",
            r.epochs,
            r.batch,
            r.lr,
            self.init,
            self.run.extra_text()
        )
    }
}

/// The version of the joint-training and finetuning recipe the stages' fingerprints carry.
/// Settings a job file leaves out take the recipe's defaults, so when those defaults change
/// (docs/METHOD.md, "Where we follow the reference, and where not") a run folder made with
/// the old ones must redo its joint and finetune stages instead of mixing two recipes in
/// one report; bumping this text does that. Pretraining and the sensitivity measurement did
/// not change and keep their fingerprints.
pub const RECIPE: &str =
    "recipe 2 (reference schedule, clamp, full-precision stem in joint training, \
     fresh finetune steps, BN recalibration)";

impl JointSpec {
    /// The joint run of `seed`: [`JointConfig::default`] with the job's settings.
    pub fn config(&self, seed: u64) -> JointConfig {
        let base = JointConfig::default().run;
        JointConfig {
            bits: self.bits.clone(),
            fixed_bits: self.fixed_bits,
            run: self.run.apply(RunConfig { seed, ..base }),
        }
    }

    /// As [`PretrainSpec::fingerprint_text`].
    pub fn fingerprint_text(&self) -> String {
        let r = self.config(0).run;
        format!(
            "JointSpec {{ bits: {:?}, epochs: {:?}, batch: {:?}, lr: {:?}{}{} }} {RECIPE}",
            self.bits,
            r.epochs,
            r.batch,
            r.lr,
            self.run.extra_text(),
            // Only when set: a job without it keeps the fingerprint earlier versions wrote.
            self.fixed_bits
                .map(|b| format!(", fixed_bits: {b:?}"))
                .unwrap_or_default()
        )
    }
}

impl FinetuneSpec {
    /// The finetune run of `seed`: [`FinetuneConfig::default`] with the job's settings.
    pub fn config(&self, seed: u64) -> FinetuneConfig {
        let base = FinetuneConfig::default().run;
        self.choices.apply(FinetuneConfig {
            run: self.run.apply(RunConfig { seed, ..base }),
            ..FinetuneConfig::default()
        })
    }

    /// As [`PretrainSpec::fingerprint_text`].
    pub fn fingerprint_text(&self) -> String {
        let r = self.config(0).run;
        format!(
            "FinetuneSpec {{ epochs: {:?}, batch: {:?}, lr: {:?}{}{} }} {RECIPE}",
            r.epochs,
            r.batch,
            r.lr,
            self.run.extra_text(),
            self.choices.text()
        )
    }
}

impl<'de> Deserialize<'de> for PretrainSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PretrainSpec, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PretrainSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the pretraining settings: (epochs: …, batch: …, lr: …, init: …)")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PretrainSpec, A::Error> {
                let mut init: Option<Option<PathBuf>> = None;
                let run = read_fields(map, PRETRAIN_FIELDS, |k, map| match k {
                    "init" => once(&mut init, "init", map).map(|_| true),
                    _ => Ok(false),
                })?;
                Ok(PretrainSpec {
                    run,
                    init: init.flatten(),
                })
            }
        }
        d.deserialize_struct("PretrainSpec", PRETRAIN_FIELDS, V)
    }
}

impl<'de> Deserialize<'de> for JointSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<JointSpec, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JointSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the joint training settings: (bits: […], epochs: …, …)")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<JointSpec, A::Error> {
                let mut bits: Option<Vec<u32>> = None;
                let mut fixed_bits: Option<Option<(u32, u32)>> = None;
                let run = read_fields(map, JOINT_FIELDS, |k, map| match k {
                    "bits" => once(&mut bits, "bits", map).map(|_| true),
                    "fixed_bits" => once(&mut fixed_bits, "fixed_bits", map).map(|_| true),
                    _ => Ok(false),
                })?;
                if run.epochs.is_none() {
                    return Err(de::Error::missing_field("epochs"));
                }
                Ok(JointSpec {
                    bits: bits.unwrap_or_else(default_bits),
                    fixed_bits: fixed_bits.flatten(),
                    run,
                })
            }
        }
        d.deserialize_struct("JointSpec", JOINT_FIELDS, V)
    }
}

impl<'de> Deserialize<'de> for FinetuneSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FinetuneSpec, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FinetuneSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the finetune settings: (epochs: …, batch: …, lr: …)")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FinetuneSpec, A::Error> {
                let mut choices = FinetuneChoices::default();
                let run = read_fields(map, FINETUNE_FIELDS, |k, map| choices.read(k, map))?;
                if run.epochs.is_none() {
                    return Err(de::Error::missing_field("epochs"));
                }
                Ok(FinetuneSpec { run, choices })
            }
        }
        d.deserialize_struct("FinetuneSpec", FINETUNE_FIELDS, V)
    }
}

impl Serialize for PretrainSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("PretrainSpec", PRETRAIN_FIELDS.len())?;
        self.run.write(&mut st)?;
        st.serialize_field("init", &self.init)?;
        st.end()
    }
}

impl Serialize for JointSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("JointSpec", JOINT_FIELDS.len())?;
        st.serialize_field("bits", &self.bits)?;
        self.run.write(&mut st)?;
        write_opt(&mut st, "fixed_bits", &self.fixed_bits.map(Some))?;
        st.end()
    }
}

impl Serialize for FinetuneSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("FinetuneSpec", FINETUNE_FIELDS.len())?;
        self.run.write(&mut st)?;
        self.choices.write(&mut st)?;
        st.end()
    }
}

fn default_bits() -> Vec<u32> {
    vec![2, 3, 4, 5, 6]
}
fn default_alpha() -> f64 {
    limpq_solver::IndicatorSet::LEARNED_ALPHA
}
fn default_random() -> usize {
    3
}
fn default_true() -> bool {
    true
}
fn is_default_sens(s: &SensitivitySpec) -> bool {
    *s == SensitivitySpec::default()
}

/// Which indicators the `searched` policy is searched with (docs/PIPELINE.md, "Which
/// indicators"). The joint run runs when something uses its step sizes
/// ([`Job::runs_joint`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Search {
    /// Measured per-layer loss increases of the pretrained model (`limpq sensitivity`),
    /// searched with α = 1: the default since the control searches of docs/RESULTS.md.
    #[default]
    Sensitivity,
    /// The joint run's learned step sizes (LIMPQ's indicators), searched with the job's α.
    Learned,
}

impl Search {
    /// The source's name in the job file and the report.
    pub fn name(self) -> &'static str {
        match self {
            Search::Sensitivity => "sensitivity",
            Search::Learned => "learned",
        }
    }

    /// The control that would search with the same indicators (refused beside it).
    fn control(self) -> Control {
        match self {
            Search::Sensitivity => Control::Sensitivity,
            Search::Learned => Control::Learned,
        }
    }
}

/// A control search run beside the searched, uniform and random policies at every budget
/// (docs/PIPELINE.md, "Control searches"): the same exact search with other indicators,
/// finetuned with the same recipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Every layer the same indicator profile: only MACs and parameters steer the search.
    MacsOnly,
    /// The searched policy's indicators permuted among the layers (seeded by the run seed).
    Shuffled,
    /// Measured per-layer loss increases (`limpq sensitivity`), when `search` is `learned`.
    Sensitivity,
    /// The joint run's learned step sizes, when `search` is `sensitivity`.
    Learned,
}

impl Control {
    /// The policy kind's name in file names and the report.
    pub fn kind(self) -> &'static str {
        match self {
            Control::MacsOnly => "macs_only",
            Control::Shuffled => "shuffled",
            Control::Sensitivity => "sensitivity",
            Control::Learned => "learned",
        }
    }
}

/// The calibration of the `sensitivity` control: images drawn from the run's training
/// images with the run seed, measured in whole batches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensitivitySpec {
    #[serde(default = "default_sens_images")]
    pub images: usize,
    #[serde(default = "default_sens_batch")]
    pub batch: usize,
}

impl Default for SensitivitySpec {
    fn default() -> Self {
        SensitivitySpec {
            images: default_sens_images(),
            batch: default_sens_batch(),
        }
    }
}

impl SensitivitySpec {
    /// The calibration of a run with `train` training images: `(drawn, batch, used)`.
    /// `drawn` images are drawn (`images`, at most `train`), measured in batches of
    /// `batch` (`batch`, at most `drawn`: fewer images than a batch make one batch of them
    /// all), whole batches only: `used` images in all.
    pub fn calibration(&self, train: usize) -> (usize, usize, usize) {
        let drawn = self.images.min(train);
        let batch = self.batch.min(drawn);
        let used = drawn.checked_div(batch).map_or(0, |k| k * batch);
        (drawn, batch, used)
    }

    /// What the sensitivity stage's result depends on beyond the pretrained model.
    pub fn fingerprint_text(&self) -> String {
        format!("sensitivity images={} batch={}", self.images, self.batch)
    }
}

fn default_sens_images() -> usize {
    1024
}
fn default_sens_batch() -> usize {
    256
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
    /// Which indicators the `searched` policy uses (default: measured sensitivity).
    #[serde(default)]
    pub search: Search,
    /// Weight of the weight indicators in the search objective with the learned step sizes
    /// (`search: learned`, the `learned` control); measured sensitivity is searched with
    /// α = 1, its weight and activation values being loss increases alike.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    pub finetune: FinetuneSpec,
    /// Random policies drawn and finetuned per budget and seed (at least 3).
    #[serde(default = "default_random")]
    pub random_policies: usize,
    /// Control searches to run beside them (default: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<Control>,
    /// Calibration of the sensitivity measurement (`search: sensitivity`, the `sensitivity`
    /// control).
    #[serde(default, skip_serializing_if = "is_default_sens")]
    pub sensitivity: SensitivitySpec,
    /// Keep every finetuned model (`seed<S>/finetune/<budget>_<kind>.ckpt`, one per policy;
    /// ResNet-20: ~2 MB each). `false` keeps only their accuracies (state.ron, the report):
    /// a small run folder, e.g. to carry between machines. Not part of any fingerprint.
    #[serde(default = "default_true")]
    pub keep_finetuned: bool,
    /// Folder for every output (created).
    pub output: PathBuf,
    /// The file the job was read from ([`Job::from_file`]), which the errors of planning
    /// ([`super::Plan::new`]) name. Not part of the job: never written, and two jobs that
    /// differ only here are equal.
    #[serde(skip)]
    file: JobFile,
}

/// Where a [`Job`] was read from: equal to every other, so that it does not make two jobs
/// differ.
#[derive(Clone, Debug, Default)]
struct JobFile(Option<PathBuf>);

impl PartialEq for JobFile {
    fn eq(&self, _: &JobFile) -> bool {
        true
    }
}

/// The most random policies a job may ask for per budget and seed.
pub const MAX_RANDOM_POLICIES: usize = 1000;

impl Job {
    /// Reads and validates a job file; errors name the file, and so do those of planning
    /// it ([`super::Plan::new`]).
    pub fn from_file(path: &Path) -> Result<Job, PipelineError> {
        // Bounded, and only a regular file (a FIFO or a device is refused without blocking).
        let text = limpq_io::files::read_regular_text(path, limpq_io::files::MAX_TEXT)
            .map_err(|e| PipelineError::Job(format!("cannot read the job file: {e}")))?;
        let mut job = Job::from_ron_str(&text)
            .map_err(|e| PipelineError::Job(format!("{}: {e}", path.display())))?;
        job.file = JobFile(Some(path.to_path_buf()));
        Ok(job)
    }

    /// The file the job was read from, when it was read from one ([`Job::from_file`]).
    pub fn file(&self) -> Option<&Path> {
        self.file.0.as_deref()
    }

    /// An error of the job: `message` (which names the field) after the job file's path,
    /// as [`Job::from_file`] words its own, when the job was read from a file.
    pub fn error(&self, message: impl fmt::Display) -> PipelineError {
        match self.file() {
            Some(p) => PipelineError::Job(format!("{}: {message}", p.display())),
            None => PipelineError::Job(message.to_string()),
        }
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

    /// Whether every seed measures the pretrained model's sensitivity (a stage of its own).
    pub fn measures_sensitivity(&self) -> bool {
        self.search == Search::Sensitivity || self.controls.contains(&Control::Sensitivity)
    }

    /// Whether every seed runs joint indicator training: only when something uses the
    /// learned step sizes (`search: learned`, the `learned` control, or
    /// `finetune.steps_from_indicators`).
    pub fn runs_joint(&self) -> bool {
        self.search == Search::Learned
            || self.controls.contains(&Control::Learned)
            || self.finetune.config(0).steps_from_indicators
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
        let stage = |run: RunConfig, name: &str| -> Result<(), String> {
            pos(run.epochs, &format!("{name}.epochs"))?;
            pos(run.batch, &format!("{name}.batch"))?;
            lr(run.lr, &format!("{name}.lr"))?;
            run.check().map_err(|e| format!("field `{name}`: {e}"))
        };
        let onnx = super::source::is_onnx(&self.model);
        if onnx && self.pretrain.init.is_some() {
            return Err(
                "field `pretrain.init`: the ONNX model brings its own weights; give either an \
                 .onnx `model` or `pretrain.init`"
                    .into(),
            );
        }
        if self.pretrain.init.is_none() && !onnx {
            stage(self.pretrain.config(0), "pretrain")?;
        }
        stage(self.joint.config(0).run, "joint")?;
        stage(self.finetune.config(0).run, "finetune")?;
        crate::method::check_bits(&self.joint.bits)
            .map_err(|e| format!("field `joint.bits`: {e}"))?;
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(format!(
                "field `alpha`: {} must be finite and ≥ 0",
                self.alpha
            ));
        }
        if self.budgets.is_empty() {
            return Err("field `budgets`: give at least one budget".into());
        }
        // A set, not a search of the budgets before each: a long list must not stall the
        // check.
        let mut seen = std::collections::HashSet::with_capacity(self.budgets.len());
        for b in &self.budgets {
            if !seen.insert(*b) {
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
        // Each is finetuned, per budget and seed: more is a typo, not a plan.
        if self.random_policies > MAX_RANDOM_POLICIES {
            return Err(format!(
                "field `random_policies`: {} is more than {MAX_RANDOM_POLICIES} (each one is \
                 finetuned at every budget and seed)",
                self.random_policies
            ));
        }
        for (i, c) in self.controls.iter().enumerate() {
            if self.controls[..i].contains(c) {
                return Err(format!("field `controls`: {} is listed twice", c.kind()));
            }
            if *c == self.search.control() {
                return Err(format!(
                    "field `controls`: {} is what `search: {}` searches with already (the \
                     searched policy)",
                    c.kind(),
                    self.search.name()
                ));
            }
        }
        pos(self.sensitivity.images, "sensitivity.images")?;
        pos(self.sensitivity.batch, "sensitivity.batch")?;
        if self.measures_sensitivity() && self.sensitivity.images < self.sensitivity.batch {
            return Err(format!(
                "field `sensitivity`: {} images cannot fill one batch of {}",
                self.sensitivity.images, self.sensitivity.batch
            ));
        }
        if self.output.as_os_str().is_empty() {
            return Err("field `output`: empty path".into());
        }
        Ok(())
    }
}
