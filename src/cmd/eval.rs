//! `limpq eval`: test accuracy of a checkpoint; the evaluation is
//! `limpq_trainer::method::evaluate_checkpoint_with`.
use std::path::{Path, PathBuf};

use limpq_trainer::checkpoint::Checkpoint;
use limpq_trainer::data::{
    DataSource, Dataset, DatasetKind, Split, META_DATA_DIR, TEST_SUBSET_SEED,
};
use limpq_trainer::gpu::{Gpu, GpuOptions};
use limpq_trainer::method::export::{npy_f32, npy_i64, predictions};
use limpq_trainer::method::{checkpoint_policy, evaluate_checkpoint_with, Recalibration};
use limpq_trainer::train::check_data;

use super::out::OutputFormat;

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint written by `limpq train`.
    #[arg(long)]
    pub ckpt: PathBuf,
    /// Dataset (default: the one the checkpoint was trained on).
    #[arg(long)]
    pub data: Option<String>,
    /// Folder holding the dataset's files (default: $LIMPQ_DATA, else /usr/share/datasets/NAME;
    /// an image folder's: the one the checkpoint recorded).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Image folders: the transform, in RON (default: the checkpoint's; docs/DATA.md).
    /// Evaluation takes the centre crop and never flips.
    #[arg(long)]
    pub transform: Option<String>,
    /// Evaluate on N test images drawn with a fixed seed (default: all; `--subset` is an
    /// older spelling).
    #[arg(long, alias = "subset", value_parser = super::num::count)]
    pub test_subset: Option<usize>,
    /// Images per evaluation batch (`--batch` is an older spelling).
    #[arg(long, alias = "batch", default_value_t = 256, value_parser = super::num::count)]
    pub eval_batch: usize,
    /// Evaluate quantized at this policy file (default: the policy a `limpq finetune`
    /// checkpoint stores; a checkpoint that stores none is evaluated in full precision).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// `table`: one line (and the policy's cost when quantized); `json` / `ron`: the
    /// checkpoint, model, data, images, correct, accuracy, loss and the policy's cost.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Also write each test image's predicted class to this file (NumPy .npy, int64, in
    /// the data set's order).
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Recalibrate the BN statistics of a quantized model on this many training images
    /// before evaluating (train-mode forwards, no update), as `limpq finetune
    /// --bn-recalibration` does before every evaluation: the training images of the
    /// checkpoint's run (its --subset), drawn as its finetuning drew them, in whole batches
    /// of --eval-batch (rounded up) and at most the training split. With the run's image
    /// count and --eval-batch this gives the figure the finetune reported; stderr says how
    /// many images it took. --predictions and --logits come from the network the report
    /// counts (built and recalibrated once). Default: none.
    #[arg(long, value_parser = super::num::count)]
    pub recalibrate_bn: Option<usize>,
    /// Also write each test image's logits to this file (NumPy .npy, float32, images ×
    /// classes, in the data set's order).
    #[arg(long)]
    pub logits: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    super::out::distinct_outputs(
        &[
            ("--predictions", args.predictions.as_deref()),
            ("--logits", args.logits.as_deref()),
        ],
        &[
            ("--ckpt", Some(&args.ckpt)),
            ("--policy", args.policy.as_deref()),
        ],
    )?;
    // Before the evaluation: it must not end by failing to write what was asked.
    for p in [&args.predictions, &args.logits].into_iter().flatten() {
        limpq_io::files::check_writable(p)?;
    }
    let ckpt = super::ckpt::load_input(&args.ckpt)?;
    limpq_trainer::method::check_not_joint_state(&ckpt)?;
    let name = args.ckpt.display().to_string();
    let policy = match &args.policy {
        Some(p) => {
            let policy = limpq_io::documents::read_policy(p)?;
            // The policy's own faults name its file, before the data and the GPU.
            let named = |e: &dyn std::fmt::Display| anyhow::anyhow!("{}: {e}", p.display());
            limpq_trainer::method::check_policy_model(&policy, &ckpt.model)
                .map_err(|e| named(&e))?;
            limpq_trainer::engine::QuantSpec::policy(&ckpt.model, &policy)
                .map_err(|e| named(&e))?;
            Some(policy)
        }
        None => checkpoint_policy(&ckpt).map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
    };
    let data = super::run_args::data_for(args.data.as_deref(), Some(&ckpt));
    super::run_args::transform_applies(&data, args.transform.as_deref())?;
    let (dir, transform) = super::run_args::folder_args(
        &data,
        args.data_dir.as_deref(),
        args.transform.as_deref(),
        Some(&ckpt),
    )?;
    let source = DataSource {
        name: &data,
        dir: dir.as_deref(),
        input: Some(ckpt.model.input),
        transform: transform.as_ref(),
    };
    let test = std::sync::Arc::new(Dataset::load_subset_for(
        &source,
        Split::Test,
        args.test_subset,
        TEST_SUBSET_SEED,
    )?);
    check_data(&ckpt.model, &test)?;
    if args.recalibrate_bn.is_some() && policy.is_none() {
        return Err(super::out::usage(
            "--recalibrate-bn applies to a quantized model (give --policy)",
        ));
    }
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let recalibrate = match args.recalibrate_bn {
        Some(images) => {
            // Read as the test split is: the checkpoint's folder, at the model's input;
            // the run's own training images, drawn as its finetuning drew them.
            let (subset, seed) = run_subset(&ckpt, &data, dir.as_deref(), &name)?;
            let train = Dataset::load_subset_for(&source, Split::Train, subset, seed)?;
            check_data(&ckpt.model, &train)?;
            Some(Recalibration::of_finetune(
                std::sync::Arc::new(train),
                images,
                ckpt.seed,
            ))
        }
        None => None,
    };
    // One network for the report and the files: built, recalibrated and evaluated once,
    // so the files hold the logits the report counts.
    let files = args.predictions.is_some() || args.logits.is_some();
    let evaluated = evaluate_checkpoint_with(
        &gpu,
        &ckpt,
        &name,
        policy.as_ref(),
        &data,
        test,
        args.eval_batch,
        recalibrate.as_ref(),
        files,
    )?;
    // How many images the recalibration took: whole batches, at most the images it draws
    // from (the run's --subset), so it may differ from the count asked.
    match (evaluated.recalibrated, &recalibrate) {
        (Some(0), Some(r)) => eprintln!(
            "note: --recalibrate-bn {}: no whole batch of the {} training images; the BN \
             statistics are the checkpoint's",
            r.images,
            r.train.len()
        ),
        (Some(used), Some(r)) => eprintln!(
            "BN statistics recalibrated on {used} of {} training images ({} asked)",
            r.train.len(),
            r.images
        ),
        _ => {}
    }
    if let Some(logits) = &evaluated.logits {
        let classes = ckpt.model.classes;
        if let Some(p) = &args.predictions {
            limpq_io::files::write_atomic(p, &npy_i64(&predictions(logits, classes)))?;
        }
        if let Some(p) = &args.logits {
            let shape = [logits.len() / classes.max(1), classes];
            limpq_io::files::write_atomic(p, &npy_f32(logits, &shape))?;
        }
    }
    let report = evaluated.report;
    args.format.print(&report, || report.to_text())
}

/// The training images of the checkpoint's run, for its recalibration: its `--subset`
/// and `--subset-seed` as its meta records them (the subset seed defaults to the run's),
/// when `data` (and `dir`, the folder read) is the run's data set; the whole split
/// otherwise.
fn run_subset(
    ckpt: &Checkpoint,
    data: &str,
    dir: Option<&Path>,
    name: &str,
) -> anyhow::Result<(Option<usize>, u64)> {
    if !same_data(ckpt, data, dir) {
        return Ok((None, ckpt.seed));
    }
    let parse = |key: &str| -> anyhow::Result<Option<u64>> {
        ckpt.meta(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| anyhow::anyhow!("{name}: meta '{key}' = {v:?} is not a count"))
            })
            .transpose()
    };
    let subset = parse("subset")?
        .map(|n| usize::try_from(n).map_err(|_| anyhow::anyhow!("{name}: meta 'subset' too large")))
        .transpose()?;
    Ok((subset, parse("subset_seed")?.unwrap_or(ckpt.seed)))
}

/// Whether `data` names the data set the checkpoint's run trained on: the same kind
/// (`fmnist` is `fashion-mnist`) and, for an image folder, the same folder (`dir`, or
/// `data` itself when it is the folder's path).
fn same_data(ckpt: &Checkpoint, data: &str, dir: Option<&Path>) -> bool {
    let kind = |name: &str| DatasetKind::parse(name).unwrap_or(DatasetKind::Folder);
    let Some(ran_on) = ckpt.meta("data") else {
        return false;
    };
    if kind(ran_on) != kind(data) {
        return false;
    }
    if kind(data) != DatasetKind::Folder {
        return true;
    }
    let here = match (dir, DatasetKind::parse(data)) {
        (Some(d), _) => d.to_path_buf(),
        (None, Err(_)) => PathBuf::from(data),
        (None, Ok(_)) => return false,
    };
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    ckpt.meta(META_DATA_DIR)
        .is_some_and(|there| same(&here, Path::new(there)))
}
