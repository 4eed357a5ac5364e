//! The daemon in-process: round trips, concurrent clients, bad input, cancel, shutdown.
// The daemon serves a Unix-domain socket: Unix only (docs/DAEMON.md, Platforms).
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(all(unix, feature = "gpu"))]

mod common;
use common::TempDir;
use limpq_solver::format::versioned::ron_from_str;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use limpq_trainer::daemon::client::Client;
use limpq_trainer::daemon::job::{BitOpsBudget, CountJob, JobKind, JobSpec, SizeBudget, SolveJob};
use limpq_trainer::daemon::protocol::{
    read_message, JobInfo, JobState, Request, Response, MAX_FRAME,
};
use limpq_trainer::daemon::{self, Config, Handle};

fn start(dir: &Path, workers: usize) -> Handle {
    let mut cfg = Config::new(dir.join("d.sock"), dir.join("state"));
    cfg.workers = workers;
    cfg.test_jobs = true;
    cfg.tick = Duration::from_millis(20);
    daemon::start(cfg).expect("daemon starts")
}

fn client(h: &Handle) -> Client {
    let c = Client::connect(h.socket()).unwrap();
    c.set_timeout(Some(Duration::from_secs(30))).unwrap();
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

fn wait_for(c: &mut Client, id: u64, what: &str, pred: impl Fn(&JobInfo) -> bool) -> JobInfo {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let i = c.status(id).unwrap();
        if pred(&i) {
            return i;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for job {id} to be {what}: {i:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn round_trip_with_progress_and_outputs() {
    let dir = TempDir::new("rt");
    let h = start(&dir.0, 1);
    let mode = std::fs::metadata(h.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode");
    let mut c = client(&h);
    let id = c.submit(count(5, 10)).unwrap();
    let mut steps = Vec::new();
    let mut logs = Vec::new();
    let fin = client(&h)
        .watch(id, |r| match r {
            Response::Progress(_, p) => steps.push(p.step.unwrap().0),
            Response::Log(_, l) => logs.push(l.clone()),
            _ => {}
        })
        .unwrap();
    assert_eq!(fin.state, JobState::Done);
    assert_eq!(fin.progress.as_ref().and_then(|p| p.step), Some((5, 5)));
    assert!(
        steps.windows(2).all(|w| w[0] <= w[1]),
        "progress goes forward: {steps:?}"
    );
    assert!(logs.iter().any(|l| l == "step 5"), "{logs:?}");
    let out = std::fs::read_to_string(Path::new(&fin.output_dir).join("count.txt")).unwrap();
    assert_eq!(out, "5\n");
    let jobs = c.list().unwrap();
    assert_eq!(jobs.len(), 1);
    // Watching a finished job answers at once.
    let again = client(&h).watch(id, |_| {}).unwrap();
    assert_eq!(again.state, JobState::Done);
    h.shutdown().unwrap();
    assert!(!dir.0.join("d.sock").exists(), "socket removed on shutdown");
}

#[test]
fn solve_job_writes_a_policy() {
    let dir = TempDir::new("solve");
    let h = start(&dir.0, 1);
    let ind = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/resnet20.indicators.ron");
    let spec = JobSpec {
        name: "w3a3".into(),
        job: JobKind::Solve(SolveJob {
            indicators: ind,
            alpha: None,
            bitops: Some(BitOpsBudget::Uniform { weight: 3, act: 3 }),
            size: None,
        }),
    };
    let mut c = client(&h);
    let id = c.submit(spec).unwrap();
    let fin = c.watch(id, |_| {}).unwrap();
    assert_eq!(fin.state, JobState::Done, "{fin:?}");
    let text = std::fs::read_to_string(Path::new(&fin.output_dir).join("policy.ron")).unwrap();
    let policy = limpq_solver::Policy::from_ron_str(&text).unwrap();
    assert!(!policy.layers.is_empty());
    assert!(policy.bitops <= policy.bitops_budget.unwrap());
    h.shutdown().unwrap();
}

/// Format version 1 spelled budgets as the daemon's own enum and two size fields; those
/// files still read, as the solver's budgets, and are written back in the current form.
#[test]
fn version_1_solve_jobs_still_read_as_the_solvers_budgets() {
    let read = |text: &str| ron_from_str::<JobSpec>(text).map(|s| s.job);
    let solve = |bitops, size| {
        JobKind::Solve(SolveJob {
            indicators: "i.ron".into(),
            alpha: None,
            bitops,
            size,
        })
    };
    let w3a3 = Some(BitOpsBudget::Uniform { weight: 3, act: 3 });
    assert_eq!(
        read(r#"(job: Solve((indicators: "i.ron", bitops: Some(Uniform(3, 3)))))"#).unwrap(),
        solve(w3a3, None)
    );
    assert_eq!(
        read(r#"(job: Solve((indicators: "i.ron", bitops: Some("w3a3"))))"#).unwrap(),
        solve(w3a3, None)
    );
    assert_eq!(
        read(
            r#"(job: Solve((indicators: "i.ron", bitops: Some(Absolute(5)), size_bytes: Some(9))))"#
        )
        .unwrap(),
        solve(Some(BitOpsBudget::Absolute(5)), Some(SizeBudget::Bytes(9)))
    );
    assert_eq!(
        read(r#"(job: Solve((indicators: "i.ron", bitops: Some(5), compression: Some(8.0))))"#)
            .unwrap(),
        solve(
            Some(BitOpsBudget::Absolute(5)),
            Some(SizeBudget::CompressionRatio(8.0))
        )
    );
    assert_eq!(
        read(r#"(job: Solve((indicators: "i.ron", size: Some("cr:8"))))"#).unwrap(),
        solve(None, Some(SizeBudget::CompressionRatio(8.0)))
    );
    for bad in [
        r#"(job: Solve((indicators: "i.ron", size: Some(9), size_bytes: Some(9))))"#,
        r#"(job: Solve((indicators: "i.ron", size_bytes: Some(9), compression: Some(8.0))))"#,
        r#"(job: Solve((indicators: "i.ron", bitops: Some("three bits"))))"#,
        r#"(job: Solve((indicators: "i.ron", bitops: Some(Uniform(3, 3, 3)))))"#,
    ] {
        assert!(read(bad).is_err(), "{bad}");
    }
    // Written in the current form, which reads back the same.
    let job = solve(w3a3, Some(SizeBudget::CompressionRatio(8.0)));
    let text = ron::to_string(&job).unwrap();
    assert!(
        text.contains(r#"bitops:Some("w3a3")"#) && text.contains(r#""cr:8""#),
        "{text}"
    );
    assert_eq!(ron_from_str::<JobKind>(&text).unwrap(), job);
}

/// The training jobs' run settings are one vocabulary (the pipeline's): every setting
/// reads, a duplicate or unknown one is refused, and a spec round-trips.
#[test]
fn training_jobs_read_the_shared_run_settings() {
    let text = r#"Indicators((model: "small_cnn", ckpt: "a.ckpt", bits: [2, 4], epochs: 2,
        batch: 16, lr: 0.02, momentum: 0.8, nesterov: false, weight_decay: 0.0,
        label_smoothing: 0.0, clip: 0.5, eval_batch: 32, eval_every: 2, data: "mnist",
        subset: Some(10), seed: 3, output: Some("x.json")))"#;
    let job: JobKind = ron_from_str(text).unwrap();
    let JobKind::Indicators(ind) = &job else {
        panic!("{job:?}")
    };
    let cfg = ind.config();
    assert_eq!(cfg.bits, vec![2, 4]);
    assert_eq!(
        (
            cfg.run.epochs,
            cfg.run.batch,
            cfg.run.lr,
            cfg.run.clip,
            cfg.run.seed,
            cfg.run.eval_every
        ),
        (2, 16, 0.02, Some(0.5), 3, 2)
    );
    assert!(!cfg.run.nesterov);
    assert_eq!(ind.data.data.as_deref(), Some("mnist"));
    let again = ron::to_string(&job).unwrap();
    assert_eq!(ron_from_str::<JobKind>(&again).unwrap(), job);
    // Left out: the CLI command's recipe.
    let ft: JobKind = ron_from_str(r#"Finetune((ckpt: "a.ckpt", policy: "p.ron"))"#).unwrap();
    let JobKind::Finetune(ft) = ft else { panic!() };
    assert_eq!(
        ft.config().run,
        limpq_trainer::method::FinetuneConfig::default().run
    );
    let recipe = limpq_trainer::method::FinetuneConfig::default();
    assert_eq!(
        (
            ft.config().steps_from_indicators,
            ft.config().bn_recalibration
        ),
        (recipe.steps_from_indicators, recipe.bn_recalibration)
    );
    // The recipe's two finetune choices, as `limpq finetune --steps-from-indicators
    // --bn-recalibration N` makes them.
    let chosen: JobKind = ron_from_str(
        r#"Finetune((ckpt: "a.ckpt", policy: "p.ron", indicators: Some("i.ron"),
                     steps_from_indicators: true, bn_recalibration: 0))"#,
    )
    .unwrap();
    let JobKind::Finetune(f) = &chosen else {
        panic!()
    };
    assert!(f.config().steps_from_indicators);
    assert_eq!(f.config().bn_recalibration, 0);
    assert_eq!(f.config().run, ft.config().run);
    let again = ron::to_string(&chosen).unwrap();
    assert_eq!(ron_from_str::<JobKind>(&again).unwrap(), chosen);
    let ind: JobKind = ron_from_str(r#"Indicators((model: "m", ckpt: "a.ckpt"))"#).unwrap();
    let JobKind::Indicators(ind) = ind else {
        panic!()
    };
    assert_eq!(ind.config(), limpq_trainer::method::JointConfig::default());
    let tr: JobKind = ron_from_str(r#"Train((model: "small_cnn"))"#).unwrap();
    let JobKind::Train(tr) = tr else { panic!() };
    assert_eq!(tr.config(), limpq_trainer::train::RunConfig::default());
    for bad in [
        r#"Train((model: "m", lr: 0.1, lr: 0.2))"#,
        r#"Train((model: "m", bogus: 1))"#,
        r#"Train((epochs: 1))"#,
        r#"Finetune((ckpt: "a.ckpt"))"#,
        r#"Indicators((model: "m", ckpt: "a.ckpt", seed: 1, seed: 2))"#,
    ] {
        assert!(ron_from_str::<JobKind>(bad).is_err(), "{bad}");
    }
}

#[test]
fn eight_clients_submit_and_watch_at_once() {
    let dir = TempDir::new("eight");
    let h = start(&dir.0, 2);
    let socket = h.socket().to_path_buf();
    let threads: Vec<_> = (0..8u64)
        .map(|k| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&socket).unwrap();
                c.set_timeout(Some(Duration::from_secs(60))).unwrap();
                let n = 3 + k;
                let id = c.submit(count(n, 5)).unwrap();
                let mut last = 0;
                let fin = c
                    .watch(id, |r| {
                        if let Response::Progress(pid, p) = r {
                            assert_eq!(*pid, id);
                            last = p.step.unwrap().0;
                        }
                    })
                    .unwrap();
                assert_eq!(fin.state, JobState::Done);
                let out =
                    std::fs::read_to_string(Path::new(&fin.output_dir).join("count.txt")).unwrap();
                assert_eq!(out, format!("{n}\n"));
                assert!(last <= n);
                id
            })
        })
        .collect();
    let mut ids: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "distinct ids");
    let jobs = client(&h).list().unwrap();
    assert_eq!(jobs.iter().filter(|j| j.state == JobState::Done).count(), 8);
    h.shutdown().unwrap();
}

fn raw(h: &Handle) -> UnixStream {
    let s = UnixStream::connect(h.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn reply(s: &mut UnixStream) -> Response {
    read_message(s, MAX_FRAME).unwrap()
}

#[test]
fn bad_input_gets_error_replies_and_the_daemon_stays_up() {
    let dir = TempDir::new("bad");
    let h = start(&dir.0, 1);

    // Malformed RON, then an unknown request on the same connection: both answered.
    let mut s = raw(&h);
    s.write_all(&frame(b"Submit((((")).unwrap();
    assert!(matches!(reply(&mut s), Response::Error(e) if e.contains("malformed")));
    s.write_all(&frame(b"Reboot")).unwrap();
    assert!(matches!(reply(&mut s), Response::Error(e) if e.contains("Reboot")));
    s.write_all(&frame(&[0xff, 0xfe])).unwrap();
    assert!(matches!(reply(&mut s), Response::Error(e) if e.contains("UTF-8")));
    s.write_all(&frame(b"List")).unwrap();
    assert!(matches!(reply(&mut s), Response::Jobs(_)));

    // Oversized: refused from the length alone, then the connection is closed.
    let mut s = raw(&h);
    s.write_all(&(MAX_FRAME as u32 + 1).to_be_bytes()).unwrap();
    assert!(matches!(reply(&mut s), Response::Error(e) if e.contains("exceeds")));
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);

    // Cut short: the daemon drops that connection only.
    let mut s = raw(&h);
    s.write_all(&frame(b"List")[..6]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);

    let mut c = client(&h);
    // Missing data file, NaN and negative hyper-parameters.
    let solve = |ind: &str, alpha: Option<f64>| JobSpec {
        name: String::new(),
        job: JobKind::Solve(SolveJob {
            indicators: PathBuf::from(ind),
            alpha,
            bitops: None,
            size: None,
        }),
    };
    let e = c
        .submit(solve("/nonexistent/ind.ron", None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/ind.ron"), "{e}");
    let ind = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/resnet20.indicators.ron");
    let ind = ind.to_str().unwrap();
    let e = c
        .submit(solve(ind, Some(f64::NAN)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("alpha") && e.contains("NaN"), "{e}");
    let e = c.submit(solve(ind, Some(-1.0))).unwrap_err().to_string();
    assert!(e.contains("alpha") && e.contains("-1"), "{e}");
    // Unknown job ids.
    assert!(c.status(99).unwrap_err().to_string().contains("no job 99"));
    assert!(c
        .request(&Request::Cancel(99))
        .unwrap_err()
        .to_string()
        .contains("no job 99"));

    // A job that fails and one that panics become failed jobs with the message; the next runs.
    let mut fail = count(5, 1);
    if let JobKind::Count(k) = &mut fail.job {
        k.fail_at = Some(3);
    }
    let mut boom = count(5, 1);
    if let JobKind::Count(k) = &mut boom.job {
        k.panic_at = Some(2);
    }
    let f = c.submit(fail).unwrap();
    let p = c.submit(boom).unwrap();
    let ok = c.submit(count(2, 1)).unwrap();
    let fi = c.watch(f, |_| {}).unwrap();
    assert!(
        matches!(&fi.state, JobState::Failed(m) if m.contains("fail at step 3")),
        "{fi:?}"
    );
    let pi = client(&h).watch(p, |_| {}).unwrap();
    assert!(
        matches!(&pi.state, JobState::Failed(m) if m.contains("panic")),
        "{pi:?}"
    );
    let oi = client(&h).watch(ok, |_| {}).unwrap();
    assert_eq!(oi.state, JobState::Done);
    h.shutdown().unwrap();
}

#[test]
fn test_jobs_are_refused_unless_enabled() {
    let dir = TempDir::new("notest");
    let h = daemon::start(Config::new(dir.0.join("d.sock"), dir.0.join("state"))).unwrap();
    let e = client(&h).submit(count(1, 0)).unwrap_err().to_string();
    assert!(e.contains("test-only"), "{e}");
    h.shutdown().unwrap();
}

#[test]
fn cancel_queued_and_running_jobs() {
    let dir = TempDir::new("cancel");
    let h = start(&dir.0, 1);
    let mut c = client(&h);
    let a = c.submit(count(1000, 10)).unwrap();
    let b = c.submit(count(3, 1)).unwrap();
    wait_for(&mut c, a, "running", |i| i.state == JobState::Running);
    assert_eq!(c.request(&Request::Cancel(b)).unwrap(), Response::Ok);
    assert_eq!(c.status(b).unwrap().state, JobState::Cancelled);
    assert_eq!(c.request(&Request::Cancel(a)).unwrap(), Response::Ok);
    let ai = wait_for(&mut c, a, "cancelled", |i| i.state == JobState::Cancelled);
    assert!(ai.progress.unwrap().step.unwrap().0 < 1000);
    assert!(c
        .request(&Request::Cancel(a))
        .unwrap_err()
        .to_string()
        .contains("already cancelled"));
    h.shutdown().unwrap();
}

#[test]
fn shutdown_interrupts_and_a_restart_resumes() {
    let dir = TempDir::new("resume");
    let h = start(&dir.0, 1);
    let mut c = client(&h);
    let a = c.submit(count(200, 20)).unwrap();
    let q = c.submit(count(2, 1)).unwrap();
    let at = wait_for(&mut c, a, "past step 3", |i| {
        i.progress
            .as_ref()
            .and_then(|p| p.step)
            .is_some_and(|s| s.0 >= 3)
    });
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let watcher = {
        let mut w = client(&h);
        std::thread::spawn(move || {
            w.watch(a, |_| {
                let _ = seen_tx.send(());
            })
            .unwrap()
        })
    };
    // The watch is registered once its first reply arrives.
    seen_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(c.request(&Request::Shutdown).unwrap(), Response::Ok);
    h.join().unwrap();
    assert_eq!(watcher.join().unwrap().state, JobState::Interrupted);
    assert!(!dir.0.join("d.sock").exists());
    let stopped_at: u64 = {
        let ck = std::fs::read_to_string(dir.0.join("state/jobs/1/checkpoint/count.ron")).unwrap();
        ck.trim_start_matches("(done:")
            .trim_end_matches(')')
            .trim()
            .parse()
            .unwrap()
    };
    assert!(stopped_at >= at.progress.unwrap().step.unwrap().0 && stopped_at < 200);

    let h = start(&dir.0, 1);
    let mut c = client(&h);
    let fin = c.watch(a, |_| {}).unwrap();
    assert_eq!(fin.state, JobState::Done);
    assert_eq!(fin.resumes, 1);
    let log = std::fs::read_to_string(dir.0.join("state/jobs/1/log.txt")).unwrap();
    assert!(
        log.contains(&format!("resumed from checkpoint at step {stopped_at}")),
        "{log}"
    );
    assert_eq!(
        log.lines().filter(|l| *l == "step 1").count(),
        1,
        "not restarted from zero"
    );
    assert_eq!(c.watch(q, |_| {}).unwrap().state, JobState::Done);
    h.shutdown().unwrap();
}

#[test]
fn a_second_daemon_on_the_same_state_is_refused() {
    let dir = TempDir::new("two");
    let h = start(&dir.0, 1);
    let mut cfg = Config::new(dir.0.join("other.sock"), dir.0.join("state"));
    cfg.test_jobs = true;
    let e = daemon::start(cfg).err().expect("refused").to_string();
    assert!(e.contains("already running"), "{e}");
    let cfg = Config::new(dir.0.join("d.sock"), dir.0.join("state2"));
    let e = daemon::start(cfg).err().expect("refused").to_string();
    assert!(e.contains("answers"), "{e}");
    h.shutdown().unwrap();
}

#[test]
fn idle_and_half_sent_connections_are_closed_and_connections_are_capped() {
    let dir = TempDir::new("limits");
    let mut cfg = Config::new(dir.0.join("d.sock"), dir.0.join("state"));
    cfg.test_jobs = true;
    cfg.tick = Duration::from_millis(20);
    cfg.idle_timeout = Duration::from_millis(300);
    cfg.max_connections = 2;
    let h = daemon::start(cfg).expect("daemon starts");

    // Two connections: one silent, one that sends half a frame header and stalls.
    let mut silent = raw(&h);
    let mut half = raw(&h);
    half.write_all(&[0, 0]).unwrap();
    // Both are being served, so a third is refused with a reason.
    std::thread::sleep(Duration::from_millis(100));
    let mut third = raw(&h);
    match reply(&mut third) {
        Response::Error(e) => assert!(e.contains("too many connections"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // After the idle timeout the daemon closes both: reads see end of stream.
    let t = Instant::now();
    for s in [&mut silent, &mut half] {
        let mut buf = [0u8; 8];
        let n = s.read(&mut buf).expect("closed, not timed out on our side");
        assert_eq!(n, 0, "the daemon should have closed the idle connection");
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // Their slots are free again: a new client is served.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = raw(&h);
        c.write_all(&frame(b"List")).unwrap();
        match reply(&mut c) {
            Response::Jobs(_) => break,
            Response::Error(e) if e.contains("too many") && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(50))
            }
            other => panic!("expected the job list, got {other:?}"),
        }
    }
    h.shutdown().unwrap();
}

/// A job file's relative paths are taken from its folder: model files too, whatever their
/// extension (a pipeline's `net.onnx` was looked for in the daemon's working folder), while
/// a built-in model's name and a name that is no file are left as they are.
#[test]
fn a_job_files_relative_model_paths_are_taken_from_its_folder() {
    let dir = TempDir::new("relmodel");
    let sub = dir.0.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let sub = std::fs::canonicalize(&sub).unwrap();
    let pipeline = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/small_cnn.pipeline.ron"
    ))
    .unwrap();
    let model_of = |text: String| {
        let f = sub.join("job.ron");
        std::fs::write(&f, text).unwrap();
        match JobSpec::from_file(&f).unwrap().job {
            JobKind::Pipeline(p) => p.model,
            JobKind::Train(t) => t.model,
            other => panic!("{other:?}"),
        }
    };
    let with =
        |model: &str| pipeline.replace("model: \"small_cnn\"", &format!("model: \"{model}\""));
    assert_eq!(
        model_of(with("net.onnx")),
        sub.join("net.onnx").display().to_string()
    );
    assert_eq!(model_of(with("small_cnn")), "small_cnn");
    assert_eq!(model_of(with("small_cnnn")), "small_cnnn");
    // A model description without the `.ron` extension, beside the job file.
    std::fs::write(sub.join("mine.model"), "").unwrap();
    let train = |model: &str| format!("(job: Train((model: \"{model}\")))");
    assert_eq!(
        model_of(train("mine.model")),
        sub.join("mine.model").display().to_string()
    );
    assert_eq!(model_of(train("resnet20")), "resnet20");
}

/// A job's name: up to 200 characters (not bytes: 150 `é` are 300 bytes), and no control
/// character, which `limpq jobs` would print into its table (a newline forges a row, an
/// escape sequence recolours the terminal).
#[test]
fn job_names_are_counted_in_characters_and_hold_no_control_character() {
    let named = |name: &str| {
        let mut s = count(1, 1);
        s.name = name.into();
        s
    };
    assert!(named(&"é".repeat(150)).validate(true).is_ok());
    let e = named(&"é".repeat(201))
        .validate(true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("longer than 200 characters"), "{e}");
    for bad in ["evil\n   9  done  x", "red\u{1b}[31m"] {
        let e = named(bad).validate(true).unwrap_err().to_string();
        assert!(e.contains("job name: holds the control character"), "{e}");
    }
}

/// A relative state folder is made absolute when the daemon starts: the output folders it
/// reports (replies, `status.ron`) are read by clients in other folders.
#[test]
fn a_relative_state_folder_gives_absolute_output_folders() {
    let dir = TempDir::new("relstate");
    let cwd = std::env::current_dir().unwrap();
    let up: PathBuf = cwd.components().skip(1).map(|_| "..").collect();
    let rel = up.join(dir.0.strip_prefix("/").unwrap()).join("state");
    assert!(rel.is_relative());
    let mut cfg = Config::new(dir.0.join("d.sock"), rel);
    cfg.test_jobs = true;
    cfg.tick = Duration::from_millis(20);
    let h = daemon::start(cfg).unwrap();
    let mut c = client(&h);
    let id = c.submit(count(1, 1)).unwrap();
    let done = wait_for(&mut c, id, "done", |i| i.state == JobState::Done);
    let out = Path::new(&done.output_dir);
    assert!(out.is_absolute(), "{}", out.display());
    assert!(out.join("count.txt").is_file(), "{}", out.display());
    h.shutdown().unwrap();
}

/// A job's output that is one of its inputs is refused at submission, as the commands
/// refuse it: a finetune job wrote its result over its own full-precision checkpoint, an
/// indicators job its joint state over the checkpoint it started from.
#[test]
fn a_job_output_that_is_one_of_its_inputs_is_refused() {
    let dir = TempDir::new("output-is-input");
    let d = &dir.0;
    std::fs::write(d.join("fp.ckpt"), b"stands in for a checkpoint").unwrap();
    std::fs::write(
        d.join("p.ron"),
        "Policy(model: \"small_cnn\", layers: [], objective: 0.0, bitops: 0, \
         weight_bits_total: 0, optimal: true, bitops_budget: None, size_budget_bits: None)",
    )
    .unwrap();
    let refused = |job: &str, needle: &str| {
        let f = d.join("job.ron");
        std::fs::write(&f, job).unwrap();
        let e = JobSpec::from_file(&f)
            .and_then(|s| s.validate(false))
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{job}: {e}");
    };
    refused(
        r#"(job: Finetune((ckpt: "fp.ckpt", policy: "p.ron", output: Some("./fp.ckpt"))))"#,
        "is the same file as finetune.ckpt",
    );
    refused(
        r#"(job: Finetune((ckpt: "fp.ckpt", policy: "p.ron", output: Some("p.ron"))))"#,
        "is the same file as finetune.policy",
    );
    refused(
        r#"(job: Indicators((model: "small_cnn", ckpt: "fp.ckpt", checkpoint: Some("fp.ckpt"))))"#,
        "is the same file as indicators.ckpt",
    );
    refused(
        r#"(job: Indicators((model: "small_cnn", ckpt: "fp.ckpt", output: Some("i.ron"),
                             checkpoint: Some("i.ron"))))"#,
        "name the same file",
    );
}
