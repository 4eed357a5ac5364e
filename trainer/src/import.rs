//! ONNX in: a model file exported from PyTorch (or built with the `onnx` package) turned into
//! a [`Model`] description plus its pretrained weights, as named tensors of a checkpoint.
//!
//! The graph is read node by node in its (topological) order. Supported operators of the
//! default domain: Conv (any `group`), BatchNormalization, Relu, Clip (as ReLU6 or ReLU),
//! Add, MaxPool, AveragePool, GlobalAveragePool, Flatten, Reshape to 2-D, Gemm, MatMul
//! (with a following Add of a bias), Identity, Dropout and Constant. Anything else, a
//! shape the engine cannot run, or a malformed tensor is an [`OnnxError`] naming the node,
//! its op type and what is supported. Nothing here panics on any input.
//!
//! Types are checked where a value is read, as ONNX defines them: a weight, bias or bound
//! must have the float input's element type (a DOUBLE or INT64 weight is refused, not read
//! as if it held floats; BatchNormalization's parameters may be any float type from opset
//! 15), and each attribute its type (a `dilations` written as an INT is refused, not read
//! as absent). An initializer that cannot be read is an error once a node reads it, naming
//! that node.
//!
//! Names: a layer's name comes from its weight initializer (`layer1.0.conv1.weight` →
//! `layer1.0.conv1`), else from the node name's module path as `torch.onnx.export` writes it
//! (`/layer1/layer1.0/conv1/Conv` → `layer1.0.conv1`), else from the node name itself, else
//! `{op}_{index}`.
//!
//! BatchNorms folded into the conv before them (what `torch.onnx.export` of an eval-mode
//! model does) are re-inserted by default ([`FoldedBn::Reinsert`]): a conv with a bias and
//! no BatchNormalization after it becomes a bias-free conv followed by a BatchNorm with
//! scale 1, shift = the bias, running mean 0 and running variance `1 − eps`, which
//! reproduces the folded conv in evaluation and gives the method its per-bit-width BNs to
//! train. docs/IMPORT.md says why.

use std::collections::{HashMap, HashSet};
use std::fmt;

use limpq_onnx::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto,
};

use crate::checkpoint::{NamedTensor, TensorKind};
use crate::kernels::norm::BN_EPS;
use crate::model::{Model, Node, NodeInfo, Op, INPUT};

/// Lowest and highest opset of the default domain read.
pub const MIN_OPSET: i64 = 7;
/// The newest opset whose operators above this module has checked.
pub const MAX_OPSET: i64 = 28;

/// The operators [`import`] reads, for messages and docs.
pub const SUPPORTED_OPS: &str = "Conv, BatchNormalization, Relu, Clip (0..6 or 0..inf), Add, \
MaxPool, AveragePool, GlobalAveragePool, Flatten, Reshape (to 2-D), Gemm, MatMul (+Add), \
Identity, Dropout, Constant; Shape, Gather, Unsqueeze, Concat, Cast on a shape (for Reshape)";

/// What to do with a conv that has a bias and no BatchNormalization after it (a BatchNorm
/// folded into it by the exporter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FoldedBn {
    /// Re-insert a BatchNorm with identity statistics after it (the default).
    #[default]
    Reinsert,
    /// Keep the conv's bias and train without a BatchNorm there.
    Keep,
}

/// Options of [`import`].
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The model's name (default: the graph's name, else `onnx`).
    pub name: Option<String>,
    pub folded_bn: FoldedBn,
}

/// An imported model: the description and its parameters and BN running statistics, named
/// as the engine names them (`conv1.weight`, `bn1.running_mean`, ...).
#[derive(Clone, Debug)]
pub struct Imported {
    pub model: Model,
    pub tensors: Vec<NamedTensor>,
    /// Convs whose folded BatchNorm was re-inserted: `(conv, new BatchNorm node)`.
    pub reinserted_bn: Vec<(String, String)>,
    /// The default-domain opset the file declares.
    pub opset: i64,
}

/// Why an ONNX file could not be imported. `node`: the node's name (or its first output) and
/// op type, when one node is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxError {
    pub node: Option<(String, String)>,
    pub message: String,
}

impl fmt::Display for OnnxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((name, op)) = &self.node {
            write!(f, "node '{name}' ({op}): ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for OnnxError {}

fn err(message: impl Into<String>) -> OnnxError {
    OnnxError {
        node: None,
        message: message.into(),
    }
}

type R<T> = Result<T, OnnxError>;

/// Decodes the bytes of a `.onnx` file and imports it.
pub fn import_bytes(bytes: &[u8], opts: &ImportOptions) -> R<Imported> {
    let model = limpq_onnx::read_model(bytes).map_err(|e| err(e.to_string()))?;
    import(&model, opts)
}

/// What a graph value is while reading.
#[derive(Clone, Debug)]
enum Value {
    /// The output of a node of the model (or the input), and whether it is 2-D (`N×F`,
    /// after Flatten / Gemm) rather than `N×C×H×W`.
    Act { src: String, flat: bool },
    /// A constant tensor (initializer or Constant node).
    Const(Tensor),
    /// A shape computed from an activation's (`Shape`, then `Gather`, `Unsqueeze`,
    /// `Concat`, `Cast`): what `x.view(x.size(0), -1)` exports to with a free batch.
    Dims(Dims),
    /// An initializer that cannot be read (an element type the importer does not decode,
    /// data of the wrong length, ...): the reason, an error once a node reads it, so that
    /// the error names that node too.
    Bad(String),
}

/// A 1-D integer tensor computed from an activation's shape, or a scalar (`scalar`: the
/// result of a `Gather` with a scalar index, before its `Unsqueeze`).
#[derive(Clone, Debug)]
struct Dims {
    dims: Vec<Dim>,
    scalar: bool,
}

/// One entry of a computed shape.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dim {
    /// The batch: limpq's own choice, whatever the file's.
    Batch,
    /// A number, from a constant.
    Known(i64),
    /// A size the importer does not track (channels, height, width).
    Unknown,
}

#[derive(Clone, Debug)]
struct Tensor {
    dims: Vec<i64>,
    /// Every value as f64 (floats, doubles and integers are all exact in f64 up to 2^53).
    data: Vec<f64>,
    /// The initializer's name, when it came from one.
    name: String,
    /// The element type the file stores (`TensorProto.data_type`): the values above are
    /// the same numbers whatever it is, so where ONNX requires a type (a Conv's weight is
    /// the input's float) it is checked against this.
    dtype: i32,
}

impl Tensor {
    fn f32s(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }
}

/// Elements of a tensor of `dims`, refusing negative dims and overflow.
fn numel(dims: &[i64], what: &str) -> R<usize> {
    dims.iter().try_fold(1usize, |acc, &d| {
        let d = usize::try_from(d).map_err(|_| err(format!("{what}: negative dimension {d}")))?;
        acc.checked_mul(d)
            .ok_or_else(|| err(format!("{what}: dimensions {dims:?} overflow")))
    })
}

/// Refuses a weight with a zero dimension. Such a tensor holds no values whatever its other
/// dimensions say, so they are not bounded by the file's size: a `[0, 2^40]` Gemm weight
/// would make a layer of 2^40 outputs (an endless copy loop, then a 4 TB bias).
fn nonempty_weight(w: &Tensor) -> R<()> {
    if w.dims.contains(&0) {
        return Err(err(format!(
            "weight '{}' has dims {:?}; every dimension must be at least 1",
            w.name, w.dims
        )));
    }
    Ok(())
}

/// An element type's ONNX name (`FLOAT`, `DOUBLE`, `FLOAT16`, ...), or its number when it
/// is none.
fn dtype_name(dt: i32) -> String {
    DataType::try_from(dt).map_or_else(
        |_| format!("{dt} (no ONNX type)"),
        |d| d.as_str_name().to_string(),
    )
}

/// `types` as `FLOAT`, `FLOAT or DOUBLE`, `A, B or C`.
fn dtype_list(types: &[DataType]) -> String {
    let names: Vec<&str> = types.iter().map(|t| t.as_str_name()).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The float element types BatchNormalization's scale, bias, mean and variance may have
/// from opset 15 (`T1`, `T2`); before it they are the input's (`T`).
const BN_PARAM_TYPES: &[DataType] = &[
    DataType::Float,
    DataType::Float16,
    DataType::Bfloat16,
    DataType::Double,
];

/// Refuses `t`, input `what` of the node being read, unless its element type is one of
/// `types`: the values read are the same numbers whatever the type, so a DOUBLE or INT64
/// weight where ONNX requires the float input's type would import as a model that ONNX
/// Runtime refuses. `name` is the graph value it was read from.
fn of_type(t: Tensor, what: &str, name: &str, types: &[DataType]) -> R<Tensor> {
    if types.iter().any(|&d| d as i32 == t.dtype) {
        return Ok(t);
    }
    Err(err(format!(
        "{what} '{name}' has element type {}; {} expected (the type ONNX requires there{})",
        dtype_name(t.dtype),
        dtype_list(types),
        if types == [DataType::Float] {
            ": the float image input's"
        } else {
            ""
        }
    )))
}

/// The values of a tensor, from whichever field holds them; every length checked.
fn tensor_values(t: &TensorProto, what: &str) -> R<Tensor> {
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return Err(err(format!(
            "{what}: tensor data stored in an external file; re-export with the weights inside \
             the model (onnx.save(model, path, save_as_external_data=False))"
        )));
    }
    if t.segment.is_some() {
        return Err(err(format!("{what}: segmented tensors are not supported")));
    }
    let n = numel(&t.dims, what)?;
    let dt = t.data_type.unwrap_or(0);
    let raw = t.raw_data.as_deref().filter(|r| !r.is_empty());
    let ty = DataType::try_from(dt).ok();
    let width = match ty {
        Some(DataType::Float) | Some(DataType::Int32) => 4,
        Some(DataType::Double) | Some(DataType::Int64) => 8,
        Some(DataType::Float16) | Some(DataType::Bfloat16) => 2,
        Some(DataType::Bool) => 1,
        _ => {
            return Err(err(format!(
                "{what}: element type {} not supported (FLOAT, DOUBLE, FLOAT16, BFLOAT16, \
                 INT32, INT64, BOOL)",
                dtype_name(dt)
            )))
        }
    };
    // FLOAT16 and BFLOAT16 are bit patterns: two bytes each in `raw_data`, the low 16 bits
    // of each `int32_data` entry otherwise (as ONNX stores them).
    let half = |bits: u16| match ty {
        Some(DataType::Bfloat16) => f64::from(f32::from_bits(u32::from(bits) << 16)),
        _ => f64::from(crate::kernels::gemm_f16::f16_bits_to_f32(bits)),
    };
    let data: Vec<f64> = if let Some(raw) = raw {
        if raw.len() != n.saturating_mul(width) {
            return Err(err(format!(
                "{what}: raw data of {} bytes, dims {:?} of {width}-byte values need {}",
                raw.len(),
                t.dims,
                n.saturating_mul(width)
            )));
        }
        raw.chunks_exact(width)
            .map(|c| match (ty, c) {
                (Some(DataType::Float), &[a, b, c, d]) => f32::from_le_bytes([a, b, c, d]) as f64,
                (Some(DataType::Int32), &[a, b, c, d]) => i32::from_le_bytes([a, b, c, d]) as f64,
                (Some(DataType::Double), c) => f64::from_le_bytes(c.try_into().unwrap_or([0; 8])),
                (_, &[a, b]) => half(u16::from_le_bytes([a, b])),
                (_, &[a]) => f64::from(a != 0),
                (_, c) => i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64,
            })
            .collect()
    } else {
        match ty {
            Some(DataType::Float) => t.float_data.iter().map(|&v| v as f64).collect(),
            Some(DataType::Int32) => t.int32_data.iter().map(|&v| v as f64).collect(),
            Some(DataType::Bool) => t.int32_data.iter().map(|&v| f64::from(v != 0)).collect(),
            Some(DataType::Float16) | Some(DataType::Bfloat16) => {
                let mut v = Vec::with_capacity(t.int32_data.len());
                for (i, &bits) in t.int32_data.iter().enumerate() {
                    let bits = u16::try_from(bits).map_err(|_| {
                        err(format!(
                            "{what}: int32_data entry {i} is {bits}; a {} value is 16 bits",
                            dtype_name(dt)
                        ))
                    })?;
                    v.push(half(bits));
                }
                v
            }
            Some(DataType::Double) => t.double_data.clone(),
            _ => t.int64_data.iter().map(|&v| v as f64).collect(),
        }
    };
    if data.len() != n {
        return Err(err(format!(
            "{what}: {} values stored, dims {:?} need {n}",
            data.len(),
            t.dims
        )));
    }
    Ok(Tensor {
        dims: t.dims.clone(),
        data,
        name: t.name.clone().unwrap_or_default(),
        dtype: dt,
    })
}

/// The type of attribute `a`: its `type` field, or where a writer left that out (it is
/// required from IR version 2; some writers still omit it) the one value field that is set,
/// as ONNX's first IR version had readers find it. `None`: no type given and no value set.
fn attr_type(a: &AttributeProto) -> Option<Result<AttributeType, i32>> {
    use AttributeType as T;
    if let Some(t) = a.r#type.filter(|&t| t != T::Undefined as i32) {
        return Some(T::try_from(t).map_err(|_| t));
    }
    let set = [
        (a.f.is_some(), T::Float),
        (a.i.is_some(), T::Int),
        (a.s.is_some(), T::String),
        (a.t.is_some(), T::Tensor),
        (a.g.is_some(), T::Graph),
        (a.sparse_tensor.is_some(), T::SparseTensor),
        (a.tp.is_some(), T::TypeProto),
        (!a.floats.is_empty(), T::Floats),
        (!a.ints.is_empty(), T::Ints),
        (!a.strings.is_empty(), T::Strings),
        (!a.tensors.is_empty(), T::Tensors),
        (!a.graphs.is_empty(), T::Graphs),
        (!a.sparse_tensors.is_empty(), T::SparseTensors),
        (!a.type_protos.is_empty(), T::TypeProtos),
    ];
    set.into_iter()
        .find(|&(is_set, _)| is_set)
        .map(|(_, t)| Ok(t))
}

/// One node's attributes, by name. Each accessor checks the attribute's type: one of
/// another type (`dilations` written as an INT rather than INTS, a `transB` as a FLOAT) is
/// an error naming the attribute, the type found and the type expected, never read as
/// absent or as the default (ONNX Runtime refuses such a node too).
struct Attrs<'a>(&'a [AttributeProto]);

impl<'a> Attrs<'a> {
    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.0.iter().find(|a| a.name.as_deref() == Some(name))
    }

    /// Attribute `name` if the node has it, checked to be of type `want`. A list attribute
    /// with no type and no values is an empty list of any kind.
    fn typed(&self, name: &str, want: AttributeType) -> R<Option<&'a AttributeProto>> {
        let Some(a) = self.get(name) else {
            return Ok(None);
        };
        let list = matches!(
            want,
            AttributeType::Floats | AttributeType::Ints | AttributeType::Strings
        );
        match attr_type(a) {
            Some(Ok(t)) if t == want => Ok(Some(a)),
            None if list => Ok(Some(a)),
            found => Err(err(format!(
                "attribute '{name}' has type {}; {} expected",
                match found {
                    Some(Ok(t)) => t.as_str_name().to_string(),
                    Some(Err(n)) => format!("{n} (no ONNX attribute type)"),
                    None => "none (no type and no value)".into(),
                },
                want.as_str_name()
            ))),
        }
    }

    /// An INT attribute, or `default` when the node has none. One of type INT whose value
    /// is not set is an error, not the default.
    fn int(&self, name: &str, default: i64) -> R<i64> {
        match self.typed(name, AttributeType::Int)? {
            None => Ok(default),
            Some(a) => {
                a.i.ok_or_else(|| err(format!("attribute '{name}' (INT) holds no value")))
            }
        }
    }

    /// A FLOAT attribute, or None when the node has none; one whose value is not set is an
    /// error.
    fn float(&self, name: &str) -> R<Option<f32>> {
        match self.typed(name, AttributeType::Float)? {
            None => Ok(None),
            Some(a) => {
                a.f.map(Some)
                    .ok_or_else(|| err(format!("attribute '{name}' (FLOAT) holds no value")))
            }
        }
    }

    /// An INTS attribute, or None when the node has none.
    fn ints(&self, name: &str) -> R<Option<&'a [i64]>> {
        Ok(self
            .typed(name, AttributeType::Ints)?
            .map(|a| a.ints.as_slice()))
    }

    /// A FLOATS attribute, or None when the node has none.
    fn floats(&self, name: &str) -> R<Option<&'a [f32]>> {
        Ok(self
            .typed(name, AttributeType::Floats)?
            .map(|a| a.floats.as_slice()))
    }

    /// A STRING attribute, or None when the node has none; one whose value is not set is an
    /// error.
    fn string(&self, name: &str) -> R<Option<String>> {
        match self.typed(name, AttributeType::String)? {
            None => Ok(None),
            Some(a) => {
                a.s.as_ref()
                    .map(|s| Some(String::from_utf8_lossy(s).into_owned()))
                    .ok_or_else(|| err(format!("attribute '{name}' (STRING) holds no value")))
            }
        }
    }

    /// A TENSOR attribute, or None when the node has none.
    fn tensor(&self, name: &str) -> R<Option<&'a TensorProto>> {
        match self.typed(name, AttributeType::Tensor)? {
            None => Ok(None),
            Some(a) => {
                a.t.as_ref()
                    .map(Some)
                    .ok_or_else(|| err(format!("attribute '{name}' (TENSOR) holds no value")))
            }
        }
    }
}

/// The module path `torch.onnx.export` writes into node names: `/layer1/layer1.0/conv1/Conv`
/// → `layer1.0.conv1`, `/features/features.0/features.0.0/Conv` → `features.0.0`.
fn torch_path(node_name: &str) -> Option<String> {
    let rest = node_name.strip_prefix('/')?;
    let mut segs: Vec<&str> = rest.split('/').collect();
    segs.pop(); // the op's own name (`Conv`, `Relu_1`)
                // Each scope is a child's name (`conv`) or, inside a Sequential, the name of the scope
                // before it extended by an index (`conv.0` after `conv`): then it replaces that scope.
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            format!("{a}.{b}")
        }
    };
    let (mut base, mut path, mut prev) = (String::new(), String::new(), "");
    for s in segs.into_iter().filter(|s| !s.is_empty()) {
        if !prev.is_empty() && s.starts_with(prev) && s[prev.len()..].starts_with('.') {
            path = join(&base, s);
        } else {
            base = path.clone();
            path = join(&path, s);
        }
        prev = s;
    }
    (!path.is_empty()).then_some(path)
}

/// A weight initializer's name without `.weight`, unless it is one the exporter made up
/// (`onnx::Conv_193`).
fn param_stem(t: &Tensor) -> Option<String> {
    let stem = t.name.strip_suffix(".weight")?;
    (!stem.is_empty() && !stem.contains("::")).then(|| stem.to_string())
}

struct Reader<'m> {
    graph: &'m GraphProto,
    opts: &'m ImportOptions,
    values: HashMap<String, Value>,
    nodes: Vec<Node>,
    tensors: Vec<NamedTensor>,
    names: HashSet<String>,
    /// Per base name, the suffix [`Reader::unique`] tries next: names are never given back,
    /// so every smaller suffix is taken, and a graph of many nodes of one name costs one
    /// lookup per node instead of one per earlier namesake.
    next_suffix: HashMap<String, usize>,
    reinserted: Vec<(String, String)>,
    /// How many nodes read each value (to fuse MatMul + Add and find folded BNs).
    consumers: HashMap<String, Vec<usize>>,
    /// Node indices (into the graph) already consumed by a fusion.
    fused: HashSet<usize>,
    /// For each of `nodes`, the ONNX node it came from: its label ([`node_label`]) and op
    /// type, so that an error found in the whole model names the file's node.
    origins: Vec<(String, String)>,
    /// The image input's batch dimension, when the file fixes it.
    batch: Option<i64>,
    /// Each Reshape imported as a Flatten, by its index in `nodes` (nodes are only ever
    /// appended), with its target `[b, f]`: checked against the input's size per image once
    /// the model's shapes are known ([`Reader::finish`]).
    reshapes: Vec<(usize, [f64; 2])>,
}

/// Imports a decoded ONNX model.
pub fn import(model: &ModelProto, opts: &ImportOptions) -> R<Imported> {
    let opset = model
        .opset_import
        .iter()
        .find(|o| {
            o.domain.as_deref().unwrap_or("").is_empty() || o.domain.as_deref() == Some("ai.onnx")
        })
        .and_then(|o| o.version)
        .ok_or_else(|| err("the model declares no opset of the default ONNX domain"))?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(err(format!(
            "opset {opset} of the default domain; opsets {MIN_OPSET} to {MAX_OPSET} are supported"
        )));
    }
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| err("the model has no graph"))?;
    let mut r = Reader {
        graph,
        opts,
        values: HashMap::new(),
        nodes: Vec::new(),
        tensors: Vec::new(),
        names: HashSet::new(),
        next_suffix: HashMap::new(),
        reinserted: Vec::new(),
        consumers: HashMap::new(),
        fused: HashSet::new(),
        origins: Vec::new(),
        batch: None,
        reshapes: Vec::new(),
    };
    if !graph.sparse_initializer.is_empty() {
        return Err(err("sparse initializers are not supported"));
    }
    for t in &graph.initializer {
        let name = t.name.clone().unwrap_or_default();
        let v = match tensor_values(t, &format!("initializer '{name}'")) {
            Ok(v) => Value::Const(v),
            Err(e) => Value::Bad(e.message),
        };
        r.values.insert(name, v);
    }
    let input = r.read_input()?;
    for (i, n) in graph.node.iter().enumerate() {
        for inp in n.input.iter().filter(|s| !s.is_empty()) {
            r.consumers.entry(inp.clone()).or_default().push(i);
        }
    }
    for (i, n) in graph.node.iter().enumerate() {
        if r.fused.contains(&i) {
            continue;
        }
        let origin = (node_label(n), n.op_type.clone().unwrap_or_default());
        r.node(n, opset).map_err(|mut e| {
            if e.node.is_none() {
                e.node = Some(origin.clone());
            }
            e
        })?;
        r.origins.resize(r.nodes.len(), origin);
    }
    r.finish(input, opset)
}

fn node_label(n: &NodeProto) -> String {
    match n.name.as_deref() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => n
            .output
            .first()
            .map(|o| format!("output {o}"))
            .unwrap_or_else(|| "unnamed".into()),
    }
}

impl Reader<'_> {
    /// The one graph input that is not an initializer: `N×C×H×W` with C, H, W fixed.
    fn read_input(&mut self) -> R<(usize, usize, usize)> {
        let inputs: Vec<_> = self
            .graph
            .input
            .iter()
            .filter(|v| !self.values.contains_key(v.name.as_deref().unwrap_or("")))
            .collect();
        let [vi] = inputs.as_slice() else {
            return Err(err(format!(
                "the graph has {} inputs besides its initializers; exactly one image input \
                 (N×C×H×W) is supported",
                inputs.len()
            )));
        };
        let name = vi.name.clone().unwrap_or_default();
        let shape = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(type_proto::Value::TensorType(t)) => {
                if t.elem_type != Some(DataType::Float as i32) {
                    return Err(err(format!(
                        "input '{name}': element type {}; it must be FLOAT",
                        t.elem_type.map_or_else(|| "not given".into(), dtype_name)
                    )));
                }
                t.shape.as_ref()
            }
            _ => None,
        }
        .ok_or_else(|| err(format!("input '{name}': no tensor shape given")))?;
        if shape.dim.len() != 4 {
            return Err(err(format!(
                "input '{name}': rank {}; an image input N×C×H×W is supported",
                shape.dim.len()
            )));
        }
        let mut chw = [0usize; 3];
        for (k, d) in shape.dim[1..].iter().enumerate() {
            let v = match &d.value {
                Some(dimension::Value::DimValue(v)) if *v > 0 => *v as usize,
                other => {
                    return Err(err(format!(
                        "input '{name}': dimension {} is {}; C, H and W must be fixed positive \
                         sizes (only the batch dimension may be symbolic); re-export with a fixed \
                         input size",
                        k + 1,
                        match other {
                            Some(dimension::Value::DimParam(p)) => format!("symbolic '{p}'"),
                            Some(dimension::Value::DimValue(v)) => v.to_string(),
                            None => "unknown".into(),
                        }
                    )))
                }
            };
            chw[k] = v;
        }
        if let Some(dimension::Value::DimValue(n)) = &shape.dim[0].value {
            self.batch = Some(*n);
        }
        self.values.insert(
            name,
            Value::Act {
                src: INPUT.to_string(),
                flat: false,
            },
        );
        Ok((chw[0], chw[1], chw[2]))
    }

    fn value(&self, name: &str) -> R<&Value> {
        self.values.get(name).ok_or_else(|| {
            err(format!(
                "input '{name}' is produced by no earlier node, initializer or graph input"
            ))
        })
    }

    fn act(&self, n: &NodeProto, k: usize) -> R<(String, bool)> {
        let name = input_name(n, k)?;
        match self.value(name)? {
            Value::Act { src, flat } => Ok((src.clone(), *flat)),
            Value::Const(_) => Err(err(format!(
                "input {k} ('{name}') is a constant; it must be computed from the image"
            ))),
            Value::Dims(_) => Err(err(format!(
                "input {k} ('{name}') is computed from a Shape; it must be computed from the \
                 image"
            ))),
            Value::Bad(why) => Err(err(why.clone())),
        }
    }

    fn constant(&self, n: &NodeProto, k: usize) -> R<Option<Tensor>> {
        let Some(name) = n.input.get(k).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        match self.value(name)? {
            Value::Const(t) => Ok(Some(t.clone())),
            Value::Act { .. } => Err(err(format!(
                "input {k} ('{name}') must be a constant (an initializer or a Constant node)"
            ))),
            Value::Dims(_) => Err(err(format!(
                "input {k} ('{name}') is computed from a Shape; a shape computed from the \
                 input is supported only as Reshape's shape"
            ))),
            Value::Bad(why) => Err(err(why.clone())),
        }
    }

    /// Input `k`, if given, as a constant whose element type is one of `types` (`what`: its
    /// role, for messages).
    fn typed_constant(
        &self,
        n: &NodeProto,
        k: usize,
        what: &str,
        types: &[DataType],
    ) -> R<Option<Tensor>> {
        match self.constant(n, k)? {
            None => Ok(None),
            Some(t) => of_type(t, what, &n.input[k], types).map(Some),
        }
    }

    /// Input `k`, which must be given, as a constant of one of `types`.
    fn need_typed(&self, n: &NodeProto, k: usize, what: &str, types: &[DataType]) -> R<Tensor> {
        self.typed_constant(n, k, what, types)?
            .ok_or_else(|| err(format!("input {k} ({what}) missing")))
    }

    /// Input `k`, which must be given, as a FLOAT constant: a weight of the float model.
    fn need_float(&self, n: &NodeProto, k: usize, what: &str) -> R<Tensor> {
        self.need_typed(n, k, what, &[DataType::Float])
    }

    /// Input `k`, if given, as a FLOAT constant.
    fn float_constant(&self, n: &NodeProto, k: usize, what: &str) -> R<Option<Tensor>> {
        self.typed_constant(n, k, what, &[DataType::Float])
    }

    /// Input `k` as a computed shape: a `Dims` value, or a constant of whole numbers.
    fn dims(&self, n: &NodeProto, k: usize) -> R<Dims> {
        let name = input_name(n, k)?;
        match self.value(name)? {
            Value::Dims(d) => Ok(d.clone()),
            Value::Const(t) => Ok(Dims {
                dims: whole_numbers(t)?.into_iter().map(Dim::Known).collect(),
                scalar: t.dims.is_empty(),
            }),
            Value::Act { .. } => Err(err(format!(
                "input {k} ('{name}') is computed from the image; {} is supported only on \
                 shapes (Shape, then Gather, Unsqueeze, Concat, Cast, as `x.view(x.size(0), \
                 -1)` exports)",
                n.op_type.as_deref().unwrap_or("")
            ))),
            Value::Bad(why) => Err(err(why.clone())),
        }
    }

    fn output_dims(&mut self, n: &NodeProto, d: Dims) -> R<()> {
        self.values.insert(output_name(n)?.clone(), Value::Dims(d));
        Ok(())
    }

    /// `Shape`: the batch, then sizes not tracked (2 for a 2-D activation, 4 otherwise),
    /// sliced by `start` / `end` (opset 15).
    fn shape_of(&mut self, n: &NodeProto, a: &Attrs) -> R<()> {
        let (_, flat) = self.act(n, 0)?;
        let rank = if flat { 2 } else { 4 };
        let at = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
        let start = at(a.int("start", 0)?);
        let end = at(a.int("end", rank)?);
        let all: Vec<Dim> = (0..rank as usize)
            .map(|i| if i == 0 { Dim::Batch } else { Dim::Unknown })
            .collect();
        let dims = all.get(start..end.max(start)).unwrap_or(&[]).to_vec();
        self.output_dims(
            n,
            Dims {
                dims,
                scalar: false,
            },
        )
    }

    /// `Gather` on a computed shape, along axis 0.
    fn gather(&mut self, n: &NodeProto, a: &Attrs) -> R<()> {
        let data = self.dims(n, 0)?;
        if a.int("axis", 0)? != 0 || data.scalar {
            return Err(err(
                "only a Gather along axis 0 of a 1-D shape is supported",
            ));
        }
        let idx = self.need_constant(n, 1, "indices")?;
        if idx.dims.len() > 1 {
            return Err(err(format!(
                "indices '{}' of dims {:?}; a scalar or a list is supported",
                idx.name, idx.dims
            )));
        }
        let len = data.dims.len() as i64;
        let mut dims = Vec::new();
        for i in whole_numbers(&idx)? {
            let j = if i < 0 { i + len } else { i };
            if !(0..len).contains(&j) {
                return Err(err(format!("index {i} of a shape of {len} entries")));
            }
            dims.push(data.dims[j as usize]);
        }
        self.output_dims(
            n,
            Dims {
                dims,
                scalar: idx.dims.is_empty(),
            },
        )
    }

    /// `Unsqueeze` of a scalar from a computed shape into a 1-entry list (axes `[0]`, an
    /// attribute before opset 13 and an input from it).
    fn unsqueeze(&mut self, n: &NodeProto, a: &Attrs, opset: i64) -> R<()> {
        let d = self.dims(n, 0)?;
        let axes = if opset < 13 {
            a.ints("axes")?.map(<[i64]>::to_vec).unwrap_or_default()
        } else {
            whole_numbers(&self.need_constant(n, 1, "axes")?)?
        };
        if !d.scalar || !matches!(axes[..], [0] | [-1]) {
            return Err(err(format!(
                "axes {axes:?}; only a scalar unsqueezed at axis 0 is supported"
            )));
        }
        self.output_dims(
            n,
            Dims {
                dims: d.dims,
                scalar: false,
            },
        )
    }

    /// `Concat` of 1-D shapes along axis 0.
    fn concat(&mut self, n: &NodeProto, a: &Attrs) -> R<()> {
        if !matches!(a.int("axis", 0)?, 0 | -1) {
            return Err(err("only a Concat of 1-D shapes along axis 0 is supported"));
        }
        let mut dims = Vec::new();
        for k in 0..n.input.len() {
            let d = self.dims(n, k)?;
            if d.scalar {
                return Err(err(format!(
                    "input {k} is a scalar; Concat needs 1-D inputs"
                )));
            }
            dims.extend(d.dims);
        }
        self.output_dims(
            n,
            Dims {
                dims,
                scalar: false,
            },
        )
    }

    fn need_constant(&self, n: &NodeProto, k: usize, what: &str) -> R<Tensor> {
        self.constant(n, k)?
            .ok_or_else(|| err(format!("input {k} ({what}) missing")))
    }

    fn output(&mut self, n: &NodeProto, src: String, flat: bool) -> R<()> {
        self.values
            .insert(output_name(n)?.clone(), Value::Act { src, flat });
        Ok(())
    }

    /// A unique node name from `base`.
    fn unique(&mut self, base: &str) -> String {
        let base = if base.is_empty() || base == INPUT {
            format!("{base}_")
        } else {
            base.to_string()
        };
        let next = self.next_suffix.entry(base.clone()).or_insert(0);
        let mut name = if *next == 0 {
            base.clone()
        } else {
            format!("{base}_{next}")
        };
        while self.names.contains(&name) {
            *next += 1;
            name = format!("{base}_{next}");
        }
        *next += 1;
        self.names.insert(name.clone());
        name
    }

    fn name_for(&mut self, n: &NodeProto, weight: Option<&Tensor>) -> String {
        let base = weight
            .and_then(param_stem)
            .or_else(|| n.name.as_deref().and_then(torch_path))
            // A top-level functional call (`/Flatten`): its op, lower-cased.
            .or_else(|| {
                let top = n.name.as_deref()?.strip_prefix('/')?;
                (!top.is_empty() && !top.contains('/')).then(|| top.to_ascii_lowercase())
            })
            .or_else(|| n.name.clone().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| {
                format!(
                    "{}_{}",
                    n.op_type.as_deref().unwrap_or("node").to_ascii_lowercase(),
                    self.nodes.len()
                )
            });
        self.unique(&base)
    }

    fn push(&mut self, name: String, op: Op, inputs: Vec<String>) {
        self.nodes.push(Node { name, op, inputs });
    }

    fn param(&mut self, name: String, kind: TensorKind, data: Vec<f32>) {
        self.tensors.push(NamedTensor { name, kind, data });
    }

    fn node(&mut self, n: &NodeProto, opset: i64) -> R<()> {
        let op = n.op_type.as_deref().unwrap_or("");
        let domain = n.domain.as_deref().unwrap_or("");
        if !(domain.is_empty() || domain == "ai.onnx") {
            return Err(err(format!(
                "operator of domain '{domain}' is not supported; supported (default domain): \
                 {SUPPORTED_OPS}"
            )));
        }
        let a = Attrs(&n.attribute);
        match op {
            "Constant" => {
                let t = constant_node(&a)?;
                let out = n.output.first().cloned().unwrap_or_default();
                self.values.insert(out, Value::Const(t));
                Ok(())
            }
            "Identity" | "Dropout" => {
                if op == "Dropout"
                    && n.output.get(1).is_some_and(|m| !m.is_empty())
                    && self.consumers.contains_key(&n.output[1])
                {
                    return Err(err("the dropout mask output is used; only inference dropout (a pass-through) is supported"));
                }
                // Opset 12: `training_mode` is an input; true drops values at inference.
                if op == "Dropout" {
                    let training = match self.values.get(n.input.get(2).map_or("", |s| s.as_str()))
                    {
                        None => false,
                        Some(Value::Const(t)) => t.data.iter().any(|&v| v != 0.0),
                        Some(Value::Bad(why)) => return Err(err(why.clone())),
                        Some(_) => true,
                    };
                    if training {
                        return Err(err("training_mode is not a constant false; only inference dropout (a pass-through) is supported"));
                    }
                }
                let v = self
                    .value(n.input.first().map_or("", |s| s.as_str()))?
                    .clone();
                let out = n.output.first().cloned().unwrap_or_default();
                self.values.insert(out, v);
                Ok(())
            }
            "Conv" => self.conv(n, &a),
            "BatchNormalization" => self.batch_norm(n, &a, opset),
            "Relu" => {
                let (x, flat) = self.act(n, 0)?;
                let name = self.name_for(n, None);
                self.push(name.clone(), Op::Relu, vec![x]);
                self.output(n, name, flat)
            }
            "Clip" => self.clip(n, &a, opset),
            "Add" => self.add(n),
            "MaxPool" | "AveragePool" => self.pool(n, &a, op == "MaxPool"),
            "GlobalAveragePool" => {
                let (x, flat) = self.act(n, 0)?;
                if flat {
                    return Err(err("input is 2-D; GlobalAveragePool needs N×C×H×W"));
                }
                let name = self.name_for(n, None);
                self.push(name.clone(), Op::GlobalAvgPool, vec![x]);
                self.output(n, name, false)
            }
            "Flatten" => {
                let axis = a.int("axis", 1)?;
                if axis != 1 {
                    return Err(err(format!(
                        "axis {axis}; only axis 1 (N×C×H×W → N×(C·H·W)) is supported"
                    )));
                }
                let (x, _) = self.act(n, 0)?;
                let name = self.name_for(n, None);
                self.push(name.clone(), Op::Flatten, vec![x]);
                self.output(n, name, true)
            }
            "Reshape" => self.reshape(n),
            "Shape" => self.shape_of(n, &a),
            "Gather" => self.gather(n, &a),
            "Unsqueeze" => self.unsqueeze(n, &a, opset),
            "Concat" => self.concat(n, &a),
            // On a computed shape, or a constant of whole numbers: casts between integer
            // types (and to float) leave them as they are.
            "Cast" => {
                let d = self.dims(n, 0)?;
                self.output_dims(n, d)
            }
            "Gemm" => self.gemm(n, &a),
            "MatMul" => self.matmul(n),
            other => Err(err(format!(
                "operator '{other}' is not supported; supported: {SUPPORTED_OPS}"
            ))),
        }
    }

    fn conv(&mut self, n: &NodeProto, a: &Attrs) -> R<()> {
        let (x, flat) = self.act(n, 0)?;
        if flat {
            return Err(err("input is 2-D; Conv needs N×C×H×W"));
        }
        let w = self.need_float(n, 1, "weight")?;
        let b = self.float_constant(n, 2, "bias")?;
        let [o, _ipg, kh, kw] = w.dims[..] else {
            return Err(err(format!(
                "weight '{}' has dims {:?}; a 2-D convolution's weight is [out, in/groups, kh, kw]",
                w.name, w.dims
            )));
        };
        nonempty_weight(&w)?;
        if kh != kw {
            return Err(err(format!(
                "kernel {kh}×{kw}; only square kernels are supported"
            )));
        }
        if let Some(ks) = a.ints("kernel_shape")? {
            if ks != [kh, kw] {
                return Err(err(format!(
                    "kernel_shape {ks:?} disagrees with the weight's {:?}",
                    &w.dims[2..]
                )));
            }
        }
        let (stride, padding) = window(a)?;
        let groups = a.int("group", 1)?;
        if groups < 1 {
            return Err(err(format!("group {groups}; must be at least 1")));
        }
        let out = o as usize;
        if let Some(b) = &b {
            if b.data.len() != out {
                return Err(err(format!(
                    "bias '{}' has {} values; the conv has {out} output channels",
                    b.name,
                    b.data.len()
                )));
            }
        }
        // A conv with a bias whose every reader is not a BatchNormalization: a folded BN.
        let out_name = n.output.first().cloned().unwrap_or_default();
        let followed_by_bn = self.consumers.get(&out_name).is_some_and(|c| {
            !c.is_empty()
                && c.iter()
                    .all(|&j| self.graph.node[j].op_type.as_deref() == Some("BatchNormalization"))
        });
        let reinsert = b.is_some() && !followed_by_bn && self.opts.folded_bn == FoldedBn::Reinsert;
        let name = self.name_for(n, Some(&w));
        self.push(
            name.clone(),
            Op::Conv2d {
                out_channels: out,
                kernel: kh as usize,
                stride,
                padding,
                groups: groups as usize,
                bias: b.is_some() && !reinsert,
            },
            vec![x],
        );
        self.param(format!("{name}.weight"), TensorKind::Param, w.f32s());
        let Some(b) = b else {
            return self.output(n, name, false);
        };
        if !reinsert {
            self.param(format!("{name}.bias"), TensorKind::Param, b.f32s());
            return self.output(n, name, false);
        }
        let bn = self.unique(&bn_name_after(&name));
        self.push(bn.clone(), Op::BatchNorm, vec![name.clone()]);
        // eval: (y - 0) / sqrt((1 - eps) + eps) · 1 + bias = y + bias.
        self.param(format!("{bn}.weight"), TensorKind::Param, vec![1.0; out]);
        self.param(format!("{bn}.bias"), TensorKind::Param, b.f32s());
        self.param(
            format!("{bn}.running_mean"),
            TensorKind::RunningStat,
            vec![0.0; out],
        );
        self.param(
            format!("{bn}.running_var"),
            TensorKind::RunningStat,
            vec![1.0 - BN_EPS; out],
        );
        self.reinserted.push((name, bn.clone()));
        self.output(n, bn, false)
    }

    fn batch_norm(&mut self, n: &NodeProto, a: &Attrs, opset: i64) -> R<()> {
        let (x, flat) = self.act(n, 0)?;
        if flat {
            return Err(err(
                "input is 2-D; only BatchNormalization over N×C×H×W is supported",
            ));
        }
        if a.int("training_mode", 0)? != 0 || n.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(err("training-mode BatchNormalization (more than one output) is not supported; export in eval mode"));
        }
        // Opsets 7 and 8: `spatial` 0 normalises each element (C×H×W statistics), not each
        // channel; the engine's BatchNorm is per channel.
        let spatial = a.int("spatial", 1)?;
        if spatial != 1 {
            return Err(err(format!(
                "spatial {spatial}: statistics per element (C×H×W) are not supported; only \
                 spatial 1 (per channel, the only form from opset 9) is"
            )));
        }
        let eps = a.float("epsilon")?.unwrap_or(1e-5) as f64;
        // Before opset 15 every input has the image input's type, float; from it the scale
        // and bias (T1) and the mean and variance (T2) may each be any float type.
        let types = if opset < 15 {
            &[DataType::Float][..]
        } else {
            BN_PARAM_TYPES
        };
        let scale = self.need_typed(n, 1, "scale", types)?;
        let bias = self.need_typed(n, 2, "B", types)?;
        let mean = self.need_typed(n, 3, "mean", types)?;
        let var = self.need_typed(n, 4, "var", types)?;
        for (k, first, second) in [(1, &scale, &bias), (3, &mean, &var)] {
            if first.dtype != second.dtype {
                return Err(err(format!(
                    "inputs {k} ('{}') and {} ('{}') have element types {} and {}; ONNX \
                     requires one type for both",
                    n.input[k],
                    k + 1,
                    n.input[k + 1],
                    dtype_name(first.dtype),
                    dtype_name(second.dtype)
                )));
            }
        }
        let c = scale.data.len();
        for (t, what) in [(&bias, "B"), (&mean, "mean"), (&var, "var")] {
            if t.data.len() != c {
                return Err(err(format!(
                    "{what} '{}' has {} values, scale has {c}",
                    t.name,
                    t.data.len()
                )));
            }
        }
        if !eps.is_finite() || eps < 0.0 {
            return Err(err(format!("epsilon {eps} is not a finite number ≥ 0")));
        }
        if let Some((ch, v)) =
            (var.data.iter().enumerate()).find(|&(_, &v)| (v + eps).is_nan() || v + eps <= 0.0)
        {
            return Err(err(format!(
                "var '{}' channel {ch} is {v} with epsilon {eps}: the output divides by \
                 √(var + epsilon), which must be positive",
                var.name
            )));
        }
        // The engine adds its own eps: var + eps_file = var' + eps_engine. Where var + eps_file
        // is below eps_engine, var' = 0 and the scale takes the difference:
        // scale / √(var + eps_file) = scale' / √eps_engine. Either way the inference output
        // is the file's.
        let engine_eps = BN_EPS as f64;
        let mut weight = Vec::with_capacity(c);
        let mut running_var = Vec::with_capacity(c);
        for (&g, &v) in scale.data.iter().zip(&var.data) {
            let v = v + eps;
            if v >= engine_eps {
                weight.push(g as f32);
                running_var.push((v - engine_eps) as f32);
            } else {
                weight.push((g * (engine_eps / v).sqrt()) as f32);
                running_var.push(0.0);
            }
        }
        let name = self.name_for(n, Some(&scale));
        self.push(name.clone(), Op::BatchNorm, vec![x]);
        self.param(format!("{name}.weight"), TensorKind::Param, weight);
        self.param(format!("{name}.bias"), TensorKind::Param, bias.f32s());
        self.param(
            format!("{name}.running_mean"),
            TensorKind::RunningStat,
            mean.f32s(),
        );
        self.param(
            format!("{name}.running_var"),
            TensorKind::RunningStat,
            running_var,
        );
        self.output(n, name, false)
    }

    fn clip(&mut self, n: &NodeProto, a: &Attrs, opset: i64) -> R<()> {
        let (x, flat) = self.act(n, 0)?;
        let scalar = |t: Option<Tensor>, what: &str| -> R<Option<f64>> {
            match t {
                None => Ok(None),
                Some(t) if t.data.len() == 1 => Ok(Some(t.data[0])),
                Some(t) => Err(err(format!(
                    "{what} '{}' has {} values; a scalar is needed",
                    t.name,
                    t.data.len()
                ))),
            }
        };
        let (lo, hi) = if opset < 11 {
            (
                a.float("min")?.map(f64::from),
                a.float("max")?.map(f64::from),
            )
        } else {
            (
                scalar(self.float_constant(n, 1, "min")?, "min")?,
                scalar(self.float_constant(n, 2, "max")?, "max")?,
            )
        };
        let op = if lo == Some(0.0) && hi == Some(6.0) {
            Op::Relu6
        } else if lo == Some(0.0) && hi.is_none_or(|h| h == f64::INFINITY) {
            Op::Relu
        } else {
            return Err(err(format!(
                "bounds {lo:?}..{hi:?}; supported: 0..6 (ReLU6) and 0..(none) (ReLU)"
            )));
        };
        let name = self.name_for(n, None);
        self.push(name.clone(), op, vec![x]);
        self.output(n, name, flat)
    }

    fn add(&mut self, n: &NodeProto) -> R<()> {
        if n.input.len() != 2 {
            return Err(err(format!("{} inputs; Add takes 2", n.input.len())));
        }
        let (a, fa) = self.act(n, 0)?;
        let (b, fb) = self.act(n, 1).map_err(|e| {
            err(format!(
                "{}; an Add of a constant is supported only as the bias after a MatMul",
                e.message
            ))
        })?;
        if fa != fb {
            return Err(err("adds a 2-D and a 4-D tensor"));
        }
        let name = self.name_for(n, None);
        self.push(name.clone(), Op::Add, vec![a, b]);
        self.output(n, name, fa)
    }

    fn pool(&mut self, n: &NodeProto, a: &Attrs, max: bool) -> R<()> {
        let (x, flat) = self.act(n, 0)?;
        if flat {
            return Err(err("input is 2-D; pooling needs N×C×H×W"));
        }
        let k = match a.ints("kernel_shape")? {
            Some([h, w]) if h == w && *h > 0 => *h,
            other => {
                return Err(err(format!(
                    "kernel_shape {other:?}; a square 2-D kernel is supported"
                )))
            }
        };
        let (stride, padding) = window(a)?;
        if a.int("ceil_mode", 0)? != 0 {
            return Err(err("ceil_mode 1 is not supported (floor only)"));
        }
        if max && a.int("storage_order", 0)? != 0 {
            return Err(err("storage_order 1 is not supported"));
        }
        if !max && padding > 0 && a.int("count_include_pad", 0)? == 0 {
            return Err(err(
                "padded average pooling with count_include_pad 0; the engine counts padded zeros \
                 (PyTorch's default, exported as count_include_pad 1)",
            ));
        }
        let kernel = k as usize;
        let op = if max {
            Op::MaxPool {
                kernel,
                stride,
                padding,
            }
        } else {
            Op::AvgPool {
                kernel,
                stride,
                padding,
            }
        };
        let name = self.name_for(n, None);
        self.push(name.clone(), op, vec![x]);
        self.output(n, name, false)
    }

    fn reshape(&mut self, n: &NodeProto) -> R<()> {
        let (x, _) = self.act(n, 0)?;
        // A shape computed from the input's: the batch first (Reshape's 0, "this dimension
        // of the input"), then numbers.
        let shape = match self.value(n.input.get(1).map_or("", |s| s.as_str()))? {
            Value::Dims(_) => {
                let d = self.dims(n, 1)?;
                let mut data = Vec::with_capacity(d.dims.len());
                for (i, dim) in d.dims.iter().enumerate() {
                    data.push(match dim {
                        Dim::Batch if i == 0 => 0.0,
                        Dim::Known(v) => *v as f64,
                        _ => {
                            return Err(err(format!(
                                "shape entry {i} is computed from the input's {}; only the \
                                 batch (first) is supported there",
                                if *dim == Dim::Batch {
                                    "batch"
                                } else {
                                    "C, H or W"
                                }
                            )))
                        }
                    });
                }
                Tensor {
                    dims: vec![data.len() as i64],
                    data,
                    name: n.input[1].clone(),
                    dtype: DataType::Int64 as i32,
                }
            }
            _ => self.need_constant(n, 1, "shape")?,
        };
        let target = match shape.data[..] {
            // [N or 0 or -1, -1 or F]: flatten to 2-D; F and N are checked against the
            // input's size once the shapes are known (`finish`).
            [b, f]
                if (b == 0.0 || b == -1.0 || b >= 1.0)
                    && (f == -1.0 || f >= 1.0)
                    && !(b == -1.0 && f == -1.0) =>
            {
                [b, f]
            }
            _ => {
                return Err(err(format!(
                    "shape {:?}; only a reshape to 2-D (N, -1) is supported",
                    shape.data
                )))
            }
        };
        let name = self.name_for(n, None);
        self.reshapes.push((self.nodes.len(), target));
        self.push(name.clone(), Op::Flatten, vec![x]);
        self.output(n, name, true)
    }

    /// A linear layer from `[out, in]` weights and an optional bias.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &mut self,
        n: &NodeProto,
        x: String,
        w: &Tensor,
        weights: Vec<f32>,
        out: usize,
        bias: Option<Vec<f32>>,
        out_value: &str,
    ) -> R<()> {
        if let Some(b) = &bias {
            if b.len() != out {
                return Err(err(format!(
                    "bias has {} values; the layer has {out} outputs",
                    b.len()
                )));
            }
        }
        let name = self.name_for(n, Some(w));
        self.push(
            name.clone(),
            Op::Linear {
                out_features: out,
                bias: bias.is_some(),
            },
            vec![x],
        );
        self.param(format!("{name}.weight"), TensorKind::Param, weights);
        if let Some(b) = bias {
            self.param(format!("{name}.bias"), TensorKind::Param, b);
        }
        self.values.insert(
            out_value.to_string(),
            Value::Act {
                src: name,
                flat: true,
            },
        );
        Ok(())
    }

    fn gemm(&mut self, n: &NodeProto, a: &Attrs) -> R<()> {
        let (x, flat) = self.act(n, 0)?;
        if !flat {
            return Err(err(
                "input is 4-D; Gemm needs a 2-D input (Flatten before it)",
            ));
        }
        if a.int("transA", 0)? != 0 {
            return Err(err("transA 1 is not supported"));
        }
        let alpha = a.float("alpha")?.unwrap_or(1.0);
        let beta = a.float("beta")?.unwrap_or(1.0);
        let w = self.need_float(n, 1, "B")?;
        let [r, c] = w.dims[..] else {
            return Err(err(format!(
                "weight '{}' has dims {:?}; 2-D needed",
                w.name, w.dims
            )));
        };
        nonempty_weight(&w)?;
        let (r, c) = (r as usize, c as usize);
        let trans_b = a.int("transB", 0)? != 0;
        let (out, inf) = if trans_b { (r, c) } else { (c, r) };
        let mut weights = vec![0f32; out * inf];
        for o in 0..out {
            for k in 0..inf {
                let v = if trans_b {
                    w.data[o * inf + k]
                } else {
                    w.data[k * out + o]
                };
                weights[o * inf + k] = (v * alpha as f64) as f32;
            }
        }
        // beta = 0: C is not added at all (ONNX Runtime skips it, an infinite C included).
        let c = if beta == 0.0 {
            None
        } else {
            self.float_constant(n, 2, "C")?
        };
        let bias = match c {
            None => None,
            Some(b) if !per_output(&b, out) => {
                return Err(err(format!(
                    "C '{}' has dims {:?}; a bias of [{out}], [1, {out}] or one value is \
                     supported (another shape adds per image, not per output)",
                    b.name, b.dims
                )))
            }
            Some(b) if b.data.len() == out => {
                Some(b.data.iter().map(|&v| (v * beta as f64) as f32).collect())
            }
            Some(b) if b.data.len() == 1 => Some(vec![(b.data[0] * beta as f64) as f32; out]),
            Some(b) => {
                return Err(err(format!(
                    "C '{}' has {} values; {out} (or 1) needed",
                    b.name,
                    b.data.len()
                )))
            }
        };
        let out_value = n.output.first().cloned().unwrap_or_default();
        self.linear(n, x, &w, weights, out, bias, &out_value)
    }

    fn matmul(&mut self, n: &NodeProto) -> R<()> {
        let (x, flat) = self.act(n, 0)?;
        if !flat {
            return Err(err(
                "input is 4-D; MatMul is supported only on a 2-D input (Flatten / Reshape before it)",
            ));
        }
        let w = self.need_float(n, 1, "B")?;
        let [inf, out] = w.dims[..] else {
            return Err(err(format!(
                "weight '{}' has dims {:?}; 2-D [in, out] needed",
                w.name, w.dims
            )));
        };
        nonempty_weight(&w)?;
        let (inf, out) = (inf as usize, out as usize);
        let mut weights = vec![0f32; out * inf];
        for o in 0..out {
            for k in 0..inf {
                weights[o * inf + k] = w.data[k * out + o] as f32;
            }
        }
        // MatMul → Add(bias constant), the Add its only reader: one linear layer with a bias.
        let mut out_value = n.output.first().cloned().unwrap_or_default();
        let mut bias = None;
        if let Some([j]) = self.consumers.get(&out_value).map(|c| c.as_slice()) {
            let add = &self.graph.node[*j];
            if add.op_type.as_deref() == Some("Add") && add.input.len() == 2 {
                let other = if add.input[0] == out_value {
                    &add.input[1]
                } else {
                    &add.input[0]
                };
                if let Some(Value::Bad(why)) = self.values.get(other) {
                    return Err(err(why.clone()));
                }
                if let Some(Value::Const(b)) = self.values.get(other) {
                    let b = &of_type(b.clone(), "bias", other, &[DataType::Float])?;
                    if b.data.len() != out || !per_output(b, out) {
                        return Err(err(format!(
                            "the bias '{}' added after it has dims {:?}; [{out}] or [1, {out}] \
                             needed",
                            b.name, b.dims
                        )));
                    }
                    bias = Some(b.f32s());
                    self.fused.insert(*j);
                    out_value = add.output.first().cloned().unwrap_or_default();
                }
            }
        }
        self.linear(n, x, &w, weights, out, bias, &out_value)
    }

    fn finish(self, input: (usize, usize, usize), opset: i64) -> R<Imported> {
        let [out] = self.graph.output.as_slice() else {
            return Err(err(format!(
                "the graph has {} outputs; one (the logits) is supported",
                self.graph.output.len()
            )));
        };
        let out_name = out.name.clone().unwrap_or_default();
        let src = match self.values.get(&out_name) {
            Some(Value::Act { src, .. }) => src.clone(),
            _ => {
                return Err(err(format!(
                    "graph output '{out_name}' is not computed by any node"
                )))
            }
        };
        if self.nodes.last().map(|n| &n.name) != Some(&src) {
            return Err(err(format!(
                "graph output '{out_name}' is not the last operation of the graph; nodes after \
                 it (or unused branches) are not supported"
            )));
        }
        let name = self
            .opts
            .name
            .clone()
            .or_else(|| self.graph.name.clone().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "onnx".into());
        let mut model = Model {
            name,
            input,
            classes: 1,
            nodes: self.nodes,
        };
        // The classes are the last node's output channels; analyze checks every shape.
        let origins: HashMap<String, (String, String)> = (model.nodes.iter())
            .map(|n| n.name.clone())
            .zip(self.origins)
            .collect();
        let origin = |name: &str| origins.get(name).cloned();
        let infos = analyze_loose(&mut model, &origin)?;
        check_reshapes(&model, &infos, &self.reshapes, self.batch, &origin)?;
        check_lengths(&model, &infos, &self.tensors, &origin)?;
        Ok(Imported {
            model,
            tensors: self.tensors,
            reinserted_bn: self.reinserted,
            opset,
        })
    }
}

/// Runs the model's shape check with `classes` set from the last node's output; the
/// nodes' shapes, for [`check_lengths`].
fn analyze_loose(model: &mut Model, origin: &Origin<'_>) -> R<Vec<NodeInfo>> {
    let infos = crate::model::analyze_graph(model).map_err(|e| {
        let field = e
            .field
            .map(|f| format!("field '{f}': "))
            .unwrap_or_default();
        match e.node {
            Some(name) => in_node(&name, origin, format!("{field}{}", e.message)),
            None => err(format!("{field}{}", e.message)),
        }
    })?;
    let last = infos
        .last()
        .ok_or_else(|| err("the graph has no operations"))?
        .output;
    if last.h != 1 || last.w != 1 {
        return Err(err(format!(
            "the output is {last}; logits of shape N×classes are needed"
        )));
    }
    model.classes = last.c;
    model.analyze().map_err(|e| err(e.to_string()))
}

/// A bias of `out` values (or one) added to an `N×out` output alike for every image: every
/// dimension but the last is 1 (ONNX broadcasting; `[out, 1]` would add per image).
fn per_output(b: &Tensor, out: usize) -> bool {
    match b.dims.split_last() {
        None => true,
        Some((&last, rest)) => rest.iter().all(|&d| d == 1) && (last == 1 || last == out as i64),
    }
}

/// The ONNX node (label, op type) an imported node came from, by the imported name.
type Origin<'a> = dyn Fn(&str) -> Option<(String, String)> + 'a;

/// An error found in the imported node `name`: it names the file's node it came from, and
/// the name it was given (which the later commands and files use).
fn in_node(name: &str, origin: &Origin<'_>, message: String) -> OnnxError {
    match origin(name) {
        Some(from) => OnnxError {
            node: Some(from),
            message: format!("imported as '{name}': {message}"),
        },
        None => err(format!("node '{name}': {message}")),
    }
}

/// Every Reshape imported as a Flatten flattens each image: its target is `(N, C·H·W)`,
/// N written as 0 (the input's), -1 (what is left) or the file's fixed batch, and C·H·W
/// as -1 or the size itself. Any other target regroups the values across images (`[-1,
/// 3]` on 6 values an image gives twice the rows), which a Flatten does not do; a Linear
/// after it would refuse most, but a Reshape with none after it was imported silently.
fn check_reshapes(
    model: &Model,
    infos: &[NodeInfo],
    reshapes: &[(usize, [f64; 2])],
    batch: Option<i64>,
    origin: &Origin<'_>,
) -> R<()> {
    for &(i, [b, f]) in reshapes {
        let (Some(node), Some(info)) = (model.nodes.get(i), infos.get(i)) else {
            continue;
        };
        let name = &node.name;
        let Some(x) = info.input_shapes.first() else {
            continue;
        };
        let per_image = x.numel() as f64;
        let rows_ok = b == 0.0 || b == -1.0 || batch.is_some_and(|n| n as f64 == b);
        let cols_ok = f == -1.0 || f == per_image;
        if !(rows_ok && cols_ok) {
            let batch = match batch {
                Some(n) => format!("the input's batch is {n}"),
                None => "the input's batch is free".into(),
            };
            return Err(in_node(
                name,
                origin,
                format!(
                    "Reshape to [{b}, {f}] of {per_image} values an image ({batch}); only the \
                     flatten of each image, (N, {per_image}) with N as 0 or -1 and {per_image} \
                     as -1, is supported"
                ),
            ));
        }
    }
    Ok(())
}

/// Every conv and linear weight, and every batch norm's four tensors, has the length its
/// input shape (`infos`, the model's analysis) needs (an initializer of the wrong size
/// names the layer).
fn check_lengths(
    model: &Model,
    infos: &[NodeInfo],
    tensors: &[NamedTensor],
    origin: &Origin<'_>,
) -> R<()> {
    // By name: a lookup per tensor, not a walk of every tensor per layer (quadratic in a
    // graph of many layers).
    let lens: HashMap<&str, usize> = tensors
        .iter()
        .rev()
        .map(|t| (t.name.as_str(), t.data.len()))
        .collect();
    for (node, info) in model.nodes.iter().zip(infos) {
        let Some(&x) = info.input_shapes.first() else {
            continue;
        };
        let (want, names): (usize, &[&str]) = match node.op {
            Op::Conv2d {
                out_channels,
                kernel,
                groups,
                ..
            } => (
                out_channels * (x.c / groups.max(1)) * kernel * kernel,
                &["weight"],
            ),
            Op::Linear { out_features, .. } => (out_features * x.numel(), &["weight"]),
            Op::BatchNorm => (x.c, &["weight", "bias", "running_mean", "running_var"]),
            _ => continue,
        };
        for suffix in names {
            let name = format!("{}.{suffix}", node.name);
            let have = lens.get(name.as_str()).copied().unwrap_or(0);
            if have != want {
                return Err(in_node(
                    &node.name,
                    origin,
                    format!("{suffix} has {have} values; its input {x} needs {want}"),
                ));
            }
        }
    }
    Ok(())
}

/// `stride` and `padding` of a square window: equal strides, equal pads on every side, no
/// dilation, `auto_pad` NOTSET (or VALID).
fn window(a: &Attrs) -> R<(usize, usize)> {
    let stride = match a.ints("strides")? {
        None | Some([]) => 1,
        Some([h, w]) if h == w && *h > 0 => *h,
        Some(s) => {
            return Err(err(format!(
                "strides {s:?}; equal positive strides are supported"
            )))
        }
    };
    let pad = match a.ints("pads")? {
        None | Some([]) => 0,
        Some([t, l, b, r]) if t == l && l == b && b == r && *t >= 0 => *t,
        Some(p) => {
            return Err(err(format!(
                "pads {p:?}; the same padding on every side is supported"
            )))
        }
    };
    match a.string("auto_pad")?.as_deref() {
        None | Some("NOTSET") | Some("") => {}
        Some("VALID") if pad == 0 => {}
        Some(other) => {
            return Err(err(format!(
                "auto_pad {other}; explicit pads are supported (NOTSET)"
            )))
        }
    }
    if let Some(d) = a.ints("dilations")? {
        if d.iter().any(|&v| v != 1) {
            return Err(err(format!("dilations {d:?}; only 1 is supported")));
        }
    }
    Ok((stride as usize, pad as usize))
}

/// The name of node `n`'s input `k`, which must be given.
fn input_name(n: &NodeProto, k: usize) -> R<&String> {
    n.input
        .get(k)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| err(format!("input {k} missing")))
}

/// The name of node `n`'s (first) output, which must be given.
fn output_name(n: &NodeProto) -> R<&String> {
    n.output
        .first()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| err("no output"))
}

/// A constant's values as whole numbers (shapes, indices, axes).
fn whole_numbers(t: &Tensor) -> R<Vec<i64>> {
    t.data
        .iter()
        .map(|&v| {
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                Ok(v as i64)
            } else {
                Err(err(format!(
                    "'{}' holds {v}; whole numbers are needed there",
                    t.name
                )))
            }
        })
        .collect()
}

/// The value of a Constant node.
fn constant_node(a: &Attrs) -> R<Tensor> {
    if let Some(t) = a.tensor("value")? {
        return tensor_values(t, "Constant value");
    }
    let tensor = |data: Vec<f64>, dims: Vec<i64>, dtype: DataType| Tensor {
        dims,
        data,
        name: String::new(),
        dtype: dtype as i32,
    };
    if let Some(f) = a.float("value_float")? {
        return Ok(tensor(vec![f as f64], vec![], DataType::Float));
    }
    if a.get("value_int").is_some() {
        let v = a.int("value_int", 0)?;
        return Ok(tensor(vec![v as f64], vec![], DataType::Int64));
    }
    if let Some(v) = a.floats("value_floats")? {
        return Ok(tensor(
            v.iter().map(|&f| f as f64).collect(),
            vec![v.len() as i64],
            DataType::Float,
        ));
    }
    if let Some(v) = a.ints("value_ints")? {
        return Ok(tensor(
            v.iter().map(|&f| f as f64).collect(),
            vec![v.len() as i64],
            DataType::Int64,
        ));
    }
    Err(err(
        "a Constant needs a value, value_float(s) or value_int(s) attribute",
    ))
}

/// The name of a BatchNorm re-inserted after conv `conv`, in the style of the module that
/// usually follows it: `layer1.0.conv1` → `layer1.0.bn1`, `features.0.0` → `features.0.1`,
/// `layer1.0.downsample.0` → `layer1.0.downsample.1`, else `{conv}.bn`.
fn bn_name_after(conv: &str) -> String {
    let (head, last) = match conv.rsplit_once('.') {
        Some((h, l)) => (format!("{h}."), l),
        None => (String::new(), conv),
    };
    if let Ok(k) = last.parse::<u64>() {
        return format!("{head}{}", k + 1);
    }
    if let Some(rest) = last.strip_prefix("conv") {
        if rest.is_empty() || rest.chars().all(|c| c.is_ascii_digit()) {
            return format!("{head}bn{rest}");
        }
    }
    format!("{conv}.bn")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_paths() {
        assert_eq!(
            torch_path("/layer1/layer1.0/conv1/Conv").as_deref(),
            Some("layer1.0.conv1")
        );
        assert_eq!(
            torch_path("/features/features.0/features.0.0/Conv").as_deref(),
            Some("features.0.0")
        );
        assert_eq!(
            torch_path("/features/features.1/conv/conv.0/conv.0.0/Conv").as_deref(),
            Some("features.1.conv.0.0")
        );
        assert_eq!(
            torch_path("/layer1/layer1.0/downsample/downsample.0/Conv").as_deref(),
            Some("layer1.0.downsample.0")
        );
        assert_eq!(torch_path("/conv1/Conv").as_deref(), Some("conv1"));
        assert_eq!(torch_path("/Flatten").as_deref(), None);
        assert_eq!(torch_path("Conv_0"), None);
    }

    #[test]
    fn bn_names() {
        assert_eq!(bn_name_after("layer1.0.conv1"), "layer1.0.bn1");
        assert_eq!(bn_name_after("conv1"), "bn1");
        assert_eq!(bn_name_after("features.0.0"), "features.0.1");
        assert_eq!(
            bn_name_after("layer1.0.downsample.0"),
            "layer1.0.downsample.1"
        );
        assert_eq!(bn_name_after("stem"), "stem.bn");
    }
}
