//! `limpq demo`: the whole method on embedded defaults, small enough for the software
//! adapter — small_cnn on a Fashion-MNIST subset, one seed, budgets W2A3 / W3A3 / W4A4,
//! three random policies per budget — then the results table. Re-running resumes.
use std::path::PathBuf;

use limpq_trainer::pipeline::{report, Job};

/// The demo's job. `quick`: a far smaller run for tests (seconds, not minutes).
pub fn demo_job(out: PathBuf, quick: bool) -> Job {
    let text = if quick { QUICK_JOB } else { DEMO_JOB };
    let mut job = Job::from_ron_str(text)
        .unwrap_or_else(|e| unreachable!("the embedded demo job is valid: {e}"));
    job.output = out;
    job
}

const DEMO_JOB: &str = r#"Job(
    model: "small_cnn",
    data: (name: "fashion-mnist", train: Some(1024), test: Some(500)),
    seeds: [0],
    pretrain: (epochs: 8, batch: 32, lr: 0.1),
    joint: (bits: [2, 3, 4, 5, 6], epochs: 1, batch: 32, lr: 0.01),
    budgets: ["w2a3", "w3a3", "w4a4"],
    alpha: 2.0,
    finetune: (epochs: 1, batch: 32, lr: 0.01),
    random_policies: 3,
    output: "limpq-demo",
)"#;

const QUICK_JOB: &str = r#"Job(
    model: "small_cnn",
    data: (name: "fashion-mnist", train: Some(128), test: Some(128)),
    seeds: [0],
    pretrain: (epochs: 1, batch: 32, lr: 0.1),
    joint: (bits: [2, 3, 4, 5, 6], epochs: 1, batch: 32, lr: 0.01),
    budgets: ["w2a3", "w4a4"],
    alpha: 2.0,
    finetune: (epochs: 1, batch: 32, lr: 0.01),
    random_policies: 3,
    output: "limpq-demo",
)"#;

#[derive(clap::Args)]
pub struct Args {
    /// Output folder (re-running with the same folder resumes; `--out` is an older
    /// spelling).
    #[arg(short, long, alias = "out", default_value = "limpq-demo")]
    pub output: PathBuf,
    /// A much smaller run (128 training images, two budgets) to check the installation;
    /// its accuracies mean nothing.
    #[arg(long)]
    pub quick: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let job = demo_job(args.output, args.quick);
    // Before saying where the job goes: an output the run cannot take is refused first.
    limpq_trainer::pipeline::check_output(&job)?;
    eprintln!(
        "demo: embedded job, written to {} (`limpq pipeline` runs it again)",
        job.output.join("job.ron").display()
    );
    let results = super::pipeline::execute(job)?;
    super::out::println(&format!("\n{}", report::table(&results)))
}
