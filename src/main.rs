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
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

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
    Bench(cmd::bench::Bench),
    /// List the GPU adapters wgpu can see.
    Devices(cmd::devices::Args),
    /// Train a model in full precision on the GPU and write a checkpoint.
    Train(cmd::train::Args),
    /// Test accuracy of a checkpoint.
    Eval(cmd::eval::Args),
    /// Learn the LSQ importance indicators jointly from a full-precision checkpoint.
    Indicators(cmd::indicators::Args),
    /// Quantization-aware finetuning of a solved policy.
    Finetune(cmd::finetune::Args),
    /// A finetuned checkpoint as an ONNX QDQ model, or a policy's bits for a runtime.
    Export(cmd::export::Args),
    /// Pretrain, learn indicators, search at each budget, finetune and report (JOB.ron).
    Pipeline(cmd::pipeline::Args),
    /// The whole method on embedded defaults (small CNN, Fashion-MNIST subset), in minutes.
    Demo(cmd::demo::Args),
    /// Run the trainer daemon (jobs from `limpq submit`) in the foreground.
    Serve(cmd::serve::Args),
    /// Queue a job file on the daemon.
    Submit(cmd::submit::Args),
    /// List the daemon's jobs.
    Jobs(cmd::jobs::Args),
    /// Follow a daemon job's progress until it ends.
    Watch(cmd::watch::Args),
    /// Cancel a queued or running daemon job.
    Cancel(cmd::cancel::Args),
    /// Stop the daemon (a running job checkpoints and resumes on the next start).
    Shutdown(cmd::shutdown::Args),
}

fn main() -> std::process::ExitCode {
    // Before any thread exists: it may set an environment variable.
    limpq_trainer::gpu::quiet_headless_probing();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Solve(a) => cmd::solve::run(a),
        Command::ImportLimpq(a) => cmd::import_limpq::run(a),
        Command::Layers(a) => cmd::layers::run(a),
        Command::BenchSolver(a) => cmd::bench_solver::run(a),
        Command::Bench(b) => cmd::bench::dispatch(b),
        Command::Devices(a) => cmd::devices::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Indicators(a) => cmd::indicators::run(a),
        Command::Finetune(a) => cmd::finetune::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Pipeline(a) => cmd::pipeline::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Submit(a) => cmd::submit::run(a),
        Command::Jobs(a) => cmd::jobs::run(a),
        Command::Watch(a) => cmd::watch::run(a),
        Command::Cancel(a) => cmd::cancel::run(a),
        Command::Shutdown(a) => cmd::shutdown::run(a),
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
