//! The network executor: a [`Model`] and a batch size turned, once, into GPU tensors and
//! ordered op lists; then every training step is one submission.
//!
//! Built once by [`Network::new`]:
//! - parameters (conv weights Kaiming-normal `fan_out`/ReLU as torchvision's ResNets, conv
//!   bias and linear weight/bias U(±1/√fan_in) as PyTorch's defaults, BN γ = 1, β = 0), BN
//!   running statistics (0 and 1), a gradient and a zeroed momentum buffer per parameter;
//! - one activation tensor per node (`Flatten` is a view: it shares its input's tensor) and
//!   one gradient tensor per activation;
//! - the forward list (BN has a train-mode and an eval-mode op), the loss op, the backward
//!   list in reverse node order, and one SGD op per parameter.
//!
//! Gradients of a tensor read by several nodes are summed: the first consumer in backward
//! order overwrites the gradient, later ones accumulate — directly where the kernel can
//! (conv backward-data and GEMM take an accumulate flag; a residual `Add` copies or `Axpy`s
//! its output gradient), otherwise through a scratch tensor of the same length and an `Axpy`.
//!
//! Linear layers are GEMMs (`y = x·Wᵀ`), their bias a rank-1 GEMM `y += 1·bᵀ`, its gradient
//! `db = dyᵀ·1`, so they need no kernels of their own.
//!
//! Batch size is fixed at build. Training drops the incomplete last batch of an epoch;
//! evaluation pads the last batch with zero images and counts only the real rows (eval-mode
//! BN treats every image independently, so padding changes nothing for the real ones).
//!
//! Quantization-aware and joint training (issue 4) use the SAME builder: every conv/linear
//! node reads its input and weight through [`LayerIo`], and a quantization hook
//! (`quantizers.rs`) replaces those with the outputs of LSQ ops recorded just before the
//! layer (a conv instead quantizes its input on load, one conv op per bit-width), sends the
//! layer's weight/input gradients to scratch tensors and appends the LSQ backward after the
//! layer's own backward ops. BN parameters and running statistics are stored per node in
//! [`BnSet`]s, so switchable BN adds sets (one per bit-width) without touching the rest of
//! the graph.
//!
//! Files by concern:
//! - `build.rs`: a model turned into tensors and op lists, the one forward/backward builder
//!   of every layer type;
//! - `quantizers.rs`: the quantization hook (LSQ quantizers, switchable BN, per-layer variant
//!   selection) and the quantization-aware constructor, step-size init and selection;
//! - `run.rs`: recording and submitting training and evaluation passes;
//! - `seg.rs`: the recorder of a pass, which synchronised BN cuts into several submissions;
//! - `state.rs`: parameters, running statistics, momentum and step sizes in and out;
//! - `ops.rs`: the op-list entries the runner records.

mod build;
mod ops;
mod quantizers;
mod run;
mod seg;
mod state;

use std::fmt;

use crate::gpu::{Gpu, GpuError};
use crate::kernels::conv::ConvPolicy;
use crate::kernels::loss::SoftmaxCrossEntropy;
use crate::kernels::optim::Sgd;
use crate::kernels::Tensor;
use crate::model::{Model, ModelError};
use ops::Step;
pub use quantizers::{act_init_scale, LayerSteps, QuantLayerInfo, QuantSpec};

/// Overrides [`GRAD_BUCKET_BYTES`] for every network built after it is set: the bucket size
/// of data-parallel steps in MiB (fractions allowed); `0` exchanges every gradient at once
/// after the backward, as a run without overlap does.
pub const GRAD_BUCKET_ENV: &str = "LIMPQ_GRAD_BUCKET_MB";

/// Bytes of gradients per bucket of a data-parallel step ([`Network::set_grad_bucket_bytes`]):
/// large enough that a bucket's read-back and exchange are not dominated by their fixed
/// costs, small enough that a ResNet-18 (47 MB of gradients) makes several.
pub const GRAD_BUCKET_BYTES: usize = 8 << 20;

fn grad_bucket_bytes_from_env() -> Result<usize, GpuError> {
    match std::env::var(GRAD_BUCKET_ENV) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<f64>() {
            Ok(mb) if mb.is_finite() && mb >= 0.0 => Ok((mb * (1u64 << 20) as f64) as usize),
            _ => Err(GpuError::InvalidOption(format!(
                "{GRAD_BUCKET_ENV}={v:?}: expected a size in MiB, 0 or more"
            ))),
        },
        _ => Ok(GRAD_BUCKET_BYTES),
    }
}

/// Build-time settings of a [`Network`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetworkConfig {
    /// Images per step; fixed for the network's life.
    pub batch: usize,
    /// Seed of the parameter initialisation.
    pub seed: u64,
    /// Label smoothing ε of the training loss.
    pub label_smoothing: f32,
    pub momentum: f32,
    pub nesterov: bool,
    /// Applied to conv and linear weights only (not to biases or BN parameters).
    pub weight_decay: f32,
    /// Clip every gradient element to ±clip before the update.
    pub grad_clip: Option<f32>,
    /// What `ConvAlgo::Auto` means for the network's convs (default: `LIMPQ_CONV_ALGO`,
    /// else the built-in rule); checked against the device when the network is built.
    pub conv: ConvPolicy,
    /// Data-parallel ranks that train one global batch together, `batch` images each (1,
    /// the default: one process). The activation step sizes' gradient scale
    /// `1/sqrt(N·Qp)` counts N over the whole global batch, as one process training it
    /// would: each rank's scale is `1/sqrt(ranks)` of what its own part alone gives. 0 is
    /// taken as 1.
    pub ranks: usize,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            batch: 64,
            seed: 0,
            label_smoothing: 0.0,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
            grad_clip: None,
            conv: ConvPolicy::FromEnv,
            ranks: 1,
        }
    }
}

/// Why a network could not be built or run.
#[derive(Debug)]
#[non_exhaustive]
pub enum EngineError {
    Gpu(GpuError),
    Model(ModelError),
    /// Bad arguments from the caller (batch length, label range, tensor names).
    Input(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Gpu(e) => write!(f, "{e}"),
            EngineError::Model(e) => write!(f, "{e}"),
            EngineError::Input(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EngineError::Gpu(e) => Some(e),
            EngineError::Model(e) => Some(e),
            EngineError::Input(_) => None,
        }
    }
}

impl From<GpuError> for EngineError {
    fn from(e: GpuError) -> Self {
        EngineError::Gpu(e)
    }
}

impl From<ModelError> for EngineError {
    fn from(e: ModelError) -> Self {
        EngineError::Model(e)
    }
}

/// What a parameter is; decides weight decay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Conv or linear weight: weight decay applies.
    Weight,
    Bias,
    BnGamma,
    BnBeta,
    /// LSQ step sizes of a quantizer, one per bit-width variant (no weight decay).
    LsqStep,
}

/// A trainable tensor: name (`conv1.weight`, `bn1.bias`, torchvision style), kind, length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamInfo {
    pub name: String,
    pub kind: ParamKind,
    pub len: usize,
    /// Index of its node in `Model::nodes`.
    pub node: usize,
}

struct Param {
    info: ParamInfo,
    value: usize,
    grad: usize,
    momentum: usize,
}

/// Tensors a conv/linear layer reads. In full precision both are the raw tensors; in a
/// quantization-aware network the weight is a quantized copy, and so is a linear layer's
/// input (a conv reads its raw input and quantizes it on load).
#[derive(Clone, Copy, Debug)]
pub struct LayerIo {
    pub input: usize,
    pub weight: usize,
}

/// One BN parameter set of a node: γ, β (param indices) and running mean/var (tensor ids).
#[derive(Clone, Copy, Debug)]
pub struct BnSet {
    pub gamma: usize,
    pub beta: usize,
    pub running_mean: usize,
    pub running_var: usize,
}

/// Loss and accuracy of one training batch (loss is the batch mean, with label smoothing).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    pub loss: f32,
    pub correct: usize,
}

/// Sums over evaluated images: cross-entropy (no smoothing) and correct predictions.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EvalStats {
    pub loss_sum: f64,
    pub correct: usize,
    pub count: usize,
}

impl EvalStats {
    /// Loss (cross-entropy, no label smoothing) and correct predictions (the first largest
    /// logit) of `logits`, `classes` per image, against `labels`: what
    /// [`Network::eval_batch`] counts of the logits [`Network::eval_logits`] gives.
    pub fn of_logits(
        logits: &[f32],
        labels: &[u32],
        classes: usize,
    ) -> Result<EvalStats, EngineError> {
        if logits.len() != labels.len() * classes {
            return Err(EngineError::Input(format!(
                "eval batch: {} labels for {} images",
                labels.len(),
                logits.len() / classes.max(1)
            )));
        }
        let mut stats = EvalStats {
            count: labels.len(),
            ..EvalStats::default()
        };
        for (row, &label) in logits.chunks_exact(classes.max(1)).zip(labels) {
            let label = label as usize;
            if label >= classes {
                return Err(EngineError::Input(format!(
                    "label {label} out of range for {classes} classes"
                )));
            }
            let mut arg = 0;
            for (j, v) in row.iter().enumerate() {
                if *v > row[arg] {
                    arg = j;
                }
            }
            stats.correct += usize::from(arg == label);
            let max = row[arg] as f64;
            let lse = max
                + row
                    .iter()
                    .map(|v| (*v as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            stats.loss_sum += lse - row[label] as f64;
        }
        Ok(stats)
    }

    pub fn add(&mut self, o: EvalStats) {
        self.loss_sum += o.loss_sum;
        self.correct += o.correct;
        self.count += o.count;
    }
    pub fn accuracy(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.correct as f64 / self.count as f64
        }
    }
    pub fn mean_loss(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.loss_sum / self.count as f64
        }
    }
}

/// A forward op; BN differs between training and evaluation.
enum Fwd {
    Both(Step),
    Mode { train: Step, eval: Step },
}

/// A BN node's batch statistics as its train-mode forward saves them, and which of its
/// sets runs (for [`Network::recalibrate_bn`]).
#[derive(Clone, Copy, Debug)]
struct BnSaved {
    node: usize,
    /// Selection slot of the quantized layer whose variant picks the set; `None`: one set.
    slot: Option<usize>,
    saved_mean: usize,
    saved_invstd: usize,
    /// Values per channel in a batch (N·H·W).
    count: usize,
}

/// A model on the GPU at a fixed batch size.
pub struct Network<'g> {
    gpu: &'g Gpu,
    model: Model,
    cfg: NetworkConfig,
    tensors: Vec<Tensor>,
    /// Input images `[batch, C, H, W]` and labels `[batch]`.
    x: usize,
    labels: usize,
    logits: usize,
    loss: usize,
    correct: usize,
    params: Vec<Param>,
    /// BN running statistics: (name, tensor id).
    running: Vec<(String, usize)>,
    forward: Vec<Fwd>,
    loss_op: SoftmaxCrossEntropy,
    backward: Vec<Step>,
    /// Per node: where its backward ops end in `backward` (its gradients are complete).
    bw_end: Vec<usize>,
    /// Data-parallel steps: gradients are exchanged in buckets of about this many bytes
    /// while the backward goes on ([`Network::set_grad_bucket_bytes`]); 0: all at once
    /// after the backward.
    grad_bucket_bytes: usize,
    sgd: Vec<Sgd>,
    lr: Option<f32>,
    /// Host copy of a padded eval batch.
    pad_x: Vec<f32>,
    /// Layer inputs/weights per conv/linear node and BN sets per BN node (extension points).
    layer_io: Vec<(usize, LayerIo)>,
    bn_sets: Vec<(usize, Vec<BnSet>)>,
    /// Per BN node, what recalibration reads: [`BnSaved`].
    bn_saved: Vec<BnSaved>,
    /// Whether backward ops ADD to the parameter gradients (set by the quantization hook:
    /// several passes of one submission sum), so every training submission clears them first.
    accumulate_grads: bool,
    /// Quantization-aware networks only: quantized layers and per-layer variant selection.
    quant: Option<quantizers::QuantNet>,
    sel: Vec<usize>,
    /// The ranks BN statistics are synchronised over ([`Network::set_bn_sync`]).
    bn_sync: crate::dist::Dist,
}

impl<'g> Network<'g> {
    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    pub fn batch(&self) -> usize {
        self.cfg.batch
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Every trainable tensor, in node order.
    pub fn param_infos(&self) -> Vec<ParamInfo> {
        self.params.iter().map(|p| p.info.clone()).collect()
    }

    /// Conv/linear layers' input and weight tensors, by node index (extension point).
    pub fn layer_io(&self) -> &[(usize, LayerIo)] {
        &self.layer_io
    }

    /// BN parameter sets, by node index (extension point).
    pub fn bn_sets(&self) -> &[(usize, Vec<BnSet>)] {
        &self.bn_sets
    }
}
