//! How a worker runs a job: a [`JobContext`] gives it a progress sink (coalesced by the
//! dispatcher before it reaches watchers), a log, a stop flag checked between steps, a
//! checkpoint directory that survives a crash (a job resumes from what it finds there), and
//! an output directory. The GPU job kinds are in [`super::gpu`].

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use crossbeam_channel::Sender;
use limpq_io::files::{self, write_private};
use limpq_solver::format::versioned::ron_from_str;
use serde::{Deserialize, Serialize};

use super::state::create_private_dir;
use crate::daemon::job::{load_indicators, CountJob, JobKind, JobSpec, SolveJob};
use crate::daemon::protocol::{JobId, Progress};

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
    /// The adapter this worker's GPU jobs open (`--worker-adapter`); `None`: the process's
    /// choice (`--adapter` / `LIMPQ_ADAPTER`, else the preferred one).
    pub adapter: Option<crate::gpu::AdapterPick>,
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
            create_private_dir(d).map_err(|e| e.to_string())?;
        }
        let log_path = job_dir.join("log.txt");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        Ok(JobContext {
            id,
            checkpoint_dir,
            output_dir,
            stop,
            events,
            log,
            adapter: None,
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

/// Run a job to completion, to a stop, or to an error naming what went wrong.
pub fn run(spec: &JobSpec, ctx: &mut JobContext<'_>) -> Result<Outcome, String> {
    match &spec.job {
        JobKind::Solve(s) => run_solve(s, ctx),
        JobKind::Train(t) => super::gpu::run_train(t, ctx),
        JobKind::Indicators(t) => super::gpu::run_indicators(t, ctx),
        JobKind::Finetune(t) => super::gpu::run_finetune(t, ctx),
        JobKind::Eval(e) => super::gpu::run_eval(e, ctx),
        JobKind::Pipeline(p) => super::gpu::run_pipeline(p, ctx),
        JobKind::Count(c) => run_count(c, ctx),
    }
}

fn run_solve(s: &SolveJob, ctx: &mut JobContext<'_>) -> Result<Outcome, String> {
    ctx.progress(Progress {
        stage: "solving".into(),
        ..Progress::default()
    });
    let ind = load_indicators(&s.indicators)?;
    let alpha = s.alpha.unwrap_or_else(|| ind.default_alpha());
    let mut p = limpq_solver::Problem::new(ind).alpha(alpha);
    if let Some(b) = s.bitops {
        p = p.bitops(b);
    }
    if let Some(b) = s.size {
        p = p.size(b);
    }
    let sol = p.solve().map_err(|e| format!("solve: {e}"))?;
    let out = ctx.output_dir.join("policy.ron");
    write_private(&out, sol.policy.to_ron_string().as_bytes()).map_err(|e| e.to_string())?;
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
    let mut done = if ck.exists() {
        let text = files::read_regular_text(&ck, 4096).map_err(|e| e.to_string())?;
        let k: CountCheckpoint =
            ron_from_str(&text).map_err(|e| format!("{}: {e}", ck.display()))?;
        ctx.log(format!("resumed from checkpoint at step {}", k.done));
        k.done
    } else {
        0
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
        write_private(&ck, text.as_bytes()).map_err(|e| e.to_string())?;
        ctx.log(format!("step {done}"));
        ctx.progress(Progress {
            stage: "counting".into(),
            step: Some((done, c.n)),
            eta_secs: Some((c.n - done) as f64 * c.step_ms as f64 / 1000.0),
            ..Progress::default()
        });
    }
    write_private(
        &ctx.output_dir.join("count.txt"),
        format!("{done}\n").as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    Ok(Outcome::Completed)
}
