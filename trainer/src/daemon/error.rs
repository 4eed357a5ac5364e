//! The daemon's error type: what went wrong talking to a daemon, checking a job spec, or
//! reading and writing the state folder. Every message names the socket, file or field.

use std::fmt;
use std::io;
use std::path::PathBuf;

use limpq_io::files::FileError;

use super::protocol::{FrameError, JobId};

/// Why a daemon request, a job spec or a state file failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No daemon answers on the socket.
    NotRunning { socket: PathBuf, source: io::Error },
    /// The daemon closed the connection before answering.
    Closed,
    /// A frame could not be written or read (socket error, timeout, cut short, too large,
    /// malformed).
    Frame(FrameError),
    /// The daemon refused the request or reported a failure; its own message.
    Daemon(String),
    /// A reply that does not answer the request.
    UnexpectedReply(String),
    /// A job spec is invalid; the message names the field.
    Invalid(String),
    /// A file could not be read or written; names the file.
    File(FileError),
    /// Another operation on a path failed (creating a folder, renaming, listing).
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A value could not be written as, or read from, RON; names the file or value.
    Format(String),
    /// No job has this id.
    NoJob(JobId),
    /// The job is queued or running, so it cannot be removed.
    NotFinished { id: JobId, state: String },
    /// A change to a job could not be written; nothing was changed.
    NotSaved { id: JobId, source: Box<Error> },
    /// Removing jobs stopped at an error after removing some.
    PartlyRemoved { removed: usize, source: Box<Error> },
    /// This platform has no daemon (no Unix-domain sockets): [`super::UNSUPPORTED`].
    Unsupported,
}

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotRunning { socket, source } => write!(
                f,
                "no limpq daemon answers on {} ({source}); start one with `limpq serve` \
                 (or pass the same --socket / --state as the daemon)",
                socket.display()
            ),
            Error::Closed => f.write_str("the daemon closed the connection"),
            Error::Frame(e) => e.fmt(f),
            Error::Daemon(m) | Error::Invalid(m) | Error::Format(m) => f.write_str(m),
            Error::UnexpectedReply(r) => write!(f, "unexpected reply {r}"),
            Error::File(e) => e.fmt(f),
            Error::Io { what, path, source } => {
                write!(f, "{what} {}: {source}", path.display())
            }
            Error::NoJob(id) => write!(f, "no job {id}"),
            Error::NotFinished { id, state } => {
                write!(f, "job {id} is {state}; cancel it before removing it")
            }
            Error::NotSaved { id, source } => write!(
                f,
                "job {id}: the state could not be saved, nothing changed: {source}"
            ),
            Error::PartlyRemoved { removed, source } => {
                write!(f, "{source} (after removing {removed} job(s))")
            }
            Error::Unsupported => f.write_str(super::UNSUPPORTED),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::NotRunning { source, .. } | Error::Io { source, .. } => Some(source),
            Error::Frame(e) => Some(e),
            Error::NotSaved { source, .. } | Error::PartlyRemoved { source, .. } => Some(&**source),
            Error::File(e) => Some(e),
            _ => None,
        }
    }
}

impl From<FileError> for Error {
    fn from(e: FileError) -> Error {
        Error::File(e)
    }
}

impl From<FrameError> for Error {
    fn from(e: FrameError) -> Error {
        match e {
            FrameError::Closed => Error::Closed,
            e => Error::Frame(e),
        }
    }
}
