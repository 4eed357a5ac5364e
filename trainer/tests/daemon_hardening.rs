//! The daemon against a hostile client or a damaged state folder on the same machine: file
//! paths that block or never end, the socket path, failed state writes, corrupt state
//! files, folder modes, trickling clients, oversized errors and a job list past one frame.
// The daemon serves a Unix-domain socket: Unix only (docs/DAEMON.md, Platforms).
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(all(unix, feature = "gpu"))]

mod common;
use common::TempDir;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use limpq_trainer::daemon::client::Client;
use limpq_trainer::daemon::job::{BitOpsBudget, CountJob, JobKind, JobSpec, SolveJob, TrainJob};
use limpq_trainer::daemon::protocol::{
    read_message, JobInfo, JobState, Request, Response, MAX_ERROR, MAX_FRAME,
};
use limpq_trainer::daemon::{self, Config, Handle};

fn config(dir: &Path) -> Config {
    let mut cfg = Config::new(dir.join("d.sock"), dir.join("state"));
    cfg.test_jobs = true;
    cfg.tick = Duration::from_millis(20);
    cfg
}

fn start(dir: &Path) -> Handle {
    daemon::start(config(dir)).expect("daemon starts")
}

fn client(h: &Handle) -> Client {
    let c = Client::connect(h.socket()).unwrap();
    c.set_timeout(Some(Duration::from_secs(20))).unwrap();
    c
}

fn count(n: u64, step_ms: u64) -> JobSpec {
    JobSpec {
        name: String::new(),
        job: JobKind::Count(CountJob {
            n,
            step_ms,
            fail_at: None,
            panic_at: None,
        }),
    }
}

fn solve(indicators: &Path) -> JobSpec {
    JobSpec {
        name: String::new(),
        job: JobKind::Solve(SolveJob {
            indicators: indicators.to_path_buf(),
            alpha: None,
            bitops: Some(BitOpsBudget::Uniform { weight: 3, act: 3 }),
            size: None,
        }),
    }
}

fn wait_for(c: &mut Client, id: u64, what: &str, pred: impl Fn(&JobInfo) -> bool) -> JobInfo {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let i = c.status(id).unwrap();
        if pred(&i) {
            return i;
        }
        assert!(Instant::now() < end, "job {id} never {what}: {i:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn on_disk(dir: &Path, id: u64) -> Option<JobInfo> {
    let p = dir.join(format!("state/jobs/{id}/status.ron"));
    let text = std::fs::read_to_string(p).ok()?;
    limpq_solver::format::versioned::ron_from_str(&text).ok()
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Opens the FIFO's writing end and closes it, so a reader blocked on it (a daemon that
/// reads job files on the wrong thread) sees end of file and the test can end.
fn release(fifo: &Path) {
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo);
}

#[test]
fn fifo_and_device_job_files_are_refused_without_stalling_anyone() {
    let dir = TempDir::new("fifo");
    let h = start(&dir.0);
    let fifo = dir.0.join("f.ron");
    mkfifo(&fifo);
    let model_fifo = dir.0.join("m.ron");
    mkfifo(&model_fifo);
    let t = Instant::now();
    let mut c = client(&h);
    c.set_timeout(Some(Duration::from_secs(5))).unwrap();
    let fifo_err = c.submit(solve(&fifo));
    let zero_err = client(&h).submit(solve(Path::new("/dev/zero")));
    let train = JobSpec {
        name: String::new(),
        job: JobKind::Train(TrainJob {
            model: model_fifo.display().to_string(),
            ..limpq_solver::format::versioned::ron_from_str::<TrainJob>("(model: \"small_cnn\")")
                .unwrap()
        }),
    };
    let model_err = client(&h).submit(train);
    // Everyone else is still served at once.
    let listed = client(&h).list();
    release(&fifo);
    release(&model_fifo);
    let fifo_err = fifo_err.unwrap_err().to_string();
    assert!(
        fifo_err.contains("f.ron") && fifo_err.contains("FIFO"),
        "{fifo_err}"
    );
    let zero_err = zero_err.unwrap_err().to_string();
    assert!(
        zero_err.contains("/dev/zero") && zero_err.contains("character device"),
        "{zero_err}"
    );
    let model_err = model_err.unwrap_err().to_string();
    assert!(
        model_err.contains("m.ron") && model_err.contains("FIFO"),
        "{model_err}"
    );
    assert!(listed.unwrap().is_empty());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    h.shutdown().unwrap();
}

#[test]
fn only_our_own_socket_is_ever_removed() {
    let dir = TempDir::new("sockpath");
    // A regular file at the socket path is an error, and it is left as it was.
    let sock = dir.0.join("d.sock");
    std::fs::write(&sock, "precious").unwrap();
    let e = daemon::start(config(&dir.0))
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("not a socket"), "{e}");
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "precious");
    std::fs::remove_file(&sock).unwrap();

    // A stale socket (nobody answers) is replaced.
    drop(UnixListener::bind(&sock).unwrap());
    let h = start(&dir.0);
    // Someone moves our socket away and another server binds the path: our shutdown
    // must not delete theirs.
    std::fs::rename(&sock, dir.0.join("moved.sock")).unwrap();
    let other = UnixListener::bind(&sock).unwrap();
    let mut c = Client::connect(&dir.0.join("moved.sock")).unwrap();
    c.set_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(c.request(&Request::Shutdown).unwrap(), Response::Ok);
    h.join().unwrap();
    assert!(sock.exists(), "another server's socket was deleted");
    assert!(UnixStream::connect(&sock).is_ok());
    drop(other);
}

#[test]
fn a_failed_state_write_is_an_error_and_changes_nothing() {
    let dir = TempDir::new("statefail");
    let h = start(&dir.0);
    let mut c = client(&h);
    let a = c.submit(count(1000, 10)).unwrap();
    let b = c.submit(count(3, 1)).unwrap();
    wait_for(&mut c, a, "running", |i| i.state == JobState::Running);
    // A folder where the status file goes: every write of it fails (even as root).
    let block = |id: u64| {
        let p = dir.0.join(format!("state/jobs/{id}/status.ron"));
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        p
    };
    let pb = block(b);
    let e = c.request(&Request::Cancel(b)).unwrap_err().to_string();
    assert!(
        e.contains("not be saved") && e.contains("status.ron"),
        "{e}"
    );
    assert_eq!(c.status(b).unwrap().state, JobState::Queued);
    std::fs::remove_dir(&pb).unwrap();
    assert_eq!(c.request(&Request::Cancel(b)).unwrap(), Response::Ok);
    assert_eq!(on_disk(&dir.0, b).unwrap().state, JobState::Cancelled);

    // A running job ends while its status cannot be written: the daemon keeps trying,
    // and the file says cancelled as soon as it can be written.
    let pa = block(a);
    assert_eq!(c.request(&Request::Cancel(a)).unwrap(), Response::Ok);
    wait_for(&mut c, a, "cancelled", |i| i.state == JobState::Cancelled);
    std::thread::sleep(Duration::from_millis(100));
    assert!(pa.is_dir());
    std::fs::remove_dir(&pa).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while on_disk(&dir.0, a).map(|i| i.state) != Some(JobState::Cancelled) {
        assert!(
            Instant::now() < end,
            "the cancelled state never reached the disk"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A submission whose spec cannot be written is refused and leaves no temporary file.
    let next = dir.0.join(format!("state/jobs/{}", b + 1));
    std::fs::create_dir_all(next.join("spec.ron")).unwrap();
    let e = c.submit(count(1, 0)).unwrap_err().to_string();
    assert!(
        e.contains("could not save") && e.contains("spec.ron"),
        "{e}"
    );
    let left: Vec<_> = std::fs::read_dir(&next)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["spec.ron".to_string()], "temporary files left");
    h.shutdown().unwrap();
}

#[test]
fn damaged_job_files_are_listed_and_a_corrupt_queue_is_rebuilt() {
    let dir = TempDir::new("damaged");
    let h = start(&dir.0);
    let mut c = client(&h);
    let a = c.submit(count(1000, 10)).unwrap();
    let b = c.submit(count(2, 1)).unwrap();
    let q = c.submit(count(2, 1)).unwrap();
    let s = c.submit(count(2, 1)).unwrap();
    wait_for(&mut c, a, "running", |i| i.state == JobState::Running);
    assert_eq!(c.request(&Request::Shutdown).unwrap(), Response::Ok);
    h.join().unwrap();
    let st = dir.0.join("state");
    std::fs::write(st.join(format!("jobs/{b}/status.ron")), "(id: 2, garbage").unwrap();
    std::fs::write(st.join(format!("jobs/{s}/spec.ron")), "").unwrap();
    std::fs::write(st.join("queue.ron"), "[1, 2,").unwrap();

    let h = start(&dir.0);
    let mut c = client(&h);
    let jobs = c.list().unwrap();
    assert_eq!(jobs.len(), 4, "{jobs:?}");
    for (id, file) in [(b, "status.ron"), (s, "spec.ron")] {
        let info = c.status(id).unwrap();
        assert!(
            matches!(&info.state, JobState::Failed(m) if m.contains("damaged") && m.contains(file)),
            "{info:?}"
        );
    }
    // The interrupted job resumes, the queued one runs after it: the queue was rebuilt.
    assert_eq!(c.request(&Request::Cancel(a)).unwrap(), Response::Ok);
    assert_eq!(client(&h).watch(q, |_| {}).unwrap().state, JobState::Done);
    // A damaged job can be removed.
    c.remove(b).unwrap();
    assert!(!st.join(format!("jobs/{b}")).exists());
    h.shutdown().unwrap();
}

#[test]
fn the_state_folder_is_made_private_and_job_files_are_0600() {
    let dir = TempDir::new("modes");
    let st = dir.0.join("state");
    std::fs::create_dir_all(&st).unwrap();
    std::fs::set_permissions(&st, std::fs::Permissions::from_mode(0o777)).unwrap();
    let h = start(&dir.0);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&st), 0o700);
    let mut c = client(&h);
    let id = c.submit(count(2, 1)).unwrap();
    c.watch(id, |_| {}).unwrap();
    let job = st.join(format!("jobs/{id}"));
    for f in [
        "spec.ron",
        "status.ron",
        "log.txt",
        "checkpoint/count.ron",
        "output/count.txt",
    ] {
        assert_eq!(mode(&job.join(f)), 0o600, "{f}");
    }
    for d in ["checkpoint", "output"] {
        assert_eq!(mode(&job.join(d)), 0o700, "{d}");
    }
    h.shutdown().unwrap();

    // A state folder of another user is refused (checkable only as root, who can chown).
    if std::fs::metadata(&dir.0).unwrap().uid() == 0 {
        let c = std::ffi::CString::new(st.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
        let e = daemon::start(config(&dir.0))
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("owned by uid 65534"), "{e}");
    } else {
        eprintln!("skipping the other-owner check: needs root");
    }
}

#[test]
fn a_trickling_client_is_cut_and_shutdown_gets_through_a_full_house() {
    let dir = TempDir::new("trickle");
    let mut cfg = config(&dir.0);
    cfg.idle_timeout = Duration::from_secs(30);
    cfg.frame_timeout = Duration::from_millis(500);
    cfg.max_connections = 2;
    let h = daemon::start(cfg).unwrap();

    // One byte every 100 ms: each read is quick, the frame never completes.
    let mut drip = UnixStream::connect(h.socket()).unwrap();
    drip.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let t = Instant::now();
    let frame = {
        let body = b"List";
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    };
    // The header of a 1000-byte frame, then its body one byte at a time.
    drip.write_all(&1000u32.to_be_bytes()).unwrap();
    let mut closed = false;
    for _ in 0..50 {
        if drip.write_all(b"x").is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match drip.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "a trickling client kept its connection");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // Both slots held by silent clients: others are told to come back, but a shutdown
    // still gets through.
    let _a = UnixStream::connect(h.socket()).unwrap();
    let _b = UnixStream::connect(h.socket()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut busy = UnixStream::connect(h.socket()).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    busy.write_all(&frame).unwrap();
    match read_message::<Response>(&mut busy, MAX_FRAME).unwrap() {
        Response::Error(e) => assert!(e.contains("too many connections"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut c = Client::connect(h.socket()).unwrap();
    c.set_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(c.request(&Request::Shutdown).unwrap(), Response::Ok);
    let t = Instant::now();
    h.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
}

/// Something already at the bind folder's old name (`.limpq-bind-PID`, guessable by any
/// user of a shared socket folder) neither stops the daemon from starting nor is removed.
#[test]
fn a_squatted_bind_folder_name_does_not_stop_the_daemon() {
    let dir = TempDir::new("squat");
    let squat = dir.0.join(format!(".limpq-bind-{}", std::process::id()));
    std::fs::write(&squat, b"not yours").unwrap();
    let h = start(&dir.0);
    assert_eq!(client(&h).list().unwrap().len(), 0);
    h.shutdown().unwrap();
    assert_eq!(std::fs::read(&squat).unwrap(), b"not yours");
    // The daemon's own bind folder is gone once it is bound.
    let left: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with(".limpq-bind-") && *n != squat.file_name().unwrap().to_string_lossy()
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A client that watches a queued job and goes away frees its connection slot: the watch
/// waited on the dispatcher, which sends a queued job's watchers nothing, so the thread
/// never learned its client had gone, and as many abandoned watches as the cap locked every
/// client out until the job started.
#[test]
fn an_abandoned_watch_of_a_queued_job_frees_its_slot() {
    use limpq_trainer::daemon::protocol::write_message;
    let dir = TempDir::new("abandoned");
    let mut cfg = config(&dir.0);
    cfg.max_connections = 2;
    let h = daemon::start(cfg).unwrap();
    let mut c = client(&h);
    let running = c.submit(count(100_000, 50)).unwrap();
    let queued = c.submit(count(1, 1)).unwrap();
    wait_for(&mut c, running, "ran", |i| i.state == JobState::Running);
    drop(c);
    for _ in 0..5 {
        let mut w = UnixStream::connect(h.socket()).unwrap();
        write_message(&mut w, &Request::Watch(queued), MAX_FRAME).unwrap();
        // Until this client goes, it holds one of the two slots.
        std::thread::sleep(Duration::from_millis(50));
        drop(w);
    }
    let end = Instant::now() + Duration::from_secs(10);
    let jobs = loop {
        match Client::connect(h.socket()).and_then(|mut c| c.list()) {
            Ok(jobs) => break jobs,
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("too many connections"), "{e}");
                assert!(Instant::now() < end, "the slots were never freed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert_eq!(jobs.len(), 2);
    assert_eq!(client(&h).status(queued).unwrap().state, JobState::Queued);
    h.shutdown().unwrap();
}

#[test]
fn a_malformed_frame_at_the_cap_gets_a_bounded_error_reply() {
    let dir = TempDir::new("bigerr");
    let h = start(&dir.0);
    let mut s = UnixStream::connect(h.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // An unknown variant whose name fills the frame: the parser's message quotes it.
    let body = "Z".repeat(MAX_FRAME);
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    match read_message::<Response>(&mut s, MAX_FRAME).expect("an error reply") {
        Response::Error(e) => {
            // Cut (the note says by how much), not dropped for being over the cap.
            assert!(
                e.contains("malformed") && e.contains("more bytes") && e.len() <= MAX_ERROR,
                "{}",
                e.len()
            )
        }
        other => panic!("expected an error, got {other:?}"),
    }
    // The connection is still usable.
    s.write_all(&[0, 0, 0, 4]).unwrap();
    s.write_all(b"List").unwrap();
    assert!(matches!(
        read_message::<Response>(&mut s, MAX_FRAME).unwrap(),
        Response::Jobs(_)
    ));
    h.shutdown().unwrap();
}

/// Writes `n` finished jobs with 200-character names straight into a state folder (as a
/// daemon would have left them), faster than submitting them.
pub fn write_done_jobs(state: &Path, n: u64) {
    for id in 1..=n {
        let d = state.join(format!("jobs/{id}"));
        std::fs::create_dir_all(d.join("output")).unwrap();
        let mut spec = count(1, 0);
        spec.name = format!("{id:0>200}");
        let info = JobInfo {
            id,
            name: spec.name.clone(),
            kind: "count".into(),
            state: JobState::Done,
            submitted: 1,
            started: Some(1),
            finished: Some(2),
            resumes: 0,
            progress: None,
            output_dir: d.join("output").display().to_string(),
        };
        std::fs::write(d.join("spec.ron"), ron::to_string(&spec).unwrap()).unwrap();
        std::fs::write(d.join("status.ron"), ron::to_string(&info).unwrap()).unwrap();
    }
}

#[test]
fn a_job_list_past_one_frame_is_paged_and_old_jobs_can_be_removed() {
    let dir = TempDir::new("many");
    let n = 2800;
    write_done_jobs(&dir.0.join("state"), n);
    let h = start(&dir.0);
    let mut c = client(&h);
    // The one-shot list does not fit a frame: an error that says so, not a silent drop.
    let e = c.request(&Request::List).unwrap_err().to_string();
    assert!(e.contains("exceeds") && e.contains("ListPage"), "{e}");
    let jobs = c.list().unwrap();
    assert_eq!(jobs.len() as u64, n);
    assert!(jobs.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(jobs.last().unwrap().id, n);

    // Remove one, refuse to remove a live one, prune the rest.
    c.remove(7).unwrap();
    assert!(c.status(7).unwrap_err().to_string().contains("no job 7"));
    assert!(!dir.0.join("state/jobs/7").exists());
    let live = c.submit(count(100_000, 10)).unwrap();
    assert_eq!(live, n + 1);
    let e = c.remove(live).unwrap_err().to_string();
    assert!(e.contains("cancel it"), "{e}");
    assert_eq!(c.prune().unwrap(), n - 1);
    assert_eq!(c.list().unwrap().len(), 1);
    assert_eq!(c.request(&Request::Cancel(live)).unwrap(), Response::Ok);
    wait_for(&mut c, live, "cancelled", |i| {
        i.state == JobState::Cancelled
    });
    assert_eq!(c.prune().unwrap(), 1);
    assert!(c.list().unwrap().is_empty());
    h.shutdown().unwrap();

    // Ids are not reused after the newest job was removed, across a restart.
    let h = start(&dir.0);
    let id = client(&h).submit(count(1, 0)).unwrap();
    assert_eq!(id, n + 2);
    h.shutdown().unwrap();
}
