//! Quantization-aware networks (issue 4): LSQ fake quantization on every conv and linear
//! layer and switchable BatchNorm, built into the same static op lists as the
//! full-precision [`Network`], through the [`LayerIo`] and [`BnSet`] extension points.
//!
//! - Every conv/linear layer is a *quantized layer* with one or more **variants**, each a
//!   `(weight bits, act bits)` pair ([`QuantSpec`]). Its weight goes through a signed LSQ
//!   quantizer and its input through an LSQ quantizer that is unsigned for activations
//!   (post-ReLU) and signed for the model input (a normalised image has negative values);
//!   each quantizer has ONE step tensor with an entry per variant (`{layer}.weight_step`,
//!   `{layer}.act_step`, [`ParamKind::LsqStep`], no weight decay). The weight is quantized
//!   into a copy (`LsqQuantize`) that the conv/GEMM reads (`LayerIo::weight` points at it).
//!   A conv quantizes its input ON LOAD: its forward and backward-weight kernels read the
//!   raw input and apply the LSQ forward as they load it ([`QuantX`], bit-identical to
//!   `LsqQuantize`), one conv op per variant, so no quantized copy of the activation is
//!   written or stored. A linear layer's input goes through `LsqQuantize` into a copy.
//!   The activation backward (straight-through mask and step gradient) is `LsqBackward` on
//!   the raw input either way.
//! - A BN whose input is a quantized layer with several variants keeps one parameter set and
//!   one pair of running statistics per variant (switchable BN), named
//!   `{bn}.w{W}a{A}.weight` etc.; which set runs follows that layer's variant.
//! - The ops of every variant are built once; a selection (one variant index per quantized
//!   layer) picks which dispatches are recorded ([`Step::Pick`]), so a joint step — a pass
//!   per bit-width plus a random-policy pass — is one submission with no rebuild.
//! - Parameter gradients ACCUMULATE (weight LSQ backward into a scratch then `Axpy`, bias
//!   and step gradients with accumulate flags, BN dγ/dβ through scratch and `Axpy`); every
//!   training submission clears them first. So several passes in one submission sum.
//! - Step sizes are clamped to `[1e-5, 1]` by the kernels when used.

use limpq_solver::Policy;

use super::{
    at, BnSet, Builder, EngineError, Fwd, LayerIo, Network, ParamKind, Recorder, StepStats,
};
use crate::checkpoint::{NamedTensor, TensorKind};
use crate::gpu::{Gpu, GpuError};
use crate::kernels::conv::{
    f16_override_kind, Conv2dBackwardBias, Conv2dBackwardData, Conv2dBackwardWeight, Conv2dForward,
    ConvAlgo, QuantX,
};
use crate::kernels::conv_f16::Conv2dForwardHalf;
use crate::kernels::elementwise::Axpy;
use crate::kernels::gemm::{Gemm, GemmShape};
use crate::kernels::lsq::{LsqBackward, LsqConfig, LsqQuantize};
use crate::kernels::norm::{BatchNorm2d, BatchNorm2dBackward, BnMode, BnShape, BnTensors};
use crate::model::{Model, Op, Shape, Source, FIXED_BITS};
use crate::reference::lsq::lsq_init_weight_scale;
use crate::shapes::Conv2dShape;

use super::ops::Step;

/// `(weight steps, act steps)` of one quantized layer, one entry per variant.
pub type LayerSteps = (Vec<f32>, Vec<f32>);

/// Bit-width variants of every quantized (conv/linear) layer, in node order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantSpec {
    /// `(layer name, variants)`; a variant is `(weight bits, act bits)`.
    pub layers: Vec<(String, Vec<(u32, u32)>)>,
}

impl QuantSpec {
    /// Joint training: searchable layers get `(b, b)` for every candidate `b`; the fixed
    /// layers (first conv, last linear) one variant at [`FIXED_BITS`].
    pub fn joint(model: &Model, bits: &[u32]) -> Result<QuantSpec, EngineError> {
        check_bits(bits)?;
        let layers = model
            .quantizable_layers()?
            .into_iter()
            .map(|l| {
                let v = if l.fixed {
                    vec![FIXED_BITS]
                } else {
                    bits.iter().map(|&b| (b, b)).collect()
                };
                (l.name, v)
            })
            .collect();
        Ok(QuantSpec { layers })
    }

    /// One variant per layer at a policy's bits. Every searchable layer must be in the
    /// policy; a fixed layer missing from it stays at [`FIXED_BITS`].
    pub fn policy(model: &Model, policy: &Policy) -> Result<QuantSpec, EngineError> {
        let mut layers = Vec::new();
        for l in model.quantizable_layers()? {
            let found = policy.layers.iter().find(|p| p.name == l.name);
            let v = match (found, l.fixed) {
                (Some(p), _) => (p.weight, p.act),
                (None, true) => FIXED_BITS,
                (None, false) => {
                    return Err(EngineError::Input(format!(
                        "policy for model '{}' has no layer '{}' (model '{}')",
                        policy.model, l.name, model.name
                    )))
                }
            };
            check_bits(&[v.0, v.1])?;
            layers.push((l.name, vec![v]));
        }
        for p in &policy.layers {
            if !layers.iter().any(|(n, _)| *n == p.name) {
                return Err(EngineError::Input(format!(
                    "policy layer '{}' is not a conv/linear layer of model '{}'",
                    p.name, model.name
                )));
            }
        }
        Ok(QuantSpec { layers })
    }
}

fn check_bits(bits: &[u32]) -> Result<(), EngineError> {
    if bits.is_empty() {
        return Err(EngineError::Input("no bit-widths given".into()));
    }
    if let Some(b) = bits.iter().find(|b| !(2..=16).contains(*b)) {
        return Err(EngineError::Input(format!(
            "bit-width {b} outside 2..=16 (LSQ needs at least 2 bits for signed weights)"
        )));
    }
    Ok(())
}

/// A quantized layer as built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantLayerInfo {
    pub name: String,
    /// Index of its node in `Model::nodes`.
    pub node: usize,
    /// `(weight bits, act bits)` per variant; aligned with the step tensors.
    pub variants: Vec<(u32, u32)>,
    /// Whether the input quantizer is signed (the model input) or unsigned (activations).
    pub act_signed: bool,
    /// Parameter names of the step tensors.
    pub weight_step: String,
    pub act_step: String,
}

#[derive(Clone, Debug)]
pub(super) struct QLayer {
    pub(super) info: QuantLayerInfo,
    /// Param indices of the step tensors and the weight.
    w_steps: usize,
    a_steps: usize,
    weight: usize,
    /// Raw input, its quantized copy (linear layers only: a conv quantizes on load), and the
    /// quantized weight (tensor ids).
    x: usize,
    xq: Option<usize>,
    wq: usize,
    /// Index of this layer's quantize entry in the forward list.
    fwd_pos: usize,
}

/// Build-time state.
pub(super) struct QuantBuild {
    spec: QuantSpec,
    layers: Vec<QLayer>,
    /// Backward scratch tensors by (length, role).
    pool: Vec<(usize, u8, usize)>,
}

impl QuantBuild {
    pub(super) fn finish(self) -> QuantNet {
        QuantNet {
            layers: self.layers,
        }
    }
}

/// What a built quantized network keeps.
pub(super) struct QuantNet {
    pub(super) layers: Vec<QLayer>,
}

const ROLE_DXQ: u8 = 0;
const ROLE_DX_DISCARD: u8 = 1;
const ROLE_DGAMMA: u8 = 2;
const ROLE_DBETA: u8 = 3;
const ROLE_DWQ: u8 = 4;
const ROLE_DW: u8 = 5;

fn lsq(index: usize, bits: u32, signed: bool) -> LsqConfig {
    LsqConfig {
        index,
        bits,
        signed,
    }
}

impl<'g> Builder<'g> {
    fn qb(&self) -> &QuantBuild {
        self.quant.as_ref().unwrap_or_else(|| unreachable!())
    }

    fn qb_mut(&mut self) -> &mut QuantBuild {
        self.quant.as_mut().unwrap_or_else(|| unreachable!())
    }

    fn slot_of(&self, node: usize) -> Option<usize> {
        self.quant
            .as_ref()?
            .layers
            .iter()
            .position(|l| l.info.node == node)
    }

    fn qscratch(&mut self, len: usize, role: u8) -> Result<usize, GpuError> {
        if let Some(&(_, _, id)) = self
            .qb()
            .pool
            .iter()
            .find(|(l, r, _)| *l == len && *r == role)
        {
            return Ok(id);
        }
        let id = self.zeros(len, "quant scratch")?;
        self.qb_mut().pool.push((len, role, id));
        Ok(id)
    }

    /// Forward hook of a conv/linear node: in a quantized network, record the LSQ ops of
    /// its weight and (linear layers) input, one variant per bit-width, and return the
    /// tensors the layer reads: the quantized weight, and the quantized input copy of a
    /// linear layer or the raw input of a conv (which quantizes it on load, see
    /// [`Builder::conv_forward_step`]).
    pub(super) fn quant_io(
        &mut self,
        i: usize,
        io: LayerIo,
        wp: usize,
    ) -> Result<LayerIo, GpuError> {
        let Some(qb) = &self.quant else {
            return Ok(io);
        };
        let name = self.model.nodes[i].name.clone();
        let variants = qb
            .spec
            .layers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                GpuError::Shape(format!(
                    "node '{name}': no bit-widths in the quantization spec"
                ))
            })?;
        if variants.is_empty() {
            return Err(GpuError::Shape(format!(
                "node '{name}': no bit-width variants"
            )));
        }
        let act_signed = self.infos[i].inputs[0] == Source::Input;
        let on_load = matches!(self.model.nodes[i].op, Op::Conv2d { .. });
        let nv = variants.len();
        let w_steps = self.param(
            i,
            format!("{name}.weight_step"),
            ParamKind::LsqStep,
            vec![1.0; nv],
        )?;
        let a_steps = self.param(
            i,
            format!("{name}.act_step"),
            ParamKind::LsqStep,
            vec![1.0; nv],
        )?;
        let xlen = self.tensors[io.input].len();
        let wlen = self.tensors[io.weight].len();
        let xq = if on_load {
            None
        } else {
            Some(self.zeros(xlen, &format!("{name}.input_q"))?)
        };
        let wq = self.zeros(wlen, &format!("{name}.weight_q"))?;
        let slot = self.qb().layers.len();
        let mut per = Vec::with_capacity(nv);
        for (k, &(wb, ab)) in variants.iter().enumerate() {
            let mut ops = Vec::with_capacity(2);
            if let Some(xq) = xq {
                let a = LsqQuantize::new(
                    self.gpu,
                    self.t(io.input),
                    self.t(xq),
                    self.pv(a_steps),
                    lsq(k, ab, act_signed),
                );
                ops.push(Step::op(at(&name, a)?));
            }
            let w = LsqQuantize::new(
                self.gpu,
                self.t(io.weight),
                self.t(wq),
                self.pv(w_steps),
                lsq(k, wb, true),
            );
            ops.push(Step::op(at(&name, w)?));
            per.push(ops);
        }
        let fwd_pos = self.forward.len();
        self.forward.push(Fwd::Both(Step::Pick {
            slot,
            variants: per,
        }));
        let info = QuantLayerInfo {
            weight_step: format!("{name}.weight_step"),
            act_step: format!("{name}.act_step"),
            name,
            node: i,
            variants,
            act_signed,
        };
        self.qb_mut().layers.push(QLayer {
            info,
            w_steps,
            a_steps,
            weight: wp,
            x: io.input,
            xq,
            wq,
            fwd_pos,
        });
        Ok(LayerIo {
            input: xq.unwrap_or(io.input),
            weight: wq,
        })
    }

    /// The shared im2col buffer of the f16 convs, made on first use with the length the
    /// largest conv of the model needs; `None` unless the device runs convs in f16
    /// (`LIMPQ_CONV_ALGO=f16gemm` with `SHADER_F16`).
    fn col16_scratch(&mut self) -> Result<Option<usize>, GpuError> {
        if f16_override_kind(self.gpu).is_none() {
            return Ok(None);
        }
        if let Some(c) = self.col16 {
            return Ok(Some(c));
        }
        let len = (0..self.model.nodes.len())
            .filter_map(|i| self.conv_shape(i))
            .map(|s| Conv2dForwardHalf::scratch_len(&s))
            .max()
            .unwrap_or(0)
            .max(1);
        let c = self.zeros(len, "f16 conv im2col (shared)")?;
        self.col16 = Some(c);
        Ok(Some(c))
    }

    /// The forward step of conv node `i` reading `io` (from [`Builder::quant_io`]): in a
    /// quantized network one conv per variant of its layer, each quantizing the input on
    /// load at that variant's activation bits ([`Step::Pick`]); else the plain conv.
    pub(super) fn conv_forward_step(
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
            None => self.col16_scratch()?,
            Some(_) => None,
        };
        let bias = bias.map(|b| self.pv(b));
        let Some(slot) = self.slot_of(i) else {
            let (x, w) = (self.t(io.input), self.t(io.weight));
            if let Some(c) = scratch {
                let half =
                    Conv2dForward::f16_override(self.gpu, s, x, w, self.t(y), None, self.t(c));
                if let Some(op) = at(&name, half)? {
                    return Ok(Step::op(op));
                }
            }
            let op = Conv2dForward::new(self.gpu, s, x, w, bias, self.t(y));
            return Ok(Step::op(at(&name, op)?));
        };
        let l = &self.qb().layers[slot];
        let mut per = Vec::with_capacity(l.info.variants.len());
        for (k, &(wb, ab)) in l.info.variants.iter().enumerate() {
            let q = QuantX {
                steps: self.pv(l.a_steps),
                config: lsq(k, ab, l.info.act_signed),
            };
            // Under LIMPQ_CONV_ALGO=f16gemm: f16 operands holding the integer codes (exact).
            if let Some(c) = scratch {
                let qw = QuantX {
                    steps: self.pv(l.w_steps),
                    config: lsq(k, wb, true),
                };
                let (x, wq) = (self.t(io.input), self.t(io.weight));
                let codes = Some((&q, &qw));
                let half =
                    Conv2dForward::f16_override(self.gpu, s, x, wq, self.t(y), codes, self.t(c));
                if let Some(op) = at(&name, half)? {
                    per.push(vec![Step::op(op)]);
                    continue;
                }
            }
            let op = Conv2dForward::with_input_quant(
                self.gpu,
                s,
                self.t(io.input),
                self.t(io.weight),
                bias,
                self.t(y),
                ConvAlgo::Auto,
                Some(q),
            );
            per.push(vec![Step::op(at(&name, op)?)]);
        }
        Ok(Step::Pick {
            slot,
            variants: per,
        })
    }

    /// The quantized layer whose variant a BN node follows (its input), with its variants.
    fn bn_follows(&self, i: usize) -> Option<(usize, Vec<(u32, u32)>)> {
        let Source::Node(j) = self.infos[i].inputs[0] else {
            return None;
        };
        let slot = self.slot_of(j)?;
        let v = self.qb().layers[slot].info.variants.clone();
        (v.len() > 1).then_some((slot, v))
    }

    /// BN forward in a quantized network: one set per variant of the layer it follows.
    pub(super) fn quant_bn_forward(
        &mut self,
        i: usize,
        x: usize,
        y: usize,
        xshape: Shape,
    ) -> Result<(), GpuError> {
        let name = self.model.nodes[i].name.clone();
        let c = xshape.c;
        let follows = self.bn_follows(i);
        let set_names: Vec<String> = match &follows {
            Some((_, v)) => v.iter().map(|(w, a)| format!("{name}.w{w}a{a}")).collect(),
            None => vec![name.clone()],
        };
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
            train.push(vec![Step::op(at(&name, t)?)]);
            eval.push(vec![Step::op(at(&name, e)?)]);
        }
        let slot = follows.map_or(usize::MAX, |(s, _)| s);
        self.forward.push(Fwd::Mode {
            train: Step::Pick {
                slot,
                variants: train,
            },
            eval: Step::Pick {
                slot,
                variants: eval,
            },
        });
        self.bn_sets.push((i, sets));
        Ok(())
    }

    /// Backward of a conv, linear or BN node in a quantized network; parameter gradients
    /// accumulate.
    pub(super) fn quant_backward(
        &mut self,
        i: usize,
        dy: usize,
        my_params: &[usize],
    ) -> Result<(), GpuError> {
        let node = self.model.nodes[i].clone();
        let name = node.name.as_str();
        let info = self.infos[i].clone();
        let src = info.inputs[0];
        let xshape = info.input_shapes[0];
        if matches!(node.op, Op::BatchNorm) {
            return self.quant_bn_backward(i, dy, src, xshape);
        }
        let slot = self
            .slot_of(i)
            .ok_or_else(|| GpuError::Shape(format!("node '{name}': not quantized")))?;
        let l = self.qb().layers[slot].clone();
        let wlen = self.tensors[l.wq].len();
        let xlen = self.tensors[l.x].len();
        let dwq = self.qscratch(wlen, ROLE_DWQ)?;
        let dw = self.qscratch(wlen, ROLE_DW)?;
        let dxq = self.qscratch(xlen, ROLE_DXQ)?;
        let bias = my_params
            .iter()
            .copied()
            .find(|&p| self.params[p].info.kind == ParamKind::Bias);
        // dWq, bias gradient and dXq.
        match node.op {
            Op::Conv2d { .. } => {
                let s = self.conv_shape(i).unwrap_or_else(|| unreachable!());
                // dWq from the input quantized on load at each variant's bits.
                let mut per = Vec::with_capacity(l.info.variants.len());
                for (k, &(_, ab)) in l.info.variants.iter().enumerate() {
                    let q = QuantX {
                        steps: self.pv(l.a_steps),
                        config: lsq(k, ab, l.info.act_signed),
                    };
                    let op = Conv2dBackwardWeight::with_input_quant(
                        self.gpu,
                        &s,
                        self.t(l.x),
                        self.t(dy),
                        self.t(dwq),
                        false,
                        ConvAlgo::Auto,
                        Some(q),
                    );
                    per.push(vec![Step::op(at(name, op)?)]);
                }
                self.bwd(Step::Pick {
                    slot,
                    variants: per,
                });
                if let Some(bp) = bias {
                    let op = Conv2dBackwardBias::new(self.gpu, &s, self.t(dy), self.pg(bp), true);
                    self.bwd(Step::op(at(name, op)?));
                }
                let op = Conv2dBackwardData::new(
                    self.gpu,
                    &s,
                    self.t(dy),
                    self.t(l.wq),
                    self.t(dxq),
                    false,
                );
                self.bwd(Step::op(at(name, op)?));
            }
            Op::Linear { out_features, .. } => {
                let in_f = xshape.numel();
                let shape = GemmShape::new(out_features, self.n, in_f).trans_a(true);
                let xq =
                    l.xq.unwrap_or_else(|| unreachable!("linear layers keep a copy"));
                let op = Gemm::new(self.gpu, shape, self.t(dy), self.t(xq), self.t(dwq));
                self.bwd(Step::op(at(name, op)?));
                if let Some(bp) = bias {
                    let ones = self.ones()?;
                    let shape = GemmShape::new(out_features, self.n, 1)
                        .trans_a(true)
                        .accumulate(true);
                    let op = Gemm::new(self.gpu, shape, self.t(dy), self.t(ones), self.pg(bp));
                    self.bwd(Step::op(at(name, op)?));
                }
                let shape = GemmShape::new(self.n, out_features, in_f);
                let op = Gemm::new(self.gpu, shape, self.t(dy), self.t(l.wq), self.t(dxq));
                self.bwd(Step::op(at(name, op)?));
            }
            _ => unreachable!(),
        }
        // Through the quantizers: weight (then summed into the weight gradient), input.
        let (target, axpy) = match self.dx_target(src)? {
            Some(t) => t,
            None => (self.qscratch(xlen, ROLE_DX_DISCARD)?, None),
        };
        let mut per = Vec::new();
        for (k, &(wb, ab)) in l.info.variants.iter().enumerate() {
            let w = LsqBackward::new_accumulating(
                self.gpu,
                self.pv(l.weight),
                self.t(dwq),
                self.t(dw),
                self.pv(l.w_steps),
                self.pg(l.w_steps),
                lsq(k, wb, true),
            );
            let a = LsqBackward::new_accumulating(
                self.gpu,
                self.t(l.x),
                self.t(dxq),
                self.t(target),
                self.pv(l.a_steps),
                self.pg(l.a_steps),
                lsq(k, ab, l.info.act_signed),
            );
            per.push(vec![Step::op(at(name, w)?), Step::op(at(name, a)?)]);
        }
        self.bwd(Step::Pick {
            slot,
            variants: per,
        });
        let op = Axpy::new(self.gpu, self.t(dw), self.pg(l.weight), 1.0);
        self.bwd(Step::op(at(name, op)?));
        self.finish_dx(axpy);
        Ok(())
    }

    fn quant_bn_backward(
        &mut self,
        i: usize,
        dy: usize,
        src: Source,
        xshape: Shape,
    ) -> Result<(), GpuError> {
        let name = self.model.nodes[i].name.clone();
        let x = self.src_act(src);
        let (sm, si) = self.bn_saved[i].unwrap_or_else(|| unreachable!());
        let shape = BnShape::new(self.n, xshape.c, xshape.h * xshape.w);
        let (dx, axpy) = match self.dx_target(src)? {
            Some(t) => t,
            None => (self.scratch(self.n * xshape.numel())?, None),
        };
        let dg = self.qscratch(xshape.c, ROLE_DGAMMA)?;
        let db = self.qscratch(xshape.c, ROLE_DBETA)?;
        let sets = self
            .bn_sets
            .iter()
            .find(|(n, _)| *n == i)
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        let slot = self.bn_follows(i).map_or(usize::MAX, |(s, _)| s);
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
            let op = BatchNorm2dBackward::new(
                self.gpu,
                shape,
                self.t(x),
                self.t(dy),
                self.t(dx),
                &bt,
                self.t(dg),
                self.t(db),
            );
            let ag = Axpy::new(self.gpu, self.t(dg), self.pg(set.gamma), 1.0);
            let ab = Axpy::new(self.gpu, self.t(db), self.pg(set.beta), 1.0);
            per.push(vec![
                Step::op(at(&name, op)?),
                Step::op(at(&name, ag)?),
                Step::op(at(&name, ab)?),
            ]);
        }
        self.bwd(Step::Pick {
            slot,
            variants: per,
        });
        self.finish_dx(axpy);
        Ok(())
    }
}

/// `2·mean(|x|)/sqrt(Qp)`, Qp of the quantizer (unsigned `2^b-1`, signed `2^(b-1)-1`).
pub fn act_init_scale(x: &[f32], bits: u32, signed: bool) -> f32 {
    let qp = if signed {
        ((1u64 << (bits - 1)) - 1) as f64
    } else {
        ((1u64 << bits) - 1) as f64
    };
    let mean_abs = x.iter().map(|v| v.abs() as f64).sum::<f64>() / x.len().max(1) as f64;
    (2.0 * mean_abs / qp.sqrt()) as f32
}

impl<'g> Network<'g> {
    /// A quantization-aware network: every conv/linear layer fake-quantized with the
    /// variants of `spec` (see the module doc). Step sizes start at 1: call
    /// [`Network::init_steps`] after loading the weights.
    pub fn new_quantized(
        gpu: &'g Gpu,
        model: &Model,
        cfg: super::NetworkConfig,
        spec: &QuantSpec,
    ) -> Result<Network<'g>, EngineError> {
        let layers = model.quantizable_layers()?;
        if layers.len() != spec.layers.len()
            || layers
                .iter()
                .zip(&spec.layers)
                .any(|(l, (n, _))| l.name != *n)
        {
            return Err(EngineError::Input(format!(
                "quantization spec does not list the conv/linear layers of model '{}' in order",
                model.name
            )));
        }
        for (n, v) in &spec.layers {
            if v.is_empty() {
                return Err(EngineError::Input(format!(
                    "layer '{n}': no bit-width variants"
                )));
            }
            for &(w, a) in v {
                check_bits(&[w, a]).map_err(|e| EngineError::Input(format!("layer '{n}': {e}")))?;
            }
        }
        let qb = QuantBuild {
            spec: spec.clone(),
            layers: Vec::new(),
            pool: Vec::new(),
        };
        Self::build(gpu, model, cfg, Some(qb))
    }

    fn qnet(&self) -> Result<&QuantNet, EngineError> {
        self.quant
            .as_ref()
            .ok_or_else(|| EngineError::Input("not a quantization-aware network".into()))
    }

    /// The quantized layers, in node order (the selection's order).
    pub fn quant_layers(&self) -> Vec<QuantLayerInfo> {
        self.quant.as_ref().map_or_else(Vec::new, |q| {
            q.layers.iter().map(|l| l.info.clone()).collect()
        })
    }

    fn check_sel(&self, sel: &[usize]) -> Result<(), EngineError> {
        let q = self.qnet()?;
        if sel.len() != q.layers.len() {
            return Err(EngineError::Input(format!(
                "selection of {} variants for {} quantized layers",
                sel.len(),
                q.layers.len()
            )));
        }
        for (l, &k) in q.layers.iter().zip(sel) {
            if k >= l.info.variants.len() {
                return Err(EngineError::Input(format!(
                    "layer '{}': variant {k} of {}",
                    l.info.name,
                    l.info.variants.len()
                )));
            }
        }
        Ok(())
    }

    /// Which variant every quantized layer uses in [`Network::train_step`],
    /// [`Network::forward_backward`] and evaluation.
    pub fn set_selection(&mut self, sel: &[usize]) -> Result<(), EngineError> {
        self.check_sel(sel)?;
        self.sel = sel.to_vec();
        Ok(())
    }

    /// Load a (full-precision or quantized) state by name: parameters and running
    /// statistics present in `tensors` are loaded; a switchable BN set `{bn}.wWaA.*` missing
    /// there is loaded from the plain `{bn}.*`; step tensors missing, or stored with another
    /// number of variants, are left as they are and their names returned. Anything else
    /// missing is an error. Momentum buffers are zeroed.
    pub fn import_state_lenient(
        &mut self,
        tensors: &[NamedTensor],
    ) -> Result<Vec<String>, EngineError> {
        let mut left = Vec::new();
        let find = |name: &str, kind: TensorKind| -> Option<&NamedTensor> {
            tensors
                .iter()
                .find(|t| t.kind == kind && t.name == name)
                .or_else(|| {
                    let base = strip_set(name)?;
                    tensors.iter().find(|t| t.kind == kind && t.name == base)
                })
        };
        let mut writes: Vec<(usize, String, Vec<f32>)> = Vec::new();
        for p in &self.params {
            match find(&p.info.name, TensorKind::Param) {
                Some(t) if p.info.kind == ParamKind::LsqStep && t.data.len() != p.info.len => {
                    left.push(p.info.name.clone())
                }
                Some(t) => writes.push((p.value, p.info.name.clone(), t.data.clone())),
                None if p.info.kind == ParamKind::LsqStep => left.push(p.info.name.clone()),
                None => {
                    return Err(EngineError::Input(format!(
                        "missing parameter '{}'",
                        p.info.name
                    )))
                }
            }
            writes.push((p.momentum, p.info.name.clone(), vec![0.0; p.info.len]));
        }
        for (name, id) in &self.running {
            let t = find(name, TensorKind::RunningStat)
                .ok_or_else(|| EngineError::Input(format!("missing running statistic '{name}'")))?;
            writes.push((*id, name.clone(), t.data.clone()));
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
            self.tensors[id].write_f32(self.gpu, &data)?;
        }
        Ok(left)
    }

    /// Step sizes of every quantized layer: `(weight steps, act steps)` per variant.
    pub fn read_steps(&self) -> Result<Vec<LayerSteps>, EngineError> {
        let q = self.qnet()?;
        let mut ids = Vec::new();
        for l in &q.layers {
            ids.push(self.params[l.w_steps].value);
            ids.push(self.params[l.a_steps].value);
        }
        let data = self.read_many(&ids)?;
        Ok(data
            .chunks_exact(2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect())
    }

    /// Overwrite the step sizes of quantized layer `layer` (index into
    /// [`Network::quant_layers`]).
    pub fn write_steps(
        &mut self,
        layer: usize,
        weight: &[f32],
        act: &[f32],
    ) -> Result<(), EngineError> {
        let q = self.qnet()?;
        let l = q
            .layers
            .get(layer)
            .ok_or_else(|| EngineError::Input(format!("no quantized layer {layer}")))?;
        let nv = l.info.variants.len();
        if weight.len() != nv || act.len() != nv {
            return Err(EngineError::Input(format!(
                "layer '{}': {} variants, {} weight and {} act steps given",
                l.info.name,
                nv,
                weight.len(),
                act.len()
            )));
        }
        let (w, a) = (self.params[l.w_steps].value, self.params[l.a_steps].value);
        self.tensors[w].write_f32(self.gpu, weight)?;
        self.tensors[a].write_f32(self.gpu, act)?;
        Ok(())
    }

    /// LSQ step-size init (docs/METHOD.md): for every layer `which[l]` says whether to set it.
    /// Weights: `max(|mean-3std|, |mean+3std|) / 2^(b-1)` from the current weights, per
    /// variant. Activations: on the batch `x`, per variant `k`, a train-mode forward with
    /// every layer at its variant `k` (layers with fewer variants at their last) in which
    /// each quantizer's step is set from its input just before it runs, so later layers see
    /// the quantized outputs of earlier ones (as lazy init in the reference code does).
    /// BN running statistics of the variant's sets are updated by these forwards.
    pub fn init_steps(&mut self, x: &[f32], y: &[u32], which: &[bool]) -> Result<(), EngineError> {
        let nl = self.qnet()?.layers.len();
        if which.len() != nl {
            return Err(EngineError::Input(format!(
                "init_steps: {} flags for {nl} quantized layers",
                which.len()
            )));
        }
        let mut steps = self.read_steps()?;
        let layers: Vec<QLayer> = self.qnet()?.layers.clone();
        let weights = self.read_many(
            &layers
                .iter()
                .map(|l| self.params[l.weight].value)
                .collect::<Vec<_>>(),
        )?;
        for (li, l) in layers.iter().enumerate() {
            if which[li] {
                for (k, &(wb, _)) in l.info.variants.iter().enumerate() {
                    steps[li].0[k] = lsq_init_weight_scale(&weights[li], wb);
                }
            }
        }
        self.upload(x, y)?;
        let max_v = layers
            .iter()
            .map(|l| l.info.variants.len())
            .max()
            .unwrap_or(0);
        for k in 0..max_v {
            let sel: Vec<usize> = layers
                .iter()
                .map(|l| k.min(l.info.variants.len() - 1))
                .collect();
            let mut pos = 0;
            for (li, l) in layers.iter().enumerate() {
                if !which[li] || k >= l.info.variants.len() {
                    continue;
                }
                // Run the forward up to (not including) this layer's quantizers.
                let data = {
                    let mut rec = Recorder::new(self.gpu);
                    for f in &self.forward[pos..l.fwd_pos] {
                        self.record_fwd(f, &mut rec, true, &sel);
                    }
                    let r = rec.read(&self.tensors[l.x]);
                    let out = rec.submit()?;
                    out.f32(r).to_vec()
                };
                pos = l.fwd_pos;
                let (_, ab) = l.info.variants[k];
                steps[li].1[k] = act_init_scale(&data, ab, l.info.act_signed);
                let (w, a) = (self.params[l.w_steps].value, self.params[l.a_steps].value);
                self.tensors[w].write_f32(self.gpu, &steps[li].0)?;
                self.tensors[a].write_f32(self.gpu, &steps[li].1)?;
            }
        }
        for (li, l) in layers.iter().enumerate() {
            let (w, a) = (self.params[l.w_steps].value, self.params[l.a_steps].value);
            self.tensors[w].write_f32(self.gpu, &steps[li].0)?;
            self.tensors[a].write_f32(self.gpu, &steps[li].1)?;
        }
        Ok(())
    }

    /// One optimizer step made of several passes on the same batch, ONE submission: clear
    /// every gradient, then per selection a train-mode forward with every quantized layer at
    /// its selected variant, the loss, the backward (gradients summed over the passes); then
    /// the SGD update of every parameter at `lr`. Returns each pass's loss and accuracy.
    pub fn train_passes(
        &mut self,
        x: &[f32],
        y: &[u32],
        lr: f32,
        sels: &[Vec<usize>],
    ) -> Result<Vec<StepStats>, EngineError> {
        for s in sels {
            self.check_sel(s)?;
        }
        if self.lr != Some(lr) {
            for op in &mut self.sgd {
                op.set_lr(self.gpu, lr);
            }
            self.lr = Some(lr);
        }
        self.upload(x, y)?;
        let mut rec = Recorder::new(self.gpu);
        for p in &self.params {
            rec.clear(&self.tensors[p.grad]);
        }
        let mut reads = Vec::new();
        for sel in sels {
            self.record_forward(&mut rec, true, sel);
            self.loss_op.record(&mut rec);
            let l = rec.read(&self.tensors[self.loss]);
            let c = rec.read(&self.tensors[self.correct]);
            reads.push((l, c));
            for s in &self.backward {
                self.step(s, &mut rec, sel);
            }
        }
        for op in &self.sgd {
            op.record(&mut rec);
        }
        let out = rec.submit()?;
        Ok(reads
            .into_iter()
            .map(|(l, c)| StepStats {
                loss: out.f32(l).first().copied().unwrap_or(f32::NAN),
                correct: out.f32(c).first().copied().unwrap_or(0.0).max(0.0).round() as usize,
            })
            .collect())
    }

    /// Dispatches of a [`Network::train_passes`] submission with these selections.
    pub fn passes_dispatches(&self, sels: &[Vec<usize>]) -> usize {
        let mut rec = Recorder::new(self.gpu);
        for sel in sels {
            self.record_forward(&mut rec, true, sel);
            self.loss_op.record(&mut rec);
            for s in &self.backward {
                self.step(s, &mut rec, sel);
            }
        }
        for op in &self.sgd {
            op.record(&mut rec);
        }
        rec.dispatches()
    }
}

/// `layer1.0.bn1.w4a4.weight` → `layer1.0.bn1.weight` (a switchable-BN set name).
fn strip_set(name: &str) -> Option<String> {
    let (head, field) = name.rsplit_once('.')?;
    let (base, set) = head.rsplit_once('.')?;
    let rest = set.strip_prefix('w')?;
    let (w, a) = rest.split_once('a')?;
    if w.is_empty() || a.is_empty() || !w.bytes().chain(a.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!("{base}.{field}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn strip_set_names() {
        assert_eq!(
            super::strip_set("layer1.0.bn1.w4a4.weight").as_deref(),
            Some("layer1.0.bn1.weight")
        );
        assert_eq!(
            super::strip_set("bn1.w12a3.running_var").as_deref(),
            Some("bn1.running_var")
        );
        assert_eq!(super::strip_set("layer1.0.bn1.weight"), None);
        assert_eq!(super::strip_set("bn1.wxa4.weight"), None);
    }
}
