//! For tests that a reader refuses FIFOs and devices without blocking on them. Plain std
//! (no GPU), so test binaries built without the `gpu` feature can use it too:
//! `#[path = "common/blocking.rs"] mod blocking;`.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::time::Duration;

/// Runs `f` on a thread and waits at most 20 s for it: a reader that blocks fails the test
/// instead of hanging it.
pub fn within_20s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the reader blocked")
}

/// Makes a FIFO at `path` with the system's `mkfifo`; false (and a note) where there is none.
pub fn mkfifo(path: &Path) -> bool {
    let made = std::process::Command::new("mkfifo").arg(path).status();
    let ok = made.is_ok_and(|s| s.success());
    if !ok {
        eprintln!("note: no mkfifo here; {} was not made", path.display());
    }
    ok
}
