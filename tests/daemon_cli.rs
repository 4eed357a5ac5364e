//! The `limpq` binary as a daemon: kill -9 mid-job and resume, SIGTERM/SIGINT clean exit,
//! socket permissions, and the client commands.
// The daemon serves a Unix-domain socket: Unix only (docs/DAEMON.md, Platforms). It
// exists only with the default `gpu` feature: the solver-only build
// (`--no-default-features`) has no `serve` to test.
#![cfg(all(unix, feature = "gpu"))]

use limpq_solver::format::versioned::ron_from_str;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use limpq_trainer::daemon::client::Client;
use limpq_trainer::daemon::protocol::{JobInfo, JobState};

const BIN: &str = env!("CARGO_BIN_EXE_limpq");

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("limpq-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn socket(&self) -> PathBuf {
        self.0.join("d.sock")
    }
    fn state(&self) -> PathBuf {
        self.0.join("state")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `limpq serve` child, killed if the test ends early.
struct Daemon(Option<Child>);

impl Daemon {
    fn start(t: &TempDir) -> Daemon {
        let child = Command::new(BIN)
            .args(["serve", "--test-jobs", "--socket"])
            .arg(t.socket())
            .arg("--state")
            .arg(t.state())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let d = Daemon(Some(child));
        let end = Instant::now() + Duration::from_secs(20);
        while Client::connect(&t.socket()).is_err() {
            assert!(Instant::now() < end, "the daemon did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }
    fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }
    fn kill9(&mut self) {
        let mut c = self.0.take().unwrap();
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
    }
    /// Wait for exit (bounded) and return the status and stderr.
    fn wait(&mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let mut c = self.0.take().unwrap();
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                return (st, err);
            }
            if Instant::now() > end {
                let _ = c.kill();
                panic!("the daemon did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn limpq(t: &TempDir, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--socket")
        .arg(t.socket())
        .arg("--state")
        .arg(t.state())
        .output()
        .unwrap()
}

fn job_file(t: &TempDir, name: &str, n: u64, step_ms: u64) -> String {
    let p = t.0.join(format!("{name}.job.ron"));
    std::fs::write(
        &p,
        format!("(name: \"{name}\", job: Count((n: {n}, step_ms: {step_ms})))"),
    )
    .unwrap();
    p.to_str().unwrap().to_string()
}

fn submit(t: &TempDir, file: &str) -> u64 {
    let o = limpq(t, &["submit", file]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().parse().unwrap()
}

fn status(t: &TempDir, id: u64) -> JobInfo {
    let mut c = Client::connect(&t.socket()).unwrap();
    c.set_timeout(Some(Duration::from_secs(10))).unwrap();
    c.status(id).unwrap()
}

fn wait_until(t: &TempDir, id: u64, what: &str, pred: impl Fn(&JobInfo) -> bool) -> JobInfo {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let i = status(t, id);
        if pred(&i) {
            return i;
        }
        assert!(Instant::now() < end, "job {id} never {what}: {i:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn on_disk(t: &TempDir, id: u64) -> JobInfo {
    let p = t.state().join(format!("jobs/{id}/status.ron"));
    ron_from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn step(i: &JobInfo) -> u64 {
    i.progress.as_ref().and_then(|p| p.step).map_or(0, |s| s.0)
}

#[test]
fn kill_9_mid_job_then_restart_resumes_from_the_checkpoint() {
    let t = TempDir::new("kill9");
    let mut d = Daemon::start(&t);
    let quick = submit(&t, &job_file(&t, "quick", 2, 1));
    let o = limpq(&t, &["watch", &quick.to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let long = submit(&t, &job_file(&t, "long", 100, 40));
    let queued = submit(&t, &job_file(&t, "queued", 3, 1));
    wait_until(&t, long, "past step 8", |i| step(i) >= 8);
    d.kill9();

    // What the crash left on disk: the long job running, the next one queued.
    assert_eq!(on_disk(&t, long).state, JobState::Running);
    assert_eq!(on_disk(&t, queued).state, JobState::Queued);
    let ck = std::fs::read_to_string(t.state().join(format!("jobs/{long}/checkpoint/count.ron")))
        .unwrap();
    let at_kill: u64 = ck
        .trim()
        .trim_start_matches("(done:")
        .trim_end_matches(')')
        .parse()
        .unwrap();
    assert!((8..100).contains(&at_kill), "checkpoint at {at_kill}");

    let _d = Daemon::start(&t);
    let o = limpq(&t, &["watch", &long.to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info = status(&t, long);
    assert_eq!(info.state, JobState::Done);
    assert_eq!(info.resumes, 1);
    let log = std::fs::read_to_string(t.state().join(format!("jobs/{long}/log.txt"))).unwrap();
    // Resumed from the checkpoint it had, not from zero: step 1 ran once, the step after the
    // checkpoint follows the resume line.
    assert!(
        log.contains(&format!(
            "resumed from checkpoint at step {at_kill}\nstep {}\n",
            at_kill + 1
        )),
        "{log}"
    );
    assert_eq!(log.lines().filter(|l| *l == "step 1").count(), 1, "{log}");
    assert_eq!(
        std::fs::read_to_string(Path::new(&info.output_dir).join("count.txt")).unwrap(),
        "100\n"
    );
    let o = limpq(&t, &["watch", &queued.to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(status(&t, queued).resumes, 0);
    // The job finished before the crash kept its outputs.
    let q = status(&t, quick);
    assert_eq!(q.state, JobState::Done);
    assert_eq!(
        std::fs::read_to_string(Path::new(&q.output_dir).join("count.txt")).unwrap(),
        "2\n"
    );
    let o = limpq(&t, &["jobs"]);
    let table = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        table.lines().filter(|l| l.contains(" done ")).count(),
        3,
        "{table}"
    );
    // `--format json` lists the same jobs with the same id, state, kind and name.
    let o = limpq(&t, &["jobs", "--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let jobs: Vec<JobInfo> = serde_json::from_slice(&o.stdout).expect("a JSON list of jobs");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(jobs.len(), rows.len(), "{table}");
    for (j, row) in jobs.iter().zip(&rows) {
        let state = j.state.to_string();
        assert_eq!(
            [j.id.to_string().as_str(), state.as_str(), &j.kind, &j.name],
            row[..4],
            "{table}"
        );
    }
    assert_eq!(jobs.iter().filter(|j| j.state == JobState::Done).count(), 3);
}

#[test]
fn sigterm_and_sigint_checkpoint_and_leave_no_socket() {
    for sig in ["-TERM", "-INT"] {
        let t = TempDir::new(&format!("sig{sig}"));
        let mut d = Daemon::start(&t);
        let long = submit(&t, &job_file(&t, "long", 1000, 20));
        wait_until(&t, long, "running", |i| step(i) >= 2);
        let k = Command::new("kill")
            .arg(sig)
            .arg(d.pid().to_string())
            .status()
            .unwrap();
        assert!(k.success());
        let (st, err) = d.wait(Duration::from_secs(20));
        assert!(st.success(), "exit {st:?}: {err}");
        assert!(!t.socket().exists(), "socket left behind");
        let info = on_disk(&t, long);
        assert_eq!(info.state, JobState::Interrupted);
        let log = std::fs::read_to_string(t.state().join(format!("jobs/{long}/log.txt"))).unwrap();
        assert!(log.contains("stopped at step"), "{log}");
    }
}

#[test]
fn submit_without_a_daemon_says_how_to_start_one() {
    let t = TempDir::new("nodaemon");
    let o = limpq(&t, &["submit", &job_file(&t, "x", 1, 0)]);
    assert!(!o.status.success());
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("limpq serve"), "{err}");
}

#[test]
fn bad_job_files_and_unknown_ids_are_errors_with_the_reason() {
    let t = TempDir::new("badjob");
    let _d = Daemon::start(&t);
    let bad = t.0.join("bad.job.ron");
    std::fs::write(&bad, "(job: Frobnicate((model: \"resnet20\")))").unwrap();
    let o = limpq(&t, &["submit", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("bad.job.ron") && err.contains("Frobnicate"),
        "{err}"
    );
    let unknown = t.0.join("unknown.job.ron");
    std::fs::write(&unknown, "(job: Train((model: \"resnet9000\")))").unwrap();
    let o = limpq(&t, &["submit", unknown.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("resnet9000"), "{err}");
    let nan = t.0.join("nan.job.ron");
    std::fs::write(&nan, "(job: Train((model: \"small_cnn\", lr: NaN)))").unwrap();
    let o = limpq(&t, &["submit", nan.to_str().unwrap()]);
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        !o.status.success() && err.contains("lr") && err.contains("NaN"),
        "{err}"
    );
    let missing = t.0.join("missing.job.ron");
    std::fs::write(&missing, "(job: Solve((indicators: \"nope.ron\")))").unwrap();
    let o = limpq(&t, &["submit", missing.to_str().unwrap()]);
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(!o.status.success() && err.contains("nope.ron"), "{err}");
    // The indicators and finetune kinds: a missing checkpoint, bad bits, a missing policy.
    for (name, text, want) in [
        (
            "ind.job.ron",
            "(job: Indicators((model: \"small_cnn\", ckpt: \"fp.ckpt\")))",
            &["indicators.ckpt", "fp.ckpt"][..],
        ),
        (
            "bits.job.ron",
            "(job: Indicators((model: \"small_cnn\", ckpt: \"bits.job.ron\", bits: [3, 3])))",
            &["indicators.bits", "ascending"][..],
        ),
        (
            "ft.job.ron",
            "(job: Finetune((ckpt: \"ft.job.ron\", policy: \"p.ron\", epochs: 1)))",
            &["finetune.policy", "p.ron"][..],
        ),
    ] {
        let f = t.0.join(name);
        std::fs::write(&f, text).unwrap();
        let o = limpq(&t, &["submit", f.to_str().unwrap()]);
        let err = String::from_utf8(o.stderr).unwrap();
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(want.iter().all(|w| err.contains(w)), "{want:?}: {err}");
    }
    // A job that fails while it runs: watched, its error is printed once (the job's log
    // line), and the command's own error points at it.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/resnet20.indicators.ron"),
        t.0.join("ind.ron"),
    )
    .unwrap();
    let tight = t.0.join("tight.job.ron");
    std::fs::write(
        &tight,
        "(job: Solve((indicators: \"ind.ron\", bitops: Some(\"100\"))))",
    )
    .unwrap();
    let o = limpq(&t, &["submit", tight.to_str().unwrap(), "--watch"]);
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("smallest achievable").count(), 2, "{err}"); // binding + floors
    assert_eq!(err.matches("infeasible").count(), 1, "{err}");
    assert!(
        err.contains("failed: its error is the log line above"),
        "{err}"
    );
    let o = limpq(&t, &["watch", "77"]);
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(!o.status.success() && err.contains("no job 77"), "{err}");
    let o = limpq(&t, &["cancel", "77"]);
    assert!(!o.status.success());
    // Still up.
    assert!(limpq(&t, &["jobs"]).status.success());
    let o = limpq(&t, &["shutdown"]);
    assert!(o.status.success());
}

#[test]
fn socket_is_0600_and_other_users_cannot_connect() {
    let t = TempDir::new("perm");
    let _d = Daemon::start(&t);
    let mode = std::fs::metadata(t.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    use std::os::unix::fs::MetadataExt;
    // Files we create are owned by our effective uid.
    let root = std::fs::metadata(&t.0).unwrap().uid() == 0;
    let setpriv = Path::new("/usr/bin/setpriv").exists();
    if !(root && setpriv) {
        eprintln!("skipping the other-uid connection check: needs root and /usr/bin/setpriv");
        return;
    }
    let as_nobody = |args: &[&str]| {
        Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(args)
            .arg("--socket")
            .arg(t.socket())
            .output()
            .unwrap()
    };
    // The client ran as nobody and its connect() was refused by the socket's mode.
    let o = as_nobody(&["jobs"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("no limpq daemon answers")
            && err.contains("Permission denied"),
        "{err}"
    );
    // With the file mode opened up, the daemon's own peer-uid check still refuses.
    std::fs::set_permissions(t.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = as_nobody(&["jobs"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("permission denied"),
        "{err}"
    );
}

/// The same crash with a real training job on the software adapter: it resumes from the
/// epoch checkpoint (epoch 1 is not trained again) and completes with its checkpoint.
#[test]
fn kill_9_mid_training_resumes_from_the_epoch_checkpoint() {
    let t = TempDir::new("kill9train");
    let mut d = Daemon::start(&t);
    let job = t.0.join("train.job.ron");
    std::fs::write(
        &job,
        "(job: Train((model: \"small_cnn\", epochs: 3, batch: 32, lr: 0.05, \
         subset: Some(256), test_subset: Some(64), eval_batch: 64)))",
    )
    .unwrap();
    let id = submit(&t, job.to_str().unwrap());
    let ck = t.state().join(format!("jobs/{id}/checkpoint/current.ckpt"));
    let end = Instant::now() + Duration::from_secs(300);
    while !ck.exists() {
        assert!(Instant::now() < end, "no epoch checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    d.kill9();
    assert_eq!(on_disk(&t, id).state, JobState::Running);
    let _d = Daemon::start(&t);
    let o = limpq(&t, &["watch", &id.to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info = status(&t, id);
    assert_eq!(info.resumes, 1);
    let log = std::fs::read_to_string(t.state().join(format!("jobs/{id}/log.txt"))).unwrap();
    let resumed_at = log
        .lines()
        .find_map(|l| l.strip_prefix("resumed from checkpoint at epoch "))
        .and_then(|r| r.split(' ').next())
        .and_then(|e| e.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no resume line: {log}"));
    assert!((1..3).contains(&resumed_at), "{log}");
    assert_eq!(
        log.lines().filter(|l| l.starts_with("epoch 1/3")).count(),
        1,
        "{log}"
    );
    assert!(log.contains("epoch 3/3"), "{log}");
    let out = std::fs::read(Path::new(&info.output_dir).join("model.ckpt")).unwrap();
    assert!(out.starts_with(b"LIMPQCKP"));
}

#[test]
fn serve_refuses_zero_workers_and_a_file_at_the_socket_path_without_a_banner() {
    let t = TempDir::new("servebad");
    let o = limpq(&t, &["serve", "--workers", "0"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    std::fs::write(t.socket(), "precious").unwrap();
    let o = limpq(&t, &["serve"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("not a socket"), "{err}");
    assert!(
        !err.contains("listening"),
        "a banner before a failed start: {err}"
    );
    assert_eq!(std::fs::read_to_string(t.socket()).unwrap(), "precious");
}

/// Writes `n` finished jobs with 200-character names straight into a state folder.
fn write_done_jobs(state: &Path, n: u64) {
    use limpq_trainer::daemon::job::{CountJob, JobKind, JobSpec};
    for id in 1..=n {
        let d = state.join(format!("jobs/{id}"));
        std::fs::create_dir_all(d.join("output")).unwrap();
        let spec = JobSpec {
            name: format!("{id:0>200}"),
            job: JobKind::Count(CountJob {
                n: 1,
                step_ms: 0,
                fail_at: None,
                panic_at: None,
            }),
        };
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
fn thousands_of_jobs_list_prune_and_pipe_into_head_quietly() {
    let t = TempDir::new("manyjobs");
    let n = 3000;
    write_done_jobs(&t.state(), n);
    // A corrupt queue file: rebuilt, with a warning in the daemon's log.
    std::fs::write(t.state().join("queue.ron"), "[").unwrap();
    let mut d = Daemon::start(&t);
    let o = limpq(&t, &["jobs"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        table.lines().filter(|l| l.contains(" done ")).count() as u64,
        n
    );

    // `limpq jobs | head -1`: the reader goes away early; the client ends quietly.
    let mut child = Command::new(BIN)
        .args(["jobs", "--socket"])
        .arg(t.socket())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Read;
        let mut first = [0u8; 16];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !err.contains("panicked"), "{o:?}");

    let o = limpq(&t, &["jobs", "--remove", "5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = limpq(&t, &["jobs", "--remove", "5"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no job 5"), "{err}");
    let o = limpq(&t, &["jobs", "--prune"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.contains(&format!("{} finished job(s) removed", n - 1)),
        "{err}"
    );
    let o = limpq(&t, &["jobs"]);
    assert_eq!(String::from_utf8(o.stdout).unwrap().lines().count(), 1);
    assert!(limpq(&t, &["shutdown"]).status.success());
    let (st, err) = d.wait(Duration::from_secs(20));
    assert!(st.success(), "{err}");
    assert!(err.contains("rebuilt"), "{err}");
    assert!(
        !err.contains('\x1b'),
        "colour codes in a log that is not a terminal: {err:?}"
    );
}

/// The kill -9 half of the protocol soak: clients submit as fast as they can while the
/// daemon is killed; after a restart every submission that was acknowledged is there.
#[test]
fn kill_9_during_a_submit_storm_loses_no_acknowledged_job() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let t = TempDir::new("storm");
    let mut d = Daemon::start(&t);
    let acks = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|k| {
            let (socket, acks) = (t.socket(), acks.clone());
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let Ok(mut c) = Client::connect(&socket) else {
                    return got;
                };
                let _ = c.set_timeout(Some(Duration::from_secs(10)));
                for i in 0..200 {
                    let spec = limpq_trainer::daemon::job::JobSpec {
                        name: format!("storm {k}.{i}"),
                        job: limpq_trainer::daemon::job::JobKind::Count(
                            limpq_trainer::daemon::job::CountJob {
                                n: 1000,
                                step_ms: 50,
                                fail_at: None,
                                panic_at: None,
                            },
                        ),
                    };
                    match c.submit(spec) {
                        Ok(id) => {
                            got.push(id);
                            acks.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => break,
                    }
                }
                got
            })
        })
        .collect();
    let end = Instant::now() + Duration::from_secs(30);
    while acks.load(Ordering::SeqCst) < 40 {
        assert!(Instant::now() < end, "submissions too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
    d.kill9();
    let acked: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(acked.len() >= 40);
    let _d = Daemon::start(&t);
    let mut c = Client::connect(&t.socket()).unwrap();
    c.set_timeout(Some(Duration::from_secs(20))).unwrap();
    let jobs: std::collections::BTreeMap<u64, JobInfo> =
        c.list().unwrap().into_iter().map(|j| (j.id, j)).collect();
    for id in &acked {
        let j = jobs
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged job {id} lost"));
        assert!(
            matches!(j.state, JobState::Queued | JobState::Running),
            "{j:?}"
        );
    }
    assert!(limpq(&t, &["shutdown"]).status.success());
}
