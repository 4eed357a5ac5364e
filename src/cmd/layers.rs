//! `limpq layers`: per-layer MACs and parameter counts of a model description; the table
//! is `limpq_trainer::model::LayerTable`.

use limpq_trainer::model::Model;

use super::out::{self, OutputFormat};

/// Print the quantizable layers of a model: shapes, MACs, weights, fixed or searchable.
///
/// Counting rule: MACs of a conv = Cin·Cout·k²·Hout·Wout / groups with integer (floored)
/// output sizes; of a linear layer in·out; per image. Params are weights only, biases and
/// BatchNorm excluded. The first conv and the last linear layer (stem and fc) are fixed at
/// 8 bits and not searched. Sums are printed over conv layers, linear layers, all of them,
/// and the searchable ones (the layers a BitOps budget counts).
#[derive(clap::Args)]
#[command(after_help = "\
Counting: MACs per image; a conv counts Cin·Cout·k²·Hout·Wout/groups with integer (floored)
output sizes, a linear layer in·out. Params are weights only (no bias, no BatchNorm). The
first conv and the last linear layer (stem, fc) are fixed at 8 bits and not searched; the
'searchable' sum is what a BitOps budget counts.

Examples:
  limpq layers resnet18
  limpq layers mobilenetv2   # torchvision's: 300.8M MACs, 3.5M params with BN and bias
  limpq layers resnet20-cifar --all   # every node: BN, ReLU, add, pooling too
  limpq layers resnet18 --format json   # the table as JSON: rows, shapes, sums
  limpq layers small_cnn --description > my_model.ron   # start a custom model from a built-in
  limpq layers my_model.ron
  limpq layers fp.ckpt   # the model a checkpoint holds")]
pub struct Args {
    /// A built-in model (small_cnn, resnet20, resnet20-cifar, resnet18, resnet50,
    /// mobilenetv2), the path of a RON model description (docs/MODELS.md; `limpq
    /// import-onnx` writes one from an ONNX file), or a checkpoint (the model it holds).
    #[arg(value_name = "MODEL")]
    pub model: String,
    /// `table`: the per-layer table and sums; `json` / `ron`: the same rows, shapes and
    /// sums as a document.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Print the model description itself (RON), as a file `limpq layers` and the trainer
    /// read back, instead of the table.
    #[arg(long, conflicts_with_all = ["format", "all"])]
    pub description: bool,
    /// List every node of the graph (BatchNorm, ReLU, add, pooling too), not only the
    /// quantizable layers.
    #[arg(long)]
    pub all: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let model = resolve(&args.model)?;
    if args.description {
        return out::println(&model.to_ron_versioned());
    }
    let table = model.layer_table(args.all)?;
    args.format.print(&table, || table.to_text())
}

/// The model `arg` names: a built-in, a model description, or (with the GPU half, which
/// reads checkpoints) the model a checkpoint file holds.
fn resolve(arg: &str) -> anyhow::Result<Model> {
    let described = Model::resolve(arg);
    #[cfg(feature = "gpu")]
    if described.is_err() && std::path::Path::new(arg).is_file() {
        // Not a description: a checkpoint carries its model's. A file that begins as a
        // checkpoint gets the checkpoint's error (truncated, corrupt); one that is neither
        // gets the description's.
        use limpq_trainer::checkpoint::Checkpoint;
        let path = std::path::Path::new(arg);
        if Checkpoint::looks_like_one(path).unwrap_or(false) {
            return Ok(Checkpoint::load(path)?.model);
        }
    }
    Ok(described?)
}
