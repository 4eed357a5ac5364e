//! The trainer daemon: one process owns the GPU(s); clients submit, watch and cancel jobs
//! over a Unix socket (mode 0600) with length-prefixed RON frames ([`protocol`]).
//!
//! Threads: a listener accepting connections, one thread per connection, one dispatcher
//! that owns all state and `select!`s over client requests, worker events and a timer, and
//! one worker per adapter taking jobs from a crossbeam queue. The dispatcher coalesces
//! progress (latest per job, sent to watchers on every tick) and writes state atomically
//! ([`state`]), so a kill -9 loses at most the steps since a job's last checkpoint.
//!
//! [`start`] runs a daemon in-process and returns a [`Handle`]; [`run`] is what
//! `limpq serve` calls (it also stops on SIGTERM / SIGINT).

pub mod client;
mod gpu_jobs;
pub mod job;
pub mod protocol;
pub mod state;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{select, tick, unbounded, Receiver, Sender};

use job::{JobContext, JobSpec, Outcome, WorkerEvent, CANCEL, INTERRUPT, RUN};
use protocol::{
    read_frame, write_message, FrameError, JobId, JobInfo, JobState, Progress, Request, Response,
};
use state::StateDir;

/// How to run a daemon.
#[derive(Clone, Debug)]
pub struct Config {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    /// Worker threads (one per adapter; more only in tests).
    pub workers: usize,
    /// Accept the test-only `Count` job kind.
    pub test_jobs: bool,
    /// Largest request frame accepted.
    pub max_frame: usize,
    /// How often coalesced progress goes out to watchers.
    pub tick: Duration,
    /// A connection that sends nothing (or only part of a request) for this long, or does
    /// not read its replies for this long, is closed, so a stuck client cannot hold a
    /// connection thread forever.
    pub idle_timeout: Duration,
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
            test_jobs: false,
            max_frame: protocol::MAX_FRAME,
            tick: Duration::from_millis(100),
            idle_timeout: Duration::from_secs(300),
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
    let stop = install_signal_flag()?;
    let handle = start_with_flag(config, stop)?;
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

fn lock_state(dir: &Path) -> Result<fs::File, DaemonError> {
    let p = dir.join("lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
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

/// Bind the socket with mode 0600 and no window where it is more open: bind inside a fresh
/// 0700 directory, chmod, then rename into place.
fn bind_socket(path: &Path) -> Result<UnixListener, DaemonError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&parent)
        .map_err(|e| io_err(&parent, e))?;
    if fs::symlink_metadata(path).is_ok() {
        if UnixStream::connect(path).is_ok() {
            return Err(DaemonError::AlreadyRunning(format!(
                "{} answers",
                path.display()
            )));
        }
        // A stale socket from a crashed daemon.
        fs::remove_file(path).map_err(|e| io_err(path, e))?;
    }
    let private = parent.join(format!(".limpq-bind-{}", std::process::id()));
    let _ = fs::remove_dir_all(&private);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| io_err(&private, e))?;
    let tmp = private.join("s");
    let bound = (|| {
        let l = UnixListener::bind(&tmp).map_err(|e| io_err(&tmp, e))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .map_err(|e| io_err(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
        Ok(l)
    })();
    let _ = fs::remove_file(&tmp);
    let _ = fs::remove_dir(&private);
    bound
}

/// The uid of the process at the other end of `s`.
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

fn start_with_flag(config: Config, stop: Arc<AtomicBool>) -> Result<Handle, DaemonError> {
    if config.workers == 0 {
        return Err(DaemonError::Config("workers must be at least 1".into()));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.state_dir)
        .map_err(|e| io_err(&config.state_dir, e))?;
    let lock = lock_state(&config.state_dir)?;
    let state = StateDir {
        root: config.state_dir.clone(),
    };
    let loaded = state.load().map_err(DaemonError::State)?;
    for s in &loaded.skipped {
        tracing::warn!("skipping unreadable job: {s}");
    }
    let listener = bind_socket(&config.socket)?;
    listener
        .set_nonblocking(true)
        .map_err(|e| io_err(&config.socket, e))?;

    let (req_tx, req_rx) = unbounded::<(Request, Sender<Response>)>();
    let (ev_tx, ev_rx) = unbounded::<WorkerEvent>();
    let (job_tx, job_rx) = unbounded::<Assignment>();
    let mut workers = Vec::new();
    for w in 0..config.workers {
        let (rx, tx, jobs_dir) = (job_rx.clone(), ev_tx.clone(), state.jobs_dir());
        let t = std::thread::Builder::new()
            .name(format!("limpq-worker-{w}"))
            .spawn(move || worker(rx, tx, jobs_dir))
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
            let _ = fs::remove_file(&config.socket);
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

/// What one connection may use: frame size, idle time, and how many run at once.
#[derive(Clone, Copy)]
struct Limits {
    max_frame: usize,
    idle: Duration,
    max_connections: usize,
}

impl Limits {
    fn of(c: &Config) -> Limits {
        Limits {
            max_frame: c.max_frame,
            // A zero timeout means "block forever" to the socket API; keep a floor instead.
            idle: c.idle_timeout.max(Duration::from_millis(1)),
            max_connections: c.max_connections.max(1),
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

fn listen(
    listener: UnixListener,
    req_tx: Sender<(Request, Sender<Response>)>,
    stop: Arc<AtomicBool>,
    limits: Limits,
) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let live = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(limits.idle));
                let _ = stream.set_write_timeout(Some(limits.idle));
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
                if live.fetch_add(1, Ordering::SeqCst) >= limits.max_connections {
                    live.fetch_sub(1, Ordering::SeqCst);
                    tracing::warn!(
                        "refused a connection: {} already open",
                        limits.max_connections
                    );
                    refuse(
                        stream,
                        format!(
                            "too many connections ({} open); try again later",
                            limits.max_connections
                        ),
                    );
                    continue;
                }
                let guard = Live(live.clone());
                let tx = req_tx.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("limpq-conn".into())
                        .spawn(move || {
                            let _guard = guard;
                            connection(stream, tx, limits.max_frame)
                        });
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

/// Serve one client: requests in order; a watch streams until the job finishes.
fn connection(
    mut stream: UnixStream,
    req_tx: Sender<(Request, Sender<Response>)>,
    max_frame: usize,
) {
    let reply_cap = protocol::MAX_FRAME.max(max_frame);
    loop {
        let body = match read_frame(&mut stream, max_frame) {
            Ok(b) => b,
            Err(FrameError::Closed) => return,
            Err(e @ FrameError::TooLarge { .. }) => {
                // The stream cannot be resynchronised after an unread body.
                let _ = write_message(&mut stream, &Response::Error(e.to_string()), reply_cap);
                return;
            }
            Err(e) => {
                tracing::debug!("connection dropped: {e}");
                return;
            }
        };
        let req: Request = match protocol::decode(&body) {
            Ok(r) => r,
            Err(e) => {
                if write_message(&mut stream, &Response::Error(e.to_string()), reply_cap).is_err() {
                    return;
                }
                continue;
            }
        };
        let streaming = matches!(req, Request::Watch(_));
        let (tx, rx) = unbounded();
        if req_tx.send((req, tx)).is_err() {
            let _ = write_message(
                &mut stream,
                &Response::Error("the daemon is shutting down".into()),
                reply_cap,
            );
            return;
        }
        loop {
            let resp = match rx.recv() {
                Ok(r) => r,
                Err(_) => {
                    let _ = write_message(
                        &mut stream,
                        &Response::Error("the daemon is shutting down".into()),
                        reply_cap,
                    );
                    return;
                }
            };
            let last = !streaming || matches!(resp, Response::Finished(_) | Response::Error(_));
            if write_message(&mut stream, &resp, reply_cap).is_err() {
                return;
            }
            if last {
                break;
            }
        }
    }
}

fn worker(jobs: Receiver<Assignment>, events: Sender<WorkerEvent>, jobs_dir: PathBuf) {
    for a in jobs {
        let dir = jobs_dir.join(a.id.to_string());
        let result = match JobContext::new(a.id, &dir, &a.stop, &events) {
            Ok(mut ctx) => {
                let r =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.spec.run(&mut ctx)));
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
    job_tx: Option<Sender<Assignment>>,
    stop: Arc<AtomicBool>,
    shutting_down: bool,
    next_id: JobId,
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
            if matches!(info.state, JobState::Running | JobState::Interrupted) {
                info.state = JobState::Queued;
                info.resumes += 1;
                resume.push(info.id);
            }
            specs.insert(info.id, spec);
            jobs.insert(info.id, info);
        }
        let mut queue: VecDeque<JobId> = resume.iter().copied().collect();
        for id in loaded.queue {
            if !queue.contains(&id) && jobs.get(&id).is_some_and(|i| i.state == JobState::Queued) {
                queue.push_back(id);
            }
        }
        // Queued jobs missing from queue.ron (a crash between writing the job and the queue).
        for (id, info) in &jobs {
            if info.state == JobState::Queued && !queue.contains(id) {
                queue.push_back(*id);
            }
        }
        let next_id = max_id + 1;
        let d = Dispatcher {
            idle: config.workers,
            config,
            state,
            jobs,
            specs,
            queue,
            running: HashMap::new(),
            watchers: HashMap::new(),
            dirty: HashMap::new(),
            job_tx: Some(job_tx),
            stop,
            shutting_down: false,
            next_id,
        };
        for id in resume {
            tracing::info!("job {id} will resume from its checkpoint");
            d.persist(id);
        }
        d.persist_queue();
        d
    }

    fn persist(&self, id: JobId) {
        if let Some(info) = self.jobs.get(&id) {
            if let Err(e) = self.state.save_info(info) {
                tracing::error!("saving job {id}: {e}");
            }
        }
    }

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
                    if self.stop.load(Ordering::SeqCst) && !self.shutting_down {
                        self.begin_shutdown();
                    }
                }
            }
            if self.shutting_down && self.running.is_empty() {
                self.flush_progress();
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
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            let Some(spec) = self.specs.get(&id).cloned() else {
                continue;
            };
            let flag = Arc::new(AtomicU8::new(RUN));
            if let Some(info) = self.jobs.get_mut(&id) {
                info.state = JobState::Running;
                info.started.get_or_insert(now());
            }
            self.persist(id);
            self.persist_queue();
            let Some(tx) = &self.job_tx else { return };
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
            Request::Shutdown => {
                if !self.shutting_down {
                    self.begin_shutdown();
                }
                Response::Ok
            }
        };
        let _ = reply.send(resp);
    }

    fn submit(&mut self, mut spec: JobSpec) -> Response {
        if self.shutting_down {
            return Response::Error("the daemon is shutting down".into());
        }
        if let Err(e) = spec.validate(self.config.test_jobs) {
            return Response::Error(format!("job rejected: {e}"));
        }
        // Paths that are still relative are taken from the daemon's working directory.
        if let Ok(cwd) = std::env::current_dir() {
            spec.resolve_paths(&cwd);
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
        let Some(info) = self.jobs.get_mut(&id) else {
            return Response::Error(format!("no job {id}"));
        };
        if info.state.is_final() {
            return Response::Error(format!("job {id} is already {}", info.state));
        }
        if let Some(flag) = self.running.get(&id) {
            flag.store(CANCEL, Ordering::SeqCst);
            return Response::Ok;
        }
        info.state = JobState::Cancelled;
        info.finished = Some(now());
        self.queue.retain(|&q| q != id);
        self.persist(id);
        self.persist_queue();
        self.finish_watchers(id);
        Response::Ok
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
                    Err(e) => JobState::Failed(e),
                };
                if info.state != JobState::Interrupted {
                    info.finished = Some(now());
                }
                tracing::info!("job {id}: {}", info.state);
                self.persist(id);
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
