//! Quantization-aware networks (issue 4): LSQ fake quantization on every conv and linear
//! layer and switchable BatchNorm, built by the same forward/backward builders as the
//! full-precision [`Network`] (`build.rs`), through a hook: the builders ask it what a layer
//! reads ([`LayerIo`]), which variants its ops come in, where its gradients go and which BN
//! sets ([`BnSet`](super::BnSet)) a node has, and it adds the LSQ ops before a layer's forward and after
//! its backward. Without quantization the hook answers "the plain layer" and adds nothing.
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

use std::collections::{HashMap, HashSet};

use limpq_solver::{LayerBits, Policy};

use super::build::Builder;
use super::ops::{at, Step};
use super::{EngineError, Fwd, LayerIo, Network, NetworkConfig, ParamKind};
use crate::gpu::{Gpu, GpuError};
use crate::kernels::conv::QuantX;
use crate::kernels::elementwise::Axpy;
use crate::kernels::lsq::{LsqBackward, LsqConfig, LsqQuantize};
use crate::model::{Model, Op, Source, FIXED_BITS};
use crate::reference::lsq::lsq_init_weight_scale;

/// `(weight steps, act steps)` of one quantized layer, one entry per variant.
pub type LayerSteps = (Vec<f32>, Vec<f32>);

/// Bit-width variants of every conv/linear layer, in node order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantSpec {
    /// `(layer name, variants)`; a variant is `(weight bits, act bits)`. A layer with no
    /// variant stays in full precision: no quantizer, no step tensors, not a quantized
    /// layer of the network (not in [`Network::quant_layers`] nor in a selection).
    pub layers: Vec<(String, Vec<(u32, u32)>)>,
}

impl QuantSpec {
    /// Joint training with the fixed layers quantized: searchable layers get `(b, b)` for
    /// every candidate `b`; the fixed layers (first conv, last linear) one variant at
    /// [`FIXED_BITS`]. [`QuantSpec::joint_with`] `(model, bits, Some(FIXED_BITS))`.
    pub fn joint(model: &Model, bits: &[u32]) -> Result<QuantSpec, EngineError> {
        Self::joint_with(model, bits, Some(FIXED_BITS))
    }

    /// Joint training: searchable layers get `(b, b)` for every candidate `b`; the fixed
    /// layers (first conv, last linear) one variant at `fixed` bits, or none (full
    /// precision, as the reference's joint training) when `fixed` is `None`.
    pub fn joint_with(
        model: &Model,
        bits: &[u32],
        fixed: Option<(u32, u32)>,
    ) -> Result<QuantSpec, EngineError> {
        check_bits(bits)?;
        if let Some((w, a)) = fixed {
            check_bits(&[w, a])?;
        }
        let layers = model
            .quantizable_layers()?
            .into_iter()
            .map(|l| {
                let v = if l.fixed {
                    fixed.into_iter().collect()
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
        // Its own entries' bits (a fixed layer it leaves out is at FIXED_BITS).
        Self::check_policy_bits(policy)?;
        // By name, the first of a name as a search would find it: one lookup per layer and
        // per policy entry, not a walk of the other list (quadratic in a large model).
        let mut by_name: HashMap<&str, &LayerBits> = HashMap::new();
        for p in &policy.layers {
            by_name.entry(p.name.as_str()).or_insert(p);
        }
        let mut layers = Vec::new();
        for l in model.quantizable_layers()? {
            let found = by_name.get(l.name.as_str()).copied();
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
            layers.push((l.name, vec![v]));
        }
        let known: HashSet<&str> = layers.iter().map(|(n, _)| n.as_str()).collect();
        for p in &policy.layers {
            if !known.contains(p.name.as_str()) {
                return Err(EngineError::Input(format!(
                    "policy layer '{}' is not a conv/linear layer of model '{}'",
                    p.name, model.name
                )));
            }
        }
        Ok(QuantSpec { layers })
    }
}

impl QuantSpec {
    /// Every layer of `policy` at bits the trainer runs (2..=16), or an error naming the
    /// first that is not.
    pub fn check_policy_bits(policy: &Policy) -> Result<(), EngineError> {
        for l in &policy.layers {
            check_bits(&[l.weight, l.act]).map_err(|e| {
                EngineError::Input(format!(
                    "policy layer '{}' at W{}A{}: {e}",
                    l.name, l.weight, l.act
                ))
            })?;
        }
        Ok(())
    }
}

fn check_bits(bits: &[u32]) -> Result<(), EngineError> {
    if bits.is_empty() {
        return Err(EngineError::Input("no bit-widths given".into()));
    }
    if let Some(b) = bits.iter().find(|b| !(2..=16).contains(*b)) {
        return Err(EngineError::Input(format!(
            "bit-width {b} outside 2..=16 (LSQ needs at least 2 bits for signed values)"
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
    pub(super) w_steps: usize,
    pub(super) a_steps: usize,
    pub(super) weight: usize,
    /// Raw input and quantized weight (tensor ids); the layer's [`LayerIo`] says what it
    /// reads (a linear layer a quantized copy of its input, a conv the raw input).
    pub(super) x: usize,
    pub(super) wq: usize,
    /// Index of this layer's quantize entry in the forward list.
    pub(super) fwd_pos: usize,
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

/// One bit-width variant of a quantized layer, as the layer's own ops need it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Variant {
    /// Configs of the weight and input quantizers (step index = variant index).
    weight: LsqConfig,
    act: LsqConfig,
    /// Param indices of the step tensors.
    w_steps: usize,
    a_steps: usize,
}

impl Variant {
    /// The input quantizer, applied on load by the conv kernels.
    pub(super) fn act_quant<'a>(&self, b: &'a Builder<'_>) -> QuantX<'a> {
        QuantX {
            steps: b.pv(self.a_steps),
            config: self.act,
        }
    }

    /// The weight quantizer (the f16 convs' integer codes).
    pub(super) fn weight_quant<'a>(&self, b: &'a Builder<'_>) -> QuantX<'a> {
        QuantX {
            steps: b.pv(self.w_steps),
            config: self.weight,
        }
    }
}

/// Where the backward ops of a conv/linear layer write, as the hook decides: in full
/// precision the parameter gradients themselves (overwritten) and the input's gradient; in a
/// quantized network the gradient of the QUANTIZED weight and input go to scratch tensors
/// that the LSQ backward ([`Builder::quant_layer_backward`]) reads, and the bias gradient
/// accumulates.
pub(super) struct LayerGrads {
    /// Target of the weight-gradient op (overwritten).
    pub(super) dw: usize,
    /// Whether the bias-gradient op adds to the bias gradient.
    pub(super) bias_accumulates: bool,
    /// Target of the input-gradient op and whether it adds to it; `None`: the model input
    /// (nothing upstream needs a gradient).
    pub(super) dx: Option<(usize, bool)>,
}

impl<'g> Builder<'g> {
    fn slot_of(&self, node: usize) -> Option<usize> {
        self.quant
            .as_ref()?
            .layers
            .iter()
            .position(|l| l.info.node == node)
    }

    /// Quantized layer of node `i` and its selection slot; `None` in full precision.
    fn qlayer(&self, i: usize) -> Option<(usize, &QLayer)> {
        let slot = self.slot_of(i)?;
        Some((slot, &self.quant.as_ref()?.layers[slot]))
    }

    /// A scratch tensor of the quantized backward, shared by every layer with the same
    /// length and role.
    fn qscratch(&mut self, len: usize, role: u8) -> Result<usize, GpuError> {
        let found = self.quant.as_ref().and_then(|q| {
            q.pool
                .iter()
                .find(|(l, r, _)| *l == len && *r == role)
                .map(|&(_, _, id)| id)
        });
        if let Some(id) = found {
            return Ok(id);
        }
        let id = self.zeros(len, "quant scratch")?;
        if let Some(q) = self.quant.as_mut() {
            q.pool.push((len, role, id));
        }
        Ok(id)
    }

    /// Whether backward ops add to the parameter gradients: in a quantized network, where
    /// one submission sums the gradients of several passes.
    pub(super) fn grads_accumulate(&self) -> bool {
        self.quant.is_some()
    }

    /// Forward hook of a conv/linear node: in a quantized network, record the LSQ ops of
    /// its weight and (linear layers) input, one variant per bit-width, and return the
    /// tensors the layer reads: the quantized weight, and the quantized input copy of a
    /// linear layer or the raw input of a conv (which quantizes it on load, see
    /// [`Builder::variants`]). In full precision `io` itself.
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
        let variants: Vec<(u32, u32)> = qb
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
            // A full-precision layer of a quantized network: it reads its own tensors.
            return Ok(io);
        }
        // Unsigned where the input cannot be negative (after a ReLU), signed elsewhere: the
        // model input, also through a Flatten, and MobileNetV2's linear bottlenecks, whose
        // negative values an unsigned quantizer clamped to 0.
        let act_signed = self.act_signs.get(i).copied().unwrap_or(true);
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
        let slot = self.quant.as_ref().map_or(0, |q| q.layers.len());
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
        if let Some(q) = self.quant.as_mut() {
            q.layers.push(QLayer {
                info,
                w_steps,
                a_steps,
                weight: wp,
                x: io.input,
                wq,
                fwd_pos,
            });
        }
        Ok(LayerIo {
            input: xq.unwrap_or(io.input),
            weight: wq,
        })
    }

    /// The variants of conv/linear node `i` and its selection slot; `None` in full precision.
    pub(super) fn variants(&self, i: usize) -> Option<(usize, Vec<Variant>)> {
        let (slot, l) = self.qlayer(i)?;
        let v = l.info.variants.iter().enumerate();
        let v = v.map(|(k, &(wb, ab))| Variant {
            weight: lsq(k, wb, true),
            act: lsq(k, ab, l.info.act_signed),
            w_steps: l.w_steps,
            a_steps: l.a_steps,
        });
        Some((slot, v.collect()))
    }

    /// Backward hook, before a conv/linear node's own backward ops: where they write (see
    /// [`LayerGrads`]). `wp` is the weight parameter, `src` the layer's input. A
    /// full-precision layer of a quantized network writes its weight gradient to a scratch
    /// that [`Builder::quant_layer_backward`] adds to the gradient (several passes in one
    /// submission sum), and adds its bias gradient.
    pub(super) fn layer_grads(
        &mut self,
        i: usize,
        wp: usize,
        src: Source,
    ) -> Result<LayerGrads, GpuError> {
        let Some((wq, x)) = self.qlayer(i).map(|(_, l)| (l.wq, l.x)) else {
            let accumulate = self.grads_accumulate();
            let dw = if accumulate {
                let wlen = self.tensors[self.params[wp].value].len();
                self.qscratch(wlen, ROLE_DW)?
            } else {
                self.params[wp].grad
            };
            return Ok(LayerGrads {
                dw,
                bias_accumulates: accumulate,
                dx: self.dx_accumulate(src),
            });
        };
        let wlen = self.tensors[wq].len();
        let xlen = self.tensors[x].len();
        let dwq = self.qscratch(wlen, ROLE_DWQ)?;
        self.qscratch(wlen, ROLE_DW)?;
        let dxq = self.qscratch(xlen, ROLE_DXQ)?;
        Ok(LayerGrads {
            dw: dwq,
            bias_accumulates: true,
            dx: Some((dxq, false)),
        })
    }

    /// Backward hook, after a conv/linear node's own backward ops (which wrote the
    /// [`LayerGrads`] of [`Builder::layer_grads`]): in a quantized network, through the
    /// quantizers — the weight's LSQ backward into a scratch summed into the weight
    /// gradient, the input's into the input gradient, both adding their step gradients.
    /// A full-precision layer of a quantized network adds its weight gradient's scratch to
    /// the gradient of `wp`, its weight parameter; nothing in a full-precision network.
    pub(super) fn quant_layer_backward(
        &mut self,
        i: usize,
        wp: usize,
        src: Source,
    ) -> Result<(), GpuError> {
        let Some((slot, l)) = self.qlayer(i).map(|(s, l)| (s, l.clone())) else {
            if self.grads_accumulate() {
                let wlen = self.tensors[self.params[wp].value].len();
                let dw = self.qscratch(wlen, ROLE_DW)?;
                let op = Axpy::new(self.gpu, self.t(dw), self.pg(wp), 1.0);
                let name = self.model.nodes[i].name.clone();
                self.bwd(Step::op(at(&name, op)?));
            }
            return Ok(());
        };
        let name = l.info.name.as_str();
        let wlen = self.tensors[l.wq].len();
        let xlen = self.tensors[l.x].len();
        let dwq = self.qscratch(wlen, ROLE_DWQ)?;
        let dw = self.qscratch(wlen, ROLE_DW)?;
        let dxq = self.qscratch(xlen, ROLE_DXQ)?;
        let (target, axpy) = match self.dx_target(src)? {
            Some(t) => t,
            None => (self.qscratch(xlen, ROLE_DX_DISCARD)?, None),
        };
        let mut per = Vec::new();
        for (k, &(wb, ab)) in l.info.variants.iter().enumerate() {
            // Every rank holds the whole weight tensor.
            let w = LsqBackward::new_accumulating(
                self.gpu,
                self.pv(l.weight),
                self.t(dwq),
                self.t(dw),
                self.pv(l.w_steps),
                self.pg(l.w_steps),
                lsq(k, wb, true),
                1,
            );
            // N of the gradient scale: the global batch's elements (one rank holds
            // `1/ranks` of them), so that the ranks' mean gradient is one process's.
            let a = LsqBackward::new_accumulating(
                self.gpu,
                self.t(l.x),
                self.t(dxq),
                self.t(target),
                self.pv(l.a_steps),
                self.pg(l.a_steps),
                lsq(k, ab, l.info.act_signed),
                self.ranks,
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

    /// Switchable-BN hook: the parameter sets of BN node `i` — one per variant of the
    /// quantized layer it follows (named `{bn}.w{W}a{A}`), with that layer's selection slot,
    /// when the layer has several; else the one set `{bn}`.
    pub(super) fn bn_set_names(&self, i: usize) -> (Option<usize>, Vec<String>) {
        let name = &self.model.nodes[i].name;
        let follows = match self.infos[i].inputs[0] {
            Source::Node(j) => self.slot_of(j),
            Source::Input => None,
        };
        let layer = follows
            .and_then(|s| Some((s, &self.quant.as_ref()?.layers[s].info.variants)))
            .filter(|(_, v)| v.len() > 1);
        match layer {
            Some((slot, v)) => {
                let names = v.iter().map(|(w, a)| format!("{name}.w{w}a{a}"));
                (Some(slot), names.collect())
            }
            None => (None, vec![name.clone()]),
        }
    }

    /// BN backward hook: where BN backward writes dγ and dβ — scratch tensors (then summed
    /// into the parameter gradients) when gradients accumulate, else `None` (the gradients
    /// themselves).
    pub(super) fn bn_grad_scratch(&mut self, c: usize) -> Result<Option<(usize, usize)>, GpuError> {
        if !self.grads_accumulate() {
            return Ok(None);
        }
        let dg = self.qscratch(c, ROLE_DGAMMA)?;
        let db = self.qscratch(c, ROLE_DBETA)?;
        Ok(Some((dg, db)))
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
    /// variants of `spec` (see the module doc), those without variants in full precision. Step sizes start at 1: call
    /// [`Network::init_steps`] after loading the weights.
    pub fn new_quantized(
        gpu: &'g Gpu,
        model: &Model,
        cfg: NetworkConfig,
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
            // No variant: the layer stays in full precision.
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

    pub(super) fn qnet(&self) -> Result<&QuantNet, EngineError> {
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

    pub(super) fn check_sel(&self, sel: &[usize]) -> Result<(), EngineError> {
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

    /// A train-mode forward of `x` with every quantized layer at its variant in `sel`,
    /// reading back the raw input of every quantized layer (what its activation quantizer
    /// sees), in layer order. BN running statistics of the selected sets are updated.
    pub fn quant_layer_inputs(
        &mut self,
        x: &[f32],
        y: &[u32],
        sel: &[usize],
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        self.check_sel(sel)?;
        self.upload(x, y)?;
        let q = self.qnet()?;
        let mut rec = self.seg();
        self.record_forward(&mut rec, true, sel);
        let reads: Vec<usize> = q
            .layers
            .iter()
            .map(|l| rec.read(&self.tensors[l.x]))
            .collect();
        let out = rec.submit()?;
        Ok(reads.into_iter().map(|r| out.f32(r).to_vec()).collect())
    }

    /// LSQ step-size init (docs/METHOD.md): for every layer `which[l]` says whether to set it.
    /// Weights: `max(|mean-3std|, |mean+3std|) / 2^(b-1)` from the current weights, per
    /// variant. Activations: on the batch `x`, per variant `k`, a train-mode forward with
    /// every layer at its variant `k` (layers with fewer variants at their last) in which
    /// each quantizer's step is set from its input just before it runs, so later layers see
    /// the quantized outputs of earlier ones (as lazy init in the reference code does).
    /// BN running statistics of the variant's sets are updated by these forwards.
    pub fn init_steps(&mut self, x: &[f32], y: &[u32], which: &[bool]) -> Result<(), EngineError> {
        self.init_steps_synced(x, y, which, &mut |_| {})
    }

    /// [`Network::init_steps`] in a data-parallel run: each activation step size computed
    /// on this rank's part of the batch goes through `mean` (the mean over the ranks) before
    /// it is used, layer by layer, so every rank starts from the same step sizes. With equal
    /// parts, the mean of the ranks' `2·mean|x|/√Qp` is that of the whole batch (up to
    /// rounding) as long as the activations themselves agree with the one-process run's.
    pub fn init_steps_synced(
        &mut self,
        x: &[f32],
        y: &[u32],
        which: &[bool],
        mean: &mut dyn FnMut(&mut [f32]),
    ) -> Result<(), EngineError> {
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
                    let mut rec = self.seg();
                    for f in &self.forward[pos..l.fwd_pos] {
                        self.record_fwd(f, &mut rec, true, &sel);
                    }
                    let r = rec.read(&self.tensors[l.x]);
                    let out = rec.submit()?;
                    out.f32(r).to_vec()
                };
                pos = l.fwd_pos;
                let (_, ab) = l.info.variants[k];
                let mut scale = [act_init_scale(&data, ab, l.info.act_signed)];
                mean(&mut scale);
                steps[li].1[k] = scale[0];
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(layers: &[(&str, u32, u32)]) -> Policy {
        crate::test_support::policy("small_cnn", layers)
    }

    /// A policy's layers are matched to the model's by name: each searchable layer must be
    /// there, a fixed one missing stays at the fixed bits, and a name the model lacks is
    /// refused; of two entries of one name, the first counts.
    #[test]
    fn a_policy_is_matched_to_the_layers_by_name() {
        let model = crate::model::small_cnn();
        let layers = model.quantizable_layers().expect("a valid model");
        let searched: Vec<&str> = layers
            .iter()
            .filter(|l| !l.fixed)
            .map(|l| l.name.as_str())
            .collect();
        assert!(searched.len() >= 2 && layers.iter().any(|l| l.fixed));
        let mut entries: Vec<(&str, u32, u32)> = searched
            .iter()
            .enumerate()
            .map(|(i, &n)| (n, 2 + i as u32 % 3, 3))
            .collect();
        // Listed in reverse, with a second entry for the first layer that must not count.
        entries.reverse();
        entries.push((searched[0], 8, 8));
        let spec = QuantSpec::policy(&model, &policy(&entries)).expect("every layer is there");
        for (l, (name, variants)) in layers.iter().zip(&spec.layers) {
            assert_eq!(&l.name, name);
            let want = match searched.iter().position(|&n| n == l.name) {
                Some(i) => (2 + i as u32 % 3, 3),
                None => FIXED_BITS,
            };
            assert_eq!(variants, &vec![want], "layer {name}");
        }

        let e = QuantSpec::policy(&model, &policy(&entries[1..])).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("has no layer '{}'", searched[searched.len() - 1])),
            "{e}"
        );
        entries.push(("nope", 4, 4));
        let e = QuantSpec::policy(&model, &policy(&entries)).unwrap_err();
        assert!(e.to_string().contains("policy layer 'nope'"), "{e}");
    }
}
