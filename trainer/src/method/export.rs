//! A finetuned checkpoint as an ONNX QDQ model (`limpq export Q.ckpt --onnx Q.onnx`), built
//! to compute what `limpq eval` computes on it (docs/DEPLOY.md):
//!
//! - every conv/linear weight is stored as its integer LSQ codes
//!   `round_half_even(clamp(w / s, Qn, Qp))` (INT4 when the layer's weight bits are ≤ 4, else
//!   INT8) and read through `DequantizeLinear` at the learned step `s` (clamped to
//!   [`STEP_MIN`], [`STEP_MAX`] as the kernels do), so the conv sees `code · s`, the value
//!   `limpq eval` uses;
//! - every conv/linear input goes through `Clip(x, Qn·s, Qp·s)` (left out when the b-bit
//!   range is the whole 8-bit container), `QuantizeLinear` and `DequantizeLinear` at its
//!   learned step: unsigned (UINT8) for activations, signed (INT8) for the model input, as
//!   the trainer quantizes them. `QuantizeLinear` rounds half to even, like the LSQ
//!   quantizer (`torch.round`, WGSL `round`, `f32::round_ties_even` in the reference); the
//!   Clip carries the b-bit range because `QuantizeLinear` only saturates to its container;
//! - batch norms are `BatchNormalization` nodes in inference mode with the running
//!   statistics (eps [`BN_EPS`]): at a policy every layer has one variant, so every BN has
//!   one set, the one finetuning trained. Folding them into the weights would change the
//!   quantized weights `limpq eval` uses (the BN comes after the quantized conv);
//! - the other ops map one to one (ReLU6 is `Clip(0, 6)`, padded average pooling counts
//!   the padding as PyTorch does), tensors are NCHW with a free batch dimension `N`, the
//!   input is `input` and the output `logits` (`N × classes`);
//! - every conv/linear node carries its bits and steps in `metadata_props` (`limpq.weight_bits`,
//!   `limpq.act_bits`, `limpq.weight_step`, `limpq.act_step`, `limpq.fixed`) and in its
//!   `doc_string`; the model's `metadata_props` hold the model name, the policy (RON) and a
//!   per-layer bits table (JSON).
//!
//! Opset 21 (the first with INT4 in `DequantizeLinear`), IR version 10.

use std::collections::{HashMap, HashSet};

use limpq_onnx::proto::attribute_proto::AttributeType;
use limpq_onnx::proto::tensor_proto::DataType;
use limpq_onnx::proto::tensor_shape_proto::{dimension, Dimension};
use limpq_onnx::proto::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use limpq_solver::Policy;
use serde::Serialize;

use super::MethodError;
use crate::checkpoint::Checkpoint;
use crate::engine::QuantSpec;
use crate::kernels::lsq::{STEP_MAX, STEP_MIN};
use crate::kernels::norm::BN_EPS;
use crate::model::{Model, Op, Source};

/// The ONNX operator set the export targets.
pub const ONNX_OPSET: i64 = 21;
/// The ONNX IR version of the written files.
pub const ONNX_IR_VERSION: i64 = 10;
/// The most bits a layer may have in an ONNX QDQ export (the 8-bit containers).
pub const MAX_EXPORT_BITS: u32 = 8;

/// One conv/linear layer as exported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExportedLayer {
    pub name: String,
    pub weight_bits: u32,
    pub act_bits: u32,
    /// The weight codes' ONNX type: `INT4` or `INT8`.
    pub weight_container: &'static str,
    /// The activation codes' ONNX type: `UINT8` (activations) or `INT8` (the model input).
    pub act_container: &'static str,
    /// The steps used (the checkpoint's, clamped as the kernels clamp them).
    pub weight_step: f32,
    pub act_step: f32,
    /// Kept at the fixed 8 bits, not searched (stem and classifier).
    pub fixed: bool,
}

/// What [`export_onnx`] wrote: the model and its layers' bits.
#[derive(Clone, Debug)]
pub struct OnnxExport {
    pub model: ModelProto,
    pub layers: Vec<ExportedLayer>,
}

/// LSQ range of `bits`: signed `[-2^(b-1), 2^(b-1)-1]`, unsigned `[0, 2^b-1]`.
fn range(bits: u32, signed: bool) -> (f32, f32) {
    crate::reference::lsq::lsq_range(bits, signed)
}

/// The integer code of `x` at step `s` (already clamped): the LSQ forward without `· s`.
pub fn lsq_code(x: f32, s: f32, bits: u32, signed: bool) -> i32 {
    let (qn, qp) = range(bits, signed);
    (x / s).clamp(qn, qp).round_ties_even() as i32
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn prop(key: &str, value: impl ToString) -> StringStringEntryProto {
    StringStringEntryProto {
        key: s(key),
        value: Some(value.to_string()),
    }
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: s(name),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: s(name),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: s(name),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        name: s(name),
        op_type: s(op),
        input: inputs.iter().map(|i| i.to_string()).collect(),
        output: vec![output.to_string()],
        ..Default::default()
    }
}

fn float_tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: s(name),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// Integer codes in an INT4, INT8 or UINT8 tensor (`raw_data`: one byte per code, or two
/// 4-bit codes per byte, the first in the low nibble, as ONNX packs them).
fn int_tensor(name: &str, dims: &[i64], ty: DataType, codes: &[i32]) -> TensorProto {
    let raw: Vec<u8> = match ty {
        DataType::Int4 | DataType::Uint4 => codes
            .chunks(2)
            .map(|p| {
                let lo = (p[0] as u8) & 0x0f;
                let hi = p.get(1).map_or(0, |&v| (v as u8) & 0x0f);
                lo | (hi << 4)
            })
            .collect(),
        _ => codes.iter().map(|&v| v as u8).collect(),
    };
    TensorProto {
        name: s(name),
        dims: dims.to_vec(),
        data_type: Some(ty as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

fn tensor_value(name: &str, dims: Vec<Dimension>) -> ValueInfoProto {
    ValueInfoProto {
        name: s(name),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim: dims }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn dim(v: usize) -> Dimension {
    Dimension {
        value: Some(dimension::Value::DimValue(v as i64)),
        ..Default::default()
    }
}

fn batch_dim() -> Dimension {
    Dimension {
        value: Some(dimension::Value::DimParam("N".into())),
        ..Default::default()
    }
}

/// The graph under construction.
struct Graph<'a> {
    ckpt: &'a Checkpoint,
    tensors: HashMap<&'a str, &'a [f32]>,
    nodes: Vec<NodeProto>,
    init: Vec<TensorProto>,
    shared: HashSet<String>,
}

impl<'a> Graph<'a> {
    fn origin(&self) -> String {
        self.ckpt
            .origin
            .as_ref()
            .map_or_else(|| "the checkpoint".into(), |p| p.display().to_string())
    }

    /// The checkpoint's tensor `name`, of `len` values.
    fn tensor(&self, name: &str, len: usize) -> Result<&'a [f32], MethodError> {
        match self.tensors.get(name) {
            None => Err(MethodError::Config(format!(
                "{}: no tensor '{name}'; is it a checkpoint of `limpq finetune` at this policy?",
                self.origin()
            ))),
            Some(t) if t.len() != len => Err(MethodError::Config(format!(
                "{}: tensor '{name}' has {} values, the model needs {len}",
                self.origin(),
                t.len()
            ))),
            Some(t) => Ok(t),
        }
    }

    /// The learned step `name` (one value), clamped as the kernels clamp it.
    fn step(&self, name: &str) -> Result<f32, MethodError> {
        let v = self.tensor(name, 1)?[0];
        if !v.is_finite() {
            return Err(MethodError::Config(format!(
                "{}: step size '{name}' is {v}, not a finite number",
                self.origin()
            )));
        }
        Ok(v.clamp(STEP_MIN, STEP_MAX))
    }

    /// Layer `name`'s bias (`len` values) as an initializer of the same name; returns it.
    fn bias_init(&mut self, name: &str, len: usize) -> Result<String, MethodError> {
        let bn = format!("{name}.bias");
        let b = self.tensor(&bn, len)?;
        self.float_init(&bn, &[len as i64], b);
        Ok(bn)
    }

    fn float_init(&mut self, name: &str, dims: &[i64], data: &[f32]) {
        self.init.push(float_tensor(name, dims, data));
    }

    /// A scalar float initializer shared by every node that uses the value.
    fn shared_scalar(&mut self, name: &str, v: f32) -> String {
        if self.shared.insert(name.to_string()) {
            self.init.push(float_tensor(name, &[], &[v]));
        }
        name.to_string()
    }

    /// `Clip(x, Qn·s, Qp·s)` (when the range is narrower than the container), then
    /// `QuantizeLinear` / `DequantizeLinear` at `step`; returns the dequantized tensor.
    fn act_qdq(&mut self, layer: &str, x: &str, bits: u32, signed: bool, step: f32) -> String {
        let (qn, qp) = range(bits, signed);
        let ty = if signed {
            DataType::Int8
        } else {
            DataType::Uint8
        };
        let mut x = x.to_string();
        if bits < 8 {
            let lo = format!("{layer}.input_min");
            let hi = format!("{layer}.input_max");
            self.float_init(&lo, &[], &[qn * step]);
            self.float_init(&hi, &[], &[qp * step]);
            let out = format!("{layer}.input_clipped");
            self.nodes.push(node(
                "Clip",
                &format!("{layer}.input_clip"),
                &[&x, &lo, &hi],
                &out,
            ));
            x = out;
        }
        let scale = format!("{layer}.input_scale");
        let zp = format!("{layer}.input_zero_point");
        self.float_init(&scale, &[], &[step]);
        self.init.push(int_tensor(&zp, &[], ty, &[0]));
        let codes = format!("{layer}.input_quantized");
        let out = format!("{layer}.input_dequantized");
        self.nodes.push(node(
            "QuantizeLinear",
            &format!("{layer}.input_quantize"),
            &[&x, &scale, &zp],
            &codes,
        ));
        self.nodes.push(node(
            "DequantizeLinear",
            &format!("{layer}.input_dequantize"),
            &[&codes, &scale, &zp],
            &out,
        ));
        out
    }

    /// The weight as integer codes with its `DequantizeLinear`; returns the dequantized
    /// tensor's name and the container's name.
    fn weight_dq(
        &mut self,
        layer: &str,
        w: &[f32],
        dims: &[i64],
        bits: u32,
        step: f32,
    ) -> (String, &'static str) {
        let (ty, tname) = if bits <= 4 {
            (DataType::Int4, "INT4")
        } else {
            (DataType::Int8, "INT8")
        };
        let codes: Vec<i32> = w.iter().map(|&v| lsq_code(v, step, bits, true)).collect();
        let q = format!("{layer}.weight_quantized");
        let scale = format!("{layer}.weight_scale");
        let zp = format!("{layer}.weight_zero_point");
        self.init.push(int_tensor(&q, dims, ty, &codes));
        self.float_init(&scale, &[], &[step]);
        self.init.push(int_tensor(&zp, &[], ty, &[0]));
        let out = format!("{layer}.weight");
        self.nodes.push(node(
            "DequantizeLinear",
            &format!("{layer}.weight_dequantize"),
            &[&q, &scale, &zp],
            &out,
        ));
        (out, tname)
    }

    /// `x` as a 4-D `N×C×1×1` tensor when it is 2-D (`N×C`, after a flatten or a linear
    /// layer) and a 4-D op reads it.
    fn as_4d(&mut self, x: &(String, usize), c: usize, reader: &str) -> String {
        if x.1 == 4 {
            return x.0.clone();
        }
        let shape = format!("{reader}.input_shape");
        self.init.push(TensorProto {
            name: Some(shape.clone()),
            dims: vec![4],
            data_type: Some(DataType::Int64 as i32),
            int64_data: vec![-1, c as i64, 1, 1],
            ..Default::default()
        });
        let out = format!("{reader}.input_4d");
        self.nodes.push(node(
            "Reshape",
            &format!("{reader}.input_reshape"),
            &[&x.0, &shape],
            &out,
        ));
        out
    }
}

/// The bits of every conv/linear layer at `policy` (fixed layers it leaves out at 8/8),
/// refused when a layer needs more than [`MAX_EXPORT_BITS`].
fn export_bits(model: &Model, policy: &Policy) -> Result<Vec<(String, u32, u32)>, MethodError> {
    super::check_policy_model(policy, model)?;
    let spec = QuantSpec::policy(model, policy)?;
    let mut out = Vec::new();
    for (name, v) in spec.layers {
        let (w, a) = v[0];
        if w > MAX_EXPORT_BITS || a > MAX_EXPORT_BITS {
            return Err(MethodError::Config(format!(
                "layer '{name}': W{w}A{a} does not fit an ONNX QDQ export, which stores \
                 2 to {MAX_EXPORT_BITS} bits (INT4/INT8 weights, 8-bit activations)"
            )));
        }
        out.push((name, w, a));
    }
    Ok(out)
}

/// The ONNX QDQ model of `ckpt` (written by `limpq finetune`) at `policy`'s bits; see the
/// module doc. Errors name the checkpoint and the layer or tensor.
pub fn export_onnx(ckpt: &Checkpoint, policy: &Policy) -> Result<OnnxExport, MethodError> {
    let model = &ckpt.model;
    let infos = model.analyze()?;
    let bits = export_bits(model, policy)?;
    super::check_finetuned_policy(ckpt, policy)?;
    let qlayers = model.quantizable_layers()?;
    // A quantizable layer's (weight bits, activation bits, fixed).
    let layer_bits = |name: &str| -> Result<(u32, u32, bool), MethodError> {
        let (_, wb, ab) = bits
            .iter()
            .find(|(l, _, _)| l == name)
            .cloned()
            .ok_or_else(|| MethodError::Config(format!("layer '{name}' has no bits")))?;
        Ok((wb, ab, qlayers.iter().any(|l| l.name == name && l.fixed)))
    };
    let tensors = ckpt
        .tensors
        .iter()
        .filter(|t| t.kind != crate::checkpoint::TensorKind::Momentum)
        .map(|t| (t.name.as_str(), t.data.as_slice()))
        .collect();
    let mut g = Graph {
        ckpt,
        tensors,
        nodes: Vec::new(),
        init: Vec::new(),
        shared: HashSet::new(),
    };
    let mut exported = Vec::new();
    let signs = model.act_signs(&infos);
    // Output tensor and rank (4: N×C×H×W, 2: N×C) of every node.
    let mut outs: Vec<(String, usize)> = Vec::with_capacity(model.nodes.len());
    let input = ("input".to_string(), 4usize);
    for (i, (n, info)) in model.nodes.iter().zip(&infos).enumerate() {
        let name = n.name.as_str();
        let src = |k: usize| match info.inputs[k] {
            Source::Input => input.clone(),
            Source::Node(j) => outs[j].clone(),
        };
        let x = src(0);
        let xs = info.input_shapes[0];
        let out = match &n.op {
            Op::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                groups,
                bias,
            } => {
                let (wb, ab, fixed) = layer_bits(name)?;
                let signed = signs[i];
                let cin_g = xs.c / groups;
                let dims = [
                    *out_channels as i64,
                    cin_g as i64,
                    *kernel as i64,
                    *kernel as i64,
                ];
                let wlen = out_channels * cin_g * kernel * kernel;
                let w = g.tensor(&format!("{name}.weight"), wlen)?;
                let ws = g.step(&format!("{name}.weight_step"))?;
                let as_ = g.step(&format!("{name}.act_step"))?;
                let x4 = g.as_4d(&x, xs.c, name);
                let xq = g.act_qdq(name, &x4, ab, signed, as_);
                let (wq, wt) = g.weight_dq(name, w, &dims, wb, ws);
                let mut ins = vec![xq, wq];
                if *bias {
                    ins.push(g.bias_init(name, *out_channels)?);
                }
                let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
                let mut c = node("Conv", name, &refs, name);
                let (k, st, p) = (*kernel as i64, *stride as i64, *padding as i64);
                c.attribute = vec![
                    attr_ints("kernel_shape", &[k, k]),
                    attr_ints("strides", &[st, st]),
                    attr_ints("pads", &[p, p, p, p]),
                    attr_ints("dilations", &[1, 1]),
                    attr_int("group", *groups as i64),
                ];
                let layer = layer_record(name, wb, ab, wt, signed, ws, as_, fixed);
                annotate(&mut c, &layer);
                exported.push(layer);
                g.nodes.push(c);
                (name.to_string(), 4)
            }
            Op::Linear { out_features, bias } => {
                let (wb, ab, fixed) = layer_bits(name)?;
                let signed = signs[i];
                let in_f = xs.numel();
                let w = g.tensor(&format!("{name}.weight"), out_features * in_f)?;
                let ws = g.step(&format!("{name}.weight_step"))?;
                let as_ = g.step(&format!("{name}.act_step"))?;
                let flat = if x.1 == 4 {
                    let f = format!("{name}.input_flat");
                    let mut fl = node("Flatten", &format!("{name}.flatten"), &[&x.0], &f);
                    fl.attribute = vec![attr_int("axis", 1)];
                    g.nodes.push(fl);
                    f
                } else {
                    x.0.clone()
                };
                let xq = g.act_qdq(name, &flat, ab, signed, as_);
                let (wq, wt) = g.weight_dq(name, w, &[*out_features as i64, in_f as i64], wb, ws);
                let mut ins = vec![xq, wq];
                if *bias {
                    ins.push(g.bias_init(name, *out_features)?);
                }
                let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
                let mut gm = node("Gemm", name, &refs, name);
                gm.attribute = vec![attr_int("transB", 1)];
                let layer = layer_record(name, wb, ab, wt, signed, ws, as_, fixed);
                annotate(&mut gm, &layer);
                exported.push(layer);
                g.nodes.push(gm);
                (name.to_string(), 2)
            }
            Op::BatchNorm => {
                let c = xs.c;
                let mut ins = vec![x.0.clone()];
                for p in ["weight", "bias", "running_mean", "running_var"] {
                    let t = format!("{name}.{p}");
                    let data = g.tensor(&t, c)?;
                    g.float_init(&t, &[c as i64], data);
                    ins.push(t);
                }
                let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
                let mut b = node("BatchNormalization", name, &refs, name);
                b.attribute = vec![attr_float("epsilon", BN_EPS)];
                g.nodes.push(b);
                (name.to_string(), x.1)
            }
            Op::Relu => {
                g.nodes.push(node("Relu", name, &[&x.0], name));
                (name.to_string(), x.1)
            }
            Op::Relu6 => {
                let lo = g.shared_scalar("limpq.zero", 0.0);
                let hi = g.shared_scalar("limpq.six", 6.0);
                g.nodes.push(node("Clip", name, &[&x.0, &lo, &hi], name));
                (name.to_string(), x.1)
            }
            Op::Add => {
                let ins: Vec<(String, usize)> = (0..info.inputs.len()).map(src).collect();
                let rank = ins.iter().map(|t| t.1).max().unwrap_or(4);
                let mut names = Vec::new();
                for (k, t) in ins.iter().enumerate() {
                    if rank == 4 {
                        names.push(g.as_4d(t, xs.c, &format!("{name}.{k}")));
                    } else {
                        names.push(t.0.clone());
                    }
                }
                let mut acc = names[0].clone();
                for (k, next) in names.iter().enumerate().skip(1) {
                    let last = k + 1 == names.len();
                    let (nn, out) = if last {
                        (name.to_string(), name.to_string())
                    } else {
                        (format!("{name}.sum{k}"), format!("{name}.sum{k}"))
                    };
                    g.nodes.push(node("Add", &nn, &[&acc, next], &out));
                    acc = out;
                }
                (name.to_string(), rank)
            }
            Op::MaxPool {
                kernel,
                stride,
                padding,
            }
            | Op::AvgPool {
                kernel,
                stride,
                padding,
            } => {
                let x4 = g.as_4d(&x, xs.c, name);
                let avg = matches!(n.op, Op::AvgPool { .. });
                let op = if avg { "AveragePool" } else { "MaxPool" };
                let mut p = node(op, name, &[&x4], name);
                let (k, st, pd) = (*kernel as i64, *stride as i64, *padding as i64);
                p.attribute = vec![
                    attr_ints("kernel_shape", &[k, k]),
                    attr_ints("strides", &[st, st]),
                    attr_ints("pads", &[pd, pd, pd, pd]),
                ];
                if avg {
                    p.attribute.push(attr_int("count_include_pad", 1));
                }
                g.nodes.push(p);
                (name.to_string(), 4)
            }
            Op::GlobalAvgPool => {
                let x4 = g.as_4d(&x, xs.c, name);
                g.nodes.push(node("GlobalAveragePool", name, &[&x4], name));
                (name.to_string(), 4)
            }
            Op::Flatten => {
                let mut f = node("Flatten", name, &[&x.0], name);
                f.attribute = vec![attr_int("axis", 1)];
                g.nodes.push(f);
                (name.to_string(), 2)
            }
        };
        debug_assert_eq!(outs.len(), i);
        outs.push(out);
    }
    let last = outs
        .last()
        .cloned()
        .ok_or_else(|| MethodError::Config(format!("model '{}' has no nodes", model.name)))?;
    let mut f = node("Flatten", "logits", &[&last.0], "logits");
    f.attribute = vec![attr_int("axis", 1)];
    g.nodes.push(f);
    check_unique(model, &g.nodes, &g.init)?;

    let (c, h, w) = model.input;
    let graph = GraphProto {
        name: Some(model.name.clone()),
        node: g.nodes,
        initializer: g.init,
        input: vec![tensor_value(
            "input",
            vec![batch_dim(), dim(c), dim(h), dim(w)],
        )],
        output: vec![tensor_value(
            "logits",
            vec![batch_dim(), dim(model.classes)],
        )],
        doc_string: Some(format!(
            "{} quantized at a mixed-precision policy by limpq (QDQ: weights as integer \
             codes, activations through QuantizeLinear/DequantizeLinear at the learned steps)",
            model.name
        )),
        ..Default::default()
    };
    let table = serde_json::to_string(&exported).unwrap_or_default();
    let model_proto = ModelProto {
        ir_version: Some(ONNX_IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(ONNX_OPSET),
        }],
        producer_name: s("limpq"),
        producer_version: s(env!("CARGO_PKG_VERSION")),
        graph: Some(graph),
        doc_string: s("Mixed-precision QDQ model written by `limpq export --onnx`"),
        metadata_props: vec![
            prop("limpq.model", &model.name),
            prop("limpq.policy", policy.to_ron_string()),
            prop("limpq.layers", table),
        ],
        ..Default::default()
    };
    Ok(OnnxExport {
        model: model_proto,
        layers: exported,
    })
}

#[allow(clippy::too_many_arguments)]
fn layer_record(
    name: &str,
    wb: u32,
    ab: u32,
    wt: &'static str,
    signed: bool,
    ws: f32,
    as_: f32,
    fixed: bool,
) -> ExportedLayer {
    ExportedLayer {
        name: name.to_string(),
        weight_bits: wb,
        act_bits: ab,
        weight_container: wt,
        act_container: if signed { "INT8" } else { "UINT8" },
        weight_step: ws,
        act_step: as_,
        fixed,
    }
}

/// Bits and steps of a layer on its node: `metadata_props` and the `doc_string`.
fn annotate(n: &mut NodeProto, l: &ExportedLayer) {
    n.metadata_props = vec![
        prop("limpq.weight_bits", l.weight_bits),
        prop("limpq.act_bits", l.act_bits),
        prop("limpq.weight_step", l.weight_step),
        prop("limpq.act_step", l.act_step),
        prop("limpq.fixed", l.fixed),
    ];
    n.doc_string = Some(format!(
        "W{}A{}: weights {} codes, {} activations (limpq)",
        l.weight_bits,
        l.act_bits,
        l.weight_container,
        if l.act_container == "INT8" {
            "signed"
        } else {
            "unsigned"
        }
    ));
}

/// Every tensor has one producer: a node name that collides with a name the export
/// makes up (`conv1.weight`, `fc.input_quantized`, `logits`) is refused, naming it.
fn check_unique(
    model: &Model,
    nodes: &[NodeProto],
    init: &[TensorProto],
) -> Result<(), MethodError> {
    let mut seen: HashSet<&str> = HashSet::new();
    seen.insert("input");
    let produced = nodes
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .chain(init.iter().filter_map(|t| t.name.as_deref()));
    for t in produced {
        if !seen.insert(t) {
            return Err(MethodError::Config(format!(
                "model '{}': the ONNX tensor name '{t}' would be used twice (a node of the \
                 model has a name the export gives to another tensor: `input`, `logits`, \
                 `LAYER.weight`, `LAYER.input_*`, ...); rename that node",
                model.name
            )));
        }
    }
    Ok(())
}

/// `data` as a NumPy `.npy` file (version 1.0, little-endian f32, C order) of `shape`.
pub fn npy_f32(data: &[f32], shape: &[usize]) -> Vec<u8> {
    npy(
        "<f4",
        shape,
        data.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

/// `data` as a NumPy `.npy` file of little-endian i64 (one dimension).
pub fn npy_i64(data: &[i64]) -> Vec<u8> {
    npy(
        "<i8",
        &[data.len()],
        data.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

fn npy(descr: &str, shape: &[usize], payload: Vec<u8>) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + header length (2) + header + '\n', a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + payload.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The predicted class of every row of `logits` (`classes` wide): the first largest, as
/// `limpq eval` counts a correct prediction.
pub fn predictions(logits: &[f32], classes: usize) -> Vec<i64> {
    logits
        .chunks_exact(classes.max(1))
        .map(|row| {
            let mut arg = 0;
            for (j, v) in row.iter().enumerate() {
                if *v > row[arg] {
                    arg = j;
                }
            }
            arg as i64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{NamedTensor, TensorKind};
    use crate::reference::lsq::lsq_quantize_forward;

    fn model() -> Model {
        let text = r#"Model(name: "tiny", input: (1, 6, 6), classes: 3, nodes: [
            Node(name: "stem", op: Conv2d(out_channels: 4, kernel: 3, padding: 1), inputs: ["input"]),
            Node(name: "bn", op: BatchNorm, inputs: ["stem"]),
            Node(name: "relu", op: Relu, inputs: ["bn"]),
            Node(name: "mid", op: Conv2d(out_channels: 5, kernel: 3, stride: 2, groups: 1, bias: true), inputs: ["relu"]),
            Node(name: "relu6", op: Relu6, inputs: ["mid"]),
            Node(name: "gap", op: GlobalAvgPool, inputs: ["relu6"]),
            Node(name: "fc", op: Linear(out_features: 3, bias: true), inputs: ["gap"]),
        ])"#;
        let m: Model = limpq_solver::format::versioned::ron_from_str(text).unwrap();
        m.analyze().unwrap();
        m
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        // Deterministic values in [-0.5, 0.5).
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 1000.0 - 0.5)
            .collect()
    }

    fn ckpt(m: &Model) -> Checkpoint {
        let mut t = Vec::new();
        let mut add = |name: &str, kind, data: Vec<f32>| {
            t.push(NamedTensor {
                name: name.into(),
                kind,
                data,
            })
        };
        use TensorKind::{Param, RunningStat};
        add("stem.weight", Param, values(36, 1));
        add("stem.weight_step", Param, vec![0.01]);
        add("stem.act_step", Param, vec![0.02]);
        add("bn.weight", Param, vec![1.0, 0.5, 2.0, 1.5]);
        add("bn.bias", Param, vec![0.0, 0.1, -0.1, 0.2]);
        add("bn.running_mean", RunningStat, vec![0.0; 4]);
        add("bn.running_var", RunningStat, vec![1.0; 4]);
        add("mid.weight", Param, values(180, 2));
        add("mid.bias", Param, values(5, 3));
        add("mid.weight_step", Param, vec![0.125]);
        add("mid.act_step", Param, vec![0.05]);
        add("fc.weight", Param, values(15, 4));
        add("fc.bias", Param, values(3, 5));
        add("fc.weight_step", Param, vec![0.004]);
        add("fc.act_step", Param, vec![0.03]);
        Checkpoint {
            model: m.clone(),
            seed: 0,
            epoch: 1,
            step: 1,
            meta: Vec::new(),
            tensors: t,
            origin: None,
        }
    }

    fn policy((w, a): (u32, u32)) -> Policy {
        crate::test_support::policy("tiny", &[("stem", 8, 8), ("mid", w, a), ("fc", 8, 8)])
    }

    fn init<'a>(m: &'a ModelProto, name: &str) -> &'a TensorProto {
        let g = m.graph.as_ref().unwrap();
        g.initializer
            .iter()
            .find(|t| t.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no initializer {name}"))
    }

    /// The stored codes, unpacked as ONNX defines the containers.
    fn codes(t: &TensorProto) -> Vec<i32> {
        let raw = t.raw_data.as_ref().unwrap();
        let n: i64 = t.dims.iter().product();
        match DataType::try_from(t.data_type.unwrap()).unwrap() {
            DataType::Int4 => (0..n as usize)
                .map(|i| {
                    let nib = (raw[i / 2] >> (4 * (i % 2))) & 0x0f;
                    ((nib << 4) as i8 >> 4) as i32
                })
                .collect(),
            DataType::Int8 => raw.iter().map(|&b| b as i8 as i32).collect(),
            DataType::Uint8 => raw.iter().map(|&b| b as i32).collect(),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn scalar(t: &TensorProto) -> f32 {
        let r = t.raw_data.as_ref().unwrap();
        f32::from_le_bytes([r[0], r[1], r[2], r[3]])
    }

    /// DequantizeLinear of the stored codes gives, bit for bit, the LSQ reference's
    /// fake-quantized weights (what the engine's convs read), INT4 at ≤ 4 bits.
    #[test]
    fn dequantized_weights_are_the_lsq_reference() {
        let m = model();
        let c = ckpt(&m);
        for (bits, ty) in [
            (2, DataType::Int4),
            (4, DataType::Int4),
            (5, DataType::Int8),
        ] {
            let e = export_onnx(&c, &policy((bits, 4))).unwrap();
            let q = init(&e.model, "mid.weight_quantized");
            assert_eq!(q.data_type, Some(ty as i32));
            assert_eq!(q.dims, vec![5, 4, 3, 3]);
            let s = scalar(init(&e.model, "mid.weight_scale"));
            let want = lsq_quantize_forward(&values(180, 2), 0.125, bits, true);
            let got: Vec<f32> = codes(q).iter().map(|&k| k as f32 * s).collect();
            assert_eq!(got, want, "{bits} bits");
            assert_eq!(codes(init(&e.model, "mid.weight_zero_point")), vec![0]);
        }
    }

    #[test]
    fn activations_are_clipped_to_their_bits_and_bits_are_on_the_nodes() {
        let m = model();
        let e = export_onnx(&ckpt(&m), &policy((3, 5))).unwrap();
        let g = e.model.graph.as_ref().unwrap();
        let node = |n: &str| g.node.iter().find(|x| x.name.as_deref() == Some(n));
        // 5-bit unsigned: Clip to [0, 31·s], then UINT8 codes.
        assert_eq!(scalar(init(&e.model, "mid.input_min")), 0.0);
        assert_eq!(scalar(init(&e.model, "mid.input_max")), 31.0 * 0.05);
        assert_eq!(
            init(&e.model, "mid.input_zero_point").data_type,
            Some(DataType::Uint8 as i32)
        );
        // The stem reads the image: signed INT8, no Clip at 8 bits.
        assert!(node("stem.input_clip").is_none());
        assert_eq!(
            init(&e.model, "stem.input_zero_point").data_type,
            Some(DataType::Int8 as i32)
        );
        let mid = node("mid").unwrap();
        let props: Vec<(String, String)> = mid
            .metadata_props
            .iter()
            .map(|p| (p.key.clone().unwrap(), p.value.clone().unwrap()))
            .collect();
        assert!(props.contains(&("limpq.weight_bits".into(), "3".into())));
        assert!(props.contains(&("limpq.act_bits".into(), "5".into())));
        assert!(mid.doc_string.as_deref().unwrap().contains("W3A5"));
        assert_eq!(
            mid.input,
            vec!["mid.input_dequantized", "mid.weight", "mid.bias"]
        );
        assert_eq!(node("relu6").unwrap().op_type.as_deref(), Some("Clip"));
        assert_eq!(
            node("bn").unwrap().op_type.as_deref(),
            Some("BatchNormalization")
        );
        assert_eq!(g.output[0].name.as_deref(), Some("logits"));
        // The file reads back as written.
        let bytes = limpq_onnx::write_model(&e.model);
        assert_eq!(limpq_onnx::read_model(&bytes).unwrap(), e.model);
        assert_eq!(e.layers.len(), 3);
        assert!(e.layers[0].fixed && !e.layers[1].fixed);
    }

    #[test]
    fn bad_inputs_are_named_errors() {
        let m = model();
        let c = ckpt(&m);
        let e = export_onnx(&c, &policy((9, 4))).unwrap_err().to_string();
        assert!(e.contains("layer 'mid'") && e.contains("W9A4"), "{e}");
        let e = export_onnx(&c, &policy((1, 4))).unwrap_err().to_string();
        assert!(e.contains("bit-width 1"), "{e}");
        let mut p = policy((4, 4));
        p.model = "other".into();
        let e = export_onnx(&c, &p).unwrap_err().to_string();
        assert!(e.contains("'other'") && e.contains("'tiny'"), "{e}");
        // A full-precision checkpoint has no step sizes.
        let mut fp = c.clone();
        fp.tensors.retain(|t| !t.name.ends_with("_step"));
        let e = export_onnx(&fp, &policy((4, 4))).unwrap_err().to_string();
        assert!(e.contains("no tensor 'stem.weight_step'"), "{e}");
        let mut short = c.clone();
        short.tensors[0].data.pop();
        let e = export_onnx(&short, &policy((4, 4)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'stem.weight' has 35 values"), "{e}");
        let mut nan = c.clone();
        nan.tensors[9].data[0] = f32::NAN;
        let e = export_onnx(&nan, &policy((4, 4))).unwrap_err().to_string();
        assert!(e.contains("'mid.weight_step'") && e.contains("NaN"), "{e}");
        // Finetuned at W4A4 (the policy it stores), exported at other bits.
        let mut tuned = c.clone();
        tuned.meta.push((
            super::super::POLICY_META.into(),
            policy((4, 4)).to_ron_string(),
        ));
        assert!(export_onnx(&tuned, &policy((4, 4))).is_ok());
        let e = export_onnx(&tuned, &policy((3, 4)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("layer 'mid'") && e.contains("W4A4"), "{e}");
    }

    #[test]
    fn npy_headers_are_aligned_and_describe_the_data() {
        let b = npy_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hl) % 64, 0);
        let h = std::str::from_utf8(&b[10..10 + hl]).unwrap();
        assert!(
            h.contains("'<f4'") && h.contains("(2, 3)") && h.ends_with('\n'),
            "{h}"
        );
        assert_eq!(b.len(), 10 + hl + 24);
        let b = npy_i64(&[7, 8]);
        let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
        let h = std::str::from_utf8(&b[10..10 + hl]).unwrap();
        assert!(h.contains("'<i8'") && h.contains("(2,)"), "{h}");
        assert_eq!(predictions(&[0.0, 2.0, 2.0, 5.0, 1.0, 1.0], 3), vec![1, 0]);
    }
}
