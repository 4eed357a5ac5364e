//! Model descriptions: the static graph the GPU engine runs forward and backward, and the
//! source of every layer's MACs and parameter count (`limpq layers`, indicator files).
//!
//! A [`Model`] is a list of [`Node`]s in topological order. Each node names its inputs:
//! earlier nodes, or `"input"` for the image. Tensors are `C×H×W` per image (the batch
//! dimension is implicit); a flat vector is `N×1×1`. The output of the last node is the
//! logits and must be `classes×1×1`. The RON format is documented in `docs/MODELS.md`.
//!
//! Nothing here panics on a user-given description: [`Model::analyze`] checks names,
//! wiring and every shape with overflow-checked arithmetic and returns a [`ModelError`]
//! that names the file (or built-in), the node and the field.

mod builtins;
mod infer;
#[cfg(feature = "gpu")]
pub(crate) use infer::analyze_graph;
mod table;

use std::fmt;
use std::path::{Path, PathBuf};

use limpq_solver::{IndicatorSet, Layer};
use serde::{Deserialize, Serialize};

pub use builtins::{
    builtin, mobilenet_v2, mobilenet_v2_stages, resnet18, resnet20, resnet50, small_cnn,
    BUILTIN_NAMES,
};
pub use table::{thousands, LayerRow, LayerSum, LayerTable};

/// The reserved name by which nodes refer to the model's input image.
pub const INPUT: &str = "input";

/// Bits at which the layers excluded from the search (stem conv, classifier) are kept.
pub const FIXED_BITS: (u32, u32) = (8, 8);

/// A network as a static graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Name written into indicator and policy files, e.g. `"resnet20"`.
    pub name: String,
    /// Input image shape `(channels, height, width)`.
    pub input: (usize, usize, usize),
    /// Number of classes; the last node's output must be `classes×1×1`.
    pub classes: usize,
    /// Nodes in topological order: a node's inputs are defined before it.
    pub nodes: Vec<Node>,
}

/// One operation of the graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Unique name; torchvision's module names for the ResNets (`layer1.0.conv1`).
    pub name: String,
    pub op: Op,
    /// Names of earlier nodes, or [`INPUT`]. One for every op except [`Op::Add`] (two or more).
    pub inputs: Vec<String>,
}

fn one() -> usize {
    1
}

/// The operations the GPU engine implements. Convolutions and linear layers are the
/// quantizable layers; everything else is kept in full precision.
/// Unknown fields are errors: a misspelt `strid: 2` must not silently default to 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Op {
    /// 2-D convolution with a square kernel, stride and zero padding; no dilation.
    /// Weight `[out_channels, in_channels / groups, kernel, kernel]`.
    Conv2d {
        out_channels: usize,
        kernel: usize,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default)]
        padding: usize,
        #[serde(default = "one")]
        groups: usize,
        #[serde(default)]
        bias: bool,
    },
    /// Batch normalisation over channels, with learned scale and shift. In joint
    /// training the engine keeps one BN per candidate bit-width ("switchable BN").
    BatchNorm,
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// Element-wise sum of two or more inputs of identical shape (residual connection).
    Add,
    /// Max pooling; padding is at most `kernel / 2` (PyTorch's rule) so that every window
    /// holds at least one real element.
    MaxPool {
        kernel: usize,
        stride: usize,
        #[serde(default)]
        padding: usize,
    },
    /// Average pooling; padded zeros count in the average (PyTorch's default
    /// `count_include_pad=True`). Same padding rule as `MaxPool`.
    AvgPool {
        kernel: usize,
        stride: usize,
        #[serde(default)]
        padding: usize,
    },
    /// Mean over H and W: `C×H×W → C×1×1`.
    GlobalAvgPool,
    /// `C×H×W → (C·H·W)×1×1`. Optional: `Linear` flattens its input itself.
    Flatten,
    /// Fully connected layer on the flattened input (`in_features = C·H·W`).
    /// Weight `[out_features, in_features]`.
    Linear {
        out_features: usize,
        #[serde(default)]
        bias: bool,
    },
}

impl Op {
    /// Short name of the operation, as printed by `limpq layers`.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv2d { .. } => "conv",
            Op::BatchNorm => "bn",
            Op::Relu => "relu",
            Op::Relu6 => "relu6",
            Op::Add => "add",
            Op::MaxPool { .. } => "maxpool",
            Op::AvgPool { .. } => "avgpool",
            Op::GlobalAvgPool => "gap",
            Op::Flatten => "flatten",
            Op::Linear { .. } => "linear",
        }
    }
}

/// A per-image tensor shape, `C×H×W`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub fn numel(&self) -> usize {
        // Every shape produced by `Model::analyze` has a product that fits in u64 and usize.
        self.c * self.h * self.w
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×{}×{}", self.c, self.h, self.w)
    }
}

/// Where a node's input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The model input.
    Input,
    /// The output of node `i` (an index into `Model::nodes`).
    Node(usize),
}

/// A node after checking: resolved inputs, shapes and cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub inputs: Vec<Source>,
    pub input_shapes: Vec<Shape>,
    pub output: Shape,
    /// Multiply-accumulates per image (convs and linear layers; 0 for other ops).
    pub macs: u64,
    /// Weights of a conv or linear layer, bias excluded (0 for other ops).
    pub params: u64,
}

/// Conv or linear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerKind {
    Conv,
    Linear,
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayerKind::Conv => "conv",
            LayerKind::Linear => "linear",
        })
    }
}

/// A layer whose weights and input activations are quantized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantLayer {
    pub name: String,
    /// Index of the node in `Model::nodes`.
    pub node: usize,
    pub kind: LayerKind,
    pub input: Shape,
    pub output: Shape,
    /// `Cin·Cout·k²·Hout·Wout / groups` for a conv, `in·out` for a linear layer; per image.
    pub macs: u64,
    /// Weights only, bias excluded.
    pub params: u64,
    /// Kept at [`FIXED_BITS`] and not searched: the first conv and the last linear layer.
    pub fixed: bool,
}

/// Why a model description was rejected.
#[derive(Debug)]
#[non_exhaustive]
pub enum ModelError {
    /// The file could not be read: missing, unreadable, not a regular file (a FIFO or a
    /// device is refused without blocking on it), larger than
    /// [`limpq_io::files::MAX_TEXT`], or not UTF-8. The error names the file.
    File(limpq_io::FileError),
    /// The file is not valid RON for a [`Model`]; `message` holds line and column.
    Parse { path: PathBuf, message: String },
    /// Neither a built-in name nor an existing file.
    Unknown { name: String },
    /// The graph is inconsistent. `origin` is the file or `model 'NAME'`.
    Invalid {
        origin: String,
        node: Option<String>,
        field: Option<&'static str>,
        message: String,
    },
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::File(e) => e.fmt(f),
            ModelError::Parse { path, message } => {
                write!(
                    f,
                    "{}: not a valid model description: {message}",
                    path.display()
                )
            }
            ModelError::Unknown { name } => write!(
                f,
                "unknown model '{name}': not a built-in ({}) and no such file",
                BUILTIN_NAMES.join(", ")
            ),
            ModelError::Invalid {
                origin,
                node,
                field,
                message,
            } => {
                write!(f, "{origin}: ")?;
                if let Some(node) = node {
                    write!(f, "node '{node}': ")?;
                }
                if let Some(field) = field {
                    write!(f, "field '{field}': ")?;
                }
                f.write_str(message)
            }
        }
    }
}

impl std::error::Error for ModelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ModelError::File(e) => Some(e),
            _ => None,
        }
    }
}

impl Model {
    /// Reads and checks a RON model description; every error names `path`.
    pub fn from_ron_file(path: impl AsRef<Path>) -> Result<Model, ModelError> {
        let path = path.as_ref();
        // Bounded, and only a regular file: `limpq layers /dev/zero` would otherwise read
        // until memory ran out, and a FIFO (named by a daemon client, say) block forever.
        let text = limpq_io::files::read_regular_text(path, limpq_io::files::MAX_TEXT)
            .map_err(ModelError::File)?;
        // An optional top-level `format_version` (docs/FORMATS.md); a newer one is refused.
        let model: Model = limpq_solver::format::versioned::from_ron(&text, Model::FORMAT_VERSION)
            .map_err(|e| ModelError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        model.analyze().map_err(|e| match e {
            ModelError::Invalid {
                origin,
                node,
                field,
                message,
            } => ModelError::Invalid {
                origin: format!("{} ({origin})", path.display()),
                node,
                field,
                message,
            },
            other => other,
        })?;
        Ok(model)
    }

    /// A built-in name (see [`BUILTIN_NAMES`]) or the path of a RON description.
    pub fn resolve(name_or_path: &str) -> Result<Model, ModelError> {
        if let Some(model) = builtin(name_or_path) {
            return Ok(model);
        }
        let path = Path::new(name_or_path);
        if path.exists() || name_or_path.ends_with(".ron") {
            return Model::from_ron_file(path);
        }
        Err(ModelError::Unknown {
            name: name_or_path.to_string(),
        })
    }

    /// The names CIFAR-10 goes by ([`Model::resolve_for_data`]).
    pub const CIFAR10_NAMES: [&'static str; 3] = ["cifar10", "cifar-10", "cifar_10"];

    /// [`Model::resolve`] for training on the data set `data`: `resnet20` (the 1×28×28
    /// variant) means its 3×32×32 sibling `resnet20-cifar` when `data` is CIFAR-10 (by one
    /// of its names, as `data::DatasetKind::parse` takes them; an image folder whose path
    /// begins with "cifar" is a folder, and its images are read at the model's input).
    /// Every command, job and pipeline that names a model and a data set resolves it here.
    pub fn resolve_for_data(name_or_path: &str, data: &str) -> Result<Model, ModelError> {
        let cifar = Self::CIFAR10_NAMES.contains(&data.to_ascii_lowercase().as_str());
        let name = if name_or_path == "resnet20" && cifar {
            "resnet20-cifar"
        } else {
            name_or_path
        };
        Model::resolve(name)
    }

    /// The newest `format_version` of model descriptions this build reads and writes.
    pub const FORMAT_VERSION: u32 = 1;

    /// [`Model::to_ron`] with `format_version` as its first field: what a file gets.
    pub fn to_ron_versioned(&self) -> String {
        let config = ron::ser::PrettyConfig::new()
            .struct_names(true)
            .depth_limit(2);
        limpq_solver::format::versioned::to_ron_pretty(self, Self::FORMAT_VERSION, config)
            .unwrap_or_else(|e| format!("/* {e} */"))
    }

    /// Pretty RON, one node per line, without `format_version` (the pipeline's fingerprint
    /// of the model); [`Model::from_ron_file`] reads it back.
    pub fn to_ron(&self) -> String {
        let config = ron::ser::PrettyConfig::new()
            .struct_names(true)
            .depth_limit(2);
        // ron fails only on types it cannot represent (maps with non-string keys, values
        // beyond its depth limit); a Model holds strings, integers, bools and flat enums.
        ron::ser::to_string_pretty(self, config).expect("a Model always serialises to RON")
    }

    /// For every node (with `infos` from [`Model::analyze`]), whether its activation
    /// quantizer, if it has one, is signed: unsigned only where its input cannot be
    /// negative, the output of a ReLU (or ReLU6), also through pooling, Flatten views and
    /// sums of such; signed where it can: the model input (a normalised image), a
    /// BatchNorm, conv or linear output (MobileNetV2's linear bottlenecks), a sum with any
    /// of those. The engine, the sensitivity measurement and the ONNX export all read this.
    /// One pass: nodes read only earlier nodes (`analyze` checks it).
    pub fn act_signs(&self, infos: &[NodeInfo]) -> Vec<bool> {
        fn of(non_negative: &[bool], s: &Source) -> bool {
            match *s {
                Source::Node(k) => non_negative.get(k).copied().unwrap_or(false),
                Source::Input => false,
            }
        }
        let mut non_negative = Vec::with_capacity(self.nodes.len());
        for (node, info) in self.nodes.iter().zip(infos) {
            let first = info.inputs.first();
            let v = match node.op {
                Op::Relu | Op::Relu6 => true,
                Op::MaxPool { .. } | Op::AvgPool { .. } | Op::GlobalAvgPool | Op::Flatten => {
                    first.is_some_and(|s| of(&non_negative, s))
                }
                Op::Add => first.is_some() && info.inputs.iter().all(|s| of(&non_negative, s)),
                _ => false,
            };
            non_negative.push(v);
        }
        infos
            .iter()
            .map(|info| !info.inputs.first().is_some_and(|s| of(&non_negative, s)))
            .collect()
    }

    /// Checks names, wiring and shapes; returns each node's resolved inputs, shapes and cost.
    pub fn analyze(&self) -> Result<Vec<NodeInfo>, ModelError> {
        infer::analyze(self).map_err(|e| ModelError::Invalid {
            origin: format!("model '{}'", self.name),
            node: e.node,
            field: e.field,
            message: e.message,
        })
    }

    /// Every conv and linear layer in node order, with MACs, params and whether it is fixed
    /// at 8 bits (the first conv and the last linear layer: "stem and fc excluded").
    pub fn quantizable_layers(&self) -> Result<Vec<QuantLayer>, ModelError> {
        let infos = self.analyze()?;
        let first_conv = self
            .nodes
            .iter()
            .position(|n| matches!(n.op, Op::Conv2d { .. }));
        let last_linear = self
            .nodes
            .iter()
            .rposition(|n| matches!(n.op, Op::Linear { .. }));
        let mut layers = Vec::new();
        for (i, (node, info)) in self.nodes.iter().zip(&infos).enumerate() {
            let kind = match node.op {
                Op::Conv2d { .. } => LayerKind::Conv,
                Op::Linear { .. } => LayerKind::Linear,
                _ => continue,
            };
            layers.push(QuantLayer {
                name: node.name.clone(),
                node: i,
                kind,
                input: info.input_shapes[0],
                output: info.output,
                macs: info.macs,
                params: info.params,
                fixed: Some(i) == first_conv || Some(i) == last_linear,
            });
        }
        Ok(layers)
    }

    /// An indicator file for this model with names, MACs, params and `fixed` filled in,
    /// stem and classifier at [`FIXED_BITS`]. The step sizes are placeholders of the right
    /// length: `NaN` for searchable layers, so that a set whose indicators were never filled
    /// in is rejected by the solver, and `1.0` for fixed layers, whose scales the search
    /// does not read.
    pub fn indicator_skeleton(
        &self,
        weight_bits: &[u32],
        act_bits: &[u32],
    ) -> Result<IndicatorSet, ModelError> {
        let layers = self
            .quantizable_layers()?
            .into_iter()
            .map(|l| {
                let fill = if l.fixed { 1.0 } else { f64::NAN };
                Layer {
                    name: l.name,
                    macs: l.macs,
                    params: l.params,
                    weight_scale: vec![fill; weight_bits.len()],
                    act_scale: vec![fill; act_bits.len()],
                    fixed: l.fixed.then_some(FIXED_BITS),
                }
            })
            .collect();
        Ok(IndicatorSet {
            model: self.name.clone(),
            weight_bits: weight_bits.to_vec(),
            act_bits: act_bits.to_vec(),
            layers,
            meta: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `resnet20` with CIFAR data means the 3×32×32 variant; other names and data pass
    /// through to [`Model::resolve`].
    #[test]
    fn resolve_for_data_picks_the_cifar_sibling() {
        let m = Model::resolve_for_data("resnet20", "CIFAR10").unwrap();
        assert_eq!((m.name.as_str(), m.input), ("resnet20-cifar", (3, 32, 32)));
        let m = Model::resolve_for_data("resnet20", "fashion-mnist").unwrap();
        assert_eq!((m.name.as_str(), m.input), ("resnet20", (1, 28, 28)));
        let m = Model::resolve_for_data("small_cnn", "cifar10").unwrap();
        assert_eq!(m.name, "small_cnn");
        let e = Model::resolve_for_data("resnet19", "cifar10").unwrap_err();
        assert!(e.to_string().contains("resnet19"), "{e}");
        // Every name of CIFAR-10 does; an image folder whose path begins with "cifar" is a
        // folder, read at the model's input however its path is spelled.
        for cifar in ["cifar-10", "Cifar_10"] {
            let m = Model::resolve_for_data("resnet20", cifar).unwrap();
            assert_eq!(m.name, "resnet20-cifar", "{cifar}");
        }
        for folder in ["cifarpng", "cifar10-pictures", "./cifarpng"] {
            let m = Model::resolve_for_data("resnet20", folder).unwrap();
            assert_eq!(m.name, "resnet20", "{folder}");
        }
    }
}
