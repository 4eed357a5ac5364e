//! The trainer daemon: one process owns the GPU(s); clients submit, watch and cancel jobs
//! over a Unix socket (mode 0600) with length-prefixed RON frames ([`protocol`]).
//! Unix only: elsewhere (Windows) [`run`] and [`client::Client::connect`] refuse with
//! [`UNSUPPORTED`] (docs/DAEMON.md, Platforms).
//!
//! Threads: a listener accepting connections, one thread per connection, one dispatcher
//! that owns all state and `select!`s over client requests, worker events and a timer, and
//! one worker per adapter taking jobs from a crossbeam queue. The dispatcher coalesces
//! progress (latest per job, sent to watchers on every tick) and writes state atomically
//! ([`state`]), so a kill -9 loses at most the steps since a job's last checkpoint.
//!
//! [`start`] runs a daemon in-process and returns a [`Handle`]; [`run`] is what
//! `limpq serve` calls (it also stops on SIGTERM / SIGINT).
//!
//! Layout, split as pueue splits it: the wire types ([`protocol`], the job specs in
//! [`job`]) and the [`client`] on one side; the server (`server/`: listener, connections,
//! dispatcher, [`state`] on disk, and the executors `server/exec.rs` and `server/gpu.rs`)
//! on the other. The wire side never imports the server side.

// The wire side: what clients and the daemon exchange, and the client. None of it
// depends on the server side.
pub mod client;
pub mod error;
mod gpu_specs;
pub mod job;
pub mod protocol;

// The server side: listener, connections, dispatcher, state on disk, and the executors
// that run jobs (on the GPU for train, eval and pipeline jobs). Unix only.
#[cfg(unix)]
mod server;

pub use error::Error;
#[cfg(unix)]
pub use server::{run, run_then, start, state, Handle};

/// Why there is no daemon on this platform: it serves only a Unix-domain socket whose peer
/// the kernel proves to be the same user (docs/DAEMON.md, Platforms).
pub const UNSUPPORTED: &str = "the limpq daemon (serve, submit, jobs, watch, cancel, \
     shutdown) needs Unix-domain sockets with peer credentials, which this platform lacks; \
     run the same work in the foreground with `limpq train`, `indicators`, `finetune`, \
     `eval` or `pipeline` (docs/DAEMON.md, Platforms)";

/// Refuses: no daemon on this platform ([`UNSUPPORTED`]).
#[cfg(not(unix))]
pub fn run(config: Config) -> Result<(), DaemonError> {
    run_then(config, || {})
}

/// Refuses: no daemon on this platform ([`UNSUPPORTED`]).
#[cfg(not(unix))]
pub fn run_then(_config: Config, _ready: impl FnOnce()) -> Result<(), DaemonError> {
    Err(DaemonError::Config(UNSUPPORTED.into()))
}

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to run a daemon.
#[derive(Clone, Debug)]
pub struct Config {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    /// Worker threads (one per adapter; more only in tests).
    pub workers: usize,
    /// The adapter worker `i` opens for its GPU jobs (`worker_adapters[i]`); workers past
    /// the list's end (all of them when it is empty) take the process's choice
    /// (`LIMPQ_ADAPTER`, else the preferred adapter).
    pub worker_adapters: Vec<crate::gpu::AdapterPick>,
    /// Accept the test-only `Count` job kind.
    pub test_jobs: bool,
    /// Largest request frame accepted.
    pub max_frame: usize,
    /// How often coalesced progress goes out to watchers.
    pub tick: Duration,
    /// A connection that sends nothing for this long between requests is closed.
    pub idle_timeout: Duration,
    /// A request frame must arrive whole within this long of its first byte, and a reply
    /// must be taken whole within this long, or the connection is closed: a client dripping
    /// a byte at a time cannot hold a connection thread.
    pub frame_timeout: Duration,
    /// Connections served at once; one more is answered with an error and closed.
    pub max_connections: usize,
}

impl Config {
    /// Defaults for a state directory and socket path.
    pub fn new(socket: PathBuf, state_dir: PathBuf) -> Config {
        Config {
            socket,
            state_dir,
            workers: 1,
            worker_adapters: Vec::new(),
            test_jobs: false,
            max_frame: protocol::MAX_FRAME,
            tick: Duration::from_millis(100),
            idle_timeout: Duration::from_secs(300),
            frame_timeout: Duration::from_secs(30),
            max_connections: 64,
        }
    }
}

/// `$XDG_STATE_HOME/limpq`, else `~/.local/state/limpq`.
pub fn default_state_dir() -> Result<PathBuf, DaemonError> {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("limpq"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/state/limpq")),
        None => Err(DaemonError::Config(
            "neither XDG_STATE_HOME nor HOME is set; pass --state DIR".into(),
        )),
    }
}

/// `$LIMPQ_SOCKET`, else `$XDG_RUNTIME_DIR/limpq.sock`, else `STATE/daemon.sock`.
pub fn default_socket(state_dir: &Path) -> PathBuf {
    if let Some(s) = std::env::var_os("LIMPQ_SOCKET").filter(|d| !d.is_empty()) {
        return PathBuf::from(s);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("limpq.sock"),
        None => state_dir.join("daemon.sock"),
    }
}

/// Why a daemon could not start or stopped abnormally.
#[derive(Debug)]
pub enum DaemonError {
    Config(String),
    /// Another daemon holds the state directory or answers on the socket.
    AlreadyRunning(String),
    Io(String),
    State(String),
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::Config(m) | DaemonError::Io(m) | DaemonError::State(m) => f.write_str(m),
            DaemonError::AlreadyRunning(m) => write!(f, "a daemon is already running: {m}"),
        }
    }
}

impl std::error::Error for DaemonError {}
