//! One run at a time per output folder.
//!
//! Every run reads `state.ron` once and writes its whole copy back after each stage, so two
//! runs on one folder (`limpq pipeline JOB.ron --seeds 0 & limpq pipeline JOB.ron --seeds 1`)
//! would each drop the other's completed stages. [`run`](super::run) therefore holds an
//! exclusive lock on `OUTPUT/pipeline.lock` for as long as it runs, and a second run on the
//! same folder fails at once (it does not wait), naming the folder.
//!
//! The lock is the system's, not the file's presence: `flock` on Unix, a handle opened
//! with no sharing on Windows. It is released when the run returns or its process ends,
//! however it ends (killed included), so a run cut short never blocks the next one. The
//! file itself stays, empty. Where the file system cannot lock (some network file
//! systems), the run goes on unlocked with a note.

use std::fs::File;
use std::io;
use std::path::Path;

use super::{io_err, Event, PipelineError};

/// The lock file of an output folder.
pub const LOCK_FILE: &str = "pipeline.lock";

/// The output folder's lock, held until dropped.
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
}

/// What trying the lock gave.
enum Try {
    Locked(File),
    /// Another open file (another run, in this process or another) holds it.
    Held,
    /// The file system cannot lock this file (the error says why). Not on Windows, where
    /// the open that fails is the lock.
    #[cfg_attr(windows, allow(dead_code))]
    Unsupported(io::Error),
}

impl OutputLock {
    /// Locks the output folder `out` (which exists) for this run, without waiting: an
    /// error naming the folder when another run holds it. `None`, with a note through
    /// `on_event`, when the file system cannot lock.
    pub fn acquire(
        out: &Path,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Option<OutputLock>, PipelineError> {
        let path = out.join(LOCK_FILE);
        match try_lock(&path).map_err(|e| io_err(&path, format!("cannot open the lock: {e}")))? {
            Try::Locked(file) => Ok(Some(OutputLock { _file: file })),
            Try::Held => Err(io_err(
                out,
                format!(
                    "another pipeline run holds this output folder (its {LOCK_FILE} is \
                     locked); wait for that run to end, or stop it, or give another output \
                     folder (-o)"
                ),
            )),
            Try::Unsupported(e) => {
                on_event(&Event::Note(format!(
                    "{}: cannot lock ({e}); running without the lock, so make sure no other \
                     pipeline run uses this output folder at the same time",
                    path.display()
                )));
                Ok(None)
            }
        }
    }
}

#[cfg(unix)]
fn try_lock(path: &Path) -> io::Result<Try> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    // Non-blocking open: a FIFO put in its place must not stall the run (it is refused
    // as not a regular file once open).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (the output folder's lock file)",
        ));
    }
    loop {
        // SAFETY: the descriptor is owned by `file`, open for the duration of the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Try::Locked(file));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => return Ok(Try::Held),
            io::ErrorKind::Interrupted => continue,
            _ => return Ok(Try::Unsupported(e)),
        }
    }
}

#[cfg(windows)]
fn try_lock(path: &Path) -> io::Result<Try> {
    use std::os::windows::fs::OpenOptionsExt;
    /// The file is open elsewhere with a sharing mode that excludes this open.
    const ERROR_SHARING_VIOLATION: i32 = 32;
    // No sharing: while this handle is open, every other open of the file fails.
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .share_mode(0)
        .open(path)
    {
        Ok(file) => Ok(Try::Locked(file)),
        Err(e) if e.raw_os_error() == Some(ERROR_SHARING_VIOLATION) => Ok(Try::Held),
        Err(e) => Err(e),
    }
}

#[cfg(not(any(unix, windows)))]
fn try_lock(path: &Path) -> io::Result<Try> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    drop(file);
    Ok(Try::Unsupported(io::Error::new(
        io::ErrorKind::Unsupported,
        "no file locking on this platform",
    )))
}
