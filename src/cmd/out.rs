//! How every command ends and prints: its exit status, one writer for stdout, and the
//! `--format table|json|ron` flag.
//!
//! - A command's `run` returns `anyhow::Result<()>`; `main` turns an error into one
//!   `error: …` line on stderr and the status [`status_of`] finds in it: a [`Coded`]
//!   error anywhere in the chain gives its own status, a solver `Infeasible` error gives
//!   [`Status::Infeasible`], a solver `LimitReached` error [`Status::LimitReached`],
//!   anything else [`Status::Failure`].
//! - [`usage`] makes a usage error (exit 2, as clap's own): a flag missing, malformed, or
//!   one the chosen mode would ignore.
//! - Everything meant for stdout goes through [`print`](fn@print) (or
//!   [`outln!`](crate::outln)): a reader that closed the pipe (`limpq … | head -1`) ends
//!   the command quietly with exit 0, and any other write error (a full disk behind
//!   `> file`) is an error naming standard output, never a panic as with `print!`.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;

use limpq_io::files::Format;
use serde::Serialize;

/// The exit statuses of `limpq`, in `limpq --help` (below) and the README.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success (also when the reader of stdout closes the pipe early)
  1  error (unreadable or malformed input, a failed write, a GPU or solver failure)
  2  usage error (a flag missing, malformed, or one the chosen mode would ignore)
  3  no policy meets the budgets (`solve`: the error names the binding budget and its floor;
     `solve --price`: the given policy does not, and the error says why)
  4  a policy was found and written, but it is not proven optimal within the limit
     (`solve --time-limit` / `--node-limit`)
  5  the limit was reached before any policy meeting the budgets was found (`solve
     --time-limit` / `--node-limit`): nothing written, and nothing proven either way";

/// How `limpq` ends. The numbers are its exit statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Done; also a stdout pipe closed by its reader.
    Success = 0,
    /// Any error.
    Failure = 1,
    /// A usage error: clap's, or one a command finds in its flags.
    Usage = 2,
    /// No policy meets every budget.
    Infeasible = 3,
    /// The answer is printed and written, but the search stopped before proving it optimal.
    NotOptimal = 4,
    /// The search stopped at its limit before it found any policy (nothing is proven).
    LimitReached = 5,
}

impl Status {
    /// The exit status.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// How `main` labels the message: `warning` when the command's output is valid.
    pub fn label(self) -> &'static str {
        match self {
            Status::NotOptimal => "warning",
            _ => "error",
        }
    }
}

impl From<Status> for std::process::ExitCode {
    fn from(s: Status) -> Self {
        std::process::ExitCode::from(s.code())
    }
}

/// An error that carries the exit status it ends `limpq` with.
#[derive(Debug)]
pub struct Coded {
    pub status: Status,
    pub message: String,
}

impl Coded {
    pub fn new(status: Status, message: impl Into<String>) -> Coded {
        Coded {
            status,
            message: message.into(),
        }
    }
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// A usage error (exit status 2): `return Err(usage("--x needs --y"))`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Coded::new(Status::Usage, message).into()
}

/// Refuses, as a usage error, an output that is one of the command's inputs or another of
/// its outputs: `limpq solve ind.ron … -o ind.ron` would replace the indicator file it
/// read, and the next solve would find a policy there. Each path comes with the flag or
/// argument that named it, for the message ([`limpq_io::files::output_clash`] compares
/// them). An input is only ever an existing file: a `--model` that names a built-in model
/// matches no output.
pub fn distinct_outputs<'a>(
    outputs: &[(&'static str, Option<&'a Path>)],
    inputs: &[(&'static str, Option<&'a Path>)],
) -> anyhow::Result<()> {
    match limpq_io::files::output_clash(outputs, inputs) {
        Some(m) => Err(usage(m)),
        None => Ok(()),
    }
}

/// The exit status an error ends `limpq` with (see the module documentation).
pub fn status_of(e: &anyhow::Error) -> Status {
    if let Some(c) = e.downcast_ref::<Coded>() {
        return c.status;
    }
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return c.status;
        }
        match cause.downcast_ref::<limpq_solver::Error>() {
            Some(limpq_solver::Error::Infeasible { .. }) => return Status::Infeasible,
            Some(limpq_solver::Error::LimitReached { .. }) => return Status::LimitReached,
            _ => {}
        }
    }
    Status::Failure
}

/// Whether `main` ends this error quietly with exit 0 (a stdout pipe closed by its reader).
pub fn is_quiet(e: &anyhow::Error) -> bool {
    status_of(e) == Status::Success
}

/// Writes `text` to stdout and flushes it. A closed pipe returns an error with
/// [`Status::Success`] (the command stops, `main` prints nothing and exits 0); any other
/// failure is an error naming standard output.
pub fn print(text: &str) -> anyhow::Result<()> {
    write_to(&mut io::stdout().lock(), text)
}

/// [`print`](fn@print) and a newline.
pub fn println(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    write_to(&mut out, text)?;
    write_to(&mut out, "\n")
}

/// A progress line on stdout during a run (an epoch's figures, a pipeline stage). A write
/// that fails, a pipe its reader closed among them, is dropped: the run's files are its
/// result, and the run goes on to write them rather than stop at a line nobody reads.
#[cfg(feature = "gpu")]
pub fn progress_line(text: &str) {
    let _ = println(text);
}

/// [`print`](fn@print) into any writer (tests pass a failing one).
pub fn write_to(w: &mut impl Write, text: &str) -> anyhow::Result<()> {
    match w.write_all(text.as_bytes()).and_then(|()| w.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            Err(Coded::new(Status::Success, "standard output closed by its reader").into())
        }
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to standard output")),
    }
}

/// `println!` through [`println`](fn@println): `outln!("{x}")?;`.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cmd::out::println(&format!($($arg)*))
    };
}

/// What a command prints on stdout (`--format`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// A table for people.
    #[default]
    Table,
    /// A JSON document carrying everything the table shows.
    Json,
    /// A RON document carrying everything the table shows.
    Ron,
}

impl OutputFormat {
    /// The document format, `None` for the table.
    pub fn document(self) -> Option<Format> {
        match self {
            OutputFormat::Table => None,
            OutputFormat::Json => Some(Format::Json),
            OutputFormat::Ron => Some(Format::Ron),
        }
    }

    /// Prints `table()` or `value` as a document, whichever was asked for.
    pub fn print<T: Serialize>(
        self,
        value: &T,
        table: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        match self.document() {
            None => print(&table()),
            Some(f) => print(&render(f, value)?),
        }
    }
}

/// `value` as pretty RON or JSON text ending in a newline.
pub fn render<T: Serialize>(format: Format, value: &T) -> anyhow::Result<String> {
    format
        .to_string(value)
        .map_err(|e| anyhow::anyhow!("cannot write the {format} output: {e}"))
}

/// `--batch N: ` before a tensor the adapter cannot hold, so the refusal names the flag.
#[cfg(feature = "gpu")]
pub fn name_flag(flag: String, e: limpq_trainer::bench::BenchError) -> anyhow::Error {
    match e {
        e @ limpq_trainer::bench::BenchError::DoesNotFit { .. } => {
            anyhow::anyhow!("{flag}: {e}")
        }
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing(io::ErrorKind);
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(self.0))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_quiet_and_other_failures_are_errors() {
        let e = write_to(&mut Failing(io::ErrorKind::BrokenPipe), "x").unwrap_err();
        assert_eq!(status_of(&e), Status::Success);
        assert!(is_quiet(&e));
        let e = write_to(&mut Failing(io::ErrorKind::StorageFull), "x").unwrap_err();
        assert_eq!(status_of(&e), Status::Failure);
        assert!(e.to_string().contains("standard output"), "{e}");
    }

    #[test]
    fn statuses_survive_context() {
        let e = usage("--x needs --y").context("in solve");
        assert_eq!(status_of(&e), Status::Usage);
        let inf = limpq_solver::Error::Infeasible {
            binding: String::from("BitOps"),
            floors: Vec::new(),
        };
        let e = anyhow::Error::new(inf)
            .context("solving f")
            .context("search");
        assert_eq!(status_of(&e), Status::Infeasible);
        let cut = limpq_solver::Error::LimitReached {
            limit: String::from("node limit of 0 states"),
        };
        let e = anyhow::Error::new(cut).context("solving f");
        assert_eq!(status_of(&e), Status::LimitReached);
        assert_eq!(Status::LimitReached.code(), 5);
        assert_eq!(status_of(&anyhow::anyhow!("plain")), Status::Failure);
    }
}
