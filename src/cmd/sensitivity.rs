//! `limpq sensitivity`: measured per-layer sensitivity as an indicator file (a second
//! indicator source beside `limpq indicators`; docs/METHOD.md, "Measured sensitivity").
use std::path::{Path, PathBuf};
use std::sync::Arc;

use limpq_trainer::data::{Dataset, Split};
use limpq_trainer::gpu::{Gpu, GpuOptions};
use limpq_trainer::method::{measure_sensitivity, SensitivityConfig};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(clap::Args)]
pub struct Args {
    /// Built-in model (small_cnn, resnet20, ...) or MODEL.ron; must match the checkpoint.
    #[arg(long)]
    pub model: String,
    /// Full-precision checkpoint written by `limpq train`.
    #[arg(long, alias = "ckpt")]
    pub init: PathBuf,
    /// Candidate bit-widths (weights and activations), ascending, below 16.
    #[arg(long, value_delimiter = ',', default_value = "2,3,4,5,6")]
    pub bits: Vec<u32>,
    /// Calibration images, drawn from the training set with --seed (whole batches are used).
    #[arg(long, default_value_t = 1024, value_parser = super::num::count)]
    pub images: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 256, value_parser = super::num::count)]
    pub batch: usize,
    /// Seed of the calibration draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Dataset: fashion-mnist, mnist, cifar10, or folder (an image folder at --data-dir,
    /// docs/DATA.md) (default: the one the checkpoint was trained on, else fashion-mnist).
    #[arg(long)]
    pub data: Option<String>,
    /// Folder holding the dataset's files (default: $LIMPQ_DATA, else /usr/share/datasets/NAME).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Indicator file to write (RON; JSON if it ends in .json).
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    limpq_trainer::method::check_bits(&args.bits)
        .map_err(|e| super::out::usage(format!("--bits: {e}")))?;
    super::out::distinct_outputs(
        &[("-o", Some(&args.output))],
        &[
            ("--init", Some(&args.init)),
            ("--model", Some(Path::new(&args.model))),
        ],
    )?;
    // Before the measurements: they must not end by failing to write.
    limpq_io::files::check_writable(&args.output)?;
    let init = super::ckpt::load_input(&args.init)?;
    let data = super::run_args::data_for(args.data.as_deref(), Some(&init));
    let model = limpq_trainer::model::Model::resolve_for_data(&args.model, &data)?;
    let (dir, transform) =
        super::run_args::folder_args(&data, args.data_dir.as_deref(), None, Some(&init))?;
    let source = limpq_trainer::data::DataSource {
        name: &data,
        dir: dir.as_deref(),
        input: Some(model.input),
        transform: transform.as_ref(),
    };
    let calib = Arc::new(Dataset::load_subset_for(
        &source,
        Split::Train,
        Some(args.images),
        args.seed,
    )?);
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    // The measurement takes whole batches (the file's `calibration_images`).
    let used = calib.len() / args.batch.max(1) * args.batch;
    let left = match calib.len() - used {
        0 => String::new(),
        n => format!(
            " ({n} of the {} drawn left out: whole batches only)",
            calib.len()
        ),
    };
    // Fewer images than a batch: the measurement refuses them, naming both.
    if used > 0 {
        eprintln!(
            "sensitivity of {} at bits {:?} on {used} calibration images{left} of {} on {} ({})",
            model.name,
            args.bits,
            calib.kind.name(),
            gpu.summary.name,
            gpu.summary.backend
        );
    }
    let cfg = SensitivityConfig {
        bits: args.bits.clone(),
        batch: args.batch,
        meta: vec![
            ("data".to_string(), calib.kind.name().to_string()),
            ("init".to_string(), args.init.display().to_string()),
            ("calibration_seed".to_string(), args.seed.to_string()),
        ],
        ..SensitivityConfig::default()
    };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("measured [{bar:30}] {pos}/{len} ETA {eta}") {
        bar.set_style(style.progress_chars("=> "));
    }
    let result = measure_sensitivity(&gpu, &model, &init, calib, &cfg, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let out = result?;
    eprintln!(
        "{} layers × {} bit-widths × weights and activations: {} forward passes of {} images \
         in {:.1} s (full-precision loss {:.4})",
        out.raw.len(),
        args.bits.len(),
        out.forwards,
        args.batch,
        out.seconds,
        out.base_loss
    );
    limpq_io::documents::write_indicators(&args.output, &out.indicators)?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
