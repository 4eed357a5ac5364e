//! `limpq train`: full-precision training on the GPU with a progress bar on stderr and one
//! summary line per epoch on stdout; the final state is written as a checkpoint.
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use limpq_trainer::checkpoint::Checkpoint;
use limpq_trainer::data::{Dataset, Split, TEST_SUBSET_SEED};
use limpq_trainer::gpu::{Gpu, GpuOptions};
use limpq_trainer::model::Model;
use limpq_trainer::train::{train_from, Event, Start, TrainConfig, TrainError};

use super::progress::{stop_on_ctrl_c, Progress};

#[derive(clap::Args)]
pub struct Args {
    /// Built-in model (small_cnn, resnet20, resnet20-cifar, resnet18) or MODEL.ron.
    #[arg(long)]
    pub model: String,
    /// Dataset: fashion-mnist, mnist or cifar10.
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// Folder holding the dataset's files (default: $LIMPQ_DATA, else /usr/share/datasets/NAME).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Passes over the training set.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Images per optimizer step (the last partial batch of an epoch is dropped).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Initial learning rate; cosine-annealed to 0 over the run, per step.
    #[arg(long, default_value_t = 0.1)]
    pub lr: f32,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// Nesterov momentum (the reference recipe's).
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay on conv and linear weights.
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f32,
    /// Label smoothing of the cross-entropy loss, in [0, 1) (the reference recipe: 0.1).
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f32,
    /// Train on N training images drawn with the seed (default: all).
    #[arg(long)]
    pub subset: Option<usize>,
    /// Evaluate on N test images drawn with a fixed seed (default: all).
    #[arg(long)]
    pub test_subset: Option<usize>,
    /// Seed of the weight init, the subset drawn, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seed of the --subset draw alone (default: --seed). `limpq pipeline` draws one
    /// training subset for every run seed, with seed 55930; pass that to redo one of its
    /// stages by hand on the same images.
    #[arg(long)]
    pub subset_seed: Option<u64>,
    /// Start from this checkpoint's parameters and BN statistics.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Images per evaluation batch.
    #[arg(long, default_value_t = 256)]
    pub eval_batch: usize,
    /// Where to write the checkpoint (rewritten after every epoch, and at Ctrl-C with the
    /// exact position).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Continue the run recorded in --output (stopped with Ctrl-C, or cut short: from its
    /// last epoch end) exactly where it stopped; the other settings must be the same.
    #[arg(long, conflicts_with = "init")]
    pub resume: bool,
}

/// The training split (a subset of `subset` images drawn with `subset_seed` when given) and
/// the test split (a subset of `test_subset` drawn with [`TEST_SUBSET_SEED`] when given).
pub fn load_splits(
    data: &str,
    dir: Option<&std::path::Path>,
    subset: Option<usize>,
    subset_seed: u64,
    test_subset: Option<usize>,
) -> anyhow::Result<(Arc<Dataset>, Arc<Dataset>)> {
    Ok((
        Arc::new(Dataset::load_subset(
            data,
            dir,
            Split::Train,
            subset,
            subset_seed,
        )?),
        Arc::new(Dataset::load_subset(
            data,
            dir,
            Split::Test,
            test_subset,
            TEST_SUBSET_SEED,
        )?),
    ))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let model = Model::resolve_for_data(&args.model, &args.data)?;
    let init = match &args.init {
        Some(p) => Some(Checkpoint::load(p)?),
        None => None,
    };
    let earlier = if args.resume {
        let ck = Checkpoint::load(&args.output).with_context(|| {
            format!("--resume: no run to continue in {}", args.output.display())
        })?;
        Some(ck)
    } else {
        None
    };
    let (train_ds, test_ds) = load_splits(
        &args.data,
        args.data_dir.as_deref(),
        args.subset,
        args.subset_seed.unwrap_or(args.seed),
        args.test_subset,
    )?;
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
    let cfg = TrainConfig {
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        momentum: args.momentum,
        nesterov: args.nesterov,
        weight_decay: args.weight_decay,
        label_smoothing: args.label_smoothing,
        seed: args.seed,
        eval_batch: args.eval_batch,
        checkpoint: Some(args.output.clone()),
        meta: vec![("data".into(), train_ds.kind.name().to_string())],
        stop: stop_on_ctrl_c()?,
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
        r => r?,
    };
    // Also covers --epochs 0, where no per-epoch checkpoint was written.
    trained.checkpoint.save(&args.output)?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
