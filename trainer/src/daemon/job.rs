//! Job specifications: what a client sends in a `Submit`, and the checks done when it
//! arrives. How a job runs is the server's business (`server::exec`, `server::gpu`); this
//! module does not depend on it.

use std::fs;
use std::path::{Path, PathBuf};

use limpq_io::files;

use super::error::Error;
use serde::{Deserialize, Serialize};

pub use super::gpu_specs::{EvalJob, FinetuneJob, IndicatorsJob, JobData, PipelineJob, TrainJob};
pub use limpq_solver::{BitOpsBudget, SizeBudget};

/// A job file (`JOB.ron`): an optional name and what to run.
///
/// ```ron
/// (name: "w3a3 search", job: Solve((indicators: "resnet20.indicators.ron", bitops: Some("w3a3"))))
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    #[serde(default)]
    pub name: String,
    pub job: JobKind,
}

/// The kinds of job the daemon runs.
// A job is parsed once and held once per run: the pipeline's larger size costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobKind {
    /// The bit-width search on an indicator file; writes `policy.ron`.
    Solve(SolveJob),
    /// Full-precision training on the GPU; writes `model.ckpt` and `history.ron`.
    Train(TrainJob),
    /// Joint indicator training on the GPU (`limpq indicators`); writes `indicators.ron`.
    Indicators(IndicatorsJob),
    /// Quantization-aware finetuning of a policy on the GPU (`limpq finetune`); writes
    /// `model.ckpt`.
    Finetune(FinetuneJob),
    /// Test accuracy of a checkpoint on the GPU; writes `eval.ron`.
    Eval(EvalJob),
    /// The whole method (a `limpq pipeline` job file); writes into its `output` folder.
    Pipeline(PipelineJob),
    /// TEST-ONLY: count to `n`, one step every `step_ms`, checkpointing the counter after every
    /// step. Refused unless the daemon was started with test jobs enabled (the hidden
    /// `limpq serve --test-jobs` flag, or `Config::test_jobs`). It exists so the queue, resume
    /// and crash paths are tested without a GPU.
    Count(CountJob),
}

impl JobKind {
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Solve(_) => "solve",
            JobKind::Train(_) => "train",
            JobKind::Indicators(_) => "indicators",
            JobKind::Finetune(_) => "finetune",
            JobKind::Eval(_) => "eval",
            JobKind::Pipeline(_) => "pipeline",
            JobKind::Count(_) => "count",
        }
    }
}

/// The bit-width search of `limpq solve` on an indicator file. Budgets are the solver's own
/// types, written as `limpq solve` takes them: `bitops: Some("w3a3")` (the BitOps of every
/// searchable layer at W3 A3) or `Some(278175744)`; `size: Some("cr:8")` (a compression
/// ratio against 32-bit weights) or `Some(250000)` (bytes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SolveJobFile")]
pub struct SolveJob {
    /// Indicator file (RON or JSON); relative to the job file's directory.
    pub indicators: PathBuf,
    /// Weight of the weight indicators in the objective (default: the file's,
    /// [`limpq_solver::IndicatorSet::default_alpha`]).
    pub alpha: Option<f64>,
    pub bitops: Option<BitOpsBudget>,
    /// Weight-size budget.
    pub size: Option<SizeBudget>,
}

/// A solve job as files spell it: the current fields, and those of format version 1
/// (`bitops: Some(Uniform(3, 3))` / `Some(Absolute(n))`, `size_bytes`, `compression`),
/// still read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SolveJobFile {
    indicators: PathBuf,
    #[serde(default)]
    alpha: Option<f64>,
    #[serde(default)]
    bitops: Option<BitOpsField>,
    #[serde(default)]
    size: Option<SizeBudget>,
    #[serde(default)]
    size_bytes: Option<u64>,
    #[serde(default)]
    compression: Option<f64>,
}

impl TryFrom<SolveJobFile> for SolveJob {
    type Error = String;
    fn try_from(f: SolveJobFile) -> Result<SolveJob, String> {
        let old = match (f.size_bytes, f.compression) {
            (Some(_), Some(_)) => {
                return Err("solve: give size_bytes or compression, not both".into())
            }
            (Some(b), None) => Some(SizeBudget::Bytes(b)),
            (None, Some(c)) => Some(SizeBudget::CompressionRatio(c)),
            (None, None) => None,
        };
        let size = match (f.size, old) {
            (Some(_), Some(_)) => {
                return Err(
                    "solve: give size, or the older size_bytes / compression, not both".into(),
                )
            }
            (s, o) => s.or(o),
        };
        Ok(SolveJob {
            indicators: f.indicators,
            alpha: f.alpha,
            bitops: f.bitops.map(|b| b.0),
            size,
        })
    }
}

/// A BitOps budget as the solver reads it (`"w3a3"`, a number), or in the form of format
/// version 1: `Uniform(3, 3)` or `Absolute(n)` (RON hands those over as a sequence of two
/// numbers or of one).
struct BitOpsField(BitOpsBudget);

impl<'de> Deserialize<'de> for BitOpsField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BitOpsField, D::Error> {
        use serde::de::{self, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BitOpsField;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a BitOps budget: \"w3a3\" or a number of BitOps")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BitOpsField, E> {
                v.parse().map(BitOpsField).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<BitOpsField, E> {
                Ok(BitOpsField(BitOpsBudget::Absolute(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<BitOpsField, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("a BitOps budget of {v}: must be ≥ 0")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BitOpsField, A::Error> {
                let first: u64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let budget = match seq.next_element::<u32>()? {
                    None => BitOpsBudget::Absolute(first),
                    Some(act) => BitOpsBudget::Uniform {
                        weight: u32::try_from(first)
                            .map_err(|_| de::Error::custom("weight bits above u32"))?,
                        act,
                    },
                };
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                Ok(BitOpsField(budget))
            }
        }
        d.deserialize_any(V)
    }
}

/// TEST-ONLY job (see [`JobKind::Count`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountJob {
    pub n: u64,
    #[serde(default)]
    pub step_ms: u64,
    /// Fail with an error when the counter reaches this value.
    #[serde(default)]
    pub fail_at: Option<u64>,
    /// Panic when the counter reaches this value (the worker must survive it).
    #[serde(default)]
    pub panic_at: Option<u64>,
}

impl JobSpec {
    /// The newest `format_version` of daemon job files this build reads.
    /// Version 2: solve budgets are the solver's (`bitops: Some("w3a3")`, `size`); the
    /// training jobs take `clip`; `Indicators` and `Finetune` jobs. Version 1 files still read.
    pub const FORMAT_VERSION: u32 = 2;

    /// Parse a job file, resolving relative paths against the file's directory.
    pub fn from_file(path: &Path) -> Result<JobSpec, Error> {
        // Bounded, but any readable file: `limpq submit <(…)` reads a pipe.
        let text = files::read_text(path, files::MAX_TEXT)?;
        // An optional top-level `format_version` (docs/FORMATS.md); a newer one is refused.
        let parsed = limpq_solver::format::versioned::from_ron(&text, JobSpec::FORMAT_VERSION);
        let mut spec: JobSpec = match parsed {
            Ok(s) => s,
            Err(e) if e.to_string().contains("format_version") => {
                return Err(Error::Invalid(format!("{}: {e}", path.display())))
            }
            // A `limpq pipeline` job file, submitted as it is.
            Err(e) => match crate::pipeline::Job::from_ron_str(&text) {
                Ok(p) => JobSpec {
                    name: String::new(),
                    job: JobKind::Pipeline(p),
                },
                // A pipeline job of a newer version: say so, not why it is no JobSpec.
                Err(pe) if pe.contains("format_version") => {
                    return Err(Error::Invalid(format!("{}: {pe}", path.display())))
                }
                Err(_) => return Err(Error::Invalid(format!("{}: {e}", path.display()))),
            },
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let base = fs::canonicalize(if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        })
        .map_err(|e| Error::io("cannot resolve", base, e))?;
        spec.resolve_paths(&base);
        Ok(spec)
    }

    /// Make every relative path in the spec relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        match &mut self.job {
            JobKind::Solve(s) => fix(&mut s.indicators),
            JobKind::Train(t) => t.resolve_paths(base),
            JobKind::Indicators(t) => t.resolve_paths(base),
            JobKind::Finetune(t) => t.resolve_paths(base),
            JobKind::Eval(e) => e.resolve_paths(base),
            JobKind::Pipeline(p) => super::gpu_specs::resolve_pipeline_paths(p, base),
            JobKind::Count(_) => {}
        }
    }

    /// The name shown in listings.
    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            self.job.name().to_string()
        } else {
            self.name.clone()
        }
    }

    /// Checks done at submission, so a bad spec is an error reply rather than a failed job.
    /// The error names the field (and the file, for a file the job reads).
    pub fn validate(&self, test_jobs: bool) -> Result<(), Error> {
        self.check(test_jobs).map_err(Error::Invalid)
    }

    fn check(&self, test_jobs: bool) -> Result<(), String> {
        if self.name.chars().count() > 200 {
            return Err("job name: longer than 200 characters".into());
        }
        // A name is printed in `limpq jobs`' table: a newline or an escape sequence would
        // forge rows or recolour the terminal.
        if let Some(c) = self.name.chars().find(|c| c.is_control()) {
            return Err(format!("job name: holds the control character {:?}", c));
        }
        match &self.job {
            JobKind::Solve(s) => {
                load_indicators(&s.indicators)?;
                if let Some(a) = s.alpha {
                    check_nonneg("solve.alpha", a)?;
                }
                if let Some(SizeBudget::CompressionRatio(c)) = s.size {
                    check_nonneg("solve.size", c)?;
                    if c == 0.0 {
                        return Err("solve.size: a compression ratio must be positive".into());
                    }
                }
                Ok(())
            }
            JobKind::Train(t) => t.validate(),
            JobKind::Indicators(t) => t.validate(),
            JobKind::Finetune(t) => t.validate(),
            JobKind::Eval(e) => e.validate(),
            JobKind::Pipeline(p) => super::gpu_specs::validate_pipeline(p),
            JobKind::Count(c) => {
                if !test_jobs {
                    return Err("count is a test-only job kind; this daemon was not started with test jobs enabled".into());
                }
                if c.n > 1_000_000 || c.step_ms > 60_000 {
                    return Err("count: n at most 1000000 and step_ms at most 60000".into());
                }
                Ok(())
            }
        }
    }
}

fn check_nonneg(field: &str, v: f64) -> Result<(), String> {
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{field}: {v} must be finite and ≥ 0"));
    }
    Ok(())
}

/// Checks that `path` is a regular file of at most [`files::MAX_TEXT`] bytes without reading
/// it (a FIFO is refused without blocking, `/dev/zero` without reading a byte).
pub(super) fn check_regular(field: &str, path: &Path) -> Result<(), String> {
    let f = files::open_regular(path).map_err(|e| format!("{field}: {e}"))?;
    let len = f
        .metadata()
        .map_err(|e| format!("{field}: {}: {e}", path.display()))?
        .len();
    if len > files::MAX_TEXT {
        return Err(format!(
            "{field}: {} is {len} bytes, above the {}-byte cap",
            path.display(),
            files::MAX_TEXT
        ));
    }
    Ok(())
}

/// Reads an indicator file: a regular file of at most [`files::MAX_TEXT`] bytes (a FIFO or
/// a device is refused without blocking).
pub(crate) fn load_indicators(path: &Path) -> Result<limpq_solver::IndicatorSet, String> {
    let text = files::read_regular_text(path, files::MAX_TEXT)
        .map_err(|e| format!("indicator file: {e}"))?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        limpq_solver::IndicatorSet::from_json_str(&text)
    } else {
        limpq_solver::IndicatorSet::from_ron_str(&text)
    };
    parsed.map_err(|e| format!("indicator file {}: {e}", path.display()))
}
