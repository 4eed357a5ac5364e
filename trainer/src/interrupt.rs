//! Ctrl-C and SIGTERM as a stop flag: the first signal sets the flag (long runs check it
//! between steps, save their exact position and return); a second signal ends the process
//! at once (exit status 130), without waiting for the step.
//!
//! The handler is the `ctrlc` crate's (with its `termination` feature): SIGINT, SIGTERM and
//! SIGHUP on Unix; Ctrl-C and Ctrl-Break on Windows. It runs on a
//! thread of its own, not in signal context, so it may take a lock and call `on_first`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Status of a process ended by a second signal: 128 + SIGINT, what shells report for Ctrl-C.
pub const SECOND_SIGNAL_EXIT: i32 = 130;

type OnFirst = Box<dyn FnOnce() + Send>;

/// Whether a signal has arrived, and the flags (with their `on_first`) waiting for one.
struct Waiting {
    signalled: bool,
    flags: Vec<(Arc<AtomicBool>, OnFirst)>,
}

static WAITING: Mutex<Waiting> = Mutex::new(Waiting {
    signalled: false,
    flags: Vec::new(),
});

/// The one process-wide handler, installed on the first call (`ctrlc` allows only one).
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

fn lock() -> std::sync::MutexGuard<'static, Waiting> {
    // A panicking `on_first` never runs under the lock, so poisoning carries no broken state.
    WAITING.lock().unwrap_or_else(|p| p.into_inner())
}

fn on_signal() {
    let waiting = {
        let mut w = lock();
        if w.signalled {
            drop(w);
            std::process::exit(SECOND_SIGNAL_EXIT);
        }
        w.signalled = true;
        std::mem::take(&mut w.flags)
    };
    for (flag, on_first) in waiting {
        flag.store(true, Ordering::SeqCst);
        on_first();
    }
}

/// A flag set on the first SIGINT, SIGTERM or SIGHUP (Ctrl-C or Ctrl-Break on Windows);
/// `on_first` runs once when it is set (e.g. to tell the user that the run stops after its
/// current step). Flags asked for after a signal has arrived are set at once.
pub fn stop_on_signal(
    on_first: impl FnOnce() + Send + 'static,
) -> std::io::Result<Arc<AtomicBool>> {
    INSTALLED
        .get_or_init(|| ctrlc::set_handler(on_signal).map_err(|e| e.to_string()))
        .clone()
        .map_err(std::io::Error::other)?;
    let flag = Arc::new(AtomicBool::new(false));
    let mut w = lock();
    if w.signalled {
        drop(w);
        flag.store(true, Ordering::SeqCst);
        on_first();
    } else {
        w.flags.push((flag.clone(), Box::new(on_first)));
    }
    Ok(flag)
}
