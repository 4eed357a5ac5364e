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
    /// Print per-layer MACs and parameter counts of a built-in model or MODEL.ron.
    Layers(cmd::layers::Args),
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
    /// Learn the LSQ importance indicators jointly from a full-precision checkpoint.
    Indicators(cmd::indicators::Args),
    #[cfg(feature = "gpu")]
    /// Quantization-aware finetuning of a solved policy.
    Finetune(cmd::finetune::Args),
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

fn main() -> std::process::ExitCode {
    // Before any thread exists: it may set an environment variable.
    #[cfg(feature = "gpu")]
    limpq_trainer::gpu::quiet_headless_probing();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Solve(a) => cmd::solve::run(a),
        Command::ImportLimpq(a) => cmd::import_limpq::run(a),
        Command::Layers(a) => cmd::layers::run(a),
        Command::BenchSolver(a) => cmd::bench_solver::run(a),
        Command::Bench(b) => cmd::bench::dispatch(b),
        #[cfg(feature = "gpu")]
        Command::Devices(a) => cmd::devices::run(a),
        #[cfg(feature = "gpu")]
        Command::Train(a) => cmd::train::run(a),
        #[cfg(feature = "gpu")]
        Command::Eval(a) => cmd::eval::run(a),
        #[cfg(feature = "gpu")]
        Command::Indicators(a) => cmd::indicators::run(a),
        #[cfg(feature = "gpu")]
        Command::Finetune(a) => cmd::finetune::run(a),
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
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
