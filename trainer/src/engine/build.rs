//! A [`Model`] turned into a [`Network`]: parameters, activation and gradient tensors, and
//! the forward, backward and SGD op lists — one builder per layer type for both precisions;
//! the quantization hook (`quantizers.rs`) plugs into the conv, linear and BN builders.

use super::ops::{at, Step};
use super::quantizers::{QuantBuild, Variant};
use super::{
    BnSet, EngineError, Fwd, LayerIo, Network, NetworkConfig, Param, ParamInfo, ParamKind,
};
use crate::gpu::{Gpu, GpuError};
use crate::kernels::conv::{Conv2dBackwardBias, ConvRule};
use crate::kernels::conv_f16::Conv2dForwardHalf;
use crate::kernels::elementwise::{Add, Axpy, Relu, ReluBackward};
use crate::kernels::gemm::{Gemm, GemmShape};
use crate::kernels::loss::SoftmaxCrossEntropy;
use crate::kernels::norm::{BatchNorm2d, BatchNorm2dBackward, BnMode, BnShape, BnTensors};
use crate::kernels::optim::{Sgd, SgdConfig};
use crate::kernels::pool::{
    AvgPool2d, AvgPool2dBackward, GlobalAvgPool, GlobalAvgPoolBackward, MaxPool2d,
    MaxPool2dBackward, PoolShape,
};
use crate::kernels::Tensor;
use crate::model::{Model, NodeInfo, Op, Shape, Source};
use crate::reference::rng::SeededRng;
use crate::shapes::Conv2dShape;

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
pub(super) struct Builder<'g> {
    pub(super) gpu: &'g Gpu,
    pub(super) model: &'g Model,
    pub(super) infos: Vec<NodeInfo>,
    /// Per node, whether its activation quantizer is signed ([`Model::act_signs`]).
    pub(super) act_signs: Vec<bool>,
    pub(super) n: usize,
    /// [`NetworkConfig::ranks`], at least 1.
    pub(super) ranks: usize,
    pub(super) tensors: Vec<Tensor>,
    pub(super) rng: SeededRng,
    pub(super) params: Vec<Param>,
    pub(super) running: Vec<(String, usize)>,
    pub(super) forward: Vec<Fwd>,
    pub(super) backward: Vec<Step>,
    /// Per node: the length of `backward` once that node's backward ops are in it (its
    /// parameters' gradients are complete there: every one is written by its own node).
    pub(super) bw_end: Vec<usize>,
    /// Activation tensor of each node (Flatten shares its input's).
    pub(super) act: Vec<usize>,
    /// Gradient tensor of each node's activation (shared along Flatten views).
    pub(super) grad: Vec<usize>,
    /// Whether a gradient tensor already holds a contribution (by tensor id).
    pub(super) written: Vec<bool>,
    pub(super) scratch: Vec<(usize, usize)>,
    pub(super) ones: Option<usize>,
    pub(super) x: usize,
    pub(super) layer_io: Vec<(usize, LayerIo)>,
    pub(super) bn_sets: Vec<(usize, Vec<BnSet>)>,
    /// Per BN node: saved mean and inverse std of the train-mode forward.
    pub(super) bn_saved: Vec<Option<(usize, usize)>>,
    pub(super) pool_argmax: Vec<Option<usize>>,
    /// Fake-quantization plan and build state (`None`: full precision).
    pub(super) quant: Option<QuantBuild>,
    /// The im2col buffer every f16 conv shares (`LIMPQ_CONV_ALGO=f16gemm`), sized for the
    /// largest conv; made on first use.
    pub(super) col16: Option<usize>,
    /// What `Auto` means for this network's convs ([`NetworkConfig::conv`] on this device).
    pub(super) conv: ConvRule,
}

impl<'g> Builder<'g> {
    pub(super) fn tensor(&mut self, t: Result<Tensor, GpuError>) -> Result<usize, GpuError> {
        self.tensors.push(t?);
        self.written.push(false);
        Ok(self.tensors.len() - 1)
    }

    pub(super) fn zeros(&mut self, len: usize, label: &str) -> Result<usize, GpuError> {
        let t = Tensor::zeros(self.gpu, len, label);
        self.tensor(t)
    }

    pub(super) fn upload_new(&mut self, data: &[f32], label: &str) -> Result<usize, GpuError> {
        let t = Tensor::from_f32(self.gpu, data, label);
        self.tensor(t)
    }

    pub(super) fn t(&self, id: usize) -> &Tensor {
        &self.tensors[id]
    }

    pub(super) fn param(
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

    pub(super) fn pv(&self, p: usize) -> &Tensor {
        &self.tensors[self.params[p].value]
    }

    pub(super) fn pg(&self, p: usize) -> &Tensor {
        &self.tensors[self.params[p].grad]
    }

    pub(super) fn ones(&mut self) -> Result<usize, GpuError> {
        if let Some(id) = self.ones {
            return Ok(id);
        }
        let id = self.upload_new(&vec![1.0; self.n], "ones")?;
        self.ones = Some(id);
        Ok(id)
    }

    pub(super) fn scratch(&mut self, len: usize) -> Result<usize, GpuError> {
        if let Some(&(_, id)) = self.scratch.iter().find(|(l, _)| *l == len) {
            return Ok(id);
        }
        let id = self.zeros(len, "grad scratch")?;
        self.scratch.push((len, id));
        Ok(id)
    }

    pub(super) fn src_act(&self, s: Source) -> usize {
        match s {
            Source::Input => self.x,
            Source::Node(j) => self.act[j],
        }
    }

    /// Where a backward op that overwrites its output writes the gradient for source `s`,
    /// and the Axpy that must follow when it went to scratch. `None`: the model input.
    pub(super) fn dx_target(
        &mut self,
        s: Source,
    ) -> Result<Option<(usize, Option<Axpy>)>, GpuError> {
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
    pub(super) fn dx_accumulate(&mut self, s: Source) -> Option<(usize, bool)> {
        let Source::Node(j) = s else { return None };
        let g = self.grad[j];
        let acc = self.written[g];
        self.written[g] = true;
        Some((g, acc))
    }

    pub(super) fn fwd(&mut self, s: Step) {
        self.forward.push(Fwd::Both(s));
    }

    pub(super) fn bwd(&mut self, s: Step) {
        self.backward.push(s);
    }

    pub(super) fn finish_dx(&mut self, axpy: Option<Axpy>) {
        if let Some(a) = axpy {
            self.bwd(Step::op(a));
        }
    }

    pub(super) fn conv_shape(&self, i: usize) -> Option<Conv2dShape> {
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
            Op::BatchNorm => self.bn_forward(i, x, y, xshape)?,
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
        match node.op {
            Op::Conv2d { .. } | Op::Linear { .. } => self.layer_backward(i, dy)?,
            Op::BatchNorm => self.bn_backward(i, dy)?,
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

/// The layers with parameters: one builder each for the forward and the backward, for both
/// precisions; the quantization hook (`quantizers.rs`) decides what they read and where
/// their gradients go, and adds its own ops around them.
impl<'g> Builder<'g> {
    /// The node whose output node `i`'s output is, looking through Flatten views (Flatten
    /// of Flatten of `j` is `j`'s); `None` when the chain ends at the model input.
    pub(super) fn through_views(&self, i: usize) -> Option<usize> {
        let mut at = i;
        loop {
            if !matches!(self.model.nodes[at].op, Op::Flatten) {
                return Some(at);
            }
            match self.infos[at].inputs.first() {
                Some(Source::Node(j)) => at = *j,
                _ => return None,
            }
        }
    }

    /// The shared im2col buffer of the f16 convs, made on first use with the length the
    /// largest conv of the model needs; `None` unless the device runs convs in f16
    /// (`LIMPQ_CONV_ALGO=f16gemm` with `SHADER_F16`).
    fn col16_scratch(&mut self) -> Result<Option<usize>, GpuError> {
        if self.conv.f16_kind(self.gpu).is_none() {
            return Ok(None);
        }
        if let Some(c) = self.col16 {
            return Ok(Some(c));
        }
        // Over the convs whose im2col fits the adapter; the others run in f32
        // ([`Builder::conv_forward_step`]), as under any other choice of kernel.
        let len = (0..self.model.nodes.len())
            .filter_map(|i| self.conv_shape(i))
            .map(|s| Conv2dForwardHalf::scratch_len(&s))
            .filter(|&len| Tensor::fits(self.gpu, len))
            .max()
            .unwrap_or(0)
            .max(1);
        let c = self.zeros(len, "f16 conv im2col (shared)")?;
        self.col16 = Some(c);
        Ok(Some(c))
    }

    /// One op per variant of quantized layer `i` (a [`Step::Pick`] on its slot), or the one
    /// full-precision op: `op` gets the variant (`None` in full precision).
    fn per_variant(
        &self,
        i: usize,
        op: impl Fn(Option<Variant>) -> Result<Step, GpuError>,
    ) -> Result<Step, GpuError> {
        match self.variants(i) {
            None => op(None),
            Some((slot, variants)) => {
                let per = variants.into_iter().map(|v| op(Some(v)).map(|s| vec![s]));
                Ok(Step::choice(Some(slot), per.collect::<Result<_, _>>()?))
            }
        }
    }

    /// The forward step of conv node `i` reading `io` (from [`Builder::quant_io`]): the conv,
    /// in a quantized network one per variant of its layer, each quantizing the input on
    /// load at that variant's activation bits.
    fn conv_forward_step(
        &mut self,
        i: usize,
        s: &Conv2dShape,
        io: LayerIo,
        bias: Option<usize>,
        y: usize,
    ) -> Result<Step, GpuError> {
        let name = self.model.nodes[i].name.clone();
        // Made before the borrows below (every f16 conv shares it).
        let scratch = match bias {
            None => self
                .col16_scratch()?
                .filter(|&c| Conv2dForwardHalf::scratch_len(s) <= self.t(c).len()),
            Some(_) => None,
        };
        let bias = bias.map(|b| self.pv(b));
        let (x, w) = (self.t(io.input), self.t(io.weight));
        self.per_variant(i, |v| {
            let q = v.map(|v| v.act_quant(self));
            // Under LIMPQ_CONV_ALGO=f16gemm: f16 operands (a quantized layer's holding the
            // integer codes, exact).
            if let Some(c) = scratch {
                let qw = v.map(|v| v.weight_quant(self));
                let codes = q.as_ref().zip(qw.as_ref());
                let half = self
                    .conv
                    .f16_forward(self.gpu, s, x, w, self.t(y), codes, self.t(c));
                if let Some(op) = at(&name, half)? {
                    return Ok(Step::op(op));
                }
            }
            let op = self
                .conv
                .forward_quant(self.gpu, s, x, w, bias, self.t(y), q);
            Ok(Step::op(at(&name, op)?))
        })
    }

    /// BN forward: one parameter set and pair of running statistics per set the hook names
    /// (switchable BN), the set that runs following the selection of the layer it follows.
    fn bn_forward(&mut self, i: usize, x: usize, y: usize, xshape: Shape) -> Result<(), GpuError> {
        let name = self.model.nodes[i].name.clone();
        let c = xshape.c;
        let (slot, set_names) = self.bn_set_names(i);
        let mut sets = Vec::new();
        for sn in &set_names {
            let gamma = self.param(i, format!("{sn}.weight"), ParamKind::BnGamma, vec![1.0; c])?;
            let beta = self.param(i, format!("{sn}.bias"), ParamKind::BnBeta, vec![0.0; c])?;
            let rm = self.zeros(c, &format!("{sn}.running_mean"))?;
            let rv = self.upload_new(&vec![1.0; c], &format!("{sn}.running_var"))?;
            self.running.push((format!("{sn}.running_mean"), rm));
            self.running.push((format!("{sn}.running_var"), rv));
            sets.push(BnSet {
                gamma,
                beta,
                running_mean: rm,
                running_var: rv,
            });
        }
        let sm = self.zeros(c, &format!("{name}.saved_mean"))?;
        let si = self.zeros(c, &format!("{name}.saved_invstd"))?;
        self.bn_saved[i] = Some((sm, si));
        let shape = BnShape::new(self.n, c, xshape.h * xshape.w);
        let mut train = Vec::new();
        let mut eval = Vec::new();
        for set in &sets {
            let bt = BnTensors {
                gamma: self.pv(set.gamma),
                beta: self.pv(set.beta),
                running_mean: self.t(set.running_mean),
                running_var: self.t(set.running_var),
                saved_mean: self.t(sm),
                saved_invstd: self.t(si),
            };
            let t = BatchNorm2d::new(self.gpu, shape, self.t(x), self.t(y), &bt, BnMode::Train);
            let e = BatchNorm2d::new(self.gpu, shape, self.t(x), self.t(y), &bt, BnMode::Eval);
            train.push(vec![Step::BnTrain(Box::new(at(&name, t)?))]);
            eval.push(vec![Step::op(at(&name, e)?)]);
        }
        self.forward.push(Fwd::Mode {
            train: Step::choice(slot, train),
            eval: Step::choice(slot, eval),
        });
        self.bn_sets.push((i, sets));
        Ok(())
    }

    /// Backward of conv/linear node `i`: the weight, bias and input gradients of the layer
    /// as it ran (on the tensors of its [`LayerIo`]), written where the hook says
    /// ([`Builder::layer_grads`]), then the hook's own backward ops (the LSQ quantizers').
    fn layer_backward(&mut self, i: usize, dy: usize) -> Result<(), GpuError> {
        let node = self.model.nodes[i].clone();
        let name = node.name.as_str();
        let src = self.infos[i].inputs[0];
        let xshape = self.infos[i].input_shapes[0];
        let io = self.layer_io.iter().find(|(n, _)| *n == i).map(|p| p.1);
        let io = io.unwrap_or_else(|| unreachable!());
        let of_kind = |kind| {
            (0..self.params.len())
                .find(|&p| self.params[p].info.node == i && self.params[p].info.kind == kind)
        };
        let (wp, bias) = (of_kind(ParamKind::Weight), of_kind(ParamKind::Bias));
        let wp = wp.unwrap_or_else(|| unreachable!());
        let g = self.layer_grads(i, wp, src)?;
        match node.op {
            Op::Conv2d { .. } => {
                let s = self.conv_shape(i).unwrap_or_else(|| unreachable!());
                // dW from the input as the forward read it (quantized on load per variant).
                let step = self.per_variant(i, |v| {
                    let op = self.conv.backward_weight(
                        self.gpu,
                        &s,
                        self.t(io.input),
                        self.t(dy),
                        self.t(g.dw),
                        false,
                        v.map(|v| v.act_quant(self)),
                    );
                    Ok(Step::op(at(name, op)?))
                })?;
                self.bwd(step);
                if let Some(bp) = bias {
                    let acc = g.bias_accumulates;
                    let op = Conv2dBackwardBias::new(self.gpu, &s, self.t(dy), self.pg(bp), acc);
                    self.bwd(Step::op(at(name, op)?));
                }
                if let Some((dx, acc)) = g.dx {
                    let op = self.conv.backward_data(
                        self.gpu,
                        &s,
                        self.t(dy),
                        self.t(io.weight),
                        self.t(dx),
                        acc,
                    );
                    self.bwd(Step::op(at(name, op)?));
                }
            }
            Op::Linear { out_features, .. } => {
                let in_f = xshape.numel();
                // dW [out, in] = dyᵀ [out × n] · x [n × in]
                let shape = GemmShape::new(out_features, self.n, in_f).trans_a(true);
                let op = Gemm::new(self.gpu, shape, self.t(dy), self.t(io.input), self.t(g.dw));
                self.bwd(Step::op(at(name, op)?));
                if let Some(bp) = bias {
                    let ones = self.ones()?;
                    // db [out × 1] = dyᵀ [out × n] · 1 [n × 1]
                    let shape = GemmShape::new(out_features, self.n, 1)
                        .trans_a(true)
                        .accumulate(g.bias_accumulates);
                    let op = Gemm::new(self.gpu, shape, self.t(dy), self.t(ones), self.pg(bp));
                    self.bwd(Step::op(at(name, op)?));
                }
                if let Some((dx, acc)) = g.dx {
                    // dx [n × in] = dy [n × out] · W [out × in]
                    let shape = GemmShape::new(self.n, out_features, in_f).accumulate(acc);
                    let op = Gemm::new(self.gpu, shape, self.t(dy), self.t(io.weight), self.t(dx));
                    self.bwd(Step::op(at(name, op)?));
                }
            }
            _ => unreachable!(),
        }
        self.quant_layer_backward(i, wp, src)
    }

    /// Backward of BN node `i`, one op per parameter set (the selected one runs); dγ, dβ go
    /// where the hook says ([`Builder::bn_grad_scratch`]).
    fn bn_backward(&mut self, i: usize, dy: usize) -> Result<(), GpuError> {
        let name = self.model.nodes[i].name.clone();
        let src = self.infos[i].inputs[0];
        let xshape = self.infos[i].input_shapes[0];
        let x = self.src_act(src);
        let (sm, si) = self.bn_saved[i].unwrap_or_else(|| unreachable!());
        let shape = BnShape::new(self.n, xshape.c, xshape.h * xshape.w);
        // BN's input may be the model input, which needs no gradient; BN backward also
        // yields dγ, dβ: write dx to scratch then.
        let (dx, axpy) = match self.dx_target(src)? {
            Some(t) => t,
            None => (self.scratch(self.n * xshape.numel())?, None),
        };
        let scratch = self.bn_grad_scratch(xshape.c)?;
        let sets = self
            .bn_sets
            .iter()
            .find(|(n, _)| *n == i)
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        let (slot, _) = self.bn_set_names(i);
        let mut per = Vec::new();
        for set in &sets {
            let bt = BnTensors {
                gamma: self.pv(set.gamma),
                beta: self.pv(set.beta),
                running_mean: self.t(set.running_mean),
                running_var: self.t(set.running_var),
                saved_mean: self.t(sm),
                saved_invstd: self.t(si),
            };
            let (dg, db) = match scratch {
                Some((dg, db)) => (self.t(dg), self.t(db)),
                None => (self.pg(set.gamma), self.pg(set.beta)),
            };
            let op = BatchNorm2dBackward::new(
                self.gpu,
                shape,
                self.t(x),
                self.t(dy),
                self.t(dx),
                &bt,
                dg,
                db,
            );
            let mut ops = vec![Step::BnBackward(Box::new(at(&name, op)?))];
            if scratch.is_some() {
                let ag = Axpy::new(self.gpu, dg, self.pg(set.gamma), 1.0);
                let ab = Axpy::new(self.gpu, db, self.pg(set.beta), 1.0);
                ops.push(Step::op(at(&name, ag)?));
                ops.push(Step::op(at(&name, ab)?));
            }
            per.push(ops);
        }
        self.bwd(Step::choice(slot, per));
        self.finish_dx(axpy);
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

    pub(super) fn build(
        gpu: &'g Gpu,
        model: &Model,
        cfg: NetworkConfig,
        quant: Option<QuantBuild>,
    ) -> Result<Network<'g>, EngineError> {
        let infos = model.analyze()?;
        if cfg.batch == 0 {
            return Err(EngineError::Input("batch size must be positive".into()));
        }
        let n = cfg.batch;
        let (c, h, w) = model.input;
        // The largest tensor of one image, times the batch, must fit the adapter: a batch
        // past that is refused here, before any product of it (`n * c * h * w` below, and
        // the ops' own) can overflow, which a huge `--eval-batch` made wrap.
        let per_image = infos
            .iter()
            .map(|i| i.output.numel())
            .chain([c * h * w, model.classes])
            .max()
            .unwrap_or(1);
        if !n
            .checked_mul(per_image)
            .is_some_and(|len| Tensor::fits(gpu, len))
        {
            return Err(EngineError::Input(format!(
                "batch size {n}: its largest tensor ({per_image} values an image) exceeds the \
                 adapter's storage binding limit of {} bytes",
                gpu.limits.max_storage_buffer_binding_size
            )));
        }
        // Each layer's weights must fit too: they are drawn on the host before their
        // tensor is made, which for a weight past the limit meant gigabytes of host memory
        // (or an allocation abort) before the refusal.
        for (node, info) in model.nodes.iter().zip(&infos) {
            if !usize::try_from(info.params).is_ok_and(|len| Tensor::fits(gpu, len)) {
                return Err(EngineError::Input(format!(
                    "layer '{}': {} weights ({} bytes) exceed the adapter's storage binding \
                     limit of {} bytes",
                    node.name,
                    info.params,
                    u128::from(info.params) * 4,
                    gpu.limits.max_storage_buffer_binding_size
                )));
            }
        }
        let count = model.nodes.len();
        let conv = cfg.conv.rule(gpu)?;
        let mut b = Builder {
            gpu,
            conv,
            model,
            act_signs: model.act_signs(&infos),
            infos,
            n,
            ranks: cfg.ranks.max(1),
            tensors: Vec::new(),
            rng: SeededRng::new(cfg.seed),
            params: Vec::new(),
            running: Vec::new(),
            forward: Vec::new(),
            backward: Vec::new(),
            bw_end: vec![0; count],
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
        // Gradient tensors: the logits' is dlogits; a Flatten shares its input's. The logits
        // are the last node's output, a view of the node the Flatten chain ends on when the
        // last nodes are Flattens: that node's gradient is dlogits (given to the last node
        // alone, it reached nothing upstream, as a Flatten's backward does nothing).
        let logits_node = b.through_views(count - 1);
        for i in 0..count {
            b.grad[i] = if Some(i) == logits_node {
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
        // Written by the loss, first of all the backward steps.
        b.written[dlogits] = true;
        for i in (0..count).rev() {
            let dy = b.grad[i];
            b.build_backward(i, dy)?;
            b.bw_end[i] = b.backward.len();
        }
        let accumulate_grads = b.grads_accumulate();
        let mut bn_saved = Vec::new();
        for (i, saved) in b.bn_saved.iter().enumerate() {
            if let Some((sm, si)) = *saved {
                let x = b.infos[i].input_shapes[0];
                bn_saved.push(super::BnSaved {
                    node: i,
                    slot: b.bn_set_names(i).0,
                    saved_mean: sm,
                    saved_invstd: si,
                    count: cfg.batch * x.h * x.w,
                });
            }
        }
        let quant = b.quant.take().map(QuantBuild::finish);
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
            bw_end: b.bw_end,
            grad_bucket_bytes: super::grad_bucket_bytes_from_env()?,
            sgd,
            lr: None,
            pad_x: Vec::new(),
            layer_io: b.layer_io,
            bn_sets: b.bn_sets,
            bn_saved,
            tensors: b.tensors,
            accumulate_grads,
            quant,
            sel,
            bn_sync: crate::dist::Dist::single(),
        })
    }
}
