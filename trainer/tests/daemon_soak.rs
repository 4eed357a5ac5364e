//! A bounded soak of the protocol: 50 clients at once send thousands of frames, valid,
//! random, mutated, truncated and oversized, to one in-process daemon. Nothing may panic or
//! hang, every frame that is answered gets a well-formed reply, the daemon keeps serving,
//! and every submission it acknowledged is listed and runs. (The `kill -9` half, against the
//! `limpq serve` binary, is in `tests/daemon_cli.rs`.)
// The daemon serves a Unix-domain socket: Unix only (docs/DAEMON.md, Platforms).
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(all(unix, feature = "gpu"))]

mod common;
use common::TempDir;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use limpq_trainer::daemon::client::Client;
use limpq_trainer::daemon::protocol::{read_message, JobState, Response, MAX_FRAME};
use limpq_trainer::daemon::{self, Config};

const CLIENTS: u64 = 50;
const FRAMES_PER_CLIENT: u64 = 80;

/// splitmix64: a reproducible stream per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn connect(socket: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(socket).expect("the daemon accepts");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// One answered request: the reply must parse (a hang or garbage fails the test).
fn ask(s: &mut UnixStream, body: &[u8]) -> Response {
    s.write_all(&frame(body)).expect("request sent");
    read_message(s, MAX_FRAME).expect("a well-formed reply")
}

const VALID: &[&str] = &[
    "List",
    "ListPage(after: 0, limit: 10)",
    "Status(1)",
    "Status(999999)",
    "Cancel(999999)",
    "Remove(999999)",
    "Watch(999999)",
    "Submit((job: Count((n: 1))))",
];

#[test]
fn fifty_clients_of_random_frames_leave_the_daemon_serving_and_lose_no_submit() {
    let dir = TempDir::new("soak");
    let mut cfg = Config::new(dir.0.join("d.sock"), dir.0.join("state"));
    cfg.test_jobs = true;
    cfg.workers = 2;
    cfg.tick = Duration::from_millis(20);
    cfg.idle_timeout = Duration::from_secs(5);
    cfg.frame_timeout = Duration::from_secs(1);
    let h = daemon::start(cfg).unwrap();
    let socket = h.socket().to_path_buf();
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(k * 7919 + 1);
                let mut s = connect(&socket);
                let mut acked = Vec::new();
                let mut answered = 0u64;
                for _ in 0..FRAMES_PER_CLIENT {
                    match rng.below(20) {
                        // A valid request.
                        0..=7 => {
                            let body = VALID[rng.below(VALID.len() as u64) as usize];
                            match ask(&mut s, body.as_bytes()) {
                                Response::Submitted(id) => acked.push(id),
                                Response::Error(e) => assert!(e.len() <= 4096, "{e}"),
                                _ => {}
                            }
                            answered += 1;
                        }
                        // Random bytes of a random length.
                        8..=11 => {
                            let n = rng.below(300) as usize;
                            let body: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                            if let Response::Submitted(id) = ask(&mut s, &body) {
                                acked.push(id);
                            }
                            answered += 1;
                        }
                        // A valid request with one byte changed.
                        12..=15 => {
                            let mut body = VALID[rng.below(VALID.len() as u64) as usize]
                                .as_bytes()
                                .to_vec();
                            let i = rng.below(body.len() as u64) as usize;
                            body[i] = rng.next() as u8;
                            if let Response::Submitted(id) = ask(&mut s, &body) {
                                acked.push(id);
                            }
                            answered += 1;
                        }
                        // A frame cut short, then the connection closed.
                        16..=17 => {
                            let f = frame(b"ListPage(after: 0, limit: 3)");
                            let cut = 1 + rng.below(f.len() as u64 - 1) as usize;
                            let _ = s.write_all(&f[..cut]);
                            s = connect(&socket);
                        }
                        // A length above the cap: an error reply, then the daemon closes.
                        _ => {
                            let len = MAX_FRAME as u32 + 1 + rng.below(1 << 30) as u32;
                            s.write_all(&len.to_be_bytes()).unwrap();
                            match read_message::<Response>(&mut s, MAX_FRAME).unwrap() {
                                // (or, past the connection cap, a request to come back later)
                                Response::Error(e) => assert!(
                                    e.contains("exceeds") || e.contains("too many connections"),
                                    "{e}"
                                ),
                                other => panic!("expected a refusal, got {other:?}"),
                            }
                            answered += 1;
                            s = connect(&socket);
                        }
                    }
                }
                (acked, answered)
            })
        })
        .collect();
    let mut acked = BTreeSet::new();
    let mut answered = 0;
    for t in threads {
        let (ids, n) = t.join().expect("a client thread panicked");
        answered += n;
        for id in ids {
            assert!(acked.insert(id), "job id {id} given twice");
        }
    }
    assert!(
        answered >= CLIENTS * FRAMES_PER_CLIENT * 3 / 4,
        "{answered}"
    );
    assert!(!acked.is_empty(), "no submission got through");

    // Still serving, and every acknowledged job is there and runs to the end.
    let mut c = Client::connect(&socket).unwrap();
    c.set_timeout(Some(Duration::from_secs(20))).unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = c.list().unwrap();
        let listed: BTreeSet<u64> = jobs.iter().map(|j| j.id).collect();
        assert_eq!(
            listed, acked,
            "listed jobs differ from the acknowledged ones"
        );
        if jobs.iter().all(|j| j.state == JobState::Done) {
            break;
        }
        assert!(Instant::now() < end, "jobs did not finish: {jobs:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    h.shutdown().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "{:?}",
        started.elapsed()
    );
}
