//! `limpq train`: full-precision training on the GPU with a progress bar on stderr and one
//! summary line per epoch on stdout; the final state is written as a checkpoint.
use std::path::{Path, PathBuf};

use anyhow::Context;
use limpq_trainer::checkpoint::Checkpoint;
use limpq_trainer::gpu::{Gpu, GpuOptions};
use limpq_trainer::model::Model;
use limpq_trainer::train::{train_from, Event, Start, TrainConfig, TrainError};

use super::progress::{stop_on_ctrl_c, Progress};
use super::run_args::RunArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Built-in model (small_cnn, resnet20, resnet20-cifar, resnet18, resnet50,
    /// mobilenetv2) or MODEL.ron.
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub run: RunArgs,
    /// Nesterov momentum (the reference recipe's).
    #[arg(long)]
    pub nesterov: bool,
    /// Start from this checkpoint's parameters and BN statistics.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Where to write the checkpoint (rewritten after every epoch, and at Ctrl-C with the
    /// exact position).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Continue the run recorded in --output (stopped with Ctrl-C, or cut short: from its
    /// last epoch end) exactly where it stopped; the other settings must be the same.
    #[arg(long, conflicts_with = "init")]
    pub resume: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.run.check()?;
    super::out::distinct_outputs(
        &[("-o", Some(&args.output))],
        &[
            ("--init", args.init.as_deref()),
            ("--model", Some(Path::new(&args.model))),
        ],
    )?;
    let earlier = if args.resume {
        let ck = Checkpoint::load(&args.output).with_context(|| {
            format!("--resume: no run to continue in {}", args.output.display())
        })?;
        Some(ck)
    } else {
        super::ckpt::refuse_stopped_run(&args.output)?;
        None
    };
    // Before any training: a run must not end by failing to write its checkpoint.
    limpq_io::files::check_writable(&args.output)?;
    let init = match &args.init {
        Some(p) => Some(super::ckpt::load_input(p)?),
        None => None,
    };
    let data = args.run.data_name(init.as_ref());
    let model = Model::resolve_for_data(&args.model, &data)?;
    let (train_ds, test_ds) = args.run.splits(&data, model.input, init.as_ref())?;
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    eprintln!(
        "training {} on {} ({} train / {} test images) on {} ({})",
        model.name,
        train_ds.kind.name(),
        train_ds.len(),
        test_ds.len(),
        gpu.summary.name,
        gpu.summary.backend
    );
    let mut meta = vec![("data".into(), train_ds.kind.name().to_string())];
    meta.extend(args.run.subset_meta(&train_ds));
    super::run_args::check_resume_data(earlier.as_ref(), &meta).inspect_err(|_| {
        super::ckpt::note_kept_run(&args.output);
    })?;
    let cfg = TrainConfig {
        nesterov: args.nesterov,
        checkpoint: Some(args.output.clone()),
        meta,
        stop: stop_on_ctrl_c()?,
        ..args.run.config(TrainConfig::default())?
    };
    let progress = Progress::new("")?;
    let mut on_event = |e: &Event| progress.event(e);
    let start = match (&earlier, &init) {
        (Some(ck), _) => Start::Resume(ck),
        (None, Some(ck)) => Start::Init(ck),
        (None, None) => Start::Fresh,
    };
    let result = train_from(&gpu, &model, train_ds, test_ds, &cfg, start, &mut on_event);
    progress.finish();
    let trained = match result {
        Err(e @ TrainError::Stopped(_)) => {
            anyhow::bail!("{e}: add --resume to the same command to continue")
        }
        Err(e) => {
            super::ckpt::note_kept_run(&args.output);
            return Err(e.into());
        }
        Ok(t) => t,
    };
    // Also covers --epochs 0, where no per-epoch checkpoint was written. In a data-parallel
    // run every rank holds the same result and rank 0 alone writes it.
    if limpq_trainer::dist::Dist::global().is_root() {
        trained.checkpoint.save(&args.output)?;
    }
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
