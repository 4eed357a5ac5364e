//! The daemon's state on disk, every file written with `limpq_io::files::write_private`
//! (owner-only, unique temporary name, fsync, rename, fsync folder; no temporary file is left
//! behind when a write fails):
//!
//! ```text
//! STATE/lock                      flock'd by the running daemon (one daemon per state dir)
//! STATE/queue.ron                 ids of queued jobs, in order (rebuilt from the jobs if lost)
//! STATE/last_id                   the largest id ever given, written before a job is removed
//! STATE/jobs/<id>/spec.ron        the submitted JobSpec
//! STATE/jobs/<id>/status.ron      its JobInfo (state, times, resumes, last progress)
//! STATE/jobs/<id>/log.txt         append-only log, flushed per line
//! STATE/jobs/<id>/checkpoint/     what the job resumes from
//! STATE/jobs/<id>/output/         its results
//! ```
//!
//! Folders are 0700 and files 0600. A job folder whose files cannot be read is not skipped:
//! it is listed as a failed job saying what is damaged, so nothing vanishes silently.

use std::collections::VecDeque;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use limpq_io::files::{self, FileError};
use limpq_solver::format::versioned::ron_from_str;

use crate::daemon::error::Error;
use crate::daemon::job::JobSpec;
use crate::daemon::protocol::{JobId, JobInfo, JobState};

/// The cap on a job's `spec.ron` / `status.ron` and on `queue.ron` when read back.
pub const MAX_STATE_FILE: u64 = 16 << 20;

/// The state directory of one daemon.
pub struct StateDir {
    pub root: PathBuf,
}

/// Everything found in a state directory at start-up.
pub struct Loaded {
    /// Every job folder, in id order; the spec is `None` for a damaged job (its info then
    /// says `Failed("damaged …")`).
    pub jobs: Vec<(JobInfo, Option<JobSpec>)>,
    pub queue: VecDeque<JobId>,
    /// What was wrong and how it was handled (damaged jobs, a rebuilt queue), for the log.
    pub warnings: Vec<String>,
    /// The largest job id ever given (ids are never reused).
    pub max_id: JobId,
}

/// Creates `dir` (and its parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("cannot create", dir, e))
}

fn is_not_found(e: &FileError) -> bool {
    matches!(e.kind(), files::ErrorKind::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

fn pretty<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    ron::ser::to_string_pretty(value, ron::ser::PrettyConfig::default())
        .map_err(|e| Error::Format(format!("cannot write the state as RON: {e}")))
}

impl StateDir {
    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }

    pub fn job_dir(&self, id: JobId) -> PathBuf {
        self.jobs_dir().join(id.to_string())
    }

    pub fn save_spec(&self, id: JobId, spec: &JobSpec) -> Result<(), Error> {
        let dir = self.job_dir(id);
        create_private_dir(&dir)?;
        Ok(files::write_private(
            &dir.join("spec.ron"),
            pretty(spec)?.as_bytes(),
        )?)
    }

    pub fn save_info(&self, info: &JobInfo) -> Result<(), Error> {
        Ok(files::write_private(
            &self.job_dir(info.id).join("status.ron"),
            pretty(info)?.as_bytes(),
        )?)
    }

    pub fn save_queue(&self, queue: &VecDeque<JobId>) -> Result<(), Error> {
        let ids: Vec<JobId> = queue.iter().copied().collect();
        Ok(files::write_private(
            &self.root.join("queue.ron"),
            pretty(&ids)?.as_bytes(),
        )?)
    }

    /// Records the largest id given so far, so removing the newest job cannot make a later
    /// start give its id again.
    pub fn save_last_id(&self, id: JobId) -> Result<(), Error> {
        Ok(files::write_private(
            &self.root.join("last_id"),
            format!("{id}\n").as_bytes(),
        )?)
    }

    /// Undoes a submission that could not be saved completely: its folder goes when it holds
    /// nothing else.
    pub fn discard_new_job(&self, id: JobId) {
        let dir = self.job_dir(id);
        let _ = fs::remove_file(dir.join("spec.ron"));
        let _ = fs::remove_dir(&dir);
    }

    /// Deletes job folders. Each is first renamed out of the way (atomic), so a job is
    /// either still complete or gone from the list; the renamed folders are deleted on a
    /// thread of their own (a big prune does not hold up the daemon), and leftovers of an
    /// interrupted delete are cleaned at the next start. Returns the ids removed, and the
    /// error that stopped it early, if any.
    pub fn remove_jobs(&self, ids: &[JobId]) -> (Vec<JobId>, Option<Error>) {
        let mut done = Vec::new();
        let mut gone = Vec::new();
        let mut error = None;
        for &id in ids {
            let dir = self.job_dir(id);
            let to = self.jobs_dir().join(format!(".removed-{id}"));
            let _ = fs::remove_dir_all(&to);
            match fs::rename(&dir, &to) {
                Ok(()) => {
                    done.push(id);
                    gone.push(to);
                }
                Err(e) => {
                    error = Some(Error::io("cannot remove", dir, e));
                    break;
                }
            }
        }
        if !done.is_empty() {
            if let Err(e) = files::sync_dir(&self.jobs_dir()) {
                tracing::warn!("{e}");
            }
            let _ = std::thread::Builder::new()
                .name("limpq-remove".into())
                .spawn(move || {
                    for d in gone {
                        if let Err(e) = fs::remove_dir_all(&d) {
                            tracing::warn!("deleting {}: {e}", d.display());
                        }
                    }
                });
        }
        (done, error)
    }

    /// Read every job and the queue. A job folder whose status or spec is missing, unreadable
    /// or corrupt becomes a failed job saying so; a corrupt queue is rebuilt from the jobs.
    pub fn load(&self) -> Result<Loaded, Error> {
        let jobs_dir = self.jobs_dir();
        create_private_dir(&jobs_dir)?;
        let mut jobs = Vec::new();
        let mut warnings = Vec::new();
        let mut max_id = 0;
        let list = |e| Error::io("cannot list", &jobs_dir, e);
        for entry in fs::read_dir(&jobs_dir).map_err(list)? {
            let entry = entry.map_err(list)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".removed-") {
                let _ = fs::remove_dir_all(entry.path());
                continue;
            }
            let Ok(id) = name.parse::<JobId>() else {
                continue;
            };
            max_id = max_id.max(id);
            let dir = entry.path();
            match load_job(&dir, id) {
                Ok((info, spec)) => jobs.push((info, Some(spec))),
                Err(why) => {
                    warnings.push(format!("job {id} is damaged and listed as failed: {why}"));
                    jobs.push((damaged(id, &dir, why.to_string()), None));
                }
            }
        }
        jobs.sort_by_key(|(i, _)| i.id);
        let qpath = self.root.join("queue.ron");
        let queue = match files::read_regular_text(&qpath, MAX_STATE_FILE) {
            Ok(s) => match ron_from_str::<Vec<JobId>>(&s) {
                Ok(q) => q,
                Err(e) => {
                    warnings.push(format!(
                        "{}: {e}; the queue is rebuilt from the job folders (queued jobs in id order)",
                        qpath.display()
                    ));
                    Vec::new()
                }
            },
            Err(e) if is_not_found(&e) => Vec::new(),
            Err(e) => {
                warnings.push(format!(
                    "{e}; the queue is rebuilt from the job folders (queued jobs in id order)"
                ));
                Vec::new()
            }
        };
        let lpath = self.root.join("last_id");
        match files::read_regular_text(&lpath, 64) {
            Ok(s) => match s.trim().parse::<JobId>() {
                Ok(n) => max_id = max_id.max(n),
                Err(e) => warnings.push(format!("{}: {e}", lpath.display())),
            },
            Err(e) if is_not_found(&e) => {}
            Err(e) => warnings.push(e.to_string()),
        }
        Ok(Loaded {
            jobs,
            queue: queue.into(),
            warnings,
            max_id,
        })
    }
}

fn load_job(dir: &Path, id: JobId) -> Result<(JobInfo, JobSpec), Error> {
    let parse = |name: &str| -> Result<String, Error> {
        Ok(files::read_regular_text(&dir.join(name), MAX_STATE_FILE)?)
    };
    let bad = |name: &str, e: &dyn std::fmt::Display| {
        Error::Format(format!("{}: {e}", dir.join(name).display()))
    };
    let info: JobInfo = ron_from_str(&parse("status.ron")?).map_err(|e| bad("status.ron", &e))?;
    let spec: JobSpec = ron_from_str(&parse("spec.ron")?).map_err(|e| bad("spec.ron", &e))?;
    if info.id != id {
        return Err(Error::Format(format!(
            "{}: id {} does not match the folder",
            dir.join("status.ron").display(),
            info.id
        )));
    }
    Ok((info, spec))
}

/// The listing of a job whose files could not be read.
fn damaged(id: JobId, dir: &Path, why: String) -> JobInfo {
    JobInfo {
        id,
        name: "(damaged)".into(),
        kind: "unknown".into(),
        state: JobState::Failed(crate::daemon::protocol::bounded(format!("damaged: {why}"))),
        submitted: 0,
        started: None,
        finished: None,
        resumes: 0,
        progress: None,
        output_dir: dir.join("output").display().to_string(),
    }
}
