//! Files for limpq: the one place that writes and reads the files the tools produce and
//! consume.
//!
//! - [`files::write_atomic`]: a durable atomic write (a uniquely named temporary file in the
//!   same folder, fsync, rename, fsync of the folder) that refuses to replace anything but a
//!   regular file and never leaves its temporary file behind.
//! - [`files::read_bounded`] / [`files::read_regular`]: reads with a size cap, the second
//!   one refusing FIFOs and devices without blocking on them.
//! - [`files::Format`]: RON or JSON by the file name's extension, and typed parsing.
//!
//! - [`documents`]: the solver's indicator sets and policies read from disk.
//! - [`pickle`] and [`import_limpq`]: a plain-data pickle reader that never runs code, and
//!   the conversion of the PyTorch reference code's indicator pickle to an indicator set.
//!
//! - [`npy`]: NumPy `.npy` float arrays (`limpq infer`'s inputs and logits).
//!
//! It knows nothing of GPUs (it depends on the solver only for its document types), so
//! every other crate of the workspace, and a build without the trainer, can use it.

pub mod documents;
pub mod files;
pub mod import_limpq;
pub mod npy;
pub mod pickle;

/// A fresh temp folder for a unit test, named after `label`, and its path: the folder goes,
/// with all in it, when the first is dropped, whether the test passes or fails.
#[cfg(test)]
pub(crate) fn scratch(label: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::Builder::new()
        .prefix(&format!("limpq-io-{label}-"))
        .tempdir()
        .expect("create a temp folder");
    let p = d.path().to_path_buf();
    (d, p)
}

pub use files::{FileError, Format};
