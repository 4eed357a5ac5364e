//! Ctrl-C and SIGTERM as a stop flag: the first signal sets the flag (long runs check it
//! between steps, save their exact position and return); the handlers are then reset to the
//! default, so a second signal ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    SIGNALLED.store(true, Ordering::SeqCst);
}

const SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

/// Installs `handler` (a function pointer as `usize`, or `SIG_DFL`) for SIGTERM and SIGINT.
fn set_handlers(handler: libc::sighandler_t) -> std::io::Result<()> {
    for sig in SIGNALS {
        // SAFETY: `sa` is fully initialised (zeroed, then handler, flags and an empty mask)
        // before use; the handler is either SIG_DFL or `on_signal`, which only performs an
        // atomic store (async-signal-safe); the pointers passed to sigemptyset/sigaction
        // point to a live local, and a null old-action pointer is allowed.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A flag set on the first SIGINT or SIGTERM; `on_first` runs once when it is set (e.g. to
/// tell the user that the run stops after its current step).
pub fn stop_on_signal(
    on_first: impl FnOnce() + Send + 'static,
) -> std::io::Result<Arc<AtomicBool>> {
    set_handlers(on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t)?;
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::Builder::new()
        .name("limpq-signals".into())
        .spawn(move || loop {
            if SIGNALLED.load(Ordering::SeqCst) {
                f.store(true, Ordering::SeqCst);
                // A second signal should not wait for the step to finish.
                let _ = set_handlers(libc::SIG_DFL);
                on_first();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        })?;
    Ok(flag)
}
