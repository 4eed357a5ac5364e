//! The wire protocol: length-prefixed RON frames carrying [`Request`]s and [`Response`]s.
//!
//! A frame is a 4-byte big-endian length `n` followed by `n` bytes of UTF-8 RON. `n` above the
//! cap ([`MAX_FRAME`] unless told otherwise) is refused before anything is allocated, so a
//! hostile or corrupt length cannot make the reader allocate more than the cap.

use std::fmt;
use std::io::{self, Read, Write};

use limpq_solver::format::versioned::ron_from_str;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::job::JobSpec;

/// Largest frame body accepted or sent: 1 MiB.
pub const MAX_FRAME: usize = 1 << 20;

/// Longest error text sent in a reply (and kept as a failed job's message): an error that
/// quotes a client's input is cut here, so the reply to a frame at the cap still fits one.
pub const MAX_ERROR: usize = 4096;

/// Most jobs in one `Page` reply (fewer when they would not fit one frame).
pub const MAX_PAGE: u32 = 500;

/// `msg` cut to at most [`MAX_ERROR`] bytes (on a character boundary), saying so.
pub fn bounded(msg: impl Into<String>) -> String {
    let mut msg = msg.into();
    if msg.len() > MAX_ERROR {
        let mut end = MAX_ERROR - 32;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        let cut = msg.len() - end;
        msg.truncate(end);
        msg.push_str(&format!("… ({cut} more bytes)"));
    }
    msg
}

/// A job's number, unique within one state directory.
pub type JobId = u64;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Queue a job; answered by `Submitted(id)` or `Error`.
    Submit(Box<JobSpec>),
    /// Every job the daemon knows; answered by `Jobs`, or by an `Error` when the list does
    /// not fit one frame (clients page with `ListPage`).
    List,
    /// Jobs with ids above `after`, in id order: at most `limit` (and [`MAX_PAGE`]) and as
    /// many as fit one frame; answered by `Page`.
    ListPage { after: JobId, limit: u32 },
    /// One job; answered by `Job` or `Error`.
    Status(JobId),
    /// Follow a job: `Job` (its current state), then `Progress`/`Log` as they happen,
    /// and `Finished` once it is done, failed, cancelled or interrupted.
    Watch(JobId),
    /// Cancel a queued or running job; answered by `Ok` or `Error`.
    Cancel(JobId),
    /// Stop the daemon (the running job is checkpointed and marked interrupted); `Ok`.
    Shutdown,
    /// Forget a done, failed or cancelled job and delete its folder; `Ok` or `Error`.
    Remove(JobId),
    /// Remove every done, failed and cancelled job; answered by `Removed(count)`.
    Prune,
}

/// What the daemon answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Submitted(JobId),
    Jobs(Vec<JobInfo>),
    Job(JobInfo),
    /// Latest progress of a watched job (coalesced: intermediate steps may be skipped).
    Progress(JobId, Progress),
    /// A log line of a watched job (never coalesced).
    Log(JobId, String),
    /// The watched job reached a final state (or was interrupted by a shutdown).
    Finished(JobInfo),
    Ok,
    Error(String),
    /// One page of the job list; `more` says whether jobs with larger ids follow.
    Page {
        jobs: Vec<JobInfo>,
        more: bool,
    },
    /// How many jobs `Prune` removed.
    Removed(u64),
}

/// Where a job is in its life.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed(String),
    Cancelled,
    /// Stopped by a daemon shutdown; it resumes from its checkpoint on the next start.
    Interrupted,
}

impl JobState {
    /// Done, failed or cancelled: nothing more will happen to the job.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed(_) | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobState::Queued => f.write_str("queued"),
            JobState::Running => f.write_str("running"),
            JobState::Done => f.write_str("done"),
            JobState::Failed(m) => write!(f, "failed: {m}"),
            JobState::Cancelled => f.write_str("cancelled"),
            JobState::Interrupted => f.write_str("interrupted"),
        }
    }
}

/// A progress report of a job. Every field but `stage` is optional: a job fills what it has.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub stage: String,
    /// (current, total), current counting from 1.
    pub epoch: Option<(u64, u64)>,
    /// (current, total) within the epoch (or the whole job when it has no epochs).
    pub step: Option<(u64, u64)>,
    pub loss: Option<f64>,
    pub accuracy: Option<f64>,
    pub images_per_sec: Option<f64>,
    pub eta_secs: Option<f64>,
}

/// What `List`, `Status` and `Watch` report about a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: JobId,
    /// The spec's name, or its kind.
    pub name: String,
    pub kind: String,
    pub state: JobState,
    /// Seconds since the Unix epoch.
    pub submitted: u64,
    pub started: Option<u64>,
    pub finished: Option<u64>,
    /// How many times the job was resumed from a checkpoint after a crash or shutdown.
    pub resumes: u32,
    pub progress: Option<Progress>,
    /// Where the job's outputs are written.
    pub output_dir: String,
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The stream ended cleanly before a frame started.
    Closed,
    /// The stream ended inside a frame.
    Truncated {
        expected: usize,
        got: usize,
    },
    TooLarge {
        len: usize,
        cap: usize,
    },
    Io(io::Error),
    /// The body is not UTF-8 RON of the expected type.
    Malformed(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Closed => f.write_str("connection closed"),
            FrameError::Truncated { expected, got } => {
                write!(f, "frame cut short: {got} of {expected} bytes")
            }
            FrameError::TooLarge { len, cap } => {
                write!(f, "frame of {len} bytes exceeds the {cap}-byte cap")
            }
            FrameError::Io(e) => write!(f, "socket error: {e}"),
            FrameError::Malformed(m) => write!(f, "malformed frame: {m}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Read one frame body (at most `cap` bytes; nothing larger is ever allocated).
pub fn read_frame(r: &mut impl Read, cap: usize) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Truncated { expected: 4, got }),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > cap {
        return Err(FrameError::TooLarge { len, cap });
    }
    let mut body = Vec::with_capacity(len);
    r.take(len as u64)
        .read_to_end(&mut body)
        .map_err(FrameError::Io)?;
    if body.len() < len {
        return Err(FrameError::Truncated {
            expected: len,
            got: body.len(),
        });
    }
    Ok(body)
}

/// Parse a frame body as RON of type `T`.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let text =
        std::str::from_utf8(body).map_err(|e| FrameError::Malformed(format!("not UTF-8: {e}")))?;
    ron_from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Read one frame and parse it.
pub fn read_message<T: DeserializeOwned>(r: &mut impl Read, cap: usize) -> Result<T, FrameError> {
    decode(&read_frame(r, cap)?)
}

/// Serialise `msg` as one frame; refuses (without writing) a body above `cap`.
pub fn write_message<T: Serialize>(
    w: &mut impl Write,
    msg: &T,
    cap: usize,
) -> Result<(), FrameError> {
    let body = ron::to_string(msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if body.len() > cap {
        return Err(FrameError::TooLarge {
            len: body.len(),
            cap,
        });
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body.as_bytes());
    w.write_all(&frame).map_err(FrameError::Io)?;
    w.flush().map_err(FrameError::Io)
}
