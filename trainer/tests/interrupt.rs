//! `interrupt::stop_on_signal`: the first SIGTERM / SIGINT sets every waiting flag and runs
//! each `on_first` once; a second one ends the process with status 130.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(all(unix, feature = "gpu"))]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use limpq_trainer::interrupt::{stop_on_signal, SECOND_SIGNAL_EXIT};

fn raise(sig: libc::c_int) {
    // SAFETY: raise has no memory preconditions; the signals raised here have the handler
    // `stop_on_signal` installed, so they do not end the process on their own.
    assert_eq!(unsafe { libc::raise(sig) }, 0);
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Run in a child process (the signals are process-wide): the parent test below checks
/// what this one does. Does nothing when run directly.
#[test]
fn child_two_signals() {
    if std::env::var_os("LIMPQ_INTERRUPT_CHILD").is_none() {
        return;
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let a = stop_on_signal(move || {
        c.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    let c = calls.clone();
    let b = stop_on_signal(move || {
        c.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    assert!(!a.load(Ordering::SeqCst) && !b.load(Ordering::SeqCst));
    raise(libc::SIGTERM);
    wait_for("both flags", || {
        a.load(Ordering::SeqCst) && b.load(Ordering::SeqCst)
    });
    wait_for("both on_first calls", || calls.load(Ordering::SeqCst) == 2);
    // A flag asked for after the signal is set at once, its `on_first` run.
    let c = calls.clone();
    let late = stop_on_signal(move || {
        c.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    assert!(late.load(Ordering::SeqCst));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    println!("first signal handled");
    raise(libc::SIGINT);
    std::thread::sleep(Duration::from_secs(10));
    println!("still alive after the second signal");
}

#[test]
fn first_signal_sets_the_flags_the_second_ends_the_process() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_two_signals",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LIMPQ_INTERRUPT_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(SECOND_SIGNAL_EXIT),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("first signal handled"), "{stdout}");
    assert!(!stdout.contains("still alive"), "{stdout}");
}
