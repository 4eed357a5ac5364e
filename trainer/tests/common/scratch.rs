//! Temp folders for tests that need no GPU helpers.
//!
//! Use from a test file with `#[path = "common/scratch.rs"] mod scratch;`.

use std::path::PathBuf;

/// A fresh temp folder named after `label`, and its path: the folder goes, with all in it,
/// when the first is dropped, whether the test passes or fails (keep it bound to a name,
/// as `let (_dir, out) = scratch::dir(..)` does).
pub fn dir(label: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::Builder::new()
        .prefix(&format!("limpq-{label}-"))
        .tempdir()
        .expect("create a temp folder");
    let p = d.path().to_path_buf();
    (d, p)
}
