//! `limpq pipeline JOB.ron`: the whole method end to end, resumable.
//!
//! For every seed: full-precision pretraining (or a given checkpoint) → the indicators
//! (measured sensitivity and/or joint indicator training, [`Job::runs_joint`]) → at every
//! budget the searched policy (exact solver), the uniform policy and
//! random policies at the same BitOps (see [`policies`]) → the same finetuning recipe for
//! each → test accuracy. Then `report.md`, `accuracy_vs_bitops.svg` and `bits_<budget>.svg`.
//!
//! Layout of the output folder:
//!
//! ```text
//! state.ron                         completed stages with their input fingerprints
//! pipeline.lock                     locked by the run in progress (see [`lock`]); empty
//! seed<S>/pretrain.ckpt             full-precision model (absent when `pretrain.init` is set)
//! seed<S>/indicators.ron            learned indicators (an IndicatorSet), when the joint run runs
//! seed<S>/sensitivity.ron           measured sensitivity, when measured
//! seed<S>/policies/<budget>_<kind>.ron   kind: searched, uniform, random<k>
//! seed<S>/finetune/<budget>_<kind>.ckpt  finetuned quantized model (unless
//!                                       `keep_finetuned: false`)
//! results.ron, report.md, accuracy_vs_bitops.svg, bits_<budget>.svg
//! ```
//!
//! Every file is written atomically. A stage is skipped on a re-run when `state.ron` records
//! it with the same fingerprint (a hash of every setting it depends on, the policy's bits
//! included) and its output files exist and load; anything else runs again. The GPU work is
//! behind the [`Stages`] trait so that the orchestration is tested without a GPU. One run
//! at a time per output folder: [`run`] locks it ([`lock::OutputLock`]) and a second run
//! on the same folder fails at once, naming the folder.
//!
//! Under `mpirun` with several ranks ([`Dist::global`]), every rank runs [`run`]:
//! pretraining and joint training are data-parallel over all ranks (the GPU stages give
//! them the job's ranks); the finetunes of a budget are dealt round the ranks, one each per
//! round (finetune `i` of the budget to rank `i mod N`), each a one-process run on its
//! rank's adapter, and after each round every rank's result reaches every rank. Rank 0
//! alone writes the job's shared files (`state.ron`, the pretrained checkpoint, indicator,
//! sensitivity and policy files, the report); a finetune's own files (its partial and kept
//! checkpoints) are written by the rank that runs it. The output folder must be on a file
//! system every rank sees.

pub mod gpu;
pub mod job;
pub mod lock;
pub mod policies;
pub mod report;
pub mod source;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use limpq_solver::format::versioned::ron_from_str;
use limpq_solver::{IndicatorSet, Policy};
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::dist::Dist;
use crate::model::Model;
use crate::train::Event as TrainEvent;

pub use job::{
    Budget, Control, DataSpec, FinetuneSpec, Job, JointSpec, PretrainSpec, RunSpec, Search,
    SensitivitySpec,
};
pub use report::{BudgetResult, ControlResult, PolicyResult, Results, SeedResult};

/// Why a pipeline stopped. Every message names the job field, file or stage.
#[derive(Debug)]
#[non_exhaustive]
pub enum PipelineError {
    /// The job file is unreadable or invalid.
    Job(String),
    /// A file of the output folder could not be written or read.
    Io { path: PathBuf, message: String },
    /// A file of the output folder could not be read (unreadable, not a regular file,
    /// too large, not text); the error names it.
    File(limpq_io::FileError),
    /// A stage failed; `stage` names it (`seed 0: finetune w2a3 searched`).
    Stage { stage: String, message: String },
    /// A stop was requested ([`Stages::stop_requested`]); `stage` is the one that was
    /// running or about to start. Completed stages are kept, the stopped one's position
    /// too: a rerun goes on from there.
    Stopped { stage: String },
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::Job(m) => write!(f, "pipeline job: {m}"),
            PipelineError::Io { path, message } => write!(f, "{}: {message}", path.display()),
            PipelineError::File(e) => e.fmt(f),
            PipelineError::Stage { stage, message } => write!(f, "{stage}: {message}"),
            PipelineError::Stopped { stage } => write!(
                f,
                "{stage}: stopped on request; a rerun skips the completed stages and goes on \
                 with this one from where it stopped"
            ),
        }
    }
}

impl std::error::Error for PipelineError {}

/// Reads a text file of the job's output folder: a regular file of at most
/// [`limpq_io::files::MAX_TEXT`] bytes, so a FIFO or a device put in its place is refused
/// without blocking and `/dev/zero` is not read until memory runs out.
fn read_output(path: &Path) -> Result<String, limpq_io::FileError> {
    limpq_io::files::read_regular_text(path, limpq_io::files::MAX_TEXT)
}

fn io_err(path: &Path, e: impl fmt::Display) -> PipelineError {
    PipelineError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Test accuracy (in [0, 1]) and mean loss.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    pub accuracy: f64,
    pub loss: f64,
}

/// Where a training stage keeps its progress, and the fingerprint of the stage's inputs: a
/// partial checkpoint whose recorded fingerprint differs is stale and must not be resumed.
#[derive(Clone, Debug, PartialEq)]
pub struct Partial {
    pub path: PathBuf,
    pub fingerprint: String,
}

impl Partial {
    /// The partial file of a stage at `path` (its folder created) with its inputs'
    /// fingerprint.
    fn new(path: PathBuf, fingerprint: &str) -> Result<Partial, PipelineError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        }
        Ok(Partial {
            path,
            fingerprint: fingerprint.to_string(),
        })
    }
}

/// Meta key under which a partial checkpoint records its stage's fingerprint.
pub const PARTIAL_FINGERPRINT: &str = "pipeline.fingerprint";

/// The GPU work of the pipeline. [`gpu::GpuStages`] runs it on a GPU; tests substitute
/// their own.
pub trait Stages {
    /// Whether a stop was requested: checked before every stage. Stages should stop their
    /// training runs promptly once it is set (the GPU stages pass it to every run) and then
    /// return [`StageError::Stopped`], which ends the pipeline with
    /// [`PipelineError::Stopped`].
    fn stop_requested(&self) -> bool {
        false
    }
    /// Full-precision training from scratch for `seed`. `partial` says where the run may
    /// keep its progress (epoch ends, a stop) so that a run cut short continues from there
    /// next time instead of from scratch; the pipeline removes it once the stage is done.
    fn pretrain(
        &mut self,
        seed: u64,
        partial: &Partial,
        on_event: &mut dyn FnMut(&TrainEvent),
    ) -> Result<(Checkpoint, Eval), StageError>;
    /// Test accuracy of a full-precision checkpoint (for `pretrain.init`).
    fn evaluate_fp(&mut self, ckpt: &Checkpoint) -> Result<Eval, StageError>;
    /// Joint indicator training from `init`; `partial` as for [`Stages::pretrain`].
    fn indicators(
        &mut self,
        init: &Checkpoint,
        seed: u64,
        partial: &Partial,
        on_event: &mut dyn FnMut(&TrainEvent),
    ) -> Result<IndicatorSet, StageError>;
    /// Measured sensitivity of the full-precision `init` (the `sensitivity` control): an
    /// indicator file over `bits` from calibration images drawn with `seed`.
    fn sensitivity(
        &mut self,
        _init: &Checkpoint,
        _bits: &[u32],
        _spec: &SensitivitySpec,
        _seed: u64,
    ) -> Result<IndicatorSet, StageError> {
        Err(StageError::Failed(
            "this runner cannot measure sensitivity".into(),
        ))
    }
    /// Training and test images used (for the report).
    fn data_sizes(&self) -> (usize, usize);
    /// Quantization-aware finetuning of `policy` from `init`, then its test accuracy;
    /// `partial` as for [`Stages::pretrain`].
    #[allow(clippy::too_many_arguments)]
    fn finetune(
        &mut self,
        init: &Checkpoint,
        policy: &Policy,
        indicators: &IndicatorSet,
        seed: u64,
        partial: &Partial,
        on_event: &mut dyn FnMut(&TrainEvent),
    ) -> Result<(Checkpoint, Eval), StageError>;
}

/// Progress of a pipeline run.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// `total` stages will run or be skipped.
    Plan { total: usize },
    StageStart {
        index: usize,
        total: usize,
        name: String,
    },
    /// Progress of the stage's training run.
    Train(TrainEvent),
    StageDone {
        index: usize,
        total: usize,
        name: String,
        /// One line: accuracy, BitOps, seconds.
        summary: String,
    },
    /// Completed in an earlier run with the same settings.
    StageSkipped {
        index: usize,
        total: usize,
        name: String,
    },
    /// A warning or fact worth showing (also kept in the report's notes).
    Note(String),
}

/// One completed stage in `state.ron`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// `seed0/pretrain`, `seed0/indicators`, `seed0/finetune/w2a3_searched`.
    pub key: String,
    /// Hash of every setting the stage depends on.
    pub fingerprint: String,
    /// Files the stage wrote, relative to the output folder.
    pub outputs: Vec<String>,
    pub eval: Option<Eval>,
    pub seconds: f64,
}

/// `state.ron`: the completed stages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub stages: Vec<StageRecord>,
}

impl State {
    /// The newest `version` of `state.ron` this build reads and writes.
    pub const VERSION: u32 = 1;

    /// Reads `state.ron` in `out`, or an empty state when there is none. A state of a newer
    /// `version` than [`State::VERSION`] (written by a newer limpq) is refused: its records
    /// may not mean what this build takes them to mean, and a run would overwrite them.
    pub fn load(out: &Path) -> Result<State, PipelineError> {
        let path = out.join("state.ron");
        if !path.exists() {
            return Ok(State {
                version: State::VERSION,
                stages: Vec::new(),
            });
        }
        let text = read_output(&path).map_err(PipelineError::File)?;
        let state: State = ron_from_str(&text)
            .map_err(|e| io_err(&path, format!("not a valid pipeline state: {e}")))?;
        if state.version > State::VERSION {
            return Err(io_err(
                &path,
                format!(
                    "field `version`: version {} is newer than this limpq reads (up to {}); \
                     use a newer limpq",
                    state.version,
                    State::VERSION
                ),
            ));
        }
        Ok(state)
    }

    pub fn save(&self, out: &Path) -> Result<(), PipelineError> {
        let cfg = ron::ser::PrettyConfig::new().struct_names(true);
        let text =
            ron::ser::to_string_pretty(self, cfg).map_err(|e| io_err(&out.join("state.ron"), e))?;
        write_atomic(&out.join("state.ron"), text.as_bytes())
    }

    /// The record of `key` if it was completed with `fingerprint`.
    pub fn done(&self, key: &str, fingerprint: &str) -> Option<&StageRecord> {
        self.stages
            .iter()
            .find(|r| r.key == key && r.fingerprint == fingerprint)
    }

    fn record(&mut self, rec: StageRecord) {
        self.stages.retain(|r| r.key != rec.key);
        self.stages.push(rec);
    }
}

/// Writes `bytes` to `path` with `limpq_io::files::write_atomic` (unique temporary, fsync,
/// rename, fsync of the folder; never over anything but a regular file), creating the
/// folder first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PipelineError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    limpq_io::files::write_atomic(path, bytes).map_err(|e| PipelineError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Saves a checkpoint (atomically, by [`Checkpoint::save`]), creating its folder.
fn save_ckpt(ck: &Checkpoint, path: &Path) -> Result<(), PipelineError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    // save's only error is the write's, which names the file already.
    ck.save(path).map_err(|e| match e {
        crate::checkpoint::CheckpointError::File(f) => PipelineError::File(f),
        other => PipelineError::Io {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    })
}

/// FNV-1a 64 of `parts`, as hex: the fingerprint of a stage's inputs.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.as_bytes().iter().chain(&[0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// A validated job bound to its model: what will run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub job: Job,
    pub model: Model,
    /// Budgets in BitOps, aligned with `job.budgets`.
    pub bitops: Vec<u64>,
    /// Why a budget is skipped, aligned with `job.budgets`.
    pub skipped: Vec<Option<String>>,
    /// Pretrained weights imported with the model (an ONNX `model`, a safetensors
    /// `pretrain.init`): written into the run folder, every seed's start.
    pub imported: Option<source::Imported>,
}

impl Plan {
    /// Binds the job to its model and checks the budgets against it: below the smallest
    /// possible BitOps is an error; equal to it (every policy is the all-lowest-bits one,
    /// e.g. W2A2 with 2 the lowest candidate) is skipped with a note. Every error names
    /// the job's field, and its file when it was read from one ([`Job::error`]).
    pub fn new(job: Job) -> Result<Plan, PipelineError> {
        job.validate().map_err(|e| job.error(e))?;
        let (model, imported) = source::resolve(&job).map_err(|e| job.error(e))?;
        let skel = model
            .indicator_skeleton(&job.joint.bits, &job.joint.bits)
            .map_err(|e| job.error(format!("field `model`: {e}")))?;
        if policies::searchable(&skel).is_empty() {
            return Err(job.error(format!(
                "field `model`: '{}' has no searchable layer (only the fixed stem and classifier)",
                model.name
            )));
        }
        let min = Budget::floor(&skel);
        let lo = job.joint.bits.iter().copied().min().unwrap_or(2);
        let mut bitops = Vec::new();
        let mut skipped = Vec::new();
        for b in &job.budgets {
            let n = b.bitops(&skel);
            if n < min {
                return Err(job.error(format!(
                    "field `budgets`: {b} = {n} BitOps is below the smallest possible {min} \
                     (every searchable layer of '{}' at W{lo}A{lo})",
                    model.name
                )));
            }
            skipped.push((n == min).then(|| {
                format!(
                    "{b} admits only the all-W{lo}A{lo} policy ({n} BitOps): searched, uniform \
                     and random would all be the same policy"
                )
            }));
            bitops.push(n);
        }
        Ok(Plan {
            job,
            model,
            bitops,
            skipped,
            imported,
        })
    }

    /// Stages (pretrain, indicators, finetunes) the run goes through.
    pub fn stage_count(&self) -> usize {
        let per_budget: usize = self
            .job
            .budgets
            .iter()
            .zip(&self.skipped)
            .filter(|(_, s)| s.is_none())
            .map(|(b, _)| {
                1 + self.job.random_policies
                    + usize::from(matches!(b, Budget::Uniform { .. }))
                    + self.job.controls.len()
            })
            .sum();
        let sensitivity = usize::from(self.job.measures_sensitivity());
        let joint = usize::from(self.job.runs_joint());
        self.job.seeds.len() * (1 + joint + sensitivity + per_budget)
    }
}

/// Why a stage of [`Stages`] did not finish: typed, so that a stop is never mistaken for a
/// failure (nor the other way round).
#[derive(Clone, Debug, PartialEq)]
pub enum StageError {
    /// The stage's run was stopped on request and kept its position (its partial file): a
    /// rerun goes on from there. Not a failure.
    Stopped,
    /// The stage failed; the message says why.
    Failed(String),
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageError::Stopped => f.write_str("stopped on request"),
            StageError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StageError {}

impl From<String> for StageError {
    fn from(m: String) -> Self {
        StageError::Failed(m)
    }
}

impl From<&str> for StageError {
    fn from(m: &str) -> Self {
        StageError::Failed(m.to_string())
    }
}

impl PipelineError {
    /// Whether the run ended because a stop was requested (not a failure).
    pub fn is_stop(&self) -> bool {
        matches!(self, PipelineError::Stopped { .. })
    }
}

fn stage_err(stage: &str, message: impl fmt::Display) -> PipelineError {
    PipelineError::Stage {
        stage: stage.to_string(),
        message: message.to_string(),
    }
}

/// What went wrong inside a stage's body: the stage itself ([`Stages`]) or the pipeline's
/// own files and inputs.
enum StageFail {
    Stage(StageError),
    Pipeline(PipelineError),
}

impl From<StageError> for StageFail {
    fn from(e: StageError) -> Self {
        StageFail::Stage(e)
    }
}

impl From<PipelineError> for StageFail {
    fn from(e: PipelineError) -> Self {
        StageFail::Pipeline(e)
    }
}

/// What a stage that ran hands back to [`Runner::stage`].
struct Done<T> {
    value: T,
    /// Files it wrote, relative to the output folder.
    outputs: Vec<String>,
    eval: Option<Eval>,
    /// The `StageDone` line, without the seconds (appended).
    summary: String,
    /// The stage's progress file (a `*.partial.ckpt`), removed once `state.ron` records the
    /// stage: removed before, a crash in between reran the whole stage.
    partial: Option<PathBuf>,
}

/// Runs the stages one after another: numbering, skipping what `state.ron` records as done,
/// stop checks, events, and recording each completed stage.
struct Runner<'a> {
    out: &'a Path,
    /// The job's ranks: rank 0 alone saves `state.ron` (every rank keeps it in memory).
    dist: Dist,
    state: State,
    index: usize,
    total: usize,
    on_event: &'a mut dyn FnMut(&Event),
}

impl Runner<'_> {
    /// One stage: `key` in `state.ron` with `fingerprint`. When it is recorded as done
    /// with that fingerprint and `skip` can load what it produced, that is returned (a
    /// `StageSkipped` event); else, unless a stop was requested, `body` runs it, and the
    /// stage is recorded and announced done.
    fn stage<T>(
        &mut self,
        stages: &mut dyn Stages,
        name: String,
        key: String,
        fingerprint: &str,
        skip: impl FnOnce(&StageRecord) -> Option<T>,
        body: impl FnOnce(&mut dyn Stages, &mut dyn FnMut(&Event)) -> Result<Done<T>, StageFail>,
    ) -> Result<T, PipelineError> {
        self.index += 1;
        let (index, total) = (self.index, self.total);
        if let Some(v) = self.state.done(&key, fingerprint).and_then(skip) {
            (self.on_event)(&Event::StageSkipped { index, total, name });
            return Ok(v);
        }
        if stages.stop_requested() {
            return Err(PipelineError::Stopped { stage: name });
        }
        (self.on_event)(&Event::StageStart {
            index,
            total,
            name: name.clone(),
        });
        let t = Instant::now();
        let done = match body(stages, &mut *self.on_event) {
            Ok(d) => d,
            Err(StageFail::Stage(StageError::Stopped)) => {
                return Err(PipelineError::Stopped { stage: name })
            }
            Err(StageFail::Stage(StageError::Failed(m))) => return Err(stage_err(&name, m)),
            Err(StageFail::Pipeline(e)) => return Err(e),
        };
        self.state.record(StageRecord {
            key,
            fingerprint: fingerprint.to_string(),
            outputs: done.outputs,
            eval: done.eval,
            seconds: t.elapsed().as_secs_f64(),
        });
        self.save()?;
        if let Some(p) = done.partial.filter(|_| self.dist.is_root()) {
            let _ = std::fs::remove_file(p);
        }
        (self.on_event)(&Event::StageDone {
            index,
            total,
            name,
            summary: format!("{} ({:.1} s)", done.summary, t.elapsed().as_secs_f64()),
        });
        Ok(done.value)
    }
}

/// Runs independent stage `i` of [`Runner::shared_stages`].
type SharedBody<'a> =
    dyn FnMut(usize, &mut dyn Stages, &mut dyn FnMut(&Event)) -> Result<Done<Eval>, StageFail> + 'a;

impl Runner<'_> {
    /// Saves `state.ron` (rank 0 only).
    fn save(&self) -> Result<(), PipelineError> {
        if self.dist.is_root() {
            self.state.save(self.out)?;
        }
        Ok(())
    }

    /// Independent stages, each with its `(name, key, fingerprint)`, dealt round the
    /// ranks: in rounds of N, item `i` of a round runs on rank `i` (one process: `body`
    /// gets its index), then every rank's evaluation reaches every rank, each finished
    /// stage is recorded on every rank and rank 0 saves the state. A stage `state.ron`
    /// records (and `skip` accepts) is not run again. With one rank: one stage after
    /// another, as [`Runner::stage`] runs them. Returns each stage's evaluation.
    fn shared_stages(
        &mut self,
        stages: &mut dyn Stages,
        items: &[(String, String, String)],
        skip: &dyn Fn(usize, &StageRecord) -> Option<Eval>,
        body: &mut SharedBody<'_>,
    ) -> Result<Vec<Eval>, PipelineError> {
        let (rank, ranks) = (self.dist.rank(), self.dist.size());
        let mut evals: Vec<Option<Eval>> = vec![None; items.len()];
        let first = self.index;
        for start in (0..items.len()).step_by(ranks.max(1)) {
            let round = start..(start + ranks).min(items.len());
            // [ran, accuracy, loss, seconds] per rank; this rank fills its own row.
            let mut table = vec![0.0f64; 4 * ranks];
            let mut summaries: Vec<Option<(Vec<String>, String)>> = vec![None; ranks];
            // This rank's stages' progress files, removed once the round is recorded.
            let mut partials = Vec::new();
            for i in round.clone() {
                let (name, key, fpr) = &items[i];
                self.index = first + i + 1;
                let (index, total) = (self.index, self.total);
                if let Some(e) = self.state.done(key, fpr).and_then(|r| skip(i, r)) {
                    (self.on_event)(&Event::StageSkipped {
                        index,
                        total,
                        name: name.clone(),
                    });
                    evals[i] = Some(e);
                    continue;
                }
                if i - start != rank {
                    continue;
                }
                if stages.stop_requested() {
                    return Err(PipelineError::Stopped {
                        stage: name.clone(),
                    });
                }
                (self.on_event)(&Event::StageStart {
                    index,
                    total,
                    name: name.clone(),
                });
                let t = Instant::now();
                let done = match body(i, stages, &mut *self.on_event) {
                    Ok(d) => d,
                    Err(StageFail::Stage(StageError::Stopped)) => {
                        return Err(PipelineError::Stopped {
                            stage: name.clone(),
                        })
                    }
                    Err(StageFail::Stage(StageError::Failed(m))) => return Err(stage_err(name, m)),
                    Err(StageFail::Pipeline(e)) => return Err(e),
                };
                partials.extend(done.partial);
                let e = done.eval.unwrap_or(done.value);
                table[4 * rank..4 * rank + 4].copy_from_slice(&[
                    1.0,
                    e.accuracy,
                    e.loss,
                    t.elapsed().as_secs_f64(),
                ]);
                summaries[rank] = Some((done.outputs, done.summary));
            }
            if let Some(c) = self.dist.peers() {
                c.sum_f64(&mut table);
            }
            for i in round.clone() {
                let row = &table[4 * (i - start)..4 * (i - start) + 4];
                if row[0] != 1.0 {
                    continue;
                }
                let (name, key, fpr) = &items[i];
                let eval = Eval {
                    accuracy: row[1],
                    loss: row[2],
                };
                let (outputs, summary) = summaries[i - start].take().unwrap_or_else(|| {
                    let on = format!("{:.2}% on rank {}", eval.accuracy * 100.0, i - start);
                    (Vec::new(), on)
                });
                self.state.record(StageRecord {
                    key: key.clone(),
                    fingerprint: fpr.clone(),
                    outputs,
                    eval: Some(eval),
                    seconds: row[3],
                });
                (self.on_event)(&Event::StageDone {
                    index: first + i + 1,
                    total: self.total,
                    name: name.clone(),
                    summary: format!("{summary} ({:.1} s)", row[3]),
                });
                evals[i] = Some(eval);
            }
            // Each rank removes its stages' progress files once rank 0 has recorded the
            // round, and only then: every rank learns whether it did (a rank that removed
            // them before rank 0's save failed or rank 0 died lost the progress).
            let saved = self.save();
            let recorded = match self.dist.peers() {
                Some(c) => {
                    let mut failed = [f64::from(u8::from(saved.is_err()))];
                    c.sum_f64(&mut failed);
                    failed[0] == 0.0
                }
                None => saved.is_ok(),
            };
            saved?;
            if !recorded {
                return Err(io_err(
                    &self.out.join("state.ron"),
                    "rank 0 could not record the finished stages; their progress files are kept",
                ));
            }
            for p in partials {
                let _ = std::fs::remove_file(p);
            }
        }
        self.index = first + items.len();
        evals
            .into_iter()
            .zip(items)
            .map(|(e, (name, _, _))| {
                e.ok_or_else(|| stage_err(name, "internal: no result from any rank"))
            })
            .collect()
    }
}

/// Forwards a stage's training events as [`Event::Train`].
fn train_events(on_event: &mut dyn FnMut(&Event)) -> impl FnMut(&TrainEvent) + '_ {
    move |ev| on_event(&Event::Train(ev.clone()))
}

/// Checks that the output folder (`job.output`) can be the run's: it is a folder or does
/// not exist yet. Front ends call it before they load data or open a GPU; [`run`] calls it
/// too.
///
/// A folder without `state.ron` is no earlier run's, so a `job.ron`, `results.ron` or
/// `report.md` in it is someone else's file, which the run would replace: refused, naming
/// it (a `job.ron` that holds this very job is left as it is). The job file itself may be
/// the folder's `job.ron` (the record an earlier run wrote, or the user's own) when the
/// run does not change the job it holds (`--seeds`, `--output`).
pub fn check_output(job: &Job) -> Result<(), PipelineError> {
    let out = job.output.as_path();
    if let Ok(m) = std::fs::metadata(out) {
        if !m.is_dir() {
            return Err(io_err(
                out,
                "exists and is not a folder (the pipeline writes a folder of stages and reports)",
            ));
        }
    }
    let record = out.join("job.ron");
    if let Some(file) = job.file() {
        if limpq_io::files::same_file(file, &record) && !records(job, &record) {
            return Err(job.error(
                "this is the output folder's job.ron, where the run records the job it runs, \
                 and --seeds or --output change that job; run a copy of the file kept outside \
                 the folder",
            ));
        }
    }
    if !out.join("state.ron").exists() {
        for name in ["job.ron", "results.ron", "report.md"] {
            let p = out.join(name);
            if p.exists() && !(name == "job.ron" && records(job, &p)) {
                return Err(io_err(
                    &p,
                    "exists, and the folder holds no state.ron of an earlier run: the pipeline \
                     would replace it; move it or choose another output folder",
                ));
            }
        }
    }
    Ok(())
}

/// Whether the file at `path` holds `job` (its output aside, which `--output` may have
/// replaced): then the run leaves it as it is, comments and layout kept.
fn records(job: &Job, path: &Path) -> bool {
    limpq_io::files::read_regular_text(path, limpq_io::files::MAX_TEXT)
        .ok()
        .and_then(|t| Job::from_ron_str(&t).ok())
        .is_some_and(|mut j| {
            j.output = job.output.clone();
            j.to_ron() == job.to_ron()
        })
}

/// Runs (or resumes) the plan with `stages` doing the GPU work, writes the report into the
/// output folder and returns the results.
pub fn run(
    plan: &Plan,
    stages: &mut dyn Stages,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Results, PipelineError> {
    let job = &plan.job;
    let out = job.output.as_path();
    let dist = Dist::global();
    let root = dist.is_root();
    check_output(job)?;
    std::fs::create_dir_all(out).map_err(|e| io_err(out, e))?;
    // One run per folder: a second one would rewrite `state.ron` from its own copy and
    // lose this one's stages. Held (by rank 0, which alone writes) until the run returns;
    // the system releases it when the process ends, however it ends.
    let _lock = if root {
        lock::OutputLock::acquire(out, on_event)?
    } else {
        None
    };
    let mut state = State::load(out)?;
    state.version = State::VERSION;
    if let Some(c) = dist.peers() {
        // Every rank has read the state before rank 0 writes anything.
        c.barrier();
    }
    if root {
        // `state.ron` first: it marks the folder as a run's from here on, so the job.ron
        // written next (and the reports) are the runs' own files to rewrite.
        if !out.join("state.ron").exists() {
            state.save(out)?;
        }
        if !records(job, &out.join("job.ron")) {
            write_atomic(&out.join("job.ron"), job.to_ron().as_bytes())?;
        }
    }
    let total = plan.stage_count();
    on_event(&Event::Plan { total });
    let mut notes = Vec::new();
    let mut fp32 = Vec::new();
    let mut drifts: Vec<(u64, f64, f64)> = Vec::new();
    let mut budgets: Vec<BudgetResult> = job
        .budgets
        .iter()
        .zip(&plan.bitops)
        .zip(&plan.skipped)
        .map(|((b, &n), s)| BudgetResult {
            label: b.to_string(),
            bitops_budget: n,
            seeds: Vec::new(),
            skipped: s.clone(),
        })
        .collect();
    for s in plan.skipped.iter().flatten() {
        on_event(&Event::Note(format!("skipped: {s}")));
    }
    let model_fp = fingerprint(&[&plan.model.to_ron()]);
    // The quantized stages of a model whose activation quantizers changed sign with the
    // rule of `Model::act_signs` (MobileNetV2's bottlenecks) are redone, not resumed from
    // what the earlier rule trained; every other model's fingerprints are as they were.
    let sign_rule = (!crate::method::act_signs_changed_in(&plan.model).is_empty())
        .then_some(crate::method::ACT_SIGNS_RULE);
    let quantized_fp = |parts: &[&str]| -> String {
        let mut parts = parts.to_vec();
        parts.extend(sign_rule);
        fingerprint(&parts)
    };
    let data_fp = job.data.fingerprint_text();
    // The full-precision start: imported weights (written into the run folder), a
    // checkpoint given as `pretrain.init`, or none (pretraining).
    // A given checkpoint counts by its contents: one replaced at the same path (a model
    // trained again) reruns every stage after it, as a changed import does.
    let (init, init_fp) = match (&plan.imported, &job.pretrain.init) {
        (Some(imp), _) => (
            Some(source::write(out, imp)?),
            Some(imp.fingerprint.clone()),
        ),
        (None, Some(p)) => {
            let bytes = std::fs::read(p)
                .map_err(|e| job.error(format!("field `pretrain.init`: {}: {e}", p.display())))?;
            let fp = fingerprint(&[&source::hash_bytes(&bytes), "checkpoint"]);
            (Some(p.clone()), Some(fp))
        }
        (None, None) => (None, None),
    };
    let mut runner = Runner {
        out,
        dist: dist.clone(),
        state,
        index: 0,
        total,
        on_event,
    };
    for &seed in &job.seeds {
        let sdir = format!("seed{seed}");
        // 1. Pretrain or load.
        // `init_fp` is set with `init`: an import's or the given checkpoint's contents.
        let (fpr, rel) = match &init_fp {
            Some(given) => (fingerprint(&[&model_fp, &data_fp, "init", given]), None),
            None => (
                fingerprint(&[
                    &model_fp,
                    &data_fp,
                    &seed.to_string(),
                    &job.pretrain.fingerprint_text(),
                ]),
                Some(format!("{sdir}/pretrain.ckpt")),
            ),
        };
        let ckpt_path = match (&init, &rel) {
            (Some(p), _) => p.clone(),
            (_, Some(r)) => out.join(r),
            (None, None) => return Err(PipelineError::Job("internal: no pretrain path".into())),
        };
        let pre_fp = fpr.clone();
        let (init, fp_eval) = runner.stage(
            stages,
            format!("seed {seed}: pretrain"),
            format!("{sdir}/pretrain"),
            &fpr,
            |r| Some((Checkpoint::load(&ckpt_path).ok()?, r.eval?)),
            |stages, on_event| {
                let trained = match &init {
                    Some(p) => {
                        let ck = Checkpoint::load(p)
                            .map_err(|e| job.error(format!("field `pretrain.init`: {e}")))?;
                        let e = stages.evaluate_fp(&ck)?;
                        (ck, e, None)
                    }
                    None => {
                        let partial =
                            Partial::new(out.join(format!("{sdir}/pretrain.partial.ckpt")), &fpr)?;
                        let (ck, e) =
                            stages.pretrain(seed, &partial, &mut train_events(on_event))?;
                        if root {
                            save_ckpt(&ck, &ckpt_path)?;
                        }
                        (ck, e, Some(partial.path))
                    }
                };
                let (ck, e, partial) = trained;
                Ok(Done {
                    summary: format!("FP32 test accuracy {:.2}%", e.accuracy * 100.0),
                    value: (ck, e),
                    outputs: rel.clone().into_iter().collect(),
                    eval: Some(e),
                    partial,
                })
            },
        )?;
        fp32.push((seed, fp_eval.accuracy));
        // 2. Indicators: the joint run, when the search, a control or the finetunes use it.
        let ind_rel = format!("{sdir}/indicators.ron");
        let ind_path = out.join(&ind_rel);
        let ind_fp = quantized_fp(&[&pre_fp, &job.joint.fingerprint_text()]);
        let learned = if job.runs_joint() {
            let indicators = runner.stage(
                stages,
                format!("seed {seed}: indicators"),
                format!("{sdir}/indicators"),
                &ind_fp,
                |_| {
                    read_output(&ind_path)
                        .ok()
                        .and_then(|t| IndicatorSet::from_ron_str(&t).ok())
                },
                |stages, on_event| {
                    let partial =
                        Partial::new(out.join(format!("{sdir}/indicators.partial.ckpt")), &ind_fp)?;
                    let ind =
                        stages.indicators(&init, seed, &partial, &mut train_events(on_event))?;
                    if root {
                        write_atomic(&ind_path, ind.to_ron_string().as_bytes())?;
                    }
                    Ok(Done {
                        summary: format!(
                            "{} layers × {} bit-widths",
                            ind.layers.len(),
                            ind.weight_bits.len()
                        ),
                        value: ind,
                        outputs: vec![ind_rel.clone()],
                        eval: None,
                        partial: Some(partial.path),
                    })
                },
            )?;
            check_indicators(&indicators, plan, &ind_path)?;
            let meta_f64 = |k: &str| {
                let v = indicators.meta.iter().find(|(m, _)| m == k)?;
                v.1.parse::<f64>().ok()
            };
            if let (Some(w), Some(a)) = (
                meta_f64("step_drift.weight.median"),
                meta_f64("step_drift.act.median"),
            ) {
                drifts.push((seed, w, a));
            }
            Some(indicators)
        } else {
            None
        };
        // The finetunes depend on the joint run only through it (kept so for the runs
        // started before it could be left out).
        let fine_fp = if learned.is_some() { &ind_fp } else { &pre_fp };
        // Measured sensitivity, when the search or the `sensitivity` control uses it.
        let sensitivity = if job.measures_sensitivity() {
            let rel = format!("{sdir}/sensitivity.ron");
            let path = out.join(&rel);
            let fpr = quantized_fp(&[
                &pre_fp,
                &job.sensitivity.fingerprint_text(),
                &format!("{:?}", job.joint.bits),
            ]);
            let ind = runner.stage(
                stages,
                format!("seed {seed}: sensitivity"),
                format!("{sdir}/sensitivity"),
                &fpr,
                |_| {
                    read_output(&path)
                        .ok()
                        .and_then(|t| IndicatorSet::from_ron_str(&t).ok())
                },
                |stages, _| {
                    // Every rank measures (the same figures); rank 0 writes them.
                    let ind = stages.sensitivity(&init, &job.joint.bits, &job.sensitivity, seed)?;
                    if root {
                        write_atomic(&path, ind.to_ron_string().as_bytes())?;
                    }
                    Ok(Done {
                        summary: format!(
                            "{} layers × {} bit-widths measured",
                            ind.layers.iter().filter(|l| l.fixed.is_none()).count(),
                            ind.weight_bits.len()
                        ),
                        value: ind,
                        outputs: vec![rel.clone()],
                        eval: None,
                        partial: None,
                    })
                },
            )?;
            check_indicators(&ind, plan, &path)?;
            if let Some(Ok(g)) = learned
                .as_ref()
                .map(|l| crate::analysis::compare_indicators(l, &ind))
            {
                let line = format!("seed {seed}: {}", sensitivity_agreement(&g, &sdir));
                (runner.on_event)(&Event::Note(line.clone()));
                notes.push(line);
            }
            Some(ind)
        } else {
            None
        };
        let missing = |what: &str| {
            PipelineError::Job(format!("internal: the {what} a search needs were not made"))
        };
        // A source's indicators and α, for the search and for the control of the other.
        let by_source = |s: Search| match s {
            Search::Learned => learned
                .as_ref()
                .map(|l| (l, job.alpha))
                .ok_or_else(|| missing("learned indicators")),
            Search::Sensitivity => sensitivity
                .as_ref()
                .map(|s| (s, policies::SENSITIVITY_ALPHA))
                .ok_or_else(|| missing("sensitivity figures")),
        };
        // The searched policy's indicators and α; the uniform and random policies' objective
        // values are given in the same terms (their bits depend on MACs alone).
        let (source, source_alpha) = by_source(job.search)?;
        // 3. Policies and finetunes per budget.
        for (bi, budget) in job.budgets.iter().enumerate() {
            if plan.skipped[bi].is_some() {
                continue;
            }
            let n = plan.bitops[bi];
            let label = budget.to_string();
            let (searched, note) = policies::searched_policy(source, source_alpha, n)
                .map_err(|e| stage_err(&format!("seed {seed}: search at {label}"), e))?;
            if let Some(note) = note {
                let line = format!("seed {seed}, {label}: {note}");
                (runner.on_event)(&Event::Note(line.clone()));
                notes.push(line);
            }
            let mut list: Vec<(String, Policy)> = vec![("searched".into(), searched)];
            if let Budget::Uniform { weight, act } = *budget {
                let u = policies::uniform_policy(source, source_alpha, weight, act, n)
                    .map_err(|e| stage_err(&format!("seed {seed}: uniform {label}"), e))?;
                list.push(("uniform".into(), u));
            }
            let randoms =
                policies::random_policies(source, source_alpha, n, job.random_policies, seed)
                    .map_err(|e| stage_err(&format!("seed {seed}: random at {label}"), e))?;
            for (k, p) in randoms.into_iter().enumerate() {
                list.push((format!("random{k}"), p));
            }
            for &c in &job.controls {
                let (ind_c, alpha_c) = match c {
                    // The searched policy's alpha: the same search, other indicators.
                    Control::MacsOnly => (policies::macs_only_indicators(source), source_alpha),
                    Control::Shuffled => {
                        (policies::shuffled_indicators(source, seed), source_alpha)
                    }
                    Control::Sensitivity => {
                        by_source(Search::Sensitivity).map(|(i, a)| (i.clone(), a))?
                    }
                    Control::Learned => by_source(Search::Learned).map(|(i, a)| (i.clone(), a))?,
                };
                let (p, note) = policies::searched_policy(&ind_c, alpha_c, n).map_err(|e| {
                    stage_err(&format!("seed {seed}: {} search at {label}", c.kind()), e)
                })?;
                if let Some(note) = note {
                    let line = format!("seed {seed}, {label}, {}: {note}", c.kind());
                    (runner.on_event)(&Event::Note(line.clone()));
                    notes.push(line);
                }
                list.push((c.kind().to_string(), p));
            }
            let mut seed_result = SeedResult {
                seed,
                uniform: None,
                searched: PolicyResult {
                    bitops: 0,
                    accuracy: f64::NAN,
                    loss: f64::NAN,
                    layers: Vec::new(),
                },
                random: Vec::new(),
                controls: Vec::new(),
            };
            // Each finetune: its files, its stage name, key and fingerprint.
            let mut items = Vec::new();
            let mut files = Vec::new();
            for (kind, policy) in &list {
                let stem = format!("{label}_{kind}");
                let pol_rel = format!("{sdir}/policies/{stem}.ron");
                if root {
                    write_atomic(&out.join(&pol_rel), policy.to_ron_string().as_bytes())?;
                }
                let ck_rel = format!("{sdir}/finetune/{stem}.ckpt");
                let bits: Vec<String> = policy
                    .layers
                    .iter()
                    .map(|l| format!("{}:{}:{}", l.name, l.weight, l.act))
                    .collect();
                let fpr =
                    quantized_fp(&[fine_fp, &job.finetune.fingerprint_text(), &bits.join(",")]);
                items.push((
                    format!("seed {seed}: finetune {label} {kind}"),
                    format!("{sdir}/finetune/{stem}"),
                    fpr,
                ));
                files.push((stem, pol_rel, ck_rel));
            }
            let skip = |i: usize, r: &StageRecord| {
                // Done before, with its model kept (or none asked for).
                r.eval.filter(|_| {
                    !job.keep_finetuned || Checkpoint::load(out.join(&files[i].2)).is_ok()
                })
            };
            let mut body = |i: usize,
                            stages: &mut dyn Stages,
                            on_event: &mut dyn FnMut(&Event)|
             -> Result<Done<Eval>, StageFail> {
                let (stem, pol_rel, ck_rel) = &files[i];
                let policy = &list[i].1;
                let partial = Partial::new(
                    out.join(format!("{sdir}/finetune/{stem}.partial.ckpt")),
                    &items[i].2,
                )?;
                let (ck, e) = stages.finetune(
                    &init,
                    policy,
                    // Read only with `finetune.steps_from_indicators`, which makes the joint
                    // run run.
                    learned.as_ref().unwrap_or(source),
                    seed,
                    &partial,
                    &mut train_events(on_event),
                )?;
                let outputs = if job.keep_finetuned {
                    save_ckpt(&ck, &out.join(ck_rel))?;
                    vec![ck_rel.clone(), pol_rel.clone()]
                } else {
                    vec![pol_rel.clone()]
                };
                Ok(Done {
                    summary: format!(
                        "{:.2}% at {} BitOps",
                        e.accuracy * 100.0,
                        report::human(policy.bitops as f64)
                    ),
                    value: e,
                    outputs,
                    eval: Some(e),
                    partial: Some(partial.path),
                })
            };
            let evals = runner.shared_stages(stages, &items, &skip, &mut body)?;
            for ((kind, policy), eval) in list.into_iter().zip(evals) {
                let r = PolicyResult {
                    bitops: policy.bitops,
                    accuracy: eval.accuracy,
                    loss: eval.loss,
                    layers: policy.layers.clone(),
                };
                match kind.as_str() {
                    "searched" => seed_result.searched = r,
                    "uniform" => seed_result.uniform = Some(r),
                    k if k.starts_with("random") => seed_result.random.push(r),
                    _ => seed_result.controls.push(ControlResult { kind, result: r }),
                }
            }
            budgets[bi].seeds.push(seed_result);
        }
    }
    if let Some(line) = drift_note(&drifts) {
        (runner.on_event)(&Event::Note(line.clone()));
        notes.push(line);
    }
    let (train_images, test_images) = stages.data_sizes();
    let results = Results {
        model: plan.model.name.clone(),
        data: job.data.name.clone(),
        train_images,
        test_images,
        fp32,
        budgets,
        settings: settings(job, train_images),
        notes: plan
            .skipped
            .iter()
            .flatten()
            .map(|s| format!("skipped: {s}"))
            .chain(notes)
            .collect(),
    };
    if root {
        write_report(out, &results, plan)?;
    }
    Ok(results)
}

/// One note on how far joint training moved the step sizes from their LSQ init, from the
/// `(seed, weight median, activation median)` the indicator files record (fractions).
fn drift_note(drifts: &[(u64, f64, f64)]) -> Option<String> {
    if drifts.is_empty() {
        return None;
    }
    let each: Vec<String> = drifts
        .iter()
        .map(|(s, w, a)| format!("seed {s} {:.2} / {:.2} %", 100.0 * w, 100.0 * a))
        .collect();
    let small = drifts.iter().all(|&(_, w, a)| {
        w < crate::method::StepDrift::SMALL && a < crate::method::StepDrift::SMALL
    });
    Some(format!(
        "joint training moved the step sizes from their LSQ init by a median |learned/init − 1| \
         (weights / activations) of {}{}",
        each.join(", "),
        if small {
            ": little, so the indicators are still mostly the init rule (weight spread, \
             activation size) rather than learned importance; a longer joint run moves them further, the activation steps slowest"
        } else {
            ""
        }
    ))
}

/// The report's line on how the joint run's indicators rank the layers against measured
/// sensitivity (`limpq compare`, docs/RESULTS.md).
fn sensitivity_agreement(g: &crate::analysis::Agreement, sdir: &str) -> String {
    let side = |name: &str| -> String {
        g.rows
            .iter()
            .filter(|r| r.side == name && r.step != "all")
            .map(|r| {
                let rho = r.rho.map_or("n/a".to_string(), |x| format!("{x:+.2}"));
                format!("{} {rho}", r.step)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let critical = g
        .rows
        .iter()
        .find(|r| r.step != "all")
        .and_then(|r| r.critical)
        .map_or(String::new(), |c| {
            // As `limpq compare` prints it: with 3 layers 0.997, which 2 places made 1.00.
            format!("; |rho| above {c:.3} differs from 0 at the 5 % level")
        });
    format!(
        "the joint run's indicators against measured sensitivity, Spearman's rho of the \
         {} searchable layers' increments per bit step: weights {}; activations {}{critical} \
         (`limpq compare {sdir}/indicators.ron {sdir}/sensitivity.ron`)",
        g.layers.len(),
        side("weight"),
        side("act")
    )
}

/// The indicator set fits the model and the job's candidate bits.
fn check_indicators(ind: &IndicatorSet, plan: &Plan, path: &Path) -> Result<(), PipelineError> {
    let skel = plan
        .model
        .indicator_skeleton(&plan.job.joint.bits, &plan.job.joint.bits)
        .map_err(|e| io_err(path, e))?;
    let names = |s: &IndicatorSet| -> Vec<(String, u64, bool)> {
        s.layers
            .iter()
            .map(|l| (l.name.clone(), l.macs, l.fixed.is_some()))
            .collect()
    };
    if names(ind) != names(&skel)
        || ind.weight_bits != plan.job.joint.bits
        || ind.act_bits != plan.job.joint.bits
    {
        return Err(io_err(
            path,
            format!(
                "the indicators do not match model '{}' with bits {:?}",
                plan.model.name, plan.job.joint.bits
            ),
        ));
    }
    Ok(())
}

/// "1 epoch", "3 epochs".
fn epochs(n: usize) -> String {
    if n == 1 {
        "1 epoch".into()
    } else {
        format!("{n} epochs")
    }
}

/// The report's settings lines; `train_images`: the training images the run read (the
/// measured sensitivity's calibration draws from them).
fn settings(job: &Job, train_images: usize) -> Vec<String> {
    let mut s = Vec::new();
    let pre = job.pretrain.config(0);
    let joint = job.joint.config(0).run;
    let fine = job.finetune.config(0).run;
    match &job.pretrain.init {
        _ if source::is_onnx(&job.model) => s.push(format!(
            "FP32 model and weights imported from {}",
            job.model
        )),
        Some(p) => s.push(format!("FP32 model loaded from {}", p.display())),
        None => s.push(format!(
            "FP32 pretraining: {}, batch {}, lr {} (cosine)",
            epochs(pre.epochs),
            pre.batch,
            pre.lr
        )),
    }
    if job.runs_joint() {
        s.push(format!(
            "joint indicator training: bits {:?}, {}, batch {}, lr {}",
            job.joint.bits,
            epochs(joint.epochs),
            joint.batch,
            joint.lr
        ));
    } else {
        s.push(format!(
            "candidate bits {:?}; no joint indicator training (neither the search, a control \
             nor the finetunes use learned step sizes)",
            job.joint.bits
        ));
    }
    s.push(format!(
        "search: exact solver, {}, BitOps budgets {}",
        match job.search {
            Search::Sensitivity => format!(
                "measured sensitivity ({} calibration images) with alpha {}",
                // Whole batches of those drawn from the run's training images.
                job.sensitivity.calibration(train_images).2,
                policies::SENSITIVITY_ALPHA
            ),
            Search::Learned => format!("learned step sizes with alpha {}", job.alpha),
        },
        job.budgets
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s.push(format!(
        "finetune (every policy): {}, batch {}, lr {}",
        epochs(fine.epochs),
        fine.batch,
        fine.lr
    ));
    s.push(format!(
        "{} random policies per budget and seed, BitOps in [{:.0}%, 100%] of the budget \
         (rule in docs/PIPELINE.md)",
        job.random_policies,
        policies::RANDOM_FLOOR * 100.0
    ));
    s.push(format!(
        "data: {}, train {}, test {}",
        job.data.name,
        job.data
            .train
            .map_or("all".to_string(), |n| format!("{n} images (seeded subset)")),
        job.data
            .test
            .map_or("all".to_string(), |n| format!("{n} images (fixed subset)"))
    ));
    let kind = crate::data::DatasetKind::parse(&job.data.name).ok();
    if kind.is_none() || kind == Some(crate::data::DatasetKind::Folder) {
        s.push(format!(
            "image folder: {}",
            job.data.transform.as_ref().map_or_else(
                || "default transform (docs/DATA.md)".to_string(),
                |t| format!("transform {}", t.to_ron())
            )
        ));
    } else if let Some(kind) = kind {
        let a = kind.train_augment();
        s.push(format!(
            "training augmentation: random crop with zero padding {}, {}",
            a.crop_pad,
            if a.hflip {
                "horizontal flip"
            } else {
                "no flip"
            }
        ));
    }
    s
}

/// Renders the report of a finished run again from its `results.ron` (in the job's
/// output folder), with no data and no GPU: `report.md` and the plots take what this
/// version of limpq shows (a table added since, say) from the numbers already measured.
pub fn rewrite_report(plan: &Plan) -> Result<Results, PipelineError> {
    let out = &plan.job.output;
    let path = out.join("results.ron");
    if !path.exists() {
        return Err(io_err(
            &path,
            "not found (run the job first; `results.ron` is what it measured)",
        ));
    }
    // A run in progress rewrites results.ron and the report when it ends: the lock keeps
    // the two writers apart, as it keeps two runs apart. Only in a run's folder (one with
    // `state.ron`): a folder of results kept without their run (docs/results) gets no lock
    // file of its own.
    let _lock = if out.join("state.ron").exists() {
        lock::OutputLock::acquire(out, &mut |_| {})?
    } else {
        None
    };
    let text = read_output(&path).map_err(PipelineError::File)?;
    let results: Results = ron_from_str(&text).map_err(|e| io_err(&path, e))?;
    if results.model != plan.model.name {
        return Err(io_err(
            &path,
            format!(
                "field `model`: the results are of '{}', the job's model is '{}'",
                results.model, plan.model.name
            ),
        ));
    }
    write_report(&plan.job.output, &results, plan)?;
    Ok(results)
}

/// Writes `results.ron`, `report.md`, `accuracy_vs_bitops.svg` and `bits_<budget>.svg`.
pub fn write_report(out: &Path, results: &Results, plan: &Plan) -> Result<(), PipelineError> {
    let cfg = ron::ser::PrettyConfig::new().struct_names(true);
    let ron_text = ron::ser::to_string_pretty(results, cfg)
        .map_err(|e| io_err(&out.join("results.ron"), e))?;
    write_atomic(&out.join("results.ron"), ron_text.as_bytes())?;
    write_atomic(&out.join("report.md"), report::markdown(results).as_bytes())?;
    write_atomic(
        &out.join("accuracy_vs_bitops.svg"),
        report::accuracy_svg(results).as_bytes(),
    )?;
    let fixed: Vec<bool> = plan
        .model
        .quantizable_layers()
        .map(|ls| ls.iter().map(|l| l.fixed).collect())
        .unwrap_or_default();
    for b in &results.budgets {
        for (k, s) in b.seeds.iter().enumerate() {
            let title = format!(
                "{} searched policy at {}: {} BitOps (budget {}), seed {}",
                results.model,
                b.label,
                report::human(s.searched.bitops as f64),
                report::human(b.bitops_budget as f64),
                s.seed
            );
            let file = if k == 0 {
                format!("bits_{}.svg", b.label)
            } else {
                format!("bits_{}_seed{}.svg", b.label, s.seed)
            };
            write_atomic(
                &out.join(file),
                report::bits_svg(&title, &s.searched.layers, &fixed).as_bytes(),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{drift_note, sensitivity_agreement};
    use crate::analysis::{critical_rho, Agreement, AgreementRow};

    #[test]
    fn calibration_takes_whole_batches_or_one_batch_of_all() {
        let spec = super::SensitivitySpec {
            images: 1024,
            batch: 256,
        };
        assert_eq!(spec.calibration(300), (300, 256, 256));
        assert_eq!(spec.calibration(100), (100, 100, 100));
        assert_eq!(spec.calibration(usize::MAX), (1024, 256, 1024));
        let spec = super::SensitivitySpec {
            images: 1000,
            batch: 256,
        };
        assert_eq!(spec.calibration(usize::MAX), (1000, 256, 768));
        assert_eq!(spec.calibration(0), (0, 0, 0));
    }

    #[test]
    fn the_settings_count_the_calibration_images_the_run_had() {
        // No `data.train`: the whole split, which here holds fewer images than `images`.
        let job = super::Job::from_ron_str(
            "Job(model: \"small_cnn\", data: (name: \"fashion-mnist\"), seeds: [0], \
             pretrain: (epochs: 1), joint: (bits: [2, 4], epochs: 1), budgets: [\"w4a4\"], \
             finetune: (epochs: 1), sensitivity: (images: 1024, batch: 256), output: \"x\")",
        )
        .unwrap();
        let line = |train| {
            super::settings(&job, train)
                .into_iter()
                .find(|l| l.starts_with("search:"))
                .unwrap()
        };
        assert!(
            line(600).contains("(512 calibration images)"),
            "{}",
            line(600)
        );
        assert!(
            line(60_000).contains("(1024 calibration images)"),
            "{}",
            line(60_000)
        );
    }

    #[test]
    fn the_agreement_note_gives_the_critical_rho_as_compare_does() {
        // With 3 layers the 5 % threshold is 0.997: two places printed it as 1.00, a
        // threshold no rho can pass.
        let row = |side| AgreementRow {
            side,
            step: "2-3".into(),
            n: 3,
            rho: Some(1.0),
            critical: critical_rho(3),
        };
        let g = Agreement {
            layers: vec!["a".into(), "b".into(), "c".into()],
            rows: vec![row("weight"), row("act")],
        };
        let note = sensitivity_agreement(&g, "seed0");
        assert!(
            note.contains("|rho| above 0.997 differs from 0 at the 5 % level"),
            "{note}"
        );
    }

    #[test]
    fn drift_note_says_when_every_seed_moved_little() {
        assert_eq!(drift_note(&[]), None);
        let small = drift_note(&[(0, 0.012, 0.004), (3, 0.049, 0.0)]).unwrap();
        assert!(
            small.contains("seed 0 1.20 / 0.40 %, seed 3 4.90 / 0.00 %"),
            "{small}"
        );
        assert!(small.contains("a longer joint run"), "{small}");
        let one_large = drift_note(&[(0, 0.012, 0.004), (1, 0.012, 0.05)]).unwrap();
        assert!(!one_large.contains("a longer joint run"), "{one_large}");
    }
}
