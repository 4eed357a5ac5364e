//! `limpq infer CKPT --input X.npy --output LOGITS.npy`: a checkpoint's logits on given
//! inputs, full precision or fake-quantized at a policy; the computation is
//! `limpq_trainer::method::infer_logits`. For comparing limpq with another runtime on the
//! same inputs without decoding images.

use std::path::PathBuf;

use limpq_io::npy;
use limpq_trainer::gpu::{Gpu, GpuOptions};
use limpq_trainer::method::{checkpoint_policy, infer_logits};

/// Largest input array read.
const MAX_INPUT: u64 = 4 << 30;

#[derive(clap::Args)]
#[command(after_help = "\
The input is float32 (or float64) NCHW in C order, N×C×H×W (or one C×H×W image) with the
model's C, H, W; the output is float32 N×classes. Evaluation mode: BatchNorm running
statistics, no label smoothing; no normalisation is applied to the inputs.

Example:
  limpq infer model.ckpt --input x.npy --output logits.npy
  limpq infer finetuned.ckpt --policy policy.ron --input x.npy --output q_logits.npy")]
pub struct Args {
    /// Checkpoint (`limpq train`, `limpq import-onnx`, `limpq finetune`).
    #[arg(value_name = "CKPT")]
    pub ckpt: PathBuf,
    /// Input images, a .npy array N×C×H×W.
    #[arg(long, value_name = "X.npy")]
    pub input: PathBuf,
    /// Where to write the logits, a .npy array N×classes of float32.
    #[arg(long, value_name = "LOGITS.npy")]
    pub output: PathBuf,
    /// Fake-quantize at this policy file with the checkpoint's learned step sizes, as
    /// `limpq eval --policy` does (default: the policy a `limpq finetune` checkpoint
    /// stores; a checkpoint that stores none runs in full precision).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Images per GPU batch.
    #[arg(long, default_value_t = 64, value_parser = super::num::count)]
    pub batch: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    super::out::distinct_outputs(
        &[("--output", Some(&args.output))],
        &[
            ("the checkpoint", Some(&args.ckpt)),
            ("--input", Some(&args.input)),
            ("--policy", args.policy.as_deref()),
        ],
    )?;
    limpq_io::files::check_writable(&args.output)?;
    let ckpt = super::ckpt::load_input(&args.ckpt)?;
    let bytes = limpq_io::files::read_regular(&args.input, MAX_INPUT)?;
    let x = npy::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", args.input.display()))?;
    let (c, h, w) = ckpt.model.input;
    let images = match x.shape[..] {
        [n, xc, xh, xw] if (xc, xh, xw) == (c, h, w) => n,
        [xc, xh, xw] if (xc, xh, xw) == (c, h, w) => 1,
        _ => anyhow::bail!(
            "{}: shape {:?}; the model '{}' takes N×{c}×{h}×{w}",
            args.input.display(),
            x.shape,
            ckpt.model.name
        ),
    };
    if images == 0 {
        anyhow::bail!("{}: no images (N = 0)", args.input.display());
    }
    // A NaN input gives finite logits (ReLU and max pooling pass over it): refused, not
    // answered with logits that mean nothing.
    if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
        let per_image = (c * h * w).max(1);
        anyhow::bail!(
            "{}: value {} of image {} (its element {}) is not finite",
            args.input.display(),
            x.data[i],
            i / per_image,
            i % per_image
        );
    }
    let name = args.ckpt.display().to_string();
    let policy = match &args.policy {
        Some(p) => Some(limpq_io::documents::read_policy(p)?),
        None => checkpoint_policy(&ckpt).map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
    };
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let logits =
        infer_logits(&gpu, &ckpt, policy.as_ref(), &x.data, args.batch).map_err(|e| match &args
            .policy
        {
            Some(p) => anyhow::anyhow!("{name} with {}: {e}", p.display()),
            None => anyhow::anyhow!("{name}: {e}"),
        })?;
    let classes = ckpt.model.classes;
    limpq_io::files::write_atomic(&args.output, &npy::to_bytes(&[images, classes], &logits))?;
    eprintln!(
        "wrote {}: logits of {images} images × {classes} classes ({})",
        args.output.display(),
        if policy.is_some() {
            "quantized at the policy"
        } else {
            "full precision"
        }
    );
    Ok(())
}
