//! The GPU job kinds as a client sends them: `Train`, `Indicators`, `Finetune`, `Eval` and
//! `Pipeline` specs, their checks at submission and their path resolution. They run in
//! `server::gpu`.
//!
//! The training kinds compose the run settings every run file shares ([`RunSpec`]: epochs,
//! batch, lr, momentum, nesterov, weight decay, label smoothing, clip, eval batch), written
//! directly in the job's parentheses beside its own fields; what a job leaves out is the
//! recipe of the CLI command it mirrors (`limpq train`: [`RunConfig::default`];
//! `limpq indicators`: [`JointConfig::default`]; `limpq finetune`:
//! [`FinetuneConfig::default`]). The data they read is one more shared piece
//! ([`JobData`]).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::data::DatasetKind;
use crate::method::{FinetuneChoices, FinetuneConfig, JointConfig};
use crate::model::Model;
use crate::train::run_spec::{once, read_fields, with_run_fields, RunSpec};
use crate::train::RunConfig;

/// The data a training job reads (as `limpq train`'s `--data`, `--data-dir`, `--subset`,
/// `--test-subset`, `--seed`). In the file these sit in the job's parentheses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobData {
    /// `fashion-mnist`, `mnist` or `cifar10` (default: the input checkpoint's, else
    /// fashion-mnist).
    pub data: Option<String>,
    /// Folder of the files (default: `$LIMPQ_DATA`, else `/usr/share/datasets/NAME`).
    pub data_dir: Option<PathBuf>,
    /// Train on N training images drawn with the seed (default: all).
    pub subset: Option<usize>,
    /// Evaluate on N test images drawn with a fixed seed (default: all).
    pub test_subset: Option<usize>,
    /// Seeds the init, the subset draw, shuffling and augmentation (default 0).
    pub seed: u64,
}

/// [`JobData`] while its fields are read, each at most once.
#[derive(Default)]
struct DataFields {
    data: Option<String>,
    data_dir: Option<Option<PathBuf>>,
    subset: Option<Option<usize>>,
    test_subset: Option<Option<usize>>,
    seed: Option<u64>,
}

impl DataFields {
    /// Reads field `key` of the data; `false` for another key.
    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "data" => once(&mut self.data, "data", map)?,
            "data_dir" => once(&mut self.data_dir, "data_dir", map)?,
            "subset" => once(&mut self.subset, "subset", map)?,
            "test_subset" => once(&mut self.test_subset, "test_subset", map)?,
            "seed" => once(&mut self.seed, "seed", map)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn finish(self) -> JobData {
        JobData {
            data: self.data,
            data_dir: self.data_dir.flatten(),
            subset: self.subset.flatten(),
            test_subset: self.test_subset.flatten(),
            seed: self.seed.unwrap_or(0),
        }
    }
}

impl JobData {
    fn write<S: SerializeStruct>(&self, st: &mut S) -> Result<(), S::Error> {
        crate::train::run_spec::write_opt(st, "data", &self.data)?;
        st.serialize_field("data_dir", &self.data_dir)?;
        st.serialize_field("subset", &self.subset)?;
        st.serialize_field("test_subset", &self.test_subset)?;
        st.serialize_field("seed", &self.seed)
    }

    /// The dataset: the job's, else `fallback` (the input checkpoint's), else fashion-mnist.
    pub fn name(&self, fallback: Option<&str>) -> String {
        self.data
            .clone()
            .or_else(|| fallback.map(str::to_string))
            .unwrap_or_else(default_data)
    }

    fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = self.data_dir.as_mut().filter(|p| p.is_relative()) {
            *p = base.join(&*p);
        }
    }

    /// The subsets, when given, hold an image at least, and the data folder exists (when
    /// the data set is known before the checkpoint is read).
    fn check(&self, default: Option<&str>) -> Result<(), String> {
        for (field, n) in [("subset", self.subset), ("test_subset", self.test_subset)] {
            if n == Some(0) {
                return Err(format!("{field}: must be at least 1"));
            }
        }
        match self.data.as_deref().or(default) {
            Some(d) => check_data_dir(d, self.data_dir.as_deref()),
            None => Ok(()),
        }
    }
}

/// Full-precision training of a model (see `limpq train`, whose options these mirror).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainJob {
    /// Built-in model (small_cnn, resnet20, resnet20-cifar, resnet18) or MODEL.ron.
    pub model: String,
    pub data: JobData,
    /// Default: [`RunConfig::default`], as `limpq train`.
    pub run: RunSpec,
    /// Start from this checkpoint's parameters and BN statistics.
    pub init: Option<PathBuf>,
}

/// Joint indicator training from a full-precision checkpoint (see `limpq indicators`):
/// writes an indicator file `limpq solve` and solve jobs read.
#[derive(Clone, Debug, PartialEq)]
pub struct IndicatorsJob {
    /// Built-in model or MODEL.ron; must match the checkpoint.
    pub model: String,
    /// Full-precision checkpoint to start from.
    pub ckpt: PathBuf,
    /// Candidate bit-widths, ascending (default `[2, 3, 4, 5, 6]`).
    pub bits: Vec<u32>,
    pub data: JobData,
    /// Default: [`JointConfig::default`], as `limpq indicators`.
    pub run: RunSpec,
    /// Where to write the indicator file (RON, or JSON by extension); default
    /// `indicators.ron` in the job's output folder.
    pub output: Option<PathBuf>,
    /// Also write the final joint state (weights, switchable BN, step sizes, momentum)
    /// here; the job keeps its own copy for resuming in any case.
    pub checkpoint: Option<PathBuf>,
}

/// Quantization-aware finetuning of a solved policy from a full-precision checkpoint (see
/// `limpq finetune`): writes a quantized checkpoint carrying its policy.
#[derive(Clone, Debug, PartialEq)]
pub struct FinetuneJob {
    /// Full-precision checkpoint (its model is used).
    pub ckpt: PathBuf,
    /// Policy file written by `limpq solve` or a solve job (RON, or JSON by extension).
    pub policy: PathBuf,
    /// Indicator file of the joint run: the step sizes start from its learned steps at the
    /// policy's bits with `steps_from_indicators: true`; otherwise it is read and checked,
    /// and the steps start from the LSQ init rule on the first batch (the reference's
    /// recipe, `limpq finetune`'s default).
    pub indicators: Option<PathBuf>,
    pub data: JobData,
    /// Default: [`FinetuneConfig::default`], as `limpq finetune`.
    pub run: RunSpec,
    /// `steps_from_indicators` (`--steps-from-indicators`; needs `indicators`; default
    /// `false`) and `bn_recalibration` (`--bn-recalibration`; default 6000; 0: none).
    pub choices: FinetuneChoices,
    /// Where to write the quantized checkpoint; default `model.ckpt` in the job's output
    /// folder.
    pub output: Option<PathBuf>,
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

fn default_bits() -> Vec<u32> {
    JointConfig::default().bits
}

/// The field names of a job: its own, the data's and the run settings'.
macro_rules! job_fields {
    ($($own:literal),*) => {
        with_run_fields!($($own,)* "data", "data_dir", "subset", "test_subset", "seed")
    };
}
const TRAIN_FIELDS: &[&str] = job_fields!("model", "init");
const INDICATORS_FIELDS: &[&str] = job_fields!("model", "ckpt", "bits", "output", "checkpoint");
const FINETUNE_FIELDS: &[&str] = job_fields!(
    "ckpt",
    "policy",
    "indicators",
    "output",
    "steps_from_indicators",
    "bn_recalibration"
);

fn required<T, E: de::Error>(v: Option<T>, key: &'static str) -> Result<T, E> {
    v.ok_or_else(|| de::Error::missing_field(key))
}

/// An `Option` field given at most once (`None` or `Some(…)` in RON).
fn once_opt<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    slot: &mut Option<Option<T>>,
    key: &'static str,
    map: &mut A,
) -> Result<(), A::Error> {
    once(slot, key, map)
}

impl<'de> Deserialize<'de> for TrainJob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TrainJob, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TrainJob;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a train job: (model: …, epochs: …, batch: …, lr: …, …)")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TrainJob, A::Error> {
                let (mut model, mut init) = (None, None);
                let mut data = DataFields::default();
                let run = read_fields(map, TRAIN_FIELDS, |k, map| {
                    match k {
                        "model" => once(&mut model, "model", map)?,
                        "init" => once_opt(&mut init, "init", map)?,
                        _ => return data.read(k, map),
                    }
                    Ok(true)
                })?;
                Ok(TrainJob {
                    model: required(model, "model")?,
                    data: data.finish(),
                    run,
                    init: init.flatten(),
                })
            }
        }
        d.deserialize_struct("TrainJob", TRAIN_FIELDS, V)
    }
}

impl Serialize for TrainJob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("TrainJob", TRAIN_FIELDS.len())?;
        st.serialize_field("model", &self.model)?;
        self.data.write(&mut st)?;
        self.run.write(&mut st)?;
        st.serialize_field("init", &self.init)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for IndicatorsJob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IndicatorsJob, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IndicatorsJob;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an indicators job: (model: …, ckpt: …, bits: […], epochs: …, …)")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<IndicatorsJob, A::Error> {
                let (mut model, mut ckpt, mut bits) = (None, None, None);
                let (mut output, mut checkpoint) = (None, None);
                let mut data = DataFields::default();
                let run = read_fields(map, INDICATORS_FIELDS, |k, map| {
                    match k {
                        "model" => once(&mut model, "model", map)?,
                        "ckpt" => once(&mut ckpt, "ckpt", map)?,
                        "bits" => once(&mut bits, "bits", map)?,
                        "output" => once_opt(&mut output, "output", map)?,
                        "checkpoint" => once_opt(&mut checkpoint, "checkpoint", map)?,
                        _ => return data.read(k, map),
                    }
                    Ok(true)
                })?;
                Ok(IndicatorsJob {
                    model: required(model, "model")?,
                    ckpt: required(ckpt, "ckpt")?,
                    bits: bits.unwrap_or_else(default_bits),
                    data: data.finish(),
                    run,
                    output: output.flatten(),
                    checkpoint: checkpoint.flatten(),
                })
            }
        }
        d.deserialize_struct("IndicatorsJob", INDICATORS_FIELDS, V)
    }
}

impl Serialize for IndicatorsJob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("IndicatorsJob", INDICATORS_FIELDS.len())?;
        st.serialize_field("model", &self.model)?;
        st.serialize_field("ckpt", &self.ckpt)?;
        st.serialize_field("bits", &self.bits)?;
        self.data.write(&mut st)?;
        self.run.write(&mut st)?;
        st.serialize_field("output", &self.output)?;
        st.serialize_field("checkpoint", &self.checkpoint)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for FinetuneJob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FinetuneJob, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FinetuneJob;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a finetune job: (ckpt: …, policy: …, epochs: …, …)")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FinetuneJob, A::Error> {
                let (mut ckpt, mut policy, mut indicators, mut output) = (None, None, None, None);
                let mut choices = FinetuneChoices::default();
                let mut data = DataFields::default();
                let run = read_fields(map, FINETUNE_FIELDS, |k, map| {
                    match k {
                        "ckpt" => once(&mut ckpt, "ckpt", map)?,
                        "policy" => once(&mut policy, "policy", map)?,
                        "indicators" => once_opt(&mut indicators, "indicators", map)?,
                        "output" => once_opt(&mut output, "output", map)?,
                        _ if choices.read(k, map)? => {}
                        _ => return data.read(k, map),
                    }
                    Ok(true)
                })?;
                Ok(FinetuneJob {
                    ckpt: required(ckpt, "ckpt")?,
                    policy: required(policy, "policy")?,
                    indicators: indicators.flatten(),
                    data: data.finish(),
                    run,
                    choices,
                    output: output.flatten(),
                })
            }
        }
        d.deserialize_struct("FinetuneJob", FINETUNE_FIELDS, V)
    }
}

impl Serialize for FinetuneJob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("FinetuneJob", FINETUNE_FIELDS.len())?;
        st.serialize_field("ckpt", &self.ckpt)?;
        st.serialize_field("policy", &self.policy)?;
        st.serialize_field("indicators", &self.indicators)?;
        self.data.write(&mut st)?;
        self.run.write(&mut st)?;
        self.choices.write(&mut st)?;
        st.serialize_field("output", &self.output)?;
        st.end()
    }
}

pub(crate) fn default_data() -> String {
    "fashion-mnist".into()
}

fn default_eval_batch() -> usize {
    RunConfig::default().eval_batch
}

fn check_hyper(job: &str, field: &str, v: Option<f32>) -> Result<(), String> {
    match v {
        Some(v) if !v.is_finite() || v < 0.0 => {
            Err(format!("{job}.{field}: {v} must be finite and ≥ 0"))
        }
        _ => Ok(()),
    }
}

/// The run settings of a job as its run will see them (`cfg`: the recipe with the job's
/// settings), checked: epochs in 1..=100000, batches ≥ 1, rates finite and ≥ 0, label
/// smoothing below 1. Errors name the job kind and the field.
fn check_run(job: &str, spec: &RunSpec, cfg: &RunConfig) -> Result<(), String> {
    if cfg.epochs == 0 || cfg.epochs > 100_000 {
        return Err(format!(
            "{job}.epochs: {} must be in 1..=100000",
            cfg.epochs
        ));
    }
    if cfg.batch == 0 || cfg.eval_batch == 0 {
        return Err(format!("{job}.batch and {job}.eval_batch must be positive"));
    }
    if cfg.eval_every == 0 {
        return Err(format!(
            "{job}.eval_every must be at least 1 (1: evaluate after every epoch)"
        ));
    }
    check_hyper(job, "lr", spec.lr)?;
    check_hyper(job, "momentum", spec.momentum)?;
    check_hyper(job, "weight_decay", spec.weight_decay)?;
    check_hyper(job, "label_smoothing", spec.label_smoothing)?;
    check_hyper(job, "clip", spec.clip)?;
    if cfg.label_smoothing >= 1.0 {
        return Err(format!(
            "{job}.label_smoothing: {} must be below 1",
            cfg.label_smoothing
        ));
    }
    cfg.check().map_err(|e| format!("{job}: {e}"))
}

fn check_ckpt(field: &str, p: &Path) -> Result<(), String> {
    if !p.is_file() {
        return Err(format!("{field}: no checkpoint at {}", p.display()));
    }
    Ok(())
}

/// An output file the job names: its folder exists and nothing but a regular file is
/// in its place (it is replaced atomically at the end).
fn check_output(field: &str, p: &Path) -> Result<(), String> {
    limpq_io::files::check_writable(p).map_err(|e| format!("{field}: {e}"))
}

/// No output of a job is one of its inputs or another output (a finetune job writing its
/// result over its own checkpoint), as the commands refuse it.
fn distinct_outputs(
    outputs: &[(&str, Option<&Path>)],
    inputs: &[(&str, Option<&Path>)],
) -> Result<(), String> {
    match limpq_io::files::output_clash(outputs, inputs) {
        Some(m) => Err(m),
        None => Ok(()),
    }
}

fn absolute(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

/// A relative model path is taken from `base` (the job file's folder). A model is a path
/// when it is no built-in's name and it is a `.ron` model description or an `.onnx` model
/// (a pipeline's), or a file of that name is in `base`; other names (a misspelt built-in)
/// are left for the model's own error.
fn resolve_model_path(base: &Path, model: &mut String) {
    let path = Path::new(model.as_str());
    let named_file = [".ron", ".onnx"]
        .iter()
        .any(|e| model.to_ascii_lowercase().ends_with(e));
    if crate::model::builtin(model).is_none()
        && path.is_relative()
        && (named_file || base.join(path).exists())
    {
        *model = base.join(path).display().to_string();
    }
}

/// `resnet20` with CIFAR-10 means its 3×32×32 sibling (as in `limpq train`).
/// `field` names the job's field in errors.
pub(crate) fn resolve_model(field: &str, name: &str, data: &str) -> Result<Model, String> {
    check_model_file(field, name)?;
    Model::resolve_for_data(name, data).map_err(|e| format!("{field}: {e}"))
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
    /// The run: `limpq train`'s recipe ([`RunConfig::default`]) with the job's settings.
    pub fn config(&self) -> RunConfig {
        self.run.apply(RunConfig {
            seed: self.data.seed,
            ..RunConfig::default()
        })
    }

    /// The dataset: the job's `data`, else `init`'s (`init_data`: its `data` meta, as
    /// `limpq train --init` takes it), else fashion-mnist.
    pub fn data_name(&self, init_data: Option<&str>) -> String {
        self.data.name(init_data)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        // With an `init` the data set may be the checkpoint's, read when the job runs: the
        // model name is checked here against the job's data, or fashion-mnist, and the data
        // folder when the job runs.
        resolve_model("train.model", &self.model, &self.data_name(None))?;
        let known = self.init.is_none().then(|| self.data_name(None));
        self.data.check(known.as_deref())?;
        check_run("train", &self.run, &self.config())?;
        if let Some(p) = &self.init {
            check_ckpt("train.init", p)?;
        }
        Ok(())
    }

    pub fn resolve_paths(&mut self, base: &Path) {
        self.data.resolve_paths(base);
        if let Some(p) = self.init.as_mut() {
            absolute(base, p);
        }
        resolve_model_path(base, &mut self.model);
    }
}

impl IndicatorsJob {
    /// The run: `limpq indicators`' recipe ([`JointConfig::default`]) with the job's
    /// settings and bits.
    pub fn config(&self) -> JointConfig {
        let base = JointConfig::default().run;
        JointConfig {
            bits: self.bits.clone(),
            run: self.run.apply(RunConfig {
                seed: self.data.seed,
                ..base
            }),
            ..JointConfig::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        // The data set may be the checkpoint's, read when the job runs: the model name is
        // checked here against the job's data, or fashion-mnist.
        resolve_model("indicators.model", &self.model, &self.data.name(None))?;
        check_ckpt("indicators.ckpt", &self.ckpt)?;
        self.data.check(None)?;
        crate::method::check_bits(&self.bits).map_err(|e| format!("indicators.bits: {e}"))?;
        check_run("indicators", &self.run, &self.config().run)?;
        for (field, p) in [
            ("indicators.output", &self.output),
            ("indicators.checkpoint", &self.checkpoint),
        ] {
            if let Some(p) = p {
                check_output(field, p)?;
            }
        }
        distinct_outputs(
            &[
                ("indicators.output", self.output.as_deref()),
                ("indicators.checkpoint", self.checkpoint.as_deref()),
            ],
            &[
                ("indicators.ckpt", Some(&self.ckpt)),
                ("indicators.model", Some(Path::new(&self.model))),
            ],
        )
    }

    pub fn resolve_paths(&mut self, base: &Path) {
        self.data.resolve_paths(base);
        absolute(base, &mut self.ckpt);
        for p in [self.output.as_mut(), self.checkpoint.as_mut()]
            .into_iter()
            .flatten()
        {
            absolute(base, p);
        }
        resolve_model_path(base, &mut self.model);
    }
}

impl FinetuneJob {
    /// The run: `limpq finetune`'s recipe ([`FinetuneConfig::default`]) with the job's
    /// settings.
    pub fn config(&self) -> FinetuneConfig {
        let base = FinetuneConfig::default().run;
        self.choices.apply(FinetuneConfig {
            run: self.run.apply(RunConfig {
                seed: self.data.seed,
                ..base
            }),
            ..FinetuneConfig::default()
        })
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        check_ckpt("finetune.ckpt", &self.ckpt)?;
        super::job::check_regular("finetune.policy", &self.policy)?;
        limpq_io::documents::read_policy(&self.policy)
            .map_err(|e| format!("finetune.policy: {e}"))?;
        if let Some(p) = &self.indicators {
            super::job::check_regular("finetune.indicators", p)?;
            limpq_io::documents::read_indicators(p)
                .map_err(|e| format!("finetune.indicators: {e}"))?;
        }
        if self.choices.steps_from_indicators == Some(true) && self.indicators.is_none() {
            return Err(
                "finetune.steps_from_indicators: true needs finetune.indicators (the joint \
                 run's indicator file the steps come from)"
                    .into(),
            );
        }
        self.data.check(None)?;
        check_run("finetune", &self.run, &self.config().run)?;
        if let Some(p) = &self.output {
            check_output("finetune.output", p)?;
        }
        distinct_outputs(
            &[("finetune.output", self.output.as_deref())],
            &[
                ("finetune.ckpt", Some(&self.ckpt)),
                ("finetune.policy", Some(&self.policy)),
                ("finetune.indicators", self.indicators.as_deref()),
            ],
        )
    }

    pub fn resolve_paths(&mut self, base: &Path) {
        self.data.resolve_paths(base);
        for p in [
            Some(&mut self.ckpt),
            Some(&mut self.policy),
            self.indicators.as_mut(),
            self.output.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            absolute(base, p);
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
        if self.subset == Some(0) {
            return Err("eval.subset: must be at least 1".into());
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
    crate::pipeline::check_output(job).map_err(|e| format!("pipeline.output: {e}"))?;
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
    resolve_model_path(base, &mut job.model);
}
