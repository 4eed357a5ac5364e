//! `limpq import-safetensors WEIGHTS.safetensors --model MODEL -o MODEL.ckpt`: PyTorch
//! weights (a `state_dict` saved with `safetensors`) as a full-precision checkpoint of a
//! model description whose layers carry the PyTorch module's names. The reading is
//! `limpq_trainer::weights`; docs/IMPORT.md.

use std::path::{Path, PathBuf};

use limpq_trainer::checkpoint::Checkpoint;
use limpq_trainer::model::Model;

/// Largest weights file read.
const MAX_WEIGHTS: u64 = 8 << 30;

#[derive(clap::Args)]
#[command(after_help = "\
Example (PyTorch side: safetensors.torch.save_file(model.state_dict(), \"w.safetensors\")):
  limpq import-safetensors w.safetensors --model resnet18 -o resnet18.ckpt
  limpq export resnet18.ckpt --safetensors back.safetensors")]
pub struct Args {
    /// The safetensors file (F32, F64, F16 or BF16 tensors named as in the PyTorch module's
    /// state_dict; `num_batches_tracked` counters are skipped).
    #[arg(value_name = "WEIGHTS.safetensors")]
    pub weights: PathBuf,
    /// A built-in model or MODEL.ron whose layer names match the state_dict's.
    #[arg(long)]
    pub model: String,
    /// The data set the weights were trained on (a data set's name, or an image folder's
    /// path), checked against the model's input and classes (a folder's: the class folders
    /// of its train/, at most the model's) and recorded for later commands (default: none
    /// recorded; they then read fashion-mnist, with a note, unless given --data).
    #[arg(long)]
    pub data: Option<String>,
    /// The checkpoint to write.
    #[arg(short, long, value_name = "MODEL.ckpt")]
    pub output: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    super::out::distinct_outputs(
        &[("-o", Some(&args.output))],
        &[
            ("the weights", Some(&args.weights)),
            ("--model", Some(Path::new(&args.model))),
        ],
    )?;
    let model = match &args.data {
        Some(d) => Model::resolve_for_data(&args.model, d)?,
        None => Model::resolve(&args.model)?,
    };
    let data_meta = match &args.data {
        Some(d) => super::run_args::import_data_meta(d, &model)?,
        None => Vec::new(),
    };
    let bytes = limpq_io::files::read_regular(&args.weights, MAX_WEIGHTS)?;
    let tensors = limpq_trainer::weights::import_safetensors(&bytes, &model)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.weights.display()))?;
    let mut meta = vec![
        ("source".to_string(), "safetensors".to_string()),
        (
            "weights_file".to_string(),
            args.weights.display().to_string(),
        ),
    ];
    meta.extend(data_meta);
    let n: usize = tensors.iter().map(|t| t.data.len()).sum();
    let ckpt = Checkpoint {
        model: model.clone(),
        seed: 0,
        epoch: 0,
        step: 0,
        meta,
        tensors,
        origin: None,
    };
    ckpt.save(&args.output)?;
    eprintln!(
        "wrote {}: model '{}' with {} tensors ({n} values) from {}",
        args.output.display(),
        model.name,
        ckpt.tensors.len(),
        args.weights.display()
    );
    Ok(())
}
