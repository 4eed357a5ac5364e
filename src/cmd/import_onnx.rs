//! `limpq import-onnx MODEL.onnx -o MODEL.ron --weights MODEL.ckpt`: an ONNX model as a
//! model description and a full-precision checkpoint of its pretrained weights. The import
//! is `limpq_trainer::import`; this command reads the file and writes the two results.
//! See docs/IMPORT.md.

use std::path::PathBuf;

use anyhow::Context;

use limpq_trainer::checkpoint::Checkpoint;
use limpq_trainer::import::{self as onnx, FoldedBn, ImportOptions};

/// Largest ONNX file read (protobuf itself caps a message at 2 GiB).
const MAX_ONNX: u64 = 2 << 30;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FoldedBnArg {
    /// Re-insert a BatchNorm with identity statistics after each conv with a folded BN.
    Reinsert,
    /// Keep the folded conv's bias and train without a BatchNorm there.
    Keep,
}

#[derive(clap::Args)]
#[command(after_help = "\
Supported operators: Conv (any group), BatchNormalization, Relu, Clip (ReLU6 / ReLU), Add,
MaxPool, AveragePool, GlobalAveragePool, Flatten, Reshape to 2-D, Gemm, MatMul (+Add),
Identity, Dropout, Constant; opsets 7 to 28. Layer names come from the weight initializers
or torch's node names (layer1.0.conv1). See docs/IMPORT.md.

Example:
  limpq import-onnx resnet18.onnx -o resnet18.ron --weights resnet18.ckpt
  limpq layers resnet18.ron
  limpq infer resnet18.ckpt --input x.npy --output logits.npy")]
pub struct Args {
    /// The ONNX model file (one N×C×H×W float input with fixed C, H, W; one logits output).
    #[arg(value_name = "MODEL.onnx")]
    pub onnx: PathBuf,
    /// The model description to write (RON, docs/MODELS.md).
    #[arg(short = 'o', long = "output", value_name = "MODEL.ron")]
    pub output: PathBuf,
    /// The checkpoint of the pretrained weights to write (what `limpq train` writes: the
    /// starting point of `limpq indicators`, `eval` and `infer`).
    #[arg(long, value_name = "MODEL.ckpt")]
    pub weights: PathBuf,
    /// The model's name in the description and in indicator and policy files (default: the
    /// ONNX file's stem).
    #[arg(long)]
    pub name: Option<String>,
    /// What to do with a conv that has a bias and no BatchNormalization after it (a BN the
    /// exporter folded into it): `reinsert` a BN with identity statistics (the method trains
    /// one per bit-width), or `keep` the bias and train without a BN.
    #[arg(long, value_enum, default_value_t = FoldedBnArg::Reinsert)]
    pub folded_bn: FoldedBnArg,
    /// The data set the model was trained on (a data set's name, or an image folder's
    /// path), checked against the model's input and classes (a folder's: the class folders
    /// of its train/, at most the model's) and recorded in the checkpoint for later
    /// commands (default: none recorded; they then read fashion-mnist, with a note, unless
    /// given --data).
    #[arg(long)]
    pub data: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    super::out::distinct_outputs(
        &[
            ("-o", Some(&args.output)),
            ("--weights", Some(&args.weights)),
        ],
        &[("the ONNX model", Some(&args.onnx))],
    )?;
    let bytes = limpq_io::files::read_regular(&args.onnx, MAX_ONNX)?;
    let name = args.name.clone().or_else(|| {
        args.onnx
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
    });
    let opts = ImportOptions {
        name,
        folded_bn: match args.folded_bn {
            FoldedBnArg::Reinsert => FoldedBn::Reinsert,
            FoldedBnArg::Keep => FoldedBn::Keep,
        },
    };
    let imported = onnx::import_bytes(&bytes, &opts)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.onnx.display()))?;
    let model = imported.model;
    let data_meta = match &args.data {
        Some(d) => super::run_args::import_data_meta(d, &model)?,
        None => Vec::new(),
    };
    let ckpt = Checkpoint {
        model: model.clone(),
        seed: 0,
        epoch: 0,
        step: 0,
        meta: vec![
            ("source".into(), "onnx".into()),
            ("onnx_file".into(), args.onnx.display().to_string()),
            ("onnx_opset".into(), imported.opset.to_string()),
            (
                "folded_bn".into(),
                match args.folded_bn {
                    FoldedBnArg::Reinsert => "reinsert",
                    FoldedBnArg::Keep => "keep",
                }
                .into(),
            ),
        ]
        .into_iter()
        .chain(data_meta)
        .collect(),
        tensors: imported.tensors,
        origin: None,
    };
    // The weights first: the larger write, the one a full disk stops, so that a failure
    // leaves both files as they were. The model description, a few kilobytes, follows.
    ckpt.save(&args.weights)?;
    limpq_io::files::write_atomic(&args.output, model.to_ron_versioned().as_bytes()).with_context(
        || {
            format!(
                "{} was written, but not the model it belongs to; import again before using it",
                args.weights.display()
            )
        },
    )?;
    let layers = model.quantizable_layers()?;
    let params: u64 = layers.iter().map(|l| l.params).sum();
    let macs: u64 = layers.iter().map(|l| l.macs).sum();
    let (c, h, w) = model.input;
    eprintln!(
        "wrote {} and {}: model '{}', input {c}×{h}×{w}, {} classes, {} nodes, {} conv/linear \
         layers, {params} weights, {macs} MACs per image; {} folded BatchNorms re-inserted",
        args.output.display(),
        args.weights.display(),
        model.name,
        model.classes,
        model.nodes.len(),
        layers.len(),
        imported.reinserted_bn.len()
    );
    Ok(())
}
