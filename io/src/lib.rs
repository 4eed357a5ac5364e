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
//! It knows nothing of GPUs or of the solver, so every other crate of the workspace, and a
//! build without the trainer, can use it.

pub mod files;

pub use files::{FileError, Format};
