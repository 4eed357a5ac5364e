//! The parent's side of the MPI suites (`tests/mpi*.rs`): each suite's binary runs itself
//! under `mpirun -np 2`, telling the ranks what to do through two environment variables.
//!
//! Use from a test file with `#[path = "common/mpirun.rs"] mod mpirun;`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the ranks of a launched binary do (each suite defines its roles).
pub const ROLE: &str = "LIMPQ_MPI_ROLE";
/// Where they write what the parent compares.
pub const OUT: &str = "LIMPQ_MPI_OUT";

/// Runs this test binary as 2 ranks with `ROLE=role` and `OUT=out`, its output in `log`;
/// returns whether it succeeded and the log. A job still running after `limit` is killed
/// and the test fails: a hang is a bug.
///
/// Gradients are exchanged in 1 KiB buckets (`LIMPQ_GRAD_BUCKET_MB`), so the tiny test
/// models make a bucket of nearly every layer and the exchange overlaps the backward as a
/// large model's does; [`mpirun_env`] sets other variables.
#[allow(dead_code)] // not every suite calls both
pub fn mpirun(role: &str, out: &Path, log: &Path, limit: Duration) -> (bool, String) {
    mpirun_env(role, out, log, limit, &[("LIMPQ_GRAD_BUCKET_MB", "0.001")])
}

/// [`mpirun`] with these environment variables set for the ranks.
pub fn mpirun_env(
    role: &str,
    out: &Path,
    log: &Path,
    limit: Duration,
    env: &[(&str, &str)],
) -> (bool, String) {
    let exe = std::env::current_exe().unwrap();
    let file = std::fs::File::create(log).unwrap();
    let mut child = Command::new("mpirun")
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            // Containers often forbid the cross-memory-attach copy; shared-memory
            // transport through copy-in/copy-out works everywhere.
            "--mca",
            "btl_vader_single_copy_mechanism",
            "none",
            "-np",
            "2",
        ])
        .arg(&exe)
        .env(ROLE, role)
        .env(OUT, out)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("start mpirun");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    match status {
        Some(st) => (st.success(), text),
        None => panic!("mpirun -np 2 ({role}) still running after {limit:?}: a hang\n{text}"),
    }
}

/// Whether `mpirun` is on the PATH (the suites skip, saying so, when it is not).
pub fn have_mpirun() -> bool {
    Command::new("mpirun")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
