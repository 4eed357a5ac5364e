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
//! Extension points for quantization-aware and joint training (issue 4): every conv/linear
//! node reads its input and weight through [`LayerIo`]; a fake-quant hook replaces those
//! with the outputs of LSQ ops recorded just before the layer (a conv instead quantizes
//! its input on load, one conv op per bit-width), and routes the layer's input/weight
//! gradients through the LSQ backward. BN parameters and running statistics
//! are stored per node in [`BnSet`]s, so switchable BN adds sets (one per bit-width)
//! without touching the rest of the graph.

mod ops;
mod quant;

use std::fmt;

use crate::checkpoint::{NamedTensor, TensorKind};
use crate::gpu::{Gpu, GpuError};
use crate::kernels::conv::{Conv2dBackwardBias, ConvPolicy, ConvRule};
use crate::kernels::elementwise::{Add, Axpy, Relu, ReluBackward};
use crate::kernels::gemm::{Gemm, GemmShape};
use crate::kernels::loss::SoftmaxCrossEntropy;
use crate::kernels::norm::{BatchNorm2d, BatchNorm2dBackward, BnMode, BnShape, BnTensors};
use crate::kernels::optim::{Sgd, SgdConfig};
use crate::kernels::pool::{
    AvgPool2d, AvgPool2dBackward, GlobalAvgPool, GlobalAvgPoolBackward, MaxPool2d,
    MaxPool2dBackward, PoolShape,
};
use crate::kernels::{Recorder, Tensor};
use crate::model::{Model, ModelError, NodeInfo, Op, Shape, Source};
use crate::reference::rng::SeededRng;
use crate::shapes::Conv2dShape;
use ops::{at, Step};
pub use quant::{act_init_scale, LayerSteps, QuantLayerInfo, QuantSpec};

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
    sgd: Vec<Sgd>,
    lr: Option<f32>,
    /// Host copy of a padded eval batch.
    pad_x: Vec<f32>,
    /// Layer inputs/weights per conv/linear node and BN sets per BN node (extension points).
    layer_io: Vec<(usize, LayerIo)>,
    bn_sets: Vec<(usize, Vec<BnSet>)>,
    /// Quantization-aware networks only: quantized layers and per-layer variant selection.
    quant: Option<quant::QuantNet>,
    sel: Vec<usize>,
}

fn pool_shape(n: usize, x: Shape, k: usize, stride: usize, pad: usize) -> PoolShape {
    PoolShape {
        n,
        c: x.c,
        h: x.h,
        w: x.w,
        k,
        stride,
        pad,
    }
}

/// Builds a [`Network`]: tensor table, op lists.
struct Builder<'g> {
    gpu: &'g Gpu,
    model: &'g Model,
    infos: Vec<NodeInfo>,
    n: usize,
    tensors: Vec<Tensor>,
    rng: SeededRng,
    params: Vec<Param>,
    running: Vec<(String, usize)>,
    forward: Vec<Fwd>,
    backward: Vec<Step>,
    /// Activation tensor of each node (Flatten shares its input's).
    act: Vec<usize>,
    /// Gradient tensor of each node's activation (shared along Flatten views).
    grad: Vec<usize>,
    /// Whether a gradient tensor already holds a contribution (by tensor id).
    written: Vec<bool>,
    scratch: Vec<(usize, usize)>,
    ones: Option<usize>,
    x: usize,
    layer_io: Vec<(usize, LayerIo)>,
    bn_sets: Vec<(usize, Vec<BnSet>)>,
    /// Per BN node: saved mean and inverse std of the train-mode forward.
    bn_saved: Vec<Option<(usize, usize)>>,
    pool_argmax: Vec<Option<usize>>,
    /// Fake-quantization plan and build state (`None`: full precision).
    quant: Option<quant::QuantBuild>,
    /// The im2col buffer every f16 conv shares (`LIMPQ_CONV_ALGO=f16gemm`), sized for the
    /// largest conv; made on first use.
    col16: Option<usize>,
    /// What `Auto` means for this network's convs ([`NetworkConfig::conv`] on this device).
    conv: ConvRule,
}

impl<'g> Builder<'g> {
    fn tensor(&mut self, t: Result<Tensor, GpuError>) -> Result<usize, GpuError> {
        self.tensors.push(t?);
        self.written.push(false);
        Ok(self.tensors.len() - 1)
    }

    fn zeros(&mut self, len: usize, label: &str) -> Result<usize, GpuError> {
        let t = Tensor::zeros(self.gpu, len, label);
        self.tensor(t)
    }

    fn upload_new(&mut self, data: &[f32], label: &str) -> Result<usize, GpuError> {
        let t = Tensor::from_f32(self.gpu, data, label);
        self.tensor(t)
    }

    fn t(&self, id: usize) -> &Tensor {
        &self.tensors[id]
    }

    fn param(
        &mut self,
        node: usize,
        name: String,
        kind: ParamKind,
        init: Vec<f32>,
    ) -> Result<usize, GpuError> {
        let len = init.len();
        let value = self.upload_new(&init, &name)?;
        let grad = self.zeros(len, &format!("{name}.grad"))?;
        let momentum = self.zeros(len, &format!("{name}.momentum"))?;
        self.params.push(Param {
            info: ParamInfo {
                name,
                kind,
                len,
                node,
            },
            value,
            grad,
            momentum,
        });
        Ok(self.params.len() - 1)
    }

    fn pv(&self, p: usize) -> &Tensor {
        &self.tensors[self.params[p].value]
    }

    fn pg(&self, p: usize) -> &Tensor {
        &self.tensors[self.params[p].grad]
    }

    fn ones(&mut self) -> Result<usize, GpuError> {
        if let Some(id) = self.ones {
            return Ok(id);
        }
        let id = self.upload_new(&vec![1.0; self.n], "ones")?;
        self.ones = Some(id);
        Ok(id)
    }

    fn scratch(&mut self, len: usize) -> Result<usize, GpuError> {
        if let Some(&(_, id)) = self.scratch.iter().find(|(l, _)| *l == len) {
            return Ok(id);
        }
        let id = self.zeros(len, "grad scratch")?;
        self.scratch.push((len, id));
        Ok(id)
    }

    fn src_act(&self, s: Source) -> usize {
        match s {
            Source::Input => self.x,
            Source::Node(j) => self.act[j],
        }
    }

    /// Where a backward op that overwrites its output writes the gradient for source `s`,
    /// and the Axpy that must follow when it went to scratch. `None`: the model input.
    fn dx_target(&mut self, s: Source) -> Result<Option<(usize, Option<Axpy>)>, GpuError> {
        let Source::Node(j) = s else { return Ok(None) };
        let g = self.grad[j];
        if !self.written[g] {
            self.written[g] = true;
            return Ok(Some((g, None)));
        }
        let tmp = self.scratch(self.tensors[g].len())?;
        let axpy = Axpy::new(self.gpu, self.t(tmp), self.t(g), 1.0)?;
        Ok(Some((tmp, Some(axpy))))
    }

    /// For ops that can accumulate: the gradient tensor of `s` and whether to accumulate.
    fn dx_accumulate(&mut self, s: Source) -> Option<(usize, bool)> {
        let Source::Node(j) = s else { return None };
        let g = self.grad[j];
        let acc = self.written[g];
        self.written[g] = true;
        Some((g, acc))
    }

    fn fwd(&mut self, s: Step) {
        self.forward.push(Fwd::Both(s));
    }

    fn bwd(&mut self, s: Step) {
        self.backward.push(s);
    }

    fn finish_dx(&mut self, axpy: Option<Axpy>) {
        if let Some(a) = axpy {
            self.bwd(Step::op(a));
        }
    }

    fn conv_shape(&self, i: usize) -> Option<Conv2dShape> {
        let info = &self.infos[i];
        let x = info.input_shapes[0];
        match self.model.nodes[i].op {
            Op::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                groups,
                ..
            } => Some(Conv2dShape::square(
                self.n,
                x.c,
                x.h,
                x.w,
                out_channels,
                kernel,
                stride,
                padding,
                groups,
            )),
            _ => None,
        }
    }

    /// Forward ops, parameters and saved tensors of node `i`.
    fn build_forward(&mut self, i: usize) -> Result<(), GpuError> {
        let node = &self.model.nodes[i];
        let name = node.name.as_str();
        let info = self.infos[i].clone();
        let out_len = self.n * info.output.numel();
        let xs: Vec<usize> = info.inputs.iter().map(|&s| self.src_act(s)).collect();
        let x = xs[0];
        let xshape = info.input_shapes[0];
        let hw = xshape.h * xshape.w;
        let y = if matches!(node.op, Op::Flatten) {
            x
        } else {
            self.zeros(out_len, name)?
        };
        self.act.push(y);
        match node.op {
            Op::Conv2d { kernel, bias, .. } => {
                let s = self.conv_shape(i).unwrap_or_else(|| unreachable!());
                let fan_out = (s.c_out * kernel * kernel) as f32;
                let std = (2.0 / fan_out).sqrt();
                let w: Vec<f32> = (0..s.weight_len())
                    .map(|_| self.rng.normal() * std)
                    .collect();
                let wp = self.param(i, format!("{name}.weight"), ParamKind::Weight, w)?;
                let bp = if bias {
                    let bound = 1.0 / ((s.c_in / s.groups * kernel * kernel) as f32).sqrt();
                    let b = self.rng.vec_uniform(s.c_out, -bound, bound);
                    Some(self.param(i, format!("{name}.bias"), ParamKind::Bias, b)?)
                } else {
                    None
                };
                let io = LayerIo {
                    input: x,
                    weight: self.params[wp].value,
                };
                let io = self.quant_io(i, io, wp)?;
                self.layer_io.push((i, io));
                let step = self.conv_forward_step(i, &s, io, bp, y)?;
                self.fwd(step);
            }
            Op::Linear { out_features, bias } => {
                let in_f = xshape.numel();
                let bound = 1.0 / (in_f as f32).sqrt();
                let w = self.rng.vec_uniform(out_features * in_f, -bound, bound);
                let wp = self.param(i, format!("{name}.weight"), ParamKind::Weight, w)?;
                let io = LayerIo {
                    input: x,
                    weight: self.params[wp].value,
                };
                let io = self.quant_io(i, io, wp)?;
                self.layer_io.push((i, io));
                let shape = GemmShape::new(self.n, in_f, out_features).trans_b(true);
                let op = Gemm::new(
                    self.gpu,
                    shape,
                    self.t(io.input),
                    self.t(io.weight),
                    self.t(y),
                );
                self.fwd(Step::op(at(name, op)?));
                if bias {
                    let b = self.rng.vec_uniform(out_features, -bound, bound);
                    let bp = self.param(i, format!("{name}.bias"), ParamKind::Bias, b)?;
                    let ones = self.ones()?;
                    let shape = GemmShape::new(self.n, 1, out_features).accumulate(true);
                    let op = Gemm::new(self.gpu, shape, self.t(ones), self.pv(bp), self.t(y));
                    self.fwd(Step::op(at(name, op)?));
                }
            }
            Op::BatchNorm if self.quant.is_some() => self.quant_bn_forward(i, x, y, xshape)?,
            Op::BatchNorm => {
                let c = xshape.c;
                let gamma = self.param(
                    i,
                    format!("{name}.weight"),
                    ParamKind::BnGamma,
                    vec![1.0; c],
                )?;
                let beta =
                    self.param(i, format!("{name}.bias"), ParamKind::BnBeta, vec![0.0; c])?;
                let rm = self.zeros(c, &format!("{name}.running_mean"))?;
                let rv = self.upload_new(&vec![1.0; c], &format!("{name}.running_var"))?;
                self.running.push((format!("{name}.running_mean"), rm));
                self.running.push((format!("{name}.running_var"), rv));
                let set = BnSet {
                    gamma,
                    beta,
                    running_mean: rm,
                    running_var: rv,
                };
                self.bn_sets.push((i, vec![set]));
                let sm = self.zeros(c, &format!("{name}.saved_mean"))?;
                let si = self.zeros(c, &format!("{name}.saved_invstd"))?;
                self.bn_saved[i] = Some((sm, si));
                let shape = BnShape::new(self.n, c, hw);
                let bt = BnTensors {
                    gamma: self.pv(gamma),
                    beta: self.pv(beta),
                    running_mean: self.t(rm),
                    running_var: self.t(rv),
                    saved_mean: self.t(sm),
                    saved_invstd: self.t(si),
                };
                let train =
                    BatchNorm2d::new(self.gpu, shape, self.t(x), self.t(y), &bt, BnMode::Train);
                let eval =
                    BatchNorm2d::new(self.gpu, shape, self.t(x), self.t(y), &bt, BnMode::Eval);
                self.forward.push(Fwd::Mode {
                    train: Step::op(at(name, train)?),
                    eval: Step::op(at(name, eval)?),
                });
            }
            Op::Relu | Op::Relu6 => {
                let cap = matches!(node.op, Op::Relu6).then_some(6.0);
                let op = Relu::new(self.gpu, self.t(x), self.t(y), cap);
                self.fwd(Step::op(at(name, op)?));
            }
            Op::Add => {
                let op = Add::new(self.gpu, self.t(xs[0]), self.t(xs[1]), self.t(y));
                self.fwd(Step::op(at(name, op)?));
                for &more in &xs[2..] {
                    let op = Axpy::new(self.gpu, self.t(more), self.t(y), 1.0);
                    self.fwd(Step::op(at(name, op)?));
                }
            }
            Op::MaxPool {
                kernel,
                stride,
                padding,
            } => {
                let shape = pool_shape(self.n, xshape, kernel, stride, padding);
                let arg =
                    self.tensor(Tensor::zeros(self.gpu, out_len, &format!("{name}.argmax")))?;
                self.pool_argmax[i] = Some(arg);
                let op = MaxPool2d::new(self.gpu, shape, self.t(x), self.t(y), self.t(arg));
                self.fwd(Step::op(at(name, op)?));
            }
            Op::AvgPool {
                kernel,
                stride,
                padding,
            } => {
                let shape = pool_shape(self.n, xshape, kernel, stride, padding);
                let op = AvgPool2d::new(self.gpu, shape, self.t(x), self.t(y));
                self.fwd(Step::op(at(name, op)?));
            }
            Op::GlobalAvgPool => {
                let op = GlobalAvgPool::new(self.gpu, self.n, xshape.c, hw, self.t(x), self.t(y));
                self.fwd(Step::op(at(name, op)?));
            }
            Op::Flatten => {}
        }
        Ok(())
    }

    /// Backward ops of node `i`; `dy` is its output gradient.
    fn build_backward(&mut self, i: usize, dy: usize) -> Result<(), GpuError> {
        let node = &self.model.nodes[i];
        let name = node.name.as_str();
        let info = self.infos[i].clone();
        let src = info.inputs[0];
        let x = self.src_act(src);
        let xshape = info.input_shapes[0];
        let hw = xshape.h * xshape.w;
        let my_params: Vec<usize> = (0..self.params.len())
            .filter(|&p| self.params[p].info.node == i)
            .collect();
        if self.quant.is_some()
            && matches!(
                node.op,
                Op::Conv2d { .. } | Op::Linear { .. } | Op::BatchNorm
            )
        {
            return self.quant_backward(i, dy, &my_params);
        }
        match node.op {
            Op::Conv2d { .. } => {
                let s = self.conv_shape(i).unwrap_or_else(|| unreachable!());
                let io = self.layer_io.iter().find(|(n, _)| *n == i).map(|p| p.1);
                let io = io.unwrap_or_else(|| unreachable!());
                let wp = my_params[0];
                let op = self.conv.backward_weight(
                    self.gpu,
                    &s,
                    self.t(io.input),
                    self.t(dy),
                    self.pg(wp),
                    false,
                    None,
                );
                self.bwd(Step::op(at(name, op)?));
                if let Some(&bp) = my_params.get(1) {
                    let op = Conv2dBackwardBias::new(self.gpu, &s, self.t(dy), self.pg(bp), false);
                    self.bwd(Step::op(at(name, op)?));
                }
                if let Some((g, acc)) = self.dx_accumulate(src) {
                    let op = self.conv.backward_data(
                        self.gpu,
                        &s,
                        self.t(dy),
                        self.t(io.weight),
                        self.t(g),
                        acc,
                    );
                    self.bwd(Step::op(at(name, op)?));
                }
            }
            Op::Linear { out_features, .. } => {
                let in_f = xshape.numel();
                let io = self.layer_io.iter().find(|(n, _)| *n == i).map(|p| p.1);
                let io = io.unwrap_or_else(|| unreachable!());
                // dW [out, in] = dyᵀ [out × n] · x [n × in]
                let shape = GemmShape::new(out_features, self.n, in_f).trans_a(true);
                let op = Gemm::new(
                    self.gpu,
                    shape,
                    self.t(dy),
                    self.t(io.input),
                    self.pg(my_params[0]),
                );
                self.bwd(Step::op(at(name, op)?));
                if let Some(&bp) = my_params.get(1) {
                    let ones = self.ones()?;
                    // db [out × 1] = dyᵀ [out × n] · 1 [n × 1]
                    let shape = GemmShape::new(out_features, self.n, 1).trans_a(true);
                    let op = Gemm::new(self.gpu, shape, self.t(dy), self.t(ones), self.pg(bp));
                    self.bwd(Step::op(at(name, op)?));
                }
                if let Some((g, acc)) = self.dx_accumulate(src) {
                    // dx [n × in] = dy [n × out] · W [out × in]
                    let shape = GemmShape::new(self.n, out_features, in_f).accumulate(acc);
                    let op = Gemm::new(self.gpu, shape, self.t(dy), self.t(io.weight), self.t(g));
                    self.bwd(Step::op(at(name, op)?));
                }
            }
            Op::BatchNorm => {
                let (sm, si) = self.bn_saved[i].unwrap_or_else(|| unreachable!());
                let (gamma, beta) = (my_params[0], my_params[1]);
                let shape = BnShape::new(self.n, xshape.c, hw);
                // BN's input is always a node (a model input needs no gradient, but BN
                // backward also yields dγ, dβ): write dx to scratch when it is the input.
                let target = self.dx_target(src)?;
                let (dx, axpy) = match target {
                    Some(t) => t,
                    None => (self.scratch(self.n * xshape.numel())?, None),
                };
                let (rm, rv) = {
                    let set = &self
                        .bn_sets
                        .iter()
                        .find(|(n, _)| *n == i)
                        .unwrap_or_else(|| unreachable!())
                        .1[0];
                    (set.running_mean, set.running_var)
                };
                let bt = BnTensors {
                    gamma: self.pv(gamma),
                    beta: self.pv(beta),
                    running_mean: self.t(rm),
                    running_var: self.t(rv),
                    saved_mean: self.t(sm),
                    saved_invstd: self.t(si),
                };
                let op = BatchNorm2dBackward::new(
                    self.gpu,
                    shape,
                    self.t(x),
                    self.t(dy),
                    self.t(dx),
                    &bt,
                    self.pg(gamma),
                    self.pg(beta),
                );
                self.bwd(Step::op(at(name, op)?));
                self.finish_dx(axpy);
            }
            Op::Relu | Op::Relu6 => {
                let cap = matches!(node.op, Op::Relu6).then_some(6.0);
                if let Some((dx, axpy)) = self.dx_target(src)? {
                    let op = ReluBackward::new(self.gpu, self.t(x), self.t(dy), self.t(dx), cap);
                    self.bwd(Step::op(at(name, op)?));
                    self.finish_dx(axpy);
                }
            }
            Op::Add => {
                for &s in &info.inputs {
                    let Source::Node(j) = s else { continue };
                    let g = self.grad[j];
                    if self.written[g] {
                        let op = Axpy::new(self.gpu, self.t(dy), self.t(g), 1.0);
                        self.bwd(Step::op(at(name, op)?));
                    } else {
                        self.written[g] = true;
                        self.bwd(Step::Copy(dy, g));
                    }
                }
            }
            Op::MaxPool {
                kernel,
                stride,
                padding,
            } => {
                let shape = pool_shape(self.n, xshape, kernel, stride, padding);
                let arg = self.pool_argmax[i].unwrap_or_else(|| unreachable!());
                if let Some((dx, axpy)) = self.dx_target(src)? {
                    let op = MaxPool2dBackward::new(
                        self.gpu,
                        shape,
                        self.t(arg),
                        self.t(dy),
                        self.t(dx),
                    );
                    self.bwd(Step::op(at(name, op)?));
                    self.finish_dx(axpy);
                }
            }
            Op::AvgPool {
                kernel,
                stride,
                padding,
            } => {
                let shape = pool_shape(self.n, xshape, kernel, stride, padding);
                if let Some((dx, axpy)) = self.dx_target(src)? {
                    let op = AvgPool2dBackward::new(self.gpu, shape, self.t(dy), self.t(dx));
                    self.bwd(Step::op(at(name, op)?));
                    self.finish_dx(axpy);
                }
            }
            Op::GlobalAvgPool => {
                if let Some((dx, axpy)) = self.dx_target(src)? {
                    let op = GlobalAvgPoolBackward::new(
                        self.gpu,
                        self.n,
                        xshape.c,
                        hw,
                        self.t(dy),
                        self.t(dx),
                    );
                    self.bwd(Step::op(at(name, op)?));
                    self.finish_dx(axpy);
                }
            }
            // A view: its gradient tensor is its input's, filled by its consumers.
            Op::Flatten => {}
        }
        Ok(())
    }
}

impl<'g> Network<'g> {
    /// Check `model`, allocate every tensor for `cfg.batch` images and build all ops.
    pub fn new(
        gpu: &'g Gpu,
        model: &Model,
        cfg: NetworkConfig,
    ) -> Result<Network<'g>, EngineError> {
        Self::build(gpu, model, cfg, None)
    }

    fn build(
        gpu: &'g Gpu,
        model: &Model,
        cfg: NetworkConfig,
        quant: Option<quant::QuantBuild>,
    ) -> Result<Network<'g>, EngineError> {
        let infos = model.analyze()?;
        if cfg.batch == 0 {
            return Err(EngineError::Input("batch size must be positive".into()));
        }
        let n = cfg.batch;
        let (c, h, w) = model.input;
        let count = model.nodes.len();
        let conv = cfg.conv.rule(gpu)?;
        let mut b = Builder {
            gpu,
            conv,
            model,
            infos,
            n,
            tensors: Vec::new(),
            rng: SeededRng::new(cfg.seed),
            params: Vec::new(),
            running: Vec::new(),
            forward: Vec::new(),
            backward: Vec::new(),
            act: Vec::with_capacity(count),
            grad: vec![usize::MAX; count],
            written: Vec::new(),
            scratch: Vec::new(),
            ones: None,
            x: 0,
            layer_io: Vec::new(),
            bn_sets: Vec::new(),
            bn_saved: vec![None; count],
            pool_argmax: vec![None; count],
            quant,
            col16: None,
        };
        b.x = b.zeros(n * c * h * w, "input")?;
        let labels = b.tensor(Tensor::zeros(gpu, n, "labels"))?;
        for i in 0..count {
            b.build_forward(i)?;
        }
        let logits = b.act[count - 1];
        let dlogits = b.zeros(n * model.classes, "dlogits")?;
        let loss = b.zeros(1, "loss")?;
        let correct = b.zeros(1, "correct")?;
        let loss_op = SoftmaxCrossEntropy::new(
            gpu,
            n,
            model.classes,
            &b.tensors[logits],
            &b.tensors[labels],
            &b.tensors[dlogits],
            &b.tensors[loss],
            &b.tensors[correct],
            cfg.label_smoothing,
        )?;
        // Gradient tensors: the logits' is dlogits; a Flatten shares its input's.
        for i in 0..count {
            b.grad[i] = if i == count - 1 {
                dlogits
            } else if let (Op::Flatten, Source::Node(j)) =
                (&model.nodes[i].op, b.infos[i].inputs[0])
            {
                b.grad[j]
            } else if matches!(model.nodes[i].op, Op::Flatten) {
                // Flatten of the model input: nothing upstream needs a gradient.
                b.zeros(b.tensors[b.act[i]].len(), "grad (input view)")?
            } else {
                let len = b.tensors[b.act[i]].len();
                b.zeros(len, &format!("{}.grad", model.nodes[i].name))?
            };
        }
        if let Some(&g) = b.grad.last() {
            b.written[g] = true;
        }
        for i in (0..count).rev() {
            let dy = b.grad[i];
            b.build_backward(i, dy)?;
        }
        let quant = b.quant.take().map(quant::QuantBuild::finish);
        let sel = vec![0; quant.as_ref().map_or(0, |q| q.layers.len())];
        let mut sgd = Vec::with_capacity(b.params.len());
        for p in &b.params {
            let decay = if p.info.kind == ParamKind::Weight {
                cfg.weight_decay
            } else {
                0.0
            };
            let conf = SgdConfig {
                momentum: cfg.momentum,
                nesterov: cfg.nesterov,
                weight_decay: decay,
                clip: cfg.grad_clip,
            };
            let op = Sgd::new(
                gpu,
                &b.tensors[p.value],
                &b.tensors[p.grad],
                &b.tensors[p.momentum],
                conf,
            );
            sgd.push(at(&p.info.name, op)?);
        }
        Ok(Network {
            gpu,
            model: model.clone(),
            cfg,
            x: b.x,
            labels,
            logits,
            loss,
            correct,
            params: b.params,
            running: b.running,
            forward: b.forward,
            loss_op,
            backward: b.backward,
            sgd,
            lr: None,
            pad_x: Vec::new(),
            layer_io: b.layer_io,
            bn_sets: b.bn_sets,
            tensors: b.tensors,
            quant,
            sel,
        })
    }

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

    /// Number of kernel dispatches of one training step (forward, loss, backward, SGD).
    pub fn train_dispatches(&self) -> usize {
        let mut rec = Recorder::new(self.gpu);
        self.record_train(&mut rec, true, &self.sel);
        rec.dispatches()
    }

    /// Record one op-list entry; `sel[slot]` picks the variant of a quantized layer's ops.
    fn step<'a>(&'a self, s: &'a Step, rec: &mut Recorder<'a>, sel: &[usize]) {
        match s {
            Step::Op(op) => op.record(rec),
            Step::Copy(a, b) => rec.copy(&self.tensors[*a], &self.tensors[*b]),
            Step::Pick { slot, variants } => {
                let k = sel.get(*slot).copied().unwrap_or(0);
                if let Some(v) = variants.get(k).or_else(|| variants.first()) {
                    for s in v {
                        self.step(s, rec, sel);
                    }
                }
            }
        }
    }

    fn record_forward<'a>(&'a self, rec: &mut Recorder<'a>, train: bool, sel: &[usize]) {
        for f in &self.forward {
            self.record_fwd(f, rec, train, sel);
        }
    }

    fn record_fwd<'a>(&'a self, f: &'a Fwd, rec: &mut Recorder<'a>, train: bool, sel: &[usize]) {
        match f {
            Fwd::Both(s) => self.step(s, rec, sel),
            Fwd::Mode { train: t, eval: e } => self.step(if train { t } else { e }, rec, sel),
        }
    }

    fn record_train<'a>(&'a self, rec: &mut Recorder<'a>, update: bool, sel: &[usize]) {
        // Quantization-aware backward ops accumulate into parameter gradients (several
        // passes per step): start from zero.
        if self.quant.is_some() {
            for p in &self.params {
                rec.clear(&self.tensors[p.grad]);
            }
        }
        self.record_forward(rec, true, sel);
        self.loss_op.record(rec);
        for s in &self.backward {
            self.step(s, rec, sel);
        }
        if update {
            for op in &self.sgd {
                op.record(rec);
            }
        }
    }

    fn upload(&mut self, x: &[f32], y: &[u32]) -> Result<(), EngineError> {
        let (c, h, w) = self.model.input;
        let per = c * h * w;
        let n = self.cfg.batch;
        if x.len() != n * per || y.len() != n {
            return Err(EngineError::Input(format!(
                "batch of {} labels and {} values; this network takes {n} images of {c}×{h}×{w} ({} values)",
                y.len(),
                x.len(),
                n * per
            )));
        }
        if let Some(bad) = y.iter().find(|&&l| l as usize >= self.model.classes) {
            return Err(EngineError::Input(format!(
                "label {bad} out of range for {} classes",
                self.model.classes
            )));
        }
        self.tensors[self.x].write_f32(self.gpu, x)?;
        self.tensors[self.labels].write_u32(self.gpu, y)?;
        Ok(())
    }

    fn run_train(&mut self, x: &[f32], y: &[u32], update: bool) -> Result<StepStats, EngineError> {
        self.upload(x, y)?;
        let mut rec = Recorder::new(self.gpu);
        self.record_train(&mut rec, update, &self.sel);
        let l = rec.read(&self.tensors[self.loss]);
        let c = rec.read(&self.tensors[self.correct]);
        let out = rec.submit()?;
        let loss = out.f32(l).first().copied().unwrap_or(f32::NAN);
        let correct = out.f32(c).first().copied().unwrap_or(0.0);
        Ok(StepStats {
            loss,
            correct: correct.max(0.0).round() as usize,
        })
    }

    /// One SGD step at learning rate `lr` on a full batch: forward (train-mode BN, running
    /// statistics updated), loss, backward and the update in ONE submission; reads back only
    /// the loss and the number of correct predictions.
    pub fn train_step(&mut self, x: &[f32], y: &[u32], lr: f32) -> Result<StepStats, EngineError> {
        if self.lr != Some(lr) {
            for op in &mut self.sgd {
                op.set_lr(self.gpu, lr);
            }
            self.lr = Some(lr);
        }
        self.run_train(x, y, true)
    }

    /// Forward and backward without the update: fills every parameter gradient (read them
    /// with [`Network::read_grads`]). Train-mode BN: running statistics are updated.
    pub fn forward_backward(&mut self, x: &[f32], y: &[u32]) -> Result<StepStats, EngineError> {
        self.run_train(x, y, false)
    }

    /// Train-mode loss only (forward + loss; running statistics are updated).
    pub fn train_loss(&mut self, x: &[f32], y: &[u32]) -> Result<f32, EngineError> {
        self.upload(x, y)?;
        let mut rec = Recorder::new(self.gpu);
        self.record_forward(&mut rec, true, &self.sel);
        self.loss_op.record(&mut rec);
        let l = rec.read(&self.tensors[self.loss]);
        let out = rec.submit()?;
        Ok(out.f32(l).first().copied().unwrap_or(f32::NAN))
    }

    /// Eval-mode forward (running statistics) of up to `batch` images; returns the logits of
    /// the real images, `[k, classes]`. A short batch is padded with zero images.
    pub fn eval_logits(&mut self, x: &[f32]) -> Result<Vec<f32>, EngineError> {
        let (c, h, w) = self.model.input;
        let per = c * h * w;
        let n = self.cfg.batch;
        if x.is_empty() || x.len() % per != 0 || x.len() / per > n {
            return Err(EngineError::Input(format!(
                "eval batch of {} values: expected 1 to {n} images of {c}×{h}×{w}",
                x.len()
            )));
        }
        let k = x.len() / per;
        if k == n {
            self.tensors[self.x].write_f32(self.gpu, x)?;
        } else {
            self.pad_x.clear();
            self.pad_x.extend_from_slice(x);
            self.pad_x.resize(n * per, 0.0);
            self.tensors[self.x].write_f32(self.gpu, &self.pad_x)?;
        }
        let mut rec = Recorder::new(self.gpu);
        self.record_forward(&mut rec, false, &self.sel);
        let l = rec.read(&self.tensors[self.logits]);
        let out = rec.submit()?;
        let classes = self.model.classes;
        Ok(out.f32(l)[..k * classes].to_vec())
    }

    /// Eval-mode loss (no label smoothing) and accuracy of up to `batch` images.
    pub fn eval_batch(&mut self, x: &[f32], y: &[u32]) -> Result<EvalStats, EngineError> {
        let logits = self.eval_logits(x)?;
        let classes = self.model.classes;
        if logits.len() != y.len() * classes {
            return Err(EngineError::Input(format!(
                "eval batch: {} labels for {} images",
                y.len(),
                logits.len() / classes
            )));
        }
        let mut stats = EvalStats {
            count: y.len(),
            ..EvalStats::default()
        };
        for (row, &label) in logits.chunks_exact(classes).zip(y) {
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

    fn read_many(&self, ids: &[usize]) -> Result<Vec<Vec<f32>>, EngineError> {
        let mut rec = Recorder::new(self.gpu);
        let idx: Vec<usize> = ids.iter().map(|&t| rec.read(&self.tensors[t])).collect();
        let out = rec.submit()?;
        Ok(idx.iter().map(|&i| out.f32(i).to_vec()).collect())
    }

    /// Current parameter values, in [`Network::param_infos`] order.
    pub fn read_params(&self) -> Result<Vec<Vec<f32>>, EngineError> {
        self.read_many(&self.params.iter().map(|p| p.value).collect::<Vec<_>>())
    }

    /// Gradients of the last [`Network::forward_backward`] / [`Network::train_step`].
    pub fn read_grads(&self) -> Result<Vec<Vec<f32>>, EngineError> {
        self.read_many(&self.params.iter().map(|p| p.grad).collect::<Vec<_>>())
    }

    /// Overwrite one parameter by name.
    pub fn set_param(&mut self, name: &str, data: &[f32]) -> Result<(), EngineError> {
        let p = self
            .params
            .iter()
            .find(|p| p.info.name == name)
            .ok_or_else(|| EngineError::Input(format!("no parameter named '{name}'")))?;
        if data.len() != p.info.len {
            return Err(EngineError::Input(format!(
                "parameter '{name}': {} values given, it has {}",
                data.len(),
                p.info.len
            )));
        }
        self.tensors[p.value].write_f32(self.gpu, data)?;
        Ok(())
    }

    /// Parameters, BN running statistics and momentum buffers, named for a checkpoint.
    pub fn export_state(&self) -> Result<Vec<NamedTensor>, EngineError> {
        let mut ids = Vec::new();
        let mut meta = Vec::new();
        for p in &self.params {
            ids.push(p.value);
            meta.push((p.info.name.clone(), TensorKind::Param));
        }
        for (name, t) in &self.running {
            ids.push(*t);
            meta.push((name.clone(), TensorKind::RunningStat));
        }
        for p in &self.params {
            ids.push(p.momentum);
            meta.push((format!("{}.momentum", p.info.name), TensorKind::Momentum));
        }
        let data = self.read_many(&ids)?;
        Ok(meta
            .into_iter()
            .zip(data)
            .map(|((name, kind), data)| NamedTensor { name, kind, data })
            .collect())
    }

    /// Load tensors by name. Every parameter and running statistic must be present with the
    /// right length; momentum buffers are loaded when present and `with_momentum`, else zeroed.
    pub fn import_state(
        &mut self,
        tensors: &[NamedTensor],
        with_momentum: bool,
    ) -> Result<(), EngineError> {
        let find = |name: &str, kind: TensorKind| {
            tensors.iter().find(|t| t.kind == kind && t.name == name)
        };
        let mut writes: Vec<(usize, String, &[f32])> = Vec::new();
        let zeros: Vec<Vec<f32>> = self.params.iter().map(|p| vec![0.0; p.info.len]).collect();
        for (p, z) in self.params.iter().zip(&zeros) {
            let t = find(&p.info.name, TensorKind::Param).ok_or_else(|| {
                EngineError::Input(format!("missing parameter '{}'", p.info.name))
            })?;
            writes.push((p.value, p.info.name.clone(), &t.data));
            let m = if with_momentum {
                find(&format!("{}.momentum", p.info.name), TensorKind::Momentum)
            } else {
                None
            };
            let name = format!("{}.momentum", p.info.name);
            writes.push((
                p.momentum,
                name,
                m.map_or(z.as_slice(), |m| m.data.as_slice()),
            ));
        }
        for (name, id) in &self.running {
            let t = find(name, TensorKind::RunningStat)
                .ok_or_else(|| EngineError::Input(format!("missing running statistic '{name}'")))?;
            writes.push((*id, name.clone(), &t.data));
        }
        for (id, name, data) in &writes {
            if data.len() != self.tensors[*id].len() {
                return Err(EngineError::Input(format!(
                    "tensor '{name}': {} values stored, the model needs {}",
                    data.len(),
                    self.tensors[*id].len()
                )));
            }
        }
        for (id, _, data) in writes {
            self.tensors[id].write_f32(self.gpu, data)?;
        }
        Ok(())
    }
}
