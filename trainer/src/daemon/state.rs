//! The daemon's state on disk, every file written atomically (tmp, fsync, rename, fsync dir):
//!
//! ```text
//! STATE/lock                      flock'd by the running daemon (one daemon per state dir)
//! STATE/queue.ron                 ids of queued jobs, in order
//! STATE/jobs/<id>/spec.ron        the submitted JobSpec
//! STATE/jobs/<id>/status.ron      its JobInfo (state, times, resumes, last progress)
//! STATE/jobs/<id>/log.txt         append-only log, flushed per line
//! STATE/jobs/<id>/checkpoint/     what the job resumes from
//! STATE/jobs/<id>/output/         its results
//! ```

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::job::JobSpec;
use super::protocol::{JobId, JobInfo};

/// Write `bytes` to `path` so that a crash leaves the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    {
        let mut f = File::create(&tmp).map_err(|e| err(&tmp, e))?;
        f.write_all(bytes).map_err(|e| err(&tmp, e))?;
        f.sync_all().map_err(|e| err(&tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| err(path, e))?;
    // Persist the rename itself.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err(dir, e))
}

/// The state directory of one daemon.
pub struct StateDir {
    pub root: PathBuf,
}

/// Everything found in a state directory at start-up.
pub struct Loaded {
    pub jobs: Vec<(JobInfo, JobSpec)>,
    pub queue: VecDeque<JobId>,
    /// Job directories that could not be read, with why (skipped, reported in the log).
    pub skipped: Vec<String>,
    /// The largest job id with a directory, readable or not (ids are never reused).
    pub max_id: JobId,
}

impl StateDir {
    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }

    pub fn job_dir(&self, id: JobId) -> PathBuf {
        self.jobs_dir().join(id.to_string())
    }

    pub fn save_spec(&self, id: JobId, spec: &JobSpec) -> Result<(), String> {
        let dir = self.job_dir(id);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let text = ron::ser::to_string_pretty(spec, ron::ser::PrettyConfig::default())
            .map_err(|e| e.to_string())?;
        write_atomic(&dir.join("spec.ron"), text.as_bytes())
    }

    pub fn save_info(&self, info: &JobInfo) -> Result<(), String> {
        let text = ron::ser::to_string_pretty(info, ron::ser::PrettyConfig::default())
            .map_err(|e| e.to_string())?;
        write_atomic(&self.job_dir(info.id).join("status.ron"), text.as_bytes())
    }

    pub fn save_queue(&self, queue: &VecDeque<JobId>) -> Result<(), String> {
        let ids: Vec<JobId> = queue.iter().copied().collect();
        let text = ron::to_string(&ids).map_err(|e| e.to_string())?;
        write_atomic(&self.root.join("queue.ron"), text.as_bytes())
    }

    /// Read every job and the queue. A job directory without a readable status (a crash
    /// between creating it and writing it) is skipped, not fatal.
    pub fn load(&self) -> Result<Loaded, String> {
        let jobs_dir = self.jobs_dir();
        fs::create_dir_all(&jobs_dir).map_err(|e| format!("{}: {e}", jobs_dir.display()))?;
        let mut jobs = Vec::new();
        let mut skipped = Vec::new();
        let mut max_id = 0;
        for entry in fs::read_dir(&jobs_dir).map_err(|e| format!("{}: {e}", jobs_dir.display()))? {
            let entry = entry.map_err(|e| format!("{}: {e}", jobs_dir.display()))?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<JobId>().ok())
            else {
                continue;
            };
            max_id = max_id.max(id);
            let dir = entry.path();
            let read = |name: &str| {
                let p = dir.join(name);
                fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
            };
            let loaded = read("status.ron").and_then(|s| {
                let info: JobInfo = ron::from_str(&s)
                    .map_err(|e| format!("{}: {e}", dir.join("status.ron").display()))?;
                let spec: JobSpec = ron::from_str(&read("spec.ron")?)
                    .map_err(|e| format!("{}: {e}", dir.join("spec.ron").display()))?;
                Ok((info, spec))
            });
            match loaded {
                Ok((info, spec)) if info.id == id => jobs.push((info, spec)),
                Ok(_) => skipped.push(format!(
                    "{}: id does not match the directory",
                    dir.display()
                )),
                Err(e) => skipped.push(e),
            }
        }
        jobs.sort_by_key(|(i, _)| i.id);
        let qpath = self.root.join("queue.ron");
        let queue = match fs::read_to_string(&qpath) {
            Ok(s) => {
                ron::from_str::<Vec<JobId>>(&s).map_err(|e| format!("{}: {e}", qpath.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{}: {e}", qpath.display())),
        };
        Ok(Loaded {
            jobs,
            queue: queue.into(),
            skipped,
            max_id,
        })
    }
}
