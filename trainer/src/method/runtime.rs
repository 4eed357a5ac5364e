//! A policy's per-layer bits in the forms runtimes read (`limpq export POLICY --format
//! ort|tensorrt|json|csv`, docs/DEPLOY.md):
//!
//! - `ort`: ONNX Runtime's `TensorQuantOverrides` for its static quantizer
//!   (`quantize_static(..., extra_options={"TensorQuantOverrides": ...})`): per tensor a
//!   list with one dictionary `{"quant_type": "QInt4", "symmetric": true}` for the weight and
//!   `{"quant_type": "QUInt8"}` for the input activation of every layer. The bits go to the
//!   smallest container ONNX Runtime has: ≤ 4 bits → 4-bit types, ≤ 8 → 8-bit, ≤ 16 →
//!   16-bit; a 3-bit layer runs as 4 bits, a 6-bit one as 8. Keys are tensor names of the
//!   float ONNX model the quantizer reads, so this format needs that model (see
//!   [`LayerTensors`] for how layers are found in it).
//! - `tensorrt`: `trtexec` flags with the per-layer precision list, `--layerPrecisions=
//!   NAME:int8,...`. TensorRT has no per-layer bit-width below 8 for activations: every layer
//!   at ≤ 8 bits (weights and activations) runs as `int8` (what a 2–7-bit layer gains in
//!   the policy is lost, its accuracy is that of 8 bits), a layer above 8 bits as `fp16`.
//! - `json`, `csv`: a plain per-layer table (layer, bits, the containers above and, with a
//!   model, the node and tensor names).
//!
//! Without a model, the names are the policy's layer names: the node names of
//! `limpq export --onnx`, and of a model imported with `limpq import-onnx`, which keeps
//! the graph's names.

use std::collections::{HashMap, HashSet};

use limpq_onnx::proto::{GraphProto, ModelProto, NodeProto};
use limpq_solver::Policy;
use serde::Serialize;

use super::MethodError;

/// The per-layer formats of `limpq export --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeFormat {
    /// ONNX Runtime's `TensorQuantOverrides` (JSON).
    Ort,
    /// `trtexec` flags with `--layerPrecisions`.
    TensorRt,
    /// A per-layer table as JSON.
    Json,
    /// A per-layer table as CSV.
    Csv,
}

/// Where a layer of the policy is in an ONNX model: its Conv/Gemm/MatMul node, the weight
/// tensor (input 1) and the activation tensor it reads (input 0).
///
/// A node is the layer's when (in this order) its name is the layer's name, its name is
/// the scope path `torch.onnx.export` gives it (`/layer1/layer1.0/conv1/Conv` is layer
/// `layer1.0.conv1`), or its weight is the initializer `LAYER.weight` (PyTorch's parameter
/// name, which an export without folding keeps).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerTensors {
    pub node: String,
    pub weight: String,
    pub act: String,
    /// The activation tensor is the graph's input.
    pub act_is_input: bool,
    /// The activation tensor can hold negative values, so its quantizer is signed, as
    /// limpq's (`Model::act_signs`): unless it is a ReLU's output (`Relu`, or `Clip` from
    /// 0), also through pooling, Flatten/Reshape and sums of such.
    pub act_signed: bool,
}

/// One row of the per-layer table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerRow {
    pub layer: String,
    pub weight_bits: u32,
    pub act_bits: u32,
    /// ONNX Runtime's `QuantType` for the weight and the activation.
    pub ort_weight_type: String,
    pub ort_act_type: String,
    /// TensorRT's precision for the layer.
    pub tensorrt: &'static str,
    /// Where the layer is in the given ONNX model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onnx: Option<LayerTensors>,
}

/// The layer a `torch.onnx.export` scope path names: `/layer1/layer1.0/conv1/Conv` →
/// `layer1.0.conv1`, `/fc/Gemm` → `fc`; `None` for a name that is not a path.
pub fn torch_scope_layer(node_name: &str) -> Option<String> {
    let rest = node_name.strip_prefix('/')?;
    let mut parts: Vec<&str> = rest.split('/').collect();
    parts.pop()?; // the op type
                  // A scope is the module's attribute name, or `PARENT.CHILD` with the scope before it
                  // (`layer1.0` under `layer1`, `downsample.0` under `downsample`).
    let mut acc = String::new();
    let mut prev = "";
    for p in parts {
        if p.is_empty() {
            return None;
        }
        let own = p
            .strip_prefix(prev)
            .and_then(|r| r.strip_prefix('.'))
            .filter(|_| !prev.is_empty())
            .unwrap_or(p);
        if !acc.is_empty() {
            acc.push('.');
        }
        acc.push_str(own);
        prev = p;
    }
    (!acc.is_empty()).then_some(acc)
}

/// Finds every layer of `policy` in `model` (see [`LayerTensors`]); an error names the
/// first layer not found and the nodes that could have been it.
pub fn find_layers(policy: &Policy, model: &ModelProto) -> Result<Vec<LayerTensors>, MethodError> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| MethodError::Config("the ONNX model has no graph".into()))?;
    let inputs: HashSet<&str> = graph
        .input
        .iter()
        .filter_map(|v| v.name.as_deref())
        .collect();
    // The node writing each tensor, for the walks of `non_negative`.
    let mut producers: HashMap<&str, &NodeProto> = HashMap::new();
    for n in &graph.node {
        for o in &n.output {
            producers.entry(o.as_str()).or_insert(n);
        }
    }
    let layers: Vec<&NodeProto> = graph
        .node
        .iter()
        .filter(|n| matches!(n.op_type.as_deref(), Some("Conv" | "Gemm" | "MatMul")))
        .collect();
    // The three ways a layer is found, each a map to the first node (in graph order) it
    // matches, made once: a search of the nodes per layer grew with the square of the
    // model's size.
    let (mut by_name, mut by_scope, mut by_weight) =
        (HashMap::new(), HashMap::new(), HashMap::new());
    for &n in &layers {
        if let Some(name) = n.name.as_deref() {
            by_name.entry(name).or_insert(n);
            if let Some(scope) = torch_scope_layer(name) {
                by_scope.entry(scope).or_insert(n);
            }
        }
        if let Some(w) = n.input.get(1) {
            by_weight.entry(w.as_str()).or_insert(n);
        }
    }
    let mut out = Vec::new();
    for l in &policy.layers {
        let weight = format!("{}.weight", l.name);
        let found = by_name
            .get(l.name.as_str())
            .or_else(|| by_scope.get(&l.name))
            .or_else(|| by_weight.get(weight.as_str()))
            .copied();
        let Some(n) = found else {
            let names: Vec<&str> = layers
                .iter()
                .take(8)
                .map(|n| n.name.as_deref().unwrap_or("(unnamed)"))
                .collect();
            return Err(MethodError::Config(format!(
                "layer '{}' of the policy is not in the ONNX model: no Conv/Gemm/MatMul node \
                 named '{}', with the scope path of that module, or reading '{weight}' \
                 (its Conv/Gemm/MatMul nodes: {}{})",
                l.name,
                l.name,
                names.join(", "),
                if layers.len() > 8 { ", ..." } else { "" }
            )));
        };
        let (Some(act), Some(w)) = (n.input.first(), n.input.get(1)) else {
            return Err(MethodError::Config(format!(
                "node '{}' ({}) has fewer than two inputs",
                n.name.as_deref().unwrap_or(""),
                n.op_type.as_deref().unwrap_or("")
            )));
        };
        out.push(LayerTensors {
            node: n.name.clone().unwrap_or_default(),
            weight: w.clone(),
            act: act.clone(),
            act_is_input: inputs.contains(&act.as_str()),
            act_signed: !non_negative(graph, &producers, act),
        });
    }
    Ok(out)
}

/// Whether tensor `name` of `graph` is never negative: a `Relu`'s output, or a `Clip`'s
/// whose minimum is a constant ≥ 0, also through pooling, Flatten, Reshape, Identity,
/// Dropout and a quantize / dequantize pair (input 0: limpq's own QDQ export reads as its
/// float model), and an `Add`/`Sum` of such. Anything else (the graph input, a
/// BatchNormalization, Conv or Gemm output, an op not known here) may be negative.
fn non_negative(graph: &GraphProto, producers: &HashMap<&str, &NodeProto>, name: &str) -> bool {
    let producer = |t: &str| producers.get(t).copied();
    // Sums branch: a work list, each tensor looked at once (a diamond of sums is linear).
    let mut todo = vec![name.to_string()];
    let mut seen = HashSet::new();
    while let Some(t) = todo.pop() {
        if !seen.insert(t.clone()) {
            continue;
        }
        let Some(n) = producer(&t) else {
            return false;
        };
        match n.op_type.as_deref() {
            Some("Relu") => {}
            Some("Clip") if clip_min(graph, n).is_some_and(|m| m >= 0.0) => {}
            Some(
                "MaxPool" | "AveragePool" | "GlobalAveragePool" | "GlobalMaxPool" | "Flatten"
                | "Reshape" | "Identity" | "Dropout" | "QuantizeLinear" | "DequantizeLinear",
            ) => match n.input.first() {
                Some(i) => todo.push(i.clone()),
                None => return false,
            },
            Some("Add" | "Sum") if !n.input.is_empty() => todo.extend(n.input.iter().cloned()),
            _ => return false,
        }
    }
    true
}

/// A `Clip` node's minimum when it is a constant: the `min` attribute (before opset 11) or
/// input 1, an initializer or a `Constant` node's value, of one float.
fn clip_min(graph: &GraphProto, n: &NodeProto) -> Option<f32> {
    if let Some(a) = n
        .attribute
        .iter()
        .find(|a| a.name.as_deref() == Some("min"))
    {
        return a.f;
    }
    let name = n.input.get(1).filter(|s| !s.is_empty())?;
    let tensor = graph
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some(name.as_str()))
        .or_else(|| {
            let c = graph.node.iter().find(|c| {
                c.op_type.as_deref() == Some("Constant") && c.output.iter().any(|o| o == name)
            })?;
            c.attribute
                .iter()
                .find(|a| a.name.as_deref() == Some("value"))?
                .t
                .as_ref()
        })?;
    match (tensor.float_data.as_slice(), tensor.raw_data.as_deref()) {
        ([v], _) => Some(*v),
        ([], Some(raw)) if raw.len() == 4 => {
            Some(f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
        }
        _ => None,
    }
}

/// ONNX Runtime's `QuantType` for `bits` (`QInt4`, `QUInt8`, ...).
fn ort_type(bits: u32, signed: bool) -> Result<String, String> {
    let width = match bits {
        1..=4 => 4,
        5..=8 => 8,
        9..=16 => 16,
        _ => return Err(format!("{bits} bits: ONNX Runtime quantizes to at most 16")),
    };
    Ok(format!("Q{}Int{width}", if signed { "" } else { "U" }))
}

/// The per-layer table of `policy`, with node and tensor names from `model` when given.
pub fn layer_table(
    policy: &Policy,
    model: Option<&ModelProto>,
) -> Result<Vec<LayerRow>, MethodError> {
    let found = model.map(|m| find_layers(policy, m)).transpose()?;
    let mut rows = Vec::new();
    for (k, l) in policy.layers.iter().enumerate() {
        let onnx = found.as_ref().map(|f| f[k].clone());
        let signed = onnx.as_ref().is_some_and(|t| t.act_signed);
        let named = |e: String| MethodError::Config(format!("layer '{}': {e}", l.name));
        rows.push(LayerRow {
            layer: l.name.clone(),
            weight_bits: l.weight,
            act_bits: l.act,
            ort_weight_type: ort_type(l.weight, true).map_err(named)?,
            ort_act_type: ort_type(l.act, signed).map_err(named)?,
            tensorrt: if l.weight <= 8 && l.act <= 8 {
                "int8"
            } else {
                "fp16"
            },
            onnx,
        });
    }
    Ok(rows)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `policy` in `format` (see the module doc); `model`: the float ONNX model whose tensor
/// names the `ort` format needs (optional for the others).
pub fn runtime_config(
    policy: &Policy,
    format: RuntimeFormat,
    model: Option<&ModelProto>,
) -> Result<String, MethodError> {
    if format == RuntimeFormat::Ort && model.is_none() {
        return Err(MethodError::Config(
            "the ort format keys ONNX Runtime's TensorQuantOverrides by tensor names: give the \
             float ONNX model the quantizer will read (--onnx-model MODEL.onnx)"
                .into(),
        ));
    }
    let rows = layer_table(policy, model)?;
    Ok(match format {
        RuntimeFormat::Ort => {
            four_bits_need_opset_21(&rows, model)?;
            let mut map = serde_json::Map::new();
            for r in &rows {
                let t = r.onnx.as_ref().ok_or_else(|| {
                    MethodError::Config(format!("layer '{}': not found in the model", r.layer))
                })?;
                let w = serde_json::json!([{"quant_type": r.ort_weight_type, "symmetric": true}]);
                map.insert(t.weight.clone(), w);
                let a = serde_json::json!([{"quant_type": r.ort_act_type}]);
                // One tensor read by several layers (a block's input feeding its conv and
                // its shortcut): the most bits of them, so no reader gets fewer than its own.
                let keep = match map.get(&t.act) {
                    Some(old) => container_width(old) >= container_width(&a),
                    None => false,
                };
                if !keep {
                    map.insert(t.act.clone(), a);
                }
            }
            let doc = serde_json::json!({ "TensorQuantOverrides": map });
            serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
        }
        RuntimeFormat::TensorRt => {
            let mut specs = Vec::new();
            let mut fp16 = false;
            for r in &rows {
                let name = r
                    .onnx
                    .as_ref()
                    .map_or(r.layer.as_str(), |t| t.node.as_str());
                if name.contains([',', ':']) || name.is_empty() {
                    return Err(MethodError::Config(format!(
                        "layer '{}': TensorRT layer name '{name}' cannot be written in \
                         --layerPrecisions (empty, or holds ',' or ':')",
                        r.layer
                    )));
                }
                fp16 |= r.tensorrt == "fp16";
                specs.push(format!("{name}:{}", r.tensorrt));
            }
            format!(
                "--int8{} --precisionConstraints=obey --layerPrecisions={}\n",
                if fp16 { " --fp16" } else { "" },
                specs.join(",")
            )
        }
        RuntimeFormat::Json => {
            let doc = serde_json::json!({ "model": policy.model, "layers": rows });
            serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
        }
        RuntimeFormat::Csv => {
            let mut s = String::from(
                "layer,weight_bits,act_bits,ort_weight_type,ort_act_type,tensorrt,onnx_node,onnx_weight,onnx_act\n",
            );
            for r in &rows {
                let (n, w, a) = r.onnx.as_ref().map_or(("", "", ""), |t| {
                    (t.node.as_str(), t.weight.as_str(), t.act.as_str())
                });
                s += &format!(
                    "{},{},{},{},{},{},{},{},{}\n",
                    csv_field(&r.layer),
                    r.weight_bits,
                    r.act_bits,
                    r.ort_weight_type,
                    r.ort_act_type,
                    r.tensorrt,
                    csv_field(n),
                    csv_field(w),
                    csv_field(a)
                );
            }
            s
        }
    })
}

/// ONNX's 4-bit types (`QInt4`/`QUInt4` become int4/uint4 Q/DQ nodes) exist from opset 21:
/// in an older model ONNX Runtime writes the quantized model but refuses to load it.
fn four_bits_need_opset_21(
    rows: &[LayerRow],
    model: Option<&ModelProto>,
) -> Result<(), MethodError> {
    let opset = model.and_then(|m| {
        (m.opset_import.iter())
            .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
            .and_then(|o| o.version)
    });
    let four = rows
        .iter()
        .find(|r| r.ort_weight_type.ends_with("Int4") || r.ort_act_type.ends_with("Int4"));
    match (four, opset) {
        (Some(r), Some(v)) if v < 21 => Err(MethodError::Config(format!(
            "layer '{}' takes a 4-bit type of ONNX Runtime (weights {} bits: {}, activations \
             {} bits: {}), which ONNX has from opset 21, and the model is opset {v}: ONNX \
             Runtime would write a quantized model it cannot load. Convert the float model \
             first (in Python: onnx.save(onnx.version_converter.convert_version(\
             onnx.load(\"model.onnx\"), 21), \"model21.onnx\")) and give that one to \
             --onnx-model and to the quantizer",
            r.layer, r.weight_bits, r.ort_weight_type, r.act_bits, r.ort_act_type
        ))),
        _ => Ok(()),
    }
}

/// The container width of an override list (`[{"quant_type": "QUInt4"}]` → 4).
fn container_width(v: &serde_json::Value) -> u32 {
    v.get(0)
        .and_then(|d| d.get("quant_type"))
        .and_then(|t| t.as_str())
        .and_then(|t| t.rsplit("Int").next())
        .and_then(|w| w.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use limpq_onnx::proto::{GraphProto, NodeProto, ValueInfoProto};

    fn policy(layers: &[(&str, u32, u32)]) -> Policy {
        crate::test_support::policy("imported", layers)
    }

    fn n(op: &str, name: &str, inputs: &[&str], out: &str) -> NodeProto {
        NodeProto {
            name: Some(name.into()),
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.into()],
            ..Default::default()
        }
    }

    /// A float model as `torch.onnx.export` names it: scope-path node names, folded
    /// weights with generated names, one block input read by two convs.
    fn torch_like() -> ModelProto {
        ModelProto {
            graph: Some(GraphProto {
                input: vec![ValueInfoProto {
                    name: Some("x".into()),
                    ..Default::default()
                }],
                node: vec![
                    n(
                        "Conv",
                        "/conv1/Conv",
                        &["x", "onnx::Conv_10"],
                        "/conv1/Conv_output_0",
                    ),
                    n(
                        "Relu",
                        "/relu/Relu",
                        &["/conv1/Conv_output_0"],
                        "/relu/Relu_output_0",
                    ),
                    n(
                        "Conv",
                        "/layer1/layer1.0/conv1/Conv",
                        &["/relu/Relu_output_0", "onnx::Conv_13"],
                        "a",
                    ),
                    n(
                        "Conv",
                        "/layer1/layer1.0/downsample/downsample.0/Conv",
                        &["/relu/Relu_output_0", "onnx::Conv_16"],
                        "b",
                    ),
                    n("Relu", "/layer1/relu", &["a"], "r"),
                    n("GlobalAveragePool", "/avgpool", &["r"], "p"),
                    n("Flatten", "/flatten", &["p"], "f"),
                    n("Gemm", "/fc/Gemm", &["f", "fc.weight", "fc.bias"], "y"),
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn torch_scope_paths_name_their_module() {
        assert_eq!(torch_scope_layer("/fc/Gemm").as_deref(), Some("fc"));
        assert_eq!(
            torch_scope_layer("/layer1/layer1.0/conv1/Conv").as_deref(),
            Some("layer1.0.conv1")
        );
        assert_eq!(
            torch_scope_layer("/layer1/0/conv1/Conv").as_deref(),
            Some("layer1.0.conv1")
        );
        assert_eq!(
            torch_scope_layer("/layer1/layer1.0/downsample/downsample.0/Conv").as_deref(),
            Some("layer1.0.downsample.0")
        );
        assert_eq!(
            torch_scope_layer("/features/features.1/conv/conv.0/conv.0.0/Conv").as_deref(),
            Some("features.1.conv.0.0")
        );
        assert_eq!(torch_scope_layer("conv1"), None);
        assert_eq!(torch_scope_layer("/Conv"), None);
    }

    #[test]
    fn ort_overrides_use_the_models_tensor_names() {
        let p = policy(&[
            ("conv1", 8, 8),
            ("layer1.0.conv1", 3, 2),
            ("layer1.0.downsample.0", 6, 5),
            ("fc", 8, 8),
        ]);
        let text = runtime_config(&p, RuntimeFormat::Ort, Some(&torch_like())).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let o = &v["TensorQuantOverrides"];
        assert_eq!(o["onnx::Conv_10"][0]["quant_type"], "QInt8");
        assert_eq!(o["onnx::Conv_10"][0]["symmetric"], true);
        // The graph input is quantized signed, as limpq quantizes the image.
        assert_eq!(o["x"][0]["quant_type"], "QInt8");
        assert_eq!(o["onnx::Conv_13"][0]["quant_type"], "QInt4");
        assert_eq!(o["onnx::Conv_16"][0]["quant_type"], "QInt8");
        // Read by a 2-bit and a 5-bit layer: the 8-bit container of the wider one.
        assert_eq!(o["/relu/Relu_output_0"][0]["quant_type"], "QUInt8");
        assert_eq!(o["fc.weight"][0]["quant_type"], "QInt8");
        assert_eq!(o["f"][0]["quant_type"], "QUInt8");
        // Four weights, three activation tensors (one read twice).
        assert_eq!(o.as_object().unwrap().len(), 7);

        // int4 and uint4 exist from opset 21: an older model is refused with the remedy.
        let at = |v: i64| {
            let mut m = torch_like();
            m.opset_import = vec![limpq_onnx::proto::OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(v),
            }];
            runtime_config(&p, RuntimeFormat::Ort, Some(&m))
        };
        let e = at(17).unwrap_err().to_string();
        assert!(
            e.contains("layer 'layer1.0.conv1' takes a 4-bit type")
                && e.contains("weights 3 bits: QInt4")
                && e.contains("model is opset 17")
                && e.contains("convert_version"),
            "{e}"
        );
        assert_eq!(at(21).unwrap(), text);
        let eight = policy(&[
            ("conv1", 8, 8),
            ("layer1.0.conv1", 5, 6),
            ("layer1.0.downsample.0", 6, 5),
            ("fc", 8, 8),
        ]);
        let mut m = torch_like();
        m.opset_import = vec![limpq_onnx::proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }];
        assert!(runtime_config(&eight, RuntimeFormat::Ort, Some(&m)).is_ok());
    }

    /// An activation's type is signed where it can be negative, as limpq quantizes it: the
    /// graph input, a BatchNormalization's output (MobileNetV2's linear bottleneck), a sum
    /// with one; unsigned after a Relu or a Clip from 0 (ReLU6), also through pooling and
    /// sums of such.
    #[test]
    fn activation_types_follow_the_sign_of_what_a_layer_reads() {
        let mut clip = n("Clip", "relu6", &["c0", "zero", "six"], "r6");
        clip.input.truncate(2);
        let mut m = graph(vec![
            n("Conv", "c0", &["x", "w0"], "c0"),
            clip,
            n("Conv", "c1", &["r6", "w1"], "c1"),
            n(
                "BatchNormalization",
                "bn",
                &["c1", "s", "b", "m", "v"],
                "bn",
            ),
            n("Conv", "c2", &["bn", "w2"], "c2"),
            n("Relu", "relu", &["c2"], "r"),
            n("Add", "sum_pos", &["r", "r6"], "sp"),
            n("Conv", "c3", &["sp", "w3"], "c3"),
            n("Add", "sum_mixed", &["r", "bn"], "sm"),
            n("Conv", "c4", &["sm", "w4"], "c4"),
        ]);
        let g = m.graph.as_mut().unwrap();
        g.input = vec![ValueInfoProto {
            name: Some("x".into()),
            ..Default::default()
        }];
        g.initializer = vec![limpq_onnx::proto::TensorProto {
            name: Some("zero".into()),
            raw_data: Some(0f32.to_le_bytes().to_vec()),
            ..Default::default()
        }];
        let p = policy(&[
            ("c0", 4, 4),
            ("c1", 4, 4),
            ("c2", 4, 4),
            ("c3", 4, 4),
            ("c4", 4, 4),
        ]);
        let signed: Vec<bool> = find_layers(&p, &m)
            .unwrap()
            .iter()
            .map(|t| t.act_signed)
            .collect();
        assert_eq!(signed, [true, false, true, false, true]);
        let rows = layer_table(&p, Some(&m)).unwrap();
        let types: Vec<&str> = rows.iter().map(|r| r.ort_act_type.as_str()).collect();
        assert_eq!(types, ["QInt4", "QUInt4", "QInt4", "QUInt4", "QInt4"]);
    }

    fn graph(node: Vec<NodeProto>) -> ModelProto {
        ModelProto {
            graph: Some(GraphProto {
                node,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A layer is the first node named as it, else the first of its scope path, else the
    /// first reading its `.weight`, whatever comes earlier in the graph.
    #[test]
    fn a_layer_is_found_by_name_then_scope_then_weight_first_node_first() {
        let m = graph(vec![
            n("Conv", "/a/Conv", &["x", "b.weight"], "o0"),
            n("Conv", "a", &["x", "w1"], "o1"),
            n("Conv", "/b/Conv", &["x", "w2"], "o2"),
            n("Conv", "a", &["x", "w3"], "o3"),
            n("Conv", "c1", &["x", "c.weight"], "o4"),
            n("Conv", "/b/Conv", &["x", "w5"], "o5"),
            n("Conv", "c2", &["x", "c.weight"], "o6"),
        ]);
        let found = find_layers(&policy(&[("a", 4, 4), ("b", 4, 4), ("c", 4, 4)]), &m).unwrap();
        let weights: Vec<&str> = found.iter().map(|t| t.weight.as_str()).collect();
        assert_eq!(weights, ["w1", "w2", "c.weight"]);
        assert_eq!(found[2].node, "c1");
    }

    /// Policies and graphs of many layers are matched in time linear in their size: a
    /// policy of 100,000 layers, in the reverse order of the graph's, found by scope path
    /// and by weight name, within a deadline.
    #[test]
    fn large_policies_are_matched_within_a_deadline() {
        let k = 100_000;
        let nodes: Vec<NodeProto> = (0..k)
            .map(|i| {
                let (name, weight) = if i % 2 == 0 {
                    (format!("/l{i}/Conv"), format!("w{i}"))
                } else {
                    (format!("n{i}"), format!("l{i}.weight"))
                };
                n("Conv", &name, &["x", &weight], &format!("o{i}"))
            })
            .collect();
        let m = graph(nodes);
        let names: Vec<String> = (0..k).rev().map(|i| format!("l{i}")).collect();
        let layers: Vec<(&str, u32, u32)> = names.iter().map(|s| (s.as_str(), 4, 4)).collect();
        let p = policy(&layers);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(find_layers(&p, &m).map(|f| f.len())));
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("matched within 20 s")
            .unwrap();
        assert_eq!(got, k);
    }

    #[test]
    fn ort_needs_the_model_and_names_a_missing_layer() {
        let p = policy(&[("conv1", 8, 8), ("head.proj", 4, 4)]);
        let e = runtime_config(&p, RuntimeFormat::Ort, None).unwrap_err();
        assert!(e.to_string().contains("--onnx-model"), "{e}");
        let e = runtime_config(&p, RuntimeFormat::Ort, Some(&torch_like())).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("'head.proj'") && e.contains("/conv1/Conv"),
            "{e}"
        );
    }

    /// Layer names of an imported model are just strings: the table and TensorRT's list
    /// carry them as they are.
    #[test]
    fn tensorrt_json_and_csv_from_a_hand_written_policy() {
        let p = policy(&[
            ("features.0.0", 8, 8),
            ("features.1.conv.0.0", 2, 3),
            ("block,odd", 16, 16),
            ("classifier.1", 8, 8),
        ]);
        let csv = runtime_config(&p, RuntimeFormat::Csv, None).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[2], "features.1.conv.0.0,2,3,QInt4,QUInt4,int8,,,");
        assert_eq!(lines[3], "\"block,odd\",16,16,QInt16,QUInt16,fp16,,,");
        let json = runtime_config(&p, RuntimeFormat::Json, None).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["model"], "imported");
        assert_eq!(v["layers"][1]["layer"], "features.1.conv.0.0");
        assert_eq!(v["layers"][1]["weight_bits"], 2);
        assert_eq!(v["layers"][2]["tensorrt"], "fp16");
        // A ',' cannot be written in --layerPrecisions: refused, naming the layer.
        let e = runtime_config(&p, RuntimeFormat::TensorRt, None).unwrap_err();
        assert!(e.to_string().contains("'block,odd'"), "{e}");
        let p = policy(&[("features.0.0", 8, 8), ("features.1.conv.0.0", 2, 3)]);
        let trt = runtime_config(&p, RuntimeFormat::TensorRt, None).unwrap();
        assert_eq!(
            trt,
            "--int8 --precisionConstraints=obey \
             --layerPrecisions=features.0.0:int8,features.1.conv.0.0:int8\n"
        );
    }

    #[test]
    fn more_than_16_bits_is_refused() {
        let p = policy(&[("a", 17, 8)]);
        let e = runtime_config(&p, RuntimeFormat::Json, None).unwrap_err();
        assert!(e.to_string().contains("layer 'a'"), "{e}");
    }
}
