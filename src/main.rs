//! The `limpq` command line: a thin layer over `limpq-solver` and `limpq-trainer`.
use clap::{Parser, Subcommand};

mod cmd;

/// Mixed-precision quantization from learned layer-wise importance.
///
/// Learn LSQ step sizes of every layer at every candidate bit-width in one joint GPU run
/// (`limpq indicators`), then pick per-layer bits under BitOps / size budgets with an exact
/// solver (`limpq solve`).
#[derive(Parser)]
#[command(name = "limpq", version, about, long_about = None, after_help = cmd::out::EXIT_STATUS_HELP)]
#[cfg_attr(not(feature = "gpu"), command(before_help = SOLVER_ONLY_HELP))]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// The GPU adapter of every command that opens one: its index or (part of) its name as
    /// `limpq devices` lists them, a backend (vulkan, metal, dx12, gl), or BACKEND:INDEX /
    /// BACKEND:NAME; default LIMPQ_ADAPTER, else the preferred adapter (discrete first,
    /// software last, GL after the others).
    #[cfg(feature = "gpu")]
    #[arg(long, global = true, value_name = "N|NAME|BACKEND[:N|NAME]")]
    adapter: Option<limpq_trainer::gpu::AdapterPick>,
    #[command(subcommand)]
    command: Command,
}

/// What `--help` says in a build without the GPU trainer.
#[cfg(not(feature = "gpu"))]
const SOLVER_ONLY_HELP: &str = "\
This limpq is built without the `gpu` feature: the solver-only commands below. Training,
evaluation, indicators, finetuning, the pipeline, the GPU benchmarks and the daemon need a
build with it (the default: `cargo install --path .`).";

// One value per process, parsed once: its size does not matter (without the `gpu` feature
// `Solve`'s arguments are much larger than those of the commands left).
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Solve the bit-width search for an indicator file under budgets.
    Solve(cmd::solve::Args),
    /// Convert the PyTorch reference code's indicator pickle to an indicator file.
    ImportLimpq(cmd::import_limpq::Args),
    #[cfg(feature = "gpu")]
    /// Import an ONNX model as a model description and a checkpoint of its weights.
    ImportOnnx(cmd::import_onnx::Args),
    #[cfg(feature = "gpu")]
    /// Import PyTorch weights (safetensors, PyTorch names) as a checkpoint of a model.
    ImportSafetensors(cmd::import_safetensors::Args),
    /// Print per-layer MACs and parameter counts of a built-in model or MODEL.ron.
    Layers(cmd::layers::Args),
    /// Rank-correlate two indicator files layer by layer (which layers each says matter).
    Compare(cmd::compare::Args),
    /// Time the exact solver against the microlp backend (the same as `bench solver`).
    #[command(hide = true)]
    BenchSolver(cmd::bench_solver::Args),
    /// Benchmarks (`bench train`: training-step throughput; `bench conv`: conv kernels per
    /// model shape; `bench gemm`: GEMM TFLOP/s in f32, f16 and on tensor cores; `bench
    /// solver`: the exact solver against microlp).
    #[command(subcommand)]
    #[cfg_attr(
        not(feature = "gpu"),
        command(
            about = "Benchmarks (`bench solver`: the exact solver against microlp; the GPU \
                         benchmarks need the `gpu` feature)"
        )
    )]
    Bench(cmd::bench::Bench),
    #[cfg(feature = "gpu")]
    /// List the GPU adapters wgpu can see.
    Devices(cmd::devices::Args),
    #[cfg(feature = "gpu")]
    /// Train a model in full precision on the GPU and write a checkpoint.
    Train(cmd::train::Args),
    #[cfg(feature = "gpu")]
    /// Test accuracy of a checkpoint.
    Eval(cmd::eval::Args),
    #[cfg(feature = "gpu")]
    /// Logits of a checkpoint on inputs from a .npy file, written as .npy.
    Infer(cmd::infer::Args),
    #[cfg(feature = "gpu")]
    /// Learn the LSQ importance indicators jointly from a full-precision checkpoint.
    Indicators(cmd::indicators::Args),
    #[cfg(feature = "gpu")]
    /// Measure each layer's loss increase at each bit-width (an indicator file from
    /// measured sensitivity instead of learned step sizes).
    Sensitivity(cmd::sensitivity::Args),
    #[cfg(feature = "gpu")]
    /// Quantization-aware finetuning of a solved policy.
    Finetune(cmd::finetune::Args),
    #[cfg(feature = "gpu")]
    /// A finetuned checkpoint as an ONNX QDQ model, or a policy's bits for a runtime.
    Export(cmd::export::Args),
    #[cfg(feature = "gpu")]
    /// Pretrain, learn indicators, search at each budget, finetune and report (JOB.ron).
    Pipeline(cmd::pipeline::Args),
    #[cfg(feature = "gpu")]
    /// The whole method on embedded defaults (small CNN, Fashion-MNIST subset), in minutes.
    Demo(cmd::demo::Args),
    #[cfg(feature = "gpu")]
    /// Run the trainer daemon (jobs from `limpq submit`) in the foreground.
    Serve(cmd::serve::Args),
    #[cfg(feature = "gpu")]
    /// Queue a job file on the daemon.
    Submit(cmd::submit::Args),
    #[cfg(feature = "gpu")]
    /// List the daemon's jobs.
    Jobs(cmd::jobs::Args),
    #[cfg(feature = "gpu")]
    /// Follow a daemon job's progress until it ends.
    Watch(cmd::watch::Args),
    #[cfg(feature = "gpu")]
    /// Cancel a queued or running daemon job.
    Cancel(cmd::cancel::Args),
    #[cfg(feature = "gpu")]
    /// Stop the daemon (a running job checkpoints and resumes on the next start).
    Shutdown(cmd::shutdown::Args),
}

/// The end of a command line that did not parse, or asked for help or the version. Help and
/// the version go to stdout through [`cmd::out::print`], so a write that fails (`limpq
/// --help > /dev/full`) is exit 1 and a closed pipe exit 0, where clap's own printing
/// ignored both; on a terminal clap prints them (in colour). Usage errors are clap's.
fn parse_failure(e: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    use std::io::IsTerminal as _;
    let shown = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    if !shown || std::io::stdout().is_terminal() {
        e.exit();
    }
    match cmd::out::print(&e.render().to_string()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) if cmd::out::is_quiet(&err) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(cmd::out::Status::Failure.code())
        }
    }
}

fn main() -> std::process::ExitCode {
    // Before any thread exists: it may set an environment variable.
    #[cfg(feature = "gpu")]
    limpq_trainer::gpu::quiet_headless_probing();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_failure(e),
    };
    #[cfg(feature = "gpu")]
    if let Some(pick) = &cli.adapter {
        // Still before any thread exists. Every command (and every daemon worker without
        // an adapter of its own) opens its GPU with `GpuOptions::from_env`, which reads it.
        std::env::set_var(limpq_trainer::gpu::ADAPTER_ENV, &pick.text);
    }
    init_logging(cli.verbose);
    #[cfg(feature = "mpi")]
    let job = match mpi_job::join(&cli.command) {
        Ok(job) => job,
        Err(e) => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "error: {e}");
            return std::process::ExitCode::from(cmd::out::Status::Usage.code());
        }
    };
    let result = match cli.command {
        Command::Solve(a) => cmd::solve::run(a),
        Command::ImportLimpq(a) => cmd::import_limpq::run(a),
        #[cfg(feature = "gpu")]
        Command::ImportOnnx(a) => cmd::import_onnx::run(a),
        #[cfg(feature = "gpu")]
        Command::ImportSafetensors(a) => cmd::import_safetensors::run(a),
        Command::Layers(a) => cmd::layers::run(a),
        Command::Compare(a) => cmd::compare::run(a),
        Command::BenchSolver(a) => cmd::bench_solver::run(a),
        Command::Bench(b) => cmd::bench::dispatch(b),
        #[cfg(feature = "gpu")]
        Command::Devices(a) => cmd::devices::run(a),
        #[cfg(feature = "gpu")]
        Command::Train(a) => cmd::train::run(a),
        #[cfg(feature = "gpu")]
        Command::Eval(a) => cmd::eval::run(a),
        #[cfg(feature = "gpu")]
        Command::Infer(a) => cmd::infer::run(a),
        #[cfg(feature = "gpu")]
        Command::Indicators(a) => cmd::indicators::run(a),
        #[cfg(feature = "gpu")]
        Command::Sensitivity(a) => cmd::sensitivity::run(a),
        #[cfg(feature = "gpu")]
        Command::Finetune(a) => cmd::finetune::run(a),
        #[cfg(feature = "gpu")]
        Command::Export(a) => cmd::export::run(a),
        #[cfg(feature = "gpu")]
        Command::Pipeline(a) => cmd::pipeline::run(a),
        #[cfg(feature = "gpu")]
        Command::Demo(a) => cmd::demo::run(a),
        #[cfg(feature = "gpu")]
        Command::Serve(a) => daemon_available().and_then(|()| cmd::serve::run(a)),
        #[cfg(feature = "gpu")]
        Command::Submit(a) => daemon_available().and_then(|()| cmd::submit::run(a)),
        #[cfg(feature = "gpu")]
        Command::Jobs(a) => daemon_available().and_then(|()| cmd::jobs::run(a)),
        #[cfg(feature = "gpu")]
        Command::Watch(a) => daemon_available().and_then(|()| cmd::watch::run(a)),
        #[cfg(feature = "gpu")]
        Command::Cancel(a) => daemon_available().and_then(|()| cmd::cancel::run(a)),
        #[cfg(feature = "gpu")]
        Command::Shutdown(a) => daemon_available().and_then(|()| cmd::shutdown::run(a)),
    };
    #[cfg(feature = "mpi")]
    let result = match job {
        Some(job) => job.end(result),
        None => result,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let status = cmd::out::status_of(&e);
            if !cmd::out::is_quiet(&e) {
                // Not eprintln!: a closed stderr must not turn an error into a panic.
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "{}: {}", status.label(), error_text(&e));
            }
            status.into()
        }
    }
}

/// Data-parallel runs under `mpirun` or `srun` (the `mpi` feature): joining the job at
/// start, and ending it so that no rank waits for one that failed.
#[cfg(feature = "mpi")]
mod mpi_job {
    use std::fs::File;
    use std::io::Write as _;
    use std::sync::Arc;

    use limpq_trainer::dist::mpi::{self, Mpi, Session};
    use limpq_trainer::dist::{Comm, Dist};

    use super::Command;

    /// This process's place in an MPI job of more than one rank.
    pub struct Job {
        comm: Arc<Mpi>,
        /// Where this rank reports its own error: stderr as it was at start (ranks other
        /// than 0 run with stdout and stderr on /dev/null, rank 0 speaking for the run).
        stderr: File,
        _session: Session,
    }

    /// Joins the MPI job when launched by `mpirun`/`srun`: `None` when not launched by one
    /// or when the job has a single rank (the ordinary path). Commands other than `train`,
    /// `indicators`, `finetune` and `pipeline` are refused with more than one rank (they do
    /// not run data-parallel, and every rank would repeat them).
    pub fn join(command: &Command) -> Result<Option<Job>, String> {
        if !mpi::launched() {
            return Ok(None);
        }
        let (comm, session) = mpi::init()?;
        if comm.size() == 1 {
            return Ok(None);
        }
        if !matches!(
            command,
            Command::Train(_)
                | Command::Indicators(_)
                | Command::Finetune(_)
                | Command::Pipeline(_)
        ) {
            // Every rank refuses alike, so leaving without the abort path cannot hang.
            return Err(format!(
                "this command does not run data-parallel; under mpirun only `train`, \
                 `indicators`, `finetune` and `pipeline` do (this job has {} ranks: start the \
                 command without mpirun, or with -np 1)",
                comm.size()
            ));
        }
        let mut stderr = keep_stderr()?;
        // The node-local rank picks its adapter, unless --adapter / LIMPQ_ADAPTER names
        // one. Said on every rank (before the quiet ranks lose their stderr).
        let (rank, size, local) = (comm.rank(), comm.size(), comm.local_rank());
        let opts = limpq_trainer::gpu::GpuOptions::from_env();
        let took = match limpq_trainer::gpu::rank_adapter(&opts, local) {
            Ok(Some((pick, line))) => {
                limpq_trainer::gpu::set_rank_adapter(pick);
                format!("adapter {line} (node-local rank {local})")
            }
            Ok(None) => "the adapter --adapter / LIMPQ_ADAPTER names".to_string(),
            // Opening the GPU will say what is wrong, on the rank that tries.
            Err(e) => format!("no adapter by the node-local rank rule: {e}"),
        };
        let _ = writeln!(stderr, "rank {rank} of {size}: {took}");
        if comm.rank() != 0 {
            quiet()?;
        }
        Dist::set_global(Dist::new(comm.clone()));
        Ok(Some(Job {
            comm,
            stderr,
            _session: session,
        }))
    }

    impl Job {
        /// Ends this rank: a success waits for every rank; an error is printed, naming the
        /// rank, and ends the whole job through MPI's abort (the other ranks may be waiting
        /// in a collective this rank will never join).
        pub fn end(mut self, result: anyhow::Result<()>) -> anyhow::Result<()> {
            match result {
                Ok(()) => {
                    self.comm.barrier();
                    Ok(())
                }
                Err(e) => {
                    let status = crate::cmd::out::status_of(&e);
                    let _ = writeln!(
                        self.stderr,
                        "{}: rank {} of {}: {}; ending every rank of the job",
                        status.label(),
                        self.comm.rank(),
                        self.comm.size(),
                        crate::error_text(&e)
                    );
                    let _ = self.stderr.flush();
                    self.comm.abort(i32::from(status.code()).max(1))
                }
            }
        }
    }

    /// A copy of the stderr descriptor, kept for this rank's own error message.
    fn keep_stderr() -> Result<File, String> {
        use std::os::fd::AsFd as _;
        let fd = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("cannot duplicate stderr: {e}"))?;
        Ok(File::from(fd))
    }

    /// Points stdout and stderr at /dev/null.
    fn quiet() -> Result<(), String> {
        use std::os::fd::AsRawFd as _;
        let null = File::options()
            .write(true)
            .open("/dev/null")
            .map_err(|e| format!("cannot open /dev/null: {e}"))?;
        for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
            // SAFETY: dup2 takes two plain descriptor numbers and touches no Rust memory;
            // `null` is open for the whole call, and replacing descriptor 1 or 2 leaves the
            // `Stdout`/`Stderr` handles valid (they write to whatever the number names).
            if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
                return Err(format!(
                    "cannot redirect descriptor {fd}: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        Ok(())
    }
}

/// The daemon commands refuse at once where there is no daemon (no Unix-domain sockets:
/// Windows), before reading a job file or looking for a state folder.
#[cfg(feature = "gpu")]
fn daemon_available() -> anyhow::Result<()> {
    if cfg!(unix) {
        Ok(())
    } else {
        anyhow::bail!(limpq_trainer::daemon::UNSUPPORTED)
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message
/// before it already contains (many of our error types print their source themselves).
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let t = cause.to_string();
        if text.contains(&t) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&t);
    }
    text
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // wgpu's GL backend logs an error for every EGL platform it probes and cannot open on
    // a headless machine (`DRI2: failed to load driver`) before it finds one it can; those
    // show from -vv on.
    let default = if verbose < 2 {
        format!("{level},wgpu_hal::gles::egl=off")
    } else {
        level.to_string()
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(test)]
mod tests {
    use super::error_text;

    /// Every argument of every command says what it is in `--help` (a flag with a blank
    /// line there is one users have to guess at), and clap's own consistency checks pass.
    #[test]
    fn every_argument_has_help() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, blank: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    blank.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), blank);
            }
        }
        let cmd = super::Cli::command();
        cmd.clone().debug_assert();
        let mut blank = Vec::new();
        walk(&cmd, "limpq", &mut blank);
        assert!(blank.is_empty(), "arguments without help: {blank:?}");
    }

    #[derive(Debug)]
    struct Inner;
    impl std::fmt::Display for Inner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("tensor input exceeds the binding limit")
        }
    }
    impl std::error::Error for Inner {}

    /// Prints its source inside its own message, as many of our error types do.
    #[derive(Debug)]
    struct Outer(Inner);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "bad kernel arguments: {}", self.0)
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let e = anyhow::Error::new(Outer(Inner));
        assert_eq!(
            error_text(&e),
            "bad kernel arguments: tensor input exceeds the binding limit"
        );
        // A context message does not contain its cause: both are shown.
        let e = anyhow::Error::new(Inner).context("cannot train");
        assert_eq!(
            error_text(&e),
            "cannot train: tensor input exceeds the binding limit"
        );
    }
}
