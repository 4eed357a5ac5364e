//! Per-kernel wall times for the profiling example (`trainer/examples/kernel_profile.rs`).
//!
//! While on ([`start`]), [`Recorder::submit`](super::Recorder::submit) submits every command on its own and
//! waits for each dispatch, adding its wall time (submission included) to a process-wide
//! table keyed by kernel id and workgroup grid. Off by default; costs nothing when off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

static ON: AtomicBool = AtomicBool::new(false);
type Table = HashMap<(&'static str, [u32; 3]), (u32, Duration)>;
static TABLE: Mutex<Option<Table>> = Mutex::new(None);

/// One kernel launch shape and its accumulated time.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: &'static str,
    pub workgroups: [u32; 3],
    /// Launches timed.
    pub count: u32,
    pub total: Duration,
}

pub(super) fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

pub(super) fn add(id: &'static str, workgroups: [u32; 3], t: Duration) {
    if let Ok(mut g) = TABLE.lock() {
        let e = g
            .get_or_insert_with(HashMap::new)
            .entry((id, workgroups))
            .or_insert((0, Duration::ZERO));
        e.0 += 1;
        e.1 += t;
    }
}

/// Clear the table and start timing every dispatch (process-wide).
pub fn start() {
    if let Ok(mut g) = TABLE.lock() {
        *g = Some(HashMap::new());
    }
    ON.store(true, Ordering::Relaxed);
}

/// Stop timing and return the table, largest total first.
pub fn stop() -> Vec<Entry> {
    ON.store(false, Ordering::Relaxed);
    let table = TABLE
        .lock()
        .ok()
        .and_then(|mut g| g.take())
        .unwrap_or_default();
    let mut v: Vec<Entry> = table
        .into_iter()
        .map(|((id, workgroups), (count, total))| Entry {
            id,
            workgroups,
            count,
            total,
        })
        .collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.total));
    v
}
