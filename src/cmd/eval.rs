//! `limpq eval`: test accuracy of a checkpoint.
use std::path::PathBuf;

use limpq_trainer::checkpoint::Checkpoint;
use limpq_trainer::data::{Dataset, Split, TEST_SUBSET_SEED};
use limpq_trainer::engine::{Network, NetworkConfig};
use limpq_trainer::gpu::{Gpu, GpuOptions};
use limpq_trainer::train::{check_data, evaluate};

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint written by `limpq train`.
    #[arg(long)]
    pub ckpt: PathBuf,
    /// Dataset (default: the one the checkpoint was trained on).
    #[arg(long)]
    pub data: Option<String>,
    /// Folder holding the dataset's files (default: $LIMPQ_DATA, else /usr/share/datasets/NAME).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Evaluate on N test images drawn with a fixed seed (default: all; `--subset` is an
    /// older spelling).
    #[arg(long, alias = "subset")]
    pub test_subset: Option<usize>,
    /// Images per evaluation batch (`--batch` is an older spelling).
    #[arg(long, alias = "batch", default_value_t = 256)]
    pub eval_batch: usize,
    /// Evaluate quantized at this policy (default: the policy a `limpq finetune`
    /// checkpoint stores; none: full precision).
    #[arg(long)]
    pub policy: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let ckpt = Checkpoint::load(&args.ckpt)?;
    let data = match (&args.data, ckpt.meta("data")) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => d.to_string(),
        (None, None) => "fashion-mnist".to_string(),
    };
    let test = std::sync::Arc::new(Dataset::load_subset(
        &data,
        args.data_dir.as_deref(),
        Split::Test,
        args.test_subset,
        TEST_SUBSET_SEED,
    )?);
    check_data(&ckpt.model, &test)?;
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let policy = match &args.policy {
        Some(p) => Some(limpq_io::documents::read_policy(p)?),
        None => limpq_trainer::method::checkpoint_policy(&ckpt)
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.ckpt.display()))?,
    };
    if let Some(policy) = policy {
        let stats = limpq_trainer::method::evaluate_quantized(
            &gpu,
            &ckpt.model,
            &ckpt,
            &policy,
            test,
            args.eval_batch,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.ckpt.display()))?;
        println!(
            "{}: {} quantized, on {} test images of {}: accuracy {:.2}% ({}/{}), loss {:.4}",
            args.ckpt.display(),
            ckpt.model.name,
            stats.count,
            data,
            stats.accuracy() * 100.0,
            stats.correct,
            stats.count,
            stats.mean_loss()
        );
        println!("{}", super::finetune::cost_line(&ckpt.model, &policy)?);
        return Ok(());
    }
    let cfg = NetworkConfig {
        batch: args.eval_batch,
        ..NetworkConfig::default()
    };
    let mut net = Network::new(&gpu, &ckpt.model, cfg)?;
    net.import_state(&ckpt.tensors, false)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.ckpt.display()))?;
    let stats = evaluate(&mut net, &test)?;
    println!(
        "{}: {} on {} test images of {}: accuracy {:.2}% ({}/{}), loss {:.4}",
        args.ckpt.display(),
        ckpt.model.name,
        stats.count,
        data,
        stats.accuracy() * 100.0,
        stats.correct,
        stats.count,
        stats.mean_loss()
    );
    Ok(())
}
