//! The daemon's server side: the listener, one thread per connection, the dispatcher that
//! owns all state, and the workers that run jobs through the executors ([`exec`], [`gpu`]).

mod exec;
mod gpu;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{select, tick, unbounded, Receiver, RecvTimeoutError, Sender};

use super::job::{self, JobSpec};
use super::protocol::{
    self, read_frame, write_message, FrameError, JobId, JobInfo, JobState, Progress, Request,
    Response,
};
use super::{Config, DaemonError, Error};
use exec::{JobContext, Outcome, WorkerEvent, CANCEL, INTERRUPT, RUN};
use state::StateDir;

fn io_err(p: &Path, e: std::io::Error) -> DaemonError {
    DaemonError::Io(format!("{}: {e}", p.display()))
}

/// A daemon running in this process.
pub struct Handle {
    stop: Arc<AtomicBool>,
    dispatcher: Option<JoinHandle<Result<(), DaemonError>>>,
    socket: PathBuf,
}

impl Handle {
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Ask the daemon to stop (as SIGTERM would) without waiting.
    pub fn request_shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Wait until the daemon has stopped (after a shutdown request or a `Shutdown` message).
    pub fn join(mut self) -> Result<(), DaemonError> {
        match self.dispatcher.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(DaemonError::Io("the dispatcher thread panicked".into())),
            None => Ok(()),
        }
    }

    /// Stop and wait.
    pub fn shutdown(self) -> Result<(), DaemonError> {
        self.request_shutdown();
        self.join()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.dispatcher.take() {
            let _ = t.join();
        }
    }
}

/// Run a daemon until a `Shutdown` request, SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<(), DaemonError> {
    run_then(config, || {})
}

/// [`run`], calling `ready` once the socket is bound and listening: a start-up banner
/// printed there never announces a daemon that failed to start.
pub fn run_then(config: Config, ready: impl FnOnce()) -> Result<(), DaemonError> {
    let stop = install_signal_flag()?;
    let handle = start_with_flag(config, stop)?;
    ready();
    handle.join()
}

/// Start a daemon in this process: the socket is listening when this returns.
pub fn start(config: Config) -> Result<Handle, DaemonError> {
    start_with_flag(config, Arc::new(AtomicBool::new(false)))
}

/// SIGTERM / SIGINT set a flag that the dispatcher polls on every tick.
fn install_signal_flag() -> Result<Arc<AtomicBool>, DaemonError> {
    crate::interrupt::stop_on_signal(|| tracing::info!("signal received; shutting down"))
        .map_err(|e| DaemonError::Io(format!("installing the signal handlers: {e}")))
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates the state folder 0700, or checks an existing one: refused when another user owns
/// it; made 0700 (with a warning) when group or others had any access to it.
fn prepare_state_dir(dir: &Path) -> Result<(), DaemonError> {
    state::create_private_dir(dir).map_err(|e| DaemonError::Io(e.to_string()))?;
    let m = fs::metadata(dir).map_err(|e| io_err(dir, e))?;
    if m.uid() != euid() {
        return Err(DaemonError::Config(format!(
            "state folder {} is owned by uid {}, not by this user (uid {}); refusing to use it",
            dir.display(),
            m.uid(),
            euid()
        )));
    }
    let mode = m.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            "state folder {} had mode {mode:o}; made 0700",
            dir.display()
        );
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| io_err(dir, e))?;
    }
    Ok(())
}

fn lock_state(dir: &Path) -> Result<fs::File, DaemonError> {
    let p = dir.join("lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&p)
        .map_err(|e| io_err(&p, e))?;
    // SAFETY: the fd is owned by `f`, open for the duration of the call.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(DaemonError::AlreadyRunning(format!(
            "{} is locked by another daemon",
            p.display()
        )));
    }
    Ok(f)
}

/// The socket file a daemon bound: only this file (same device and inode) is removed at
/// shutdown, never whatever else has since been put at the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SocketId {
    dev: u64,
    ino: u64,
}

/// Removes the socket at `path` only if it is still the one this daemon bound.
fn remove_own_socket(path: &Path, id: SocketId) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() && m.dev() == id.dev && m.ino() == id.ino => {
            if let Err(e) = fs::remove_file(path) {
                tracing::warn!("removing {}: {e}", path.display());
            }
        }
        Ok(_) => tracing::warn!(
            "{} is no longer this daemon's socket; left in place",
            path.display()
        ),
        Err(_) => {}
    }
}

/// The socket's folder: created 0700 when missing; an existing one must belong to this user
/// (or root) and must not let others replace the socket (world-writable without the sticky
/// bit).
fn prepare_socket_dir(parent: &Path) -> Result<(), DaemonError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(|e| io_err(parent, e))?;
    let m = fs::metadata(parent).map_err(|e| io_err(parent, e))?;
    if m.uid() != euid() && m.uid() != 0 {
        return Err(DaemonError::Config(format!(
            "socket folder {} is owned by uid {}, not by this user (uid {}); refusing to use it",
            parent.display(),
            m.uid(),
            euid()
        )));
    }
    let mode = m.permissions().mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(DaemonError::Config(format!(
            "socket folder {} is writable by every user (mode {:o}) without the sticky bit, \
             so anyone could replace the socket; pick another --socket",
            parent.display(),
            mode & 0o7777
        )));
    }
    Ok(())
}

/// Bind the socket with mode 0600 and no window where it is more open: bind inside a fresh
/// 0700 directory, chmod, then rename into place. Something at the path already is replaced
/// only if it is a socket that nobody answers on (a crashed daemon's); anything else is an
/// error, never deleted.
fn bind_socket(path: &Path) -> Result<(UnixListener, SocketId), DaemonError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    prepare_socket_dir(&parent)?;
    if let Ok(m) = fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(DaemonError::Config(format!(
                "{} exists and is not a socket; refusing to replace it (pick another --socket)",
                path.display()
            )));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(DaemonError::AlreadyRunning(format!(
                "{} answers",
                path.display()
            )));
        }
        // A stale socket from a crashed daemon.
        fs::remove_file(path).map_err(|e| io_err(path, e))?;
    }
    let private = private_bind_dir(&parent)?;
    let tmp = private.join("s");
    let bound = (|| {
        let l = UnixListener::bind(&tmp).map_err(|e| io_err(&tmp, e))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .map_err(|e| io_err(&tmp, e))?;
        let m = fs::symlink_metadata(&tmp).map_err(|e| io_err(&tmp, e))?;
        let id = SocketId {
            dev: m.dev(),
            ino: m.ino(),
        };
        fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
        Ok((l, id))
    })();
    let _ = fs::remove_file(&tmp);
    let _ = fs::remove_dir(&private);
    bound
}

/// A new folder (0700) beside the socket to bind in. Its name is not guessable from the pid
/// alone, and a name that exists is never reused or removed: in a shared sticky folder
/// (`--socket /tmp/x.sock`) another user could create `.limpq-bind-PID` first, which the
/// daemon could neither remove nor use, and it failed to start.
fn private_bind_dir(parent: &Path) -> Result<PathBuf, DaemonError> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for k in 0..16u32 {
        let dir = parent.join(format!(
            ".limpq-bind-{}-{:08x}",
            std::process::id(),
            nanos.rotate_left(k * 5) ^ k
        ));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&dir, e)),
        }
    }
    Err(DaemonError::Config(format!(
        "16 names for the socket's bind folder were taken in {}; pick another --socket",
        parent.display()
    )))
}

/// The uid of the process at the other end of `s`: `SO_PEERCRED` (the credentials the
/// kernel recorded at `connect`) on Linux.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn peer_uid(s: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are live locals of the sizes getsockopt is told; the fd is
    // owned by `s` for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

/// The uid of the process at the other end of `s`: `getpeereid` on macOS and the BSDs (the
/// effective uid the kernel recorded at `connect`; LOCAL_PEERCRED underneath).
#[cfg(any(
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
))]
fn peer_uid(s: &UnixStream) -> Option<u32> {
    let mut uid: libc::uid_t = 0;
    let mut gid: libc::gid_t = 0;
    // SAFETY: `uid` and `gid` are live locals of the types getpeereid writes; the fd is
    // owned by `s` for the duration of the call.
    let rc = unsafe { libc::getpeereid(s.as_raw_fd(), &mut uid, &mut gid) };
    (rc == 0).then_some(uid)
}

/// Other Unixes: no peer-credential call is wired up, so no peer can be proven to be this
/// user and every connection is refused (the daemon is safe but unusable there).
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
)))]
fn peer_uid(_: &UnixStream) -> Option<u32> {
    None
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Assignment {
    id: JobId,
    spec: JobSpec,
    stop: Arc<AtomicU8>,
}

fn start_with_flag(mut config: Config, stop: Arc<AtomicBool>) -> Result<Handle, DaemonError> {
    // Every path the daemon reports (a job's output folder in `status.ron`, replies, logs)
    // is read by clients in other folders: a relative state folder is made absolute here.
    config.state_dir =
        std::path::absolute(&config.state_dir).map_err(|e| io_err(&config.state_dir, e))?;
    if config.workers == 0 {
        return Err(DaemonError::Config("workers must be at least 1".into()));
    }
    if config.worker_adapters.len() > config.workers {
        return Err(DaemonError::Config(format!(
            "{} worker adapters given for {} workers (at most one per worker)",
            config.worker_adapters.len(),
            config.workers
        )));
    }
    prepare_state_dir(&config.state_dir)?;
    let lock = lock_state(&config.state_dir)?;
    let state = StateDir {
        root: config.state_dir.clone(),
    };
    let loaded = state
        .load()
        .map_err(|e| DaemonError::State(e.to_string()))?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let (listener, socket_id) = bind_socket(&config.socket)?;
    listener
        .set_nonblocking(true)
        .map_err(|e| io_err(&config.socket, e))?;

    let (req_tx, req_rx) = unbounded::<(Request, Sender<Response>)>();
    let (ev_tx, ev_rx) = unbounded::<WorkerEvent>();
    let (job_tx, job_rx) = unbounded::<Assignment>();
    let mut workers = Vec::new();
    for w in 0..config.workers {
        let (rx, tx, jobs_dir) = (job_rx.clone(), ev_tx.clone(), state.jobs_dir());
        let adapter = config.worker_adapters.get(w).cloned();
        let t = std::thread::Builder::new()
            .name(format!("limpq-worker-{w}"))
            .spawn(move || worker(rx, tx, jobs_dir, adapter))
            .map_err(|e| DaemonError::Io(format!("spawning a worker: {e}")))?;
        workers.push(t);
    }
    drop(ev_tx);

    let listen_stop = Arc::new(AtomicBool::new(false));
    let listener_thread = {
        let (stop, limits) = (listen_stop.clone(), Limits::of(&config));
        std::thread::Builder::new()
            .name("limpq-listener".into())
            .spawn(move || listen(listener, req_tx, stop, limits))
            .map_err(|e| DaemonError::Io(format!("spawning the listener: {e}")))?
    };

    let mut d = Dispatcher::new(config.clone(), state, loaded, job_tx, stop.clone());
    let socket = config.socket.clone();
    let dispatcher = std::thread::Builder::new()
        .name("limpq-dispatcher".into())
        .spawn(move || {
            let result = d.run(req_rx, ev_rx);
            // Stop accepting, remove the socket, then let the workers drain.
            listen_stop.store(true, Ordering::SeqCst);
            let _ = listener_thread.join();
            remove_own_socket(&config.socket, socket_id);
            drop(d);
            for w in workers {
                let _ = w.join();
            }
            drop(lock);
            tracing::info!("daemon stopped");
            result
        })
        .map_err(|e| DaemonError::Io(format!("spawning the dispatcher: {e}")))?;
    Ok(Handle {
        stop,
        dispatcher: Some(dispatcher),
        socket,
    })
}

/// What one connection may use: frame size, idle time, frame deadline, and how many run
/// at once.
#[derive(Clone, Copy)]
struct Limits {
    max_frame: usize,
    idle: Duration,
    frame: Duration,
    max_connections: usize,
    test_jobs: bool,
    /// How often a watching connection checks that its client is still there.
    probe: Duration,
}

/// How long a connection beyond the cap may take to send its one request (only `Shutdown`
/// is served there).
const OVERFLOW_DEADLINE: Duration = Duration::from_secs(2);

impl Limits {
    fn of(c: &Config) -> Limits {
        Limits {
            max_frame: c.max_frame,
            // A zero timeout means "block forever" to the socket API; keep a floor instead.
            idle: c.idle_timeout.max(Duration::from_millis(1)),
            frame: c.frame_timeout.max(Duration::from_millis(1)),
            max_connections: c.max_connections.max(1),
            test_jobs: c.test_jobs,
            probe: c
                .tick
                .clamp(Duration::from_millis(10), Duration::from_secs(1)),
        }
    }
}

/// Counts a live connection; the count drops when its thread ends, however it ends.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Takes a slot of `count` if fewer than `cap` are taken.
fn take_slot(count: &Arc<AtomicUsize>, cap: usize) -> Option<Live> {
    if count.fetch_add(1, Ordering::SeqCst) >= cap {
        count.fetch_sub(1, Ordering::SeqCst);
        return None;
    }
    Some(Live(count.clone()))
}

type RequestTx = Sender<(Request, Sender<Response>)>;

fn listen(listener: UnixListener, req_tx: RequestTx, stop: Arc<AtomicBool>, limits: Limits) {
    let me = euid();
    let live = Arc::new(AtomicUsize::new(0));
    // Connections beyond the cap get a short-lived slot of their own, where a `Shutdown`
    // is still served: a full house cannot lock the owner out of stopping the daemon.
    let overflow = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(limits.idle));
                let _ = stream.set_write_timeout(Some(limits.frame));
                let refuse = |mut s: UnixStream, why: String| {
                    let _ = write_message(&mut s, &Response::Error(why), limits.max_frame);
                };
                match peer_uid(&stream) {
                    Some(uid) if uid == me || uid == 0 => {}
                    other => {
                        tracing::warn!("refused a connection from uid {other:?}");
                        refuse(stream, "permission denied".into());
                        continue;
                    }
                }
                let tx = req_tx.clone();
                let spawned = if let Some(guard) = take_slot(&live, limits.max_connections) {
                    std::thread::Builder::new()
                        .name("limpq-conn".into())
                        .spawn(move || {
                            let _guard = guard;
                            connection(stream, tx, limits)
                        })
                } else if let Some(guard) = take_slot(&overflow, limits.max_connections) {
                    tracing::warn!(
                        "{} connections open; only a shutdown is served on a new one",
                        limits.max_connections
                    );
                    std::thread::Builder::new()
                        .name("limpq-overflow".into())
                        .spawn(move || {
                            let _guard = guard;
                            overflow_connection(stream, tx, limits)
                        })
                } else {
                    tracing::warn!("refused a connection: too many open");
                    refuse(
                        stream,
                        format!(
                            "too many connections ({} open); try again later",
                            limits.max_connections
                        ),
                    );
                    continue;
                };
                if let Err(e) = spawned {
                    // The closure (and its guard) was dropped: the count is already back.
                    tracing::warn!("spawning a connection thread: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => {
                tracing::warn!("accept: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A stream whose reads and writes share one deadline per frame: the first byte of a
/// request may take up to `idle`, the rest of that frame must follow within `frame` of it
/// (and no single stall may last `idle`); a reply must be written whole within `frame`.
/// The socket timeout is set to what is left before every system call, so trickling bytes
/// does not extend it.
struct Timed<'a> {
    stream: &'a UnixStream,
    idle: Duration,
    frame: Duration,
    deadline: Option<Instant>,
}

impl<'a> Timed<'a> {
    fn new(stream: &'a UnixStream, idle: Duration, frame: Duration) -> Self {
        Timed {
            stream,
            idle,
            frame,
            deadline: None,
        }
    }

    /// The next read waits for a new frame (up to `idle`).
    fn next_frame(&mut self) {
        self.deadline = None;
    }

    /// The timeout for the next system call: `idle` at most (a stall that long closes the
    /// connection, inside a frame too), and never past the frame's deadline.
    fn left(&self) -> std::io::Result<Duration> {
        match self.deadline {
            None => Ok(self.idle),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the frame did not arrive within its deadline",
                    ))
                } else {
                    Ok(left.min(self.idle))
                }
            }
        }
    }
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        let n = (&mut &*self.stream).read(buf)?;
        if n > 0 && self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.frame);
        }
        Ok(n)
    }
}

impl Write for Timed<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.frame);
        }
        self.stream.set_write_timeout(Some(self.left()?))?;
        (&mut &*self.stream).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        (&mut &*self.stream).flush()
    }
}

/// Writes one reply within the frame deadline. An error reply is cut to
/// [`protocol::MAX_ERROR`]; a reply too large for a frame becomes an error saying so, so a
/// client always gets an answer it can read.
fn send_reply(t: &mut Timed<'_>, resp: &Response, cap: usize) -> Result<(), FrameError> {
    t.next_frame();
    let r = match resp {
        Response::Error(m) if m.len() > protocol::MAX_ERROR => {
            write_message(t, &Response::Error(protocol::bounded(m.as_str())), cap)
        }
        _ => write_message(t, resp, cap),
    };
    let r = match r {
        Err(FrameError::TooLarge { len, cap: c }) => write_message(
            t,
            &Response::Error(format!(
                "the reply of {len} bytes exceeds the {c}-byte frame cap{}",
                if matches!(resp, Response::Jobs(_)) {
                    "; list the jobs page by page (ListPage), as `limpq jobs` does"
                } else {
                    ""
                }
            )),
            cap,
        ),
        r => r,
    };
    t.next_frame();
    r
}

/// Checks a submitted job and makes its paths absolute, on the connection's own thread: the
/// files a job names are inspected here (never by the dispatcher), each a regular file under
/// a size cap, so a FIFO, a device or a huge file delays only this client.
fn admit(spec: &mut JobSpec, test_jobs: bool) -> Result<(), String> {
    spec.validate(test_jobs)
        .map_err(|e| format!("job rejected: {e}"))?;
    // Paths that are still relative are taken from the daemon's working directory.
    if let Ok(cwd) = std::env::current_dir() {
        spec.resolve_paths(&cwd);
    }
    Ok(())
}

/// Serve one client: requests in order; a watch streams until the job finishes.
fn connection(stream: UnixStream, req_tx: RequestTx, limits: Limits) {
    let max_frame = limits.max_frame;
    let reply_cap = protocol::MAX_FRAME.max(max_frame);
    let mut t = Timed::new(&stream, limits.idle, limits.frame);
    loop {
        t.next_frame();
        let body = match read_frame(&mut t, max_frame) {
            Ok(b) => b,
            Err(FrameError::Closed) => return,
            Err(e @ FrameError::TooLarge { .. }) => {
                // The stream cannot be resynchronised after an unread body.
                let _ = send_reply(&mut t, &Response::Error(e.to_string()), reply_cap);
                return;
            }
            Err(e) => {
                tracing::debug!("connection dropped: {e}");
                return;
            }
        };
        let mut req: Request = match protocol::decode(&body) {
            Ok(r) => r,
            Err(e) => {
                if send_reply(&mut t, &Response::Error(e.to_string()), reply_cap).is_err() {
                    return;
                }
                continue;
            }
        };
        if let Request::Submit(spec) = &mut req {
            if let Err(e) = admit(spec, limits.test_jobs) {
                if send_reply(&mut t, &Response::Error(e), reply_cap).is_err() {
                    return;
                }
                continue;
            }
        }
        let streaming = matches!(req, Request::Watch(_));
        let (tx, rx) = unbounded();
        if req_tx.send((req, tx)).is_err() {
            let _ = send_reply(
                &mut t,
                &Response::Error("the daemon is shutting down".into()),
                reply_cap,
            );
            return;
        }
        loop {
            // A watch waits on the dispatcher for as long as its job runs, or is queued (a
            // queued job's watchers get nothing). A client that went away in the meantime is
            // noticed here, so its slot is freed: 64 abandoned watches of a queued job once
            // locked every client out until the job started.
            let got = if streaming {
                match rx.recv_timeout(limits.probe) {
                    Err(RecvTimeoutError::Timeout) if peer_gone(&stream) => return,
                    Err(RecvTimeoutError::Timeout) => continue,
                    r => r.map_err(|_| ()),
                }
            } else {
                rx.recv().map_err(|_| ())
            };
            let resp = match got {
                Ok(r) => r,
                Err(()) => {
                    let _ = send_reply(
                        &mut t,
                        &Response::Error("the daemon is shutting down".into()),
                        reply_cap,
                    );
                    return;
                }
            };
            let last = !streaming || matches!(resp, Response::Finished(_) | Response::Error(_));
            if send_reply(&mut t, &resp, reply_cap).is_err() {
                return;
            }
            if last {
                break;
            }
        }
    }
}

/// Whether the client has closed its end of `stream` (or the connection failed): a peek
/// that finds the end of the stream, without blocking and without taking any byte.
fn peer_gone(stream: &UnixStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: the descriptor is `stream`'s, open for as long as the borrow; the buffer is one
    // writable byte owned by this frame, and its length is 1. MSG_PEEK leaves any data in
    // the socket, MSG_DONTWAIT returns at once; recv writes at most 1 byte.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => true,
        n if n > 0 => false,
        _ => !matches!(
            std::io::Error::last_os_error().kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        ),
    }
}

/// A connection beyond the cap: one request within [`OVERFLOW_DEADLINE`]; a `Shutdown` is
/// served, anything else (or nothing) is answered "too many connections".
fn overflow_connection(stream: UnixStream, req_tx: RequestTx, limits: Limits) {
    let cap = protocol::MAX_FRAME.max(limits.max_frame);
    let deadline = OVERFLOW_DEADLINE.min(limits.frame);
    let mut t = Timed::new(&stream, deadline, deadline);
    let busy = Response::Error(format!(
        "too many connections ({} open); try again later",
        limits.max_connections
    ));
    let req = read_frame(&mut t, limits.max_frame)
        .ok()
        .and_then(|b| protocol::decode::<Request>(&b).ok());
    if req != Some(Request::Shutdown) {
        let _ = send_reply(&mut t, &busy, cap);
        return;
    }
    let (tx, rx) = unbounded();
    let resp = if req_tx.send((Request::Shutdown, tx)).is_ok() {
        rx.recv()
            .unwrap_or_else(|_| Response::Error("the daemon is shutting down".into()))
    } else {
        Response::Error("the daemon is shutting down".into())
    };
    let _ = send_reply(&mut t, &resp, cap);
}

fn worker(
    jobs: Receiver<Assignment>,
    events: Sender<WorkerEvent>,
    jobs_dir: PathBuf,
    adapter: Option<crate::gpu::AdapterPick>,
) {
    for a in jobs {
        let dir = jobs_dir.join(a.id.to_string());
        let result = match JobContext::new(a.id, &dir, &a.stop, &events) {
            Ok(mut ctx) => {
                ctx.adapter = adapter.clone();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    exec::run(&a.spec, &mut ctx)
                }));
                match r {
                    Ok(Err(e)) => {
                        ctx.log(format!("error: {e}"));
                        Err(e)
                    }
                    Ok(ok) => ok,
                    Err(p) => {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "unknown panic".into());
                        let e = format!("the job panicked: {msg}");
                        ctx.log(format!("error: {e}"));
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e),
        };
        if events.send(WorkerEvent::Finished(a.id, result)).is_err() {
            return;
        }
    }
}

struct Dispatcher {
    config: Config,
    state: StateDir,
    jobs: BTreeMap<JobId, JobInfo>,
    specs: BTreeMap<JobId, JobSpec>,
    queue: VecDeque<JobId>,
    running: HashMap<JobId, Arc<AtomicU8>>,
    idle: usize,
    watchers: HashMap<JobId, Vec<Sender<Response>>>,
    dirty: HashMap<JobId, Progress>,
    /// Jobs whose status changed without a client to tell (a worker finished them) and whose
    /// status file could not be written: retried on every tick until it is.
    unsaved: BTreeSet<JobId>,
    /// The last state-write error while starting jobs, logged once per streak.
    start_error: Option<String>,
    job_tx: Option<Sender<Assignment>>,
    stop: Arc<AtomicBool>,
    shutting_down: bool,
    next_id: JobId,
}

/// The queue a restarted daemon runs: the jobs to resume first (in `resume`'s order), then
/// the queued jobs in `queue.ron`'s order (`listed`; an id listed twice, or whose job is not
/// queued, is skipped), then queued jobs missing from it (a crash between writing the job
/// and the queue, or a queue file that could not be read) in id order.
fn restored_queue(
    resume: &[JobId],
    listed: VecDeque<JobId>,
    jobs: &BTreeMap<JobId, JobInfo>,
) -> VecDeque<JobId> {
    let mut queue: VecDeque<JobId> = resume.iter().copied().collect();
    // Which ids the queue holds, as a set rather than a search of the queue for each id.
    let mut in_queue: BTreeSet<JobId> = resume.iter().copied().collect();
    let queued = |id: &JobId| jobs.get(id).is_some_and(|i| i.state == JobState::Queued);
    for id in listed {
        if queued(&id) && in_queue.insert(id) {
            queue.push_back(id);
        }
    }
    for &id in jobs.keys() {
        if queued(&id) && in_queue.insert(id) {
            queue.push_back(id);
        }
    }
    queue
}

impl Dispatcher {
    fn new(
        config: Config,
        state: StateDir,
        loaded: state::Loaded,
        job_tx: Sender<Assignment>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let mut jobs = BTreeMap::new();
        let mut specs = BTreeMap::new();
        let mut resume = Vec::new();
        let max_id = loaded.max_id;
        for (mut info, spec) in loaded.jobs {
            // A job that was running when the daemon died (or was interrupted by a
            // shutdown) goes first, to resume from its checkpoint.
            if spec.is_some() && matches!(info.state, JobState::Running | JobState::Interrupted) {
                info.state = JobState::Queued;
                info.resumes += 1;
                resume.push(info.id);
            }
            if let Some(spec) = spec {
                specs.insert(info.id, spec);
            }
            jobs.insert(info.id, info);
        }
        let queue = restored_queue(&resume, loaded.queue, &jobs);
        let next_id = max_id + 1;
        let mut d = Dispatcher {
            idle: config.workers,
            config,
            state,
            jobs,
            specs,
            queue,
            running: HashMap::new(),
            watchers: HashMap::new(),
            dirty: HashMap::new(),
            unsaved: BTreeSet::new(),
            start_error: None,
            job_tx: Some(job_tx),
            stop,
            shutting_down: false,
            next_id,
        };
        for id in resume {
            tracing::info!("job {id} will resume from its checkpoint");
            d.persist_or_retry(id);
        }
        d.persist_queue();
        d
    }

    /// Writes a job's status; when that fails the job is retried on every tick (its state
    /// in memory is already the truth: the worker finished it).
    fn persist_or_retry(&mut self, id: JobId) {
        let Some(info) = self.jobs.get(&id) else {
            return;
        };
        match self.state.save_info(info) {
            Ok(()) => {
                self.unsaved.remove(&id);
            }
            Err(e) => {
                if self.unsaved.insert(id) {
                    tracing::error!("saving job {id}: {e}; retrying on every tick");
                }
            }
        }
    }

    fn retry_unsaved(&mut self) {
        for id in std::mem::take(&mut self.unsaved) {
            if let Some(info) = self.jobs.get(&id) {
                match self.state.save_info(info) {
                    Ok(()) => tracing::info!("job {id}: status saved"),
                    Err(_) => {
                        self.unsaved.insert(id);
                    }
                }
            }
        }
    }

    /// Changes a job's info on disk first and in memory only once it is written: a client is
    /// never told of a state that a restart would not find.
    fn update(&mut self, id: JobId, f: impl FnOnce(&mut JobInfo)) -> Result<(), Error> {
        let Some(old) = self.jobs.get(&id) else {
            return Err(Error::NoJob(id));
        };
        let mut info = old.clone();
        f(&mut info);
        self.state.save_info(&info).map_err(|e| Error::NotSaved {
            id,
            source: Box::new(e),
        })?;
        self.unsaved.remove(&id);
        self.jobs.insert(id, info);
        Ok(())
    }

    /// The queue file only orders queued jobs (a lost one is rebuilt from their status
    /// files), so a failure to write it is logged, not fatal.
    fn persist_queue(&self) {
        if let Err(e) = self.state.save_queue(&self.queue) {
            tracing::error!("saving the queue: {e}");
        }
    }

    fn run(
        &mut self,
        req_rx: Receiver<(Request, Sender<Response>)>,
        ev_rx: Receiver<WorkerEvent>,
    ) -> Result<(), DaemonError> {
        let ticker = tick(self.config.tick);
        self.dispatch();
        loop {
            select! {
                recv(req_rx) -> m => {
                    if let Ok((req, reply)) = m {
                        self.handle(req, reply);
                    }
                }
                recv(ev_rx) -> e => {
                    match e {
                        Ok(e) => self.event(e),
                        Err(_) => return Err(DaemonError::Io("every worker thread stopped".into())),
                    }
                }
                recv(ticker) -> _ => {
                    self.flush_progress();
                    self.retry_unsaved();
                    if self.stop.load(Ordering::SeqCst) && !self.shutting_down {
                        self.begin_shutdown();
                    }
                }
            }
            if self.shutting_down && self.running.is_empty() {
                self.flush_progress();
                self.retry_unsaved();
                // Close the job queue so idle workers exit.
                self.job_tx = None;
                return Ok(());
            }
            self.dispatch();
        }
    }

    fn begin_shutdown(&mut self) {
        tracing::info!(
            "shutting down; {} running job(s) will checkpoint",
            self.running.len()
        );
        self.shutting_down = true;
        for flag in self.running.values() {
            flag.store(INTERRUPT, Ordering::SeqCst);
        }
    }

    fn dispatch(&mut self) {
        if self.shutting_down {
            return;
        }
        while self.idle > 0 {
            let Some(&id) = self.queue.front() else {
                break;
            };
            let Some(spec) = self.specs.get(&id).cloned() else {
                self.queue.pop_front();
                continue;
            };
            // Running is written before the job starts; when it cannot be, the job stays
            // queued and is tried again on the next event or tick.
            let started = now();
            if let Err(e) = self.update(id, |i| {
                i.state = JobState::Running;
                i.started.get_or_insert(started);
            }) {
                let e = e.to_string();
                if self.start_error.as_deref() != Some(e.as_str()) {
                    tracing::error!("cannot start job {id}: {e}");
                    self.start_error = Some(e);
                }
                return;
            }
            self.start_error = None;
            self.queue.pop_front();
            self.persist_queue();
            let Some(tx) = &self.job_tx else { return };
            let flag = Arc::new(AtomicU8::new(RUN));
            if tx
                .send(Assignment {
                    id,
                    spec,
                    stop: flag.clone(),
                })
                .is_err()
            {
                return;
            }
            self.running.insert(id, flag);
            self.idle -= 1;
            self.broadcast_info(id);
        }
    }

    fn info(&self, id: JobId) -> Option<JobInfo> {
        let mut info = self.jobs.get(&id)?.clone();
        if let Some(p) = self.dirty.get(&id) {
            info.progress = Some(p.clone());
        }
        Some(info)
    }

    fn handle(&mut self, req: Request, reply: Sender<Response>) {
        let resp = match req {
            Request::Submit(spec) => self.submit(*spec),
            Request::List => {
                Response::Jobs(self.jobs.keys().filter_map(|&id| self.info(id)).collect())
            }
            Request::ListPage { after, limit } => self.page(after, limit),
            Request::Status(id) => match self.info(id) {
                Some(i) => Response::Job(i),
                None => Response::Error(format!("no job {id}")),
            },
            Request::Watch(id) => match self.info(id) {
                Some(i) => {
                    let done = i.state.is_final();
                    let _ = reply.send(Response::Job(i.clone()));
                    if done || (self.shutting_down && !self.running.contains_key(&id)) {
                        Response::Finished(i)
                    } else {
                        self.watchers.entry(id).or_default().push(reply);
                        return;
                    }
                }
                None => Response::Error(format!("no job {id}")),
            },
            Request::Cancel(id) => self.cancel(id),
            Request::Remove(id) => match self.remove(&[id]) {
                Ok(_) => Response::Ok,
                Err(e) => Response::Error(e.to_string()),
            },
            Request::Prune => self.prune(),
            Request::Shutdown => {
                if !self.shutting_down {
                    self.begin_shutdown();
                }
                Response::Ok
            }
        };
        let _ = reply.send(resp);
    }

    /// Jobs after `after`, as many as `limit`, [`protocol::MAX_PAGE`] and one frame allow
    /// (always at least one, since a single job's info is far below the cap).
    fn page(&self, after: JobId, limit: u32) -> Response {
        let limit = limit.clamp(1, protocol::MAX_PAGE) as usize;
        // Room for the reply's own framing besides the jobs.
        let budget = protocol::MAX_FRAME.saturating_sub(64 << 10);
        let mut jobs = Vec::new();
        let mut size = 0;
        let mut more = false;
        for (&id, _) in self.jobs.range(after.saturating_add(1)..) {
            let Some(info) = self.info(id) else { continue };
            let len = ron::to_string(&info).map_or(usize::MAX, |t| t.len() + 1);
            if jobs.len() == limit || (!jobs.is_empty() && size + len > budget) {
                more = true;
                break;
            }
            size += len;
            jobs.push(info);
        }
        Response::Page { jobs, more }
    }

    fn submit(&mut self, spec: JobSpec) -> Response {
        if self.shutting_down {
            return Response::Error("the daemon is shutting down".into());
        }
        let id = self.next_id;
        self.next_id += 1;
        let info = JobInfo {
            id,
            name: spec.display_name(),
            kind: spec.job.name().into(),
            state: JobState::Queued,
            submitted: now(),
            started: None,
            finished: None,
            resumes: 0,
            progress: None,
            output_dir: match &spec.job {
                // A pipeline writes (and resumes) in the folder its job file names.
                job::JobKind::Pipeline(p) => p.output.display().to_string(),
                _ => self.state.job_dir(id).join("output").display().to_string(),
            },
        };
        // Spec before status: a directory with a status always has its spec.
        if let Err(e) = self
            .state
            .save_spec(id, &spec)
            .and_then(|_| self.state.save_info(&info))
        {
            self.state.discard_new_job(id);
            return Response::Error(format!("could not save job {id}: {e}"));
        }
        self.jobs.insert(id, info);
        self.specs.insert(id, spec);
        self.queue.push_back(id);
        self.persist_queue();
        tracing::info!("job {id} queued");
        Response::Submitted(id)
    }

    fn cancel(&mut self, id: JobId) -> Response {
        let Some(info) = self.jobs.get(&id) else {
            return Response::Error(format!("no job {id}"));
        };
        if info.state.is_final() {
            return Response::Error(format!("job {id} is already {}", info.state));
        }
        if let Some(flag) = self.running.get(&id) {
            // The worker stops at its next step; the cancelled state is written then.
            flag.store(CANCEL, Ordering::SeqCst);
            return Response::Ok;
        }
        let at = now();
        if let Err(e) = self.update(id, |i| {
            i.state = JobState::Cancelled;
            i.finished = Some(at);
        }) {
            return Response::Error(e.to_string());
        }
        self.queue.retain(|&q| q != id);
        self.persist_queue();
        self.finish_watchers(id);
        Response::Ok
    }

    /// Forgets done, failed or cancelled jobs and deletes their folders (a pipeline's own
    /// output folder, outside the state folder, is left alone). Returns how many went.
    fn remove(&mut self, ids: &[JobId]) -> Result<u64, Error> {
        for &id in ids {
            let Some(info) = self.jobs.get(&id) else {
                return Err(Error::NoJob(id));
            };
            if !info.state.is_final() {
                return Err(Error::NotFinished {
                    id,
                    state: info.state.to_string(),
                });
            }
        }
        if ids.is_empty() {
            return Ok(0);
        }
        // Ids are never reused, even when the newest job goes.
        self.state.save_last_id(self.next_id - 1)?;
        let (removed, error) = self.state.remove_jobs(ids);
        for id in &removed {
            self.jobs.remove(id);
            self.specs.remove(id);
            self.dirty.remove(id);
            self.unsaved.remove(id);
        }
        match error {
            None => Ok(removed.len() as u64),
            Some(e) => Err(Error::PartlyRemoved {
                removed: removed.len(),
                source: Box::new(e),
            }),
        }
    }

    fn prune(&mut self) -> Response {
        let finished: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, i)| i.state.is_final())
            .map(|(&id, _)| id)
            .collect();
        match self.remove(&finished) {
            Ok(n) => Response::Removed(n),
            Err(e) => Response::Error(e.to_string()),
        }
    }

    fn event(&mut self, e: WorkerEvent) {
        match e {
            WorkerEvent::Progress(id, p) => {
                self.dirty.insert(id, p);
            }
            WorkerEvent::Log(id, line) => {
                if let Some(ws) = self.watchers.get_mut(&id) {
                    ws.retain(|w| w.send(Response::Log(id, line.clone())).is_ok());
                }
            }
            WorkerEvent::Finished(id, result) => {
                self.flush_progress();
                let flag = self.running.remove(&id).map(|f| f.load(Ordering::SeqCst));
                self.idle += 1;
                let Some(info) = self.jobs.get_mut(&id) else {
                    return;
                };
                info.state = match result {
                    Ok(Outcome::Completed) => JobState::Done,
                    Ok(Outcome::Stopped) if flag == Some(CANCEL) => JobState::Cancelled,
                    Ok(Outcome::Stopped) => JobState::Interrupted,
                    Err(e) => JobState::Failed(protocol::bounded(e)),
                };
                if info.state != JobState::Interrupted {
                    info.finished = Some(now());
                }
                tracing::info!("job {id}: {}", info.state);
                self.persist_or_retry(id);
                self.finish_watchers(id);
            }
        }
    }

    /// Send each job's latest progress to its watchers (and keep it in the job's info).
    fn flush_progress(&mut self) {
        for (id, p) in self.dirty.drain() {
            if let Some(info) = self.jobs.get_mut(&id) {
                info.progress = Some(p.clone());
            }
            if let Some(ws) = self.watchers.get_mut(&id) {
                ws.retain(|w| w.send(Response::Progress(id, p.clone())).is_ok());
            }
        }
    }

    fn broadcast_info(&mut self, id: JobId) {
        let Some(info) = self.info(id) else { return };
        if let Some(ws) = self.watchers.get_mut(&id) {
            ws.retain(|w| w.send(Response::Job(info.clone())).is_ok());
        }
    }

    fn finish_watchers(&mut self, id: JobId) {
        let Some(info) = self.info(id) else { return };
        for w in self.watchers.remove(&id).unwrap_or_default() {
            let _ = w.send(Response::Finished(info.clone()));
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        // Watchers of jobs that did not finish learn that the daemon stopped.
        for (id, ws) in self.watchers.drain() {
            if let Some(info) = self.jobs.get(&id) {
                for w in ws {
                    let _ = w.send(Response::Finished(info.clone()));
                }
            }
        }
        let _ = std::io::stderr().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: JobId, state: JobState) -> JobInfo {
        JobInfo {
            id,
            name: String::from("count"),
            kind: String::from("count"),
            state,
            submitted: 0,
            started: None,
            finished: None,
            resumes: 0,
            progress: None,
            output_dir: String::new(),
        }
    }

    /// Resumed jobs first, then `queue.ron`'s order (repeats, unknown ids and jobs no longer
    /// queued skipped), then the queued jobs it lacks, in id order.
    #[test]
    fn the_restored_queue_keeps_resumed_listed_then_missing_order() {
        let jobs: BTreeMap<JobId, JobInfo> = [
            info(1, JobState::Queued), // resumed (was running)
            info(2, JobState::Queued),
            info(3, JobState::Queued),
            info(4, JobState::Done),
            info(5, JobState::Queued), // missing from queue.ron
            info(6, JobState::Queued),
        ]
        .into_iter()
        .map(|i| (i.id, i))
        .collect();
        let listed = VecDeque::from([6, 3, 1, 3, 4, 99, 2]);
        let q = restored_queue(&[1], listed, &jobs);
        assert_eq!(q, VecDeque::from([1, 6, 3, 2, 5]));
        // No queue file: the queued jobs in id order.
        let q = restored_queue(&[], VecDeque::new(), &jobs);
        assert_eq!(q, VecDeque::from([1, 2, 3, 5, 6]));
    }
}
