//! `limpq pipeline JOB.ron`: pretrain → indicators → search at each budget → finetune the
//! searched, uniform and random policies → report; resumes from `state.ron` when re-run.
use std::path::PathBuf;

use limpq_trainer::gpu::{Gpu, GpuOptions};
use limpq_trainer::pipeline::gpu::{load_plan_data, GpuStages};
use limpq_trainer::pipeline::{self, report, Event, Job, Plan, Results};

use super::progress::{stop_on_ctrl_c, Progress};

#[derive(clap::Args)]
pub struct Args {
    /// The job file (RON; see docs/PIPELINE.md and examples/*.pipeline.ron).
    pub job: PathBuf,
    /// Write into this folder instead of the job's `output` (`--out` is an older
    /// spelling).
    #[arg(short, long, alias = "out")]
    pub output: Option<PathBuf>,
    /// Run only these seeds instead of the job's `seeds` (comma-separated, e.g. `--seeds 0`
    /// or `--seeds 1,2`). Stages are per seed, so a later run with more seeds in the same
    /// folder skips the ones already done and reports them all.
    #[arg(long, value_delimiter = ',', value_name = "S,...")]
    pub seeds: Option<Vec<u64>>,
    /// Train nothing: render `report.md` and the plots again from the output folder's
    /// `results.ron` (what an earlier run measured), e.g. after an upgrade of limpq added
    /// a table. Needs neither the data nor a GPU. The report holds every seed of
    /// `results.ron`, so `--seeds` is refused beside it.
    #[arg(long, conflicts_with = "seeds")]
    pub report_only: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut job = Job::from_file(&args.job)?;
    if let Some(out) = args.output {
        job.output = out;
    }
    if let Some(seeds) = args.seeds {
        job.seeds = seeds;
        job.validate().map_err(|e| {
            super::out::usage(format!(
                "--seeds: {}",
                e.trim_start_matches("field `seeds`: ")
            ))
        })?;
    }
    if args.report_only {
        let plan = Plan::new(job)?;
        let results = pipeline::rewrite_report(&plan)?;
        eprintln!(
            "wrote {} from {}",
            plan.job.output.join("report.md").display(),
            plan.job.output.join("results.ron").display()
        );
        return super::out::println(&report::table(&results));
    }
    let results = execute(job)?;
    super::out::println(&format!("\n{}", report::table(&results)))
}

/// Loads the data (with an install hint when the data set is missing), opens the GPU and
/// runs the job with a progress bar on stderr and one line per stage on stdout.
pub fn execute(job: Job) -> anyhow::Result<Results> {
    let plan = Plan::new(job)?;
    let job = &plan.job;
    // Before the data is read: a run must not stop at its first write, at another run's
    // lock on the folder (taken for real by `pipeline::run`), or at a state it cannot read.
    pipeline::check_output(job)?;
    if job.output.is_dir() {
        drop(pipeline::lock::OutputLock::acquire(
            &job.output,
            &mut |_| {},
        )?);
        pipeline::State::load(&job.output)?;
    }
    let (train, test) = load_plan_data(&plan).map_err(anyhow::Error::msg)?;
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    eprintln!(
        "pipeline: {} on {} ({} train / {} test images), {} seed(s), budgets {}, on {} ({}); \
         output {}",
        plan.model.name,
        train.kind.name(),
        train.len(),
        test.len(),
        job.seeds.len(),
        job.budgets
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        gpu.summary.name,
        gpu.summary.backend,
        job.output.display()
    );
    let mut stages = GpuStages {
        gpu: &gpu,
        model: plan.model.clone(),
        job: job.clone(),
        train,
        test,
        stop: stop_on_ctrl_c()?,
    };
    let progress = Progress::for_stages()?;
    let bar = progress.bar();
    let mut on_event = |e: &Event| match e {
        Event::Plan { total } => {
            bar.suspend(|| super::out::progress_line(&format!("{total} stages")));
        }
        Event::StageStart { index, total, name } => {
            progress.start_stage(format!("[{index}/{total}] {name}"));
        }
        Event::StageSkipped { index, total, name } => {
            bar.suspend(|| {
                super::out::progress_line(&format!(
                    "[{index}/{total}] {name}: done earlier, skipped"
                ))
            });
        }
        Event::StageDone {
            index,
            total,
            name,
            summary,
        } => {
            bar.suspend(|| {
                super::out::progress_line(&format!("[{index}/{total}] {name}: {summary}"))
            });
            bar.set_message("");
        }
        Event::Note(n) => bar.suspend(|| eprintln!("note: {n}")),
        Event::Train(t) => progress.event(t),
    };
    let result = pipeline::run(&plan, &mut stages, &mut on_event);
    progress.finish();
    let results = result?;
    let out = &job.output;
    eprintln!(
        "wrote {}, {} and bits_<budget>.svg",
        out.join("report.md").display(),
        out.join("accuracy_vs_bitops.svg").display()
    );
    Ok(results)
}
