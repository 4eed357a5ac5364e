//! Job specifications and how a worker runs them.
//!
//! A job runs on a worker thread with a [`JobContext`]: a progress sink (coalesced by the
//! dispatcher before it reaches watchers), a log, a stop flag checked between steps, a
//! checkpoint directory that survives a crash (a job resumes from what it finds there), and
//! an output directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};

pub use super::gpu_jobs::{EvalJob, PipelineJob, TrainJob};
use super::protocol::{JobId, Progress};
use super::state::write_atomic;

/// A job file (`JOB.ron`): an optional name and what to run.
///
/// ```ron
/// (name: "w3a3 search", job: Solve((indicators: "resnet20.indicators.ron", bitops: Some(Uniform(3, 3)))))
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
            JobKind::Eval(_) => "eval",
            JobKind::Pipeline(_) => "pipeline",
            JobKind::Count(_) => "count",
        }
    }
}

/// A BitOps budget of a solve job.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Bitops {
    /// The BitOps of all searchable layers at (weight bits, activation bits).
    Uniform(u32, u32),
    Absolute(u64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SolveJob {
    /// Indicator file (RON or JSON); relative to the job file's directory.
    pub indicators: PathBuf,
    /// Weight of the weight indicators in the objective (default 2).
    #[serde(default)]
    pub alpha: Option<f64>,
    #[serde(default)]
    pub bitops: Option<Bitops>,
    /// Weight-size budget in bytes.
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// Weight-size budget as a compression ratio against 32-bit weights.
    #[serde(default)]
    pub compression: Option<f64>,
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
    /// Parse a job file, resolving relative paths against the file's directory.
    pub fn from_file(path: &Path) -> Result<JobSpec, String> {
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut spec: JobSpec = match ron::from_str(&text) {
            Ok(s) => s,
            // A `limpq pipeline` job file, submitted as it is.
            Err(e) => match crate::pipeline::Job::from_ron_str(&text) {
                Ok(p) => JobSpec {
                    name: String::new(),
                    job: JobKind::Pipeline(p),
                },
                Err(_) => return Err(format!("{}: {e}", path.display())),
            },
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let base = fs::canonicalize(if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        })
        .map_err(|e| format!("{}: {e}", base.display()))?;
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
            JobKind::Eval(e) => e.resolve_paths(base),
            JobKind::Pipeline(p) => super::gpu_jobs::resolve_pipeline_paths(p, base),
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
    pub fn validate(&self, test_jobs: bool) -> Result<(), String> {
        if self.name.len() > 200 {
            return Err("job name: longer than 200 characters".into());
        }
        match &self.job {
            JobKind::Solve(s) => {
                load_indicators(&s.indicators)?;
                if let Some(a) = s.alpha {
                    check_nonneg("solve.alpha", a)?;
                }
                if let Some(c) = s.compression {
                    check_nonneg("solve.compression", c)?;
                    if c == 0.0 {
                        return Err("solve.compression: must be positive".into());
                    }
                }
                if s.size_bytes.is_some() && s.compression.is_some() {
                    return Err("solve: give size_bytes or compression, not both".into());
                }
                Ok(())
            }
            JobKind::Train(t) => t.validate(),
            JobKind::Eval(e) => e.validate(),
            JobKind::Pipeline(p) => super::gpu_jobs::validate_pipeline(p),
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

fn load_indicators(path: &Path) -> Result<limpq_solver::IndicatorSet, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("indicator file {}: {e}", path.display()))?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        limpq_solver::IndicatorSet::from_json_str(&text)
    } else {
        limpq_solver::IndicatorSet::from_ron_str(&text)
    };
    parsed.map_err(|e| format!("indicator file {}: {e}", path.display()))
}

/// Value of the stop flag: keep going.
pub const RUN: u8 = 0;
/// Value of the stop flag: the user cancelled the job.
pub const CANCEL: u8 = 1;
/// Value of the stop flag: the daemon is shutting down; checkpoint and stop.
pub const INTERRUPT: u8 = 2;

/// How a job ended when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// It saw the stop flag, saved a checkpoint and returned early.
    Stopped,
}

/// What a worker tells the dispatcher.
#[derive(Debug)]
pub enum WorkerEvent {
    Progress(JobId, Progress),
    Log(JobId, String),
    Finished(JobId, Result<Outcome, String>),
}

/// A running job's view of the daemon.
pub struct JobContext<'a> {
    pub id: JobId,
    pub checkpoint_dir: PathBuf,
    pub output_dir: PathBuf,
    stop: &'a AtomicU8,
    events: &'a Sender<WorkerEvent>,
    log: File,
}

impl<'a> JobContext<'a> {
    pub fn new(
        id: JobId,
        job_dir: &Path,
        stop: &'a AtomicU8,
        events: &'a Sender<WorkerEvent>,
    ) -> Result<Self, String> {
        let checkpoint_dir = job_dir.join("checkpoint");
        let output_dir = job_dir.join("output");
        for d in [&checkpoint_dir, &output_dir] {
            fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let log_path = job_dir.join("log.txt");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        Ok(JobContext {
            id,
            checkpoint_dir,
            output_dir,
            stop,
            events,
            log,
        })
    }

    /// Whether the job should checkpoint and return [`Outcome::Stopped`] now.
    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed) != RUN
    }

    pub fn progress(&self, p: Progress) {
        let _ = self.events.send(WorkerEvent::Progress(self.id, p));
    }

    /// Append a line to the job's log (flushed at once, so it survives a kill) and show it
    /// to watchers.
    pub fn log(&mut self, line: impl Into<String>) {
        let line = line.into();
        let _ = writeln!(self.log, "{line}");
        let _ = self.log.flush();
        let _ = self.events.send(WorkerEvent::Log(self.id, line));
    }

    /// Sleep up to `d`, waking early when the job should stop.
    fn sleep(&self, d: Duration) {
        let end = std::time::Instant::now() + d;
        while !self.should_stop() {
            let now = std::time::Instant::now();
            if now >= end {
                break;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(10)));
        }
    }
}

impl JobSpec {
    /// Run the job to completion, to a stop, or to an error naming what went wrong.
    pub fn run(&self, ctx: &mut JobContext<'_>) -> Result<Outcome, String> {
        match &self.job {
            JobKind::Solve(s) => run_solve(s, ctx),
            JobKind::Train(t) => super::gpu_jobs::run_train(t, ctx),
            JobKind::Eval(e) => super::gpu_jobs::run_eval(e, ctx),
            JobKind::Pipeline(p) => super::gpu_jobs::run_pipeline(p, ctx),
            JobKind::Count(c) => run_count(c, ctx),
        }
    }
}

fn run_solve(s: &SolveJob, ctx: &mut JobContext<'_>) -> Result<Outcome, String> {
    ctx.progress(Progress {
        stage: "solving".into(),
        ..Progress::default()
    });
    let ind = load_indicators(&s.indicators)?;
    let mut p = limpq_solver::Problem::new(ind).alpha(s.alpha.unwrap_or(2.0));
    match s.bitops {
        Some(Bitops::Uniform(w, a)) => {
            p = p.bitops(limpq_solver::BitOpsBudget::Uniform { weight: w, act: a })
        }
        Some(Bitops::Absolute(b)) => p = p.bitops(limpq_solver::BitOpsBudget::Absolute(b)),
        None => {}
    }
    if let Some(b) = s.size_bytes {
        p = p.size(limpq_solver::SizeBudget::Bytes(b));
    }
    if let Some(c) = s.compression {
        p = p.size(limpq_solver::SizeBudget::CompressionRatio(c));
    }
    let sol = p.solve().map_err(|e| format!("solve: {e}"))?;
    let out = ctx.output_dir.join("policy.ron");
    write_atomic(&out, sol.policy.to_ron_string().as_bytes())?;
    ctx.log(format!(
        "policy: objective {:.6}, bitops {}, optimal {}; written to {}",
        sol.policy.objective,
        sol.policy.bitops,
        sol.policy.optimal,
        out.display()
    ));
    Ok(Outcome::Completed)
}

/// The counter checkpoint of the test-only count job.
#[derive(Serialize, Deserialize)]
struct CountCheckpoint {
    done: u64,
}

fn run_count(c: &CountJob, ctx: &mut JobContext<'_>) -> Result<Outcome, String> {
    let ck = ctx.checkpoint_dir.join("count.ron");
    let mut done = match fs::read_to_string(&ck) {
        Ok(text) => {
            let k: CountCheckpoint =
                ron::from_str(&text).map_err(|e| format!("{}: {e}", ck.display()))?;
            ctx.log(format!("resumed from checkpoint at step {}", k.done));
            k.done
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(format!("{}: {e}", ck.display())),
    };
    while done < c.n {
        if ctx.should_stop() {
            ctx.log(format!("stopped at step {done}"));
            return Ok(Outcome::Stopped);
        }
        ctx.sleep(Duration::from_millis(c.step_ms));
        let next = done + 1;
        if c.fail_at == Some(next) {
            return Err(format!("count: told to fail at step {next}"));
        }
        if c.panic_at == Some(next) {
            panic!("count: told to panic at step {next}");
        }
        done = next;
        let text = ron::to_string(&CountCheckpoint { done }).map_err(|e| e.to_string())?;
        write_atomic(&ck, text.as_bytes())?;
        ctx.log(format!("step {done}"));
        ctx.progress(Progress {
            stage: "counting".into(),
            step: Some((done, c.n)),
            eta_secs: Some((c.n - done) as f64 * c.step_ms as f64 / 1000.0),
            ..Progress::default()
        });
    }
    write_atomic(
        &ctx.output_dir.join("count.txt"),
        format!("{done}\n").as_bytes(),
    )?;
    Ok(Outcome::Completed)
}
