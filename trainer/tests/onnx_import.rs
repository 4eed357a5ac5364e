//! ONNX import through its public API: a folded export gets its batch norm back, broken
//! graphs are errors naming the node, and hostile input ends in an error, never a panic or
//! a hang: every prefix and single-byte change of a file; seeded structural edits of two
//! valid graphs (dimensions, data, data types, attributes, operators, wiring, the graph's
//! input and output, the opset), each imported in a thread of its own under a deadline, in
//! an error or in a model whose shapes check and whose tensors have the lengths the model
//! needs; large graphs, imported in time linear in their nodes; and the element types of
//! tensors and the types of attributes, checked against what ONNX requires where they are
//! read.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

use std::sync::mpsc;
use std::time::Duration;

use limpq_onnx::build::{float_init as init, gap_fc_head, int, ints, model, node, value_info};
use limpq_onnx::proto::attribute_proto::AttributeType;
use limpq_onnx::proto::tensor_proto::DataType;
use limpq_onnx::proto::tensor_shape_proto::dimension;
use limpq_onnx::proto::{type_proto, AttributeProto, ModelProto, NodeProto, TensorProto};
use limpq_solver::gen::Rng;
use limpq_trainer::import::{import, import_bytes, FoldedBn, ImportOptions, Imported};
use limpq_trainer::kernels::gemm_f16::{f16_bits_to_f32, f32_to_f16_bits};
use limpq_trainer::model::Op;

/// A folded export: conv (with the folded bias) → ReLU → GAP → Flatten → Gemm.
fn folded() -> ModelProto {
    model(
        "tiny",
        vec![
            node(
                "Conv",
                "/layer1/layer1.0/conv1/Conv",
                &["x", "onnx::Conv_1", "onnx::Conv_2"],
                "c",
                vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1])],
            ),
            node("Relu", "/relu/Relu", &["c"], "r", vec![]),
        ]
        .into_iter()
        .chain(gap_fc_head("r"))
        .collect(),
        vec![
            init(
                "onnx::Conv_1",
                &[4, 2, 3, 3],
                (0..72).map(|i| i as f32 * 0.01).collect(),
            ),
            init("onnx::Conv_2", &[4], vec![0.1, -0.2, 0.3, -0.4]),
            init("fc.weight", &[3, 4], vec![0.5; 12]),
            init("fc.bias", &[3], vec![0.0; 3]),
        ],
        [2, 5, 5],
        3,
    )
}

/// Every operator the importer reads: conv → BatchNormalization → Clip(0, 6) → MaxPool →
/// conv (biased: a re-inserted BN) → Add (the residual) → ReLU → AveragePool → Dropout →
/// Reshape (a Constant shape) → MatMul → Add (its bias) → Identity.
fn every_op() -> ModelProto {
    let shape = NodeProto {
        op_type: Some("Constant".into()),
        name: Some("/Constant".into()),
        output: vec!["shape".into()],
        attribute: vec![ints("value_ints", &[0, -1])],
        ..Default::default()
    };
    model(
        "hostile",
        vec![
            node(
                "Conv",
                "/conv1/Conv",
                &["x", "conv1.weight"],
                "c1",
                vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1])],
            ),
            node(
                "BatchNormalization",
                "/bn1/BatchNormalization",
                &["c1", "bn1.weight", "bn1.bias", "bn1.mean", "bn1.var"],
                "b1",
                vec![],
            ),
            node("Clip", "/act/Clip", &["b1", "zero", "six"], "a1", vec![]),
            node(
                "MaxPool",
                "/pool/MaxPool",
                &["a1"],
                "m1",
                vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
            ),
            node(
                "Conv",
                "/conv2/Conv",
                &["m1", "conv2.weight", "conv2.bias"],
                "c2",
                vec![
                    ints("kernel_shape", &[3, 3]),
                    ints("pads", &[1, 1, 1, 1]),
                    ints("strides", &[1, 1]),
                    int("group", 1),
                ],
            ),
            node("Add", "/add/Add", &["c2", "m1"], "s", vec![]),
            node("Relu", "/relu/Relu", &["s"], "r", vec![]),
            node(
                "AveragePool",
                "/avg/AveragePool",
                &["r"],
                "v",
                vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
            ),
            node("Dropout", "/drop/Dropout", &["v"], "d", vec![]),
            shape,
            node("Reshape", "/Reshape", &["d", "shape"], "f", vec![]),
            node("MatMul", "/fc/MatMul", &["f", "fc.weight"], "mm", vec![]),
            node("Add", "/fc/Add", &["mm", "fc.bias"], "z", vec![]),
            node("Identity", "/out/Identity", &["z"], "y", vec![]),
        ],
        vec![
            init(
                "conv1.weight",
                &[4, 2, 3, 3],
                (0..72).map(|i| i as f32 * 0.01).collect(),
            ),
            init("bn1.weight", &[4], vec![1.0, 0.5, 2.0, 1.5]),
            init("bn1.bias", &[4], vec![0.0, 0.1, -0.1, 0.2]),
            init("bn1.mean", &[4], vec![0.0; 4]),
            init("bn1.var", &[4], vec![1.0; 4]),
            init("zero", &[], vec![0.0]),
            init("six", &[], vec![6.0]),
            init(
                "conv2.weight",
                &[4, 4, 3, 3],
                (0..144).map(|i| (i % 7) as f32 * 0.02 - 0.05).collect(),
            ),
            init("conv2.bias", &[4], vec![0.01; 4]),
            init("fc.weight", &[16, 3], vec![0.25; 48]),
            init("fc.bias", &[3], vec![0.0, 1.0, -1.0]),
        ],
        [2, 8, 8],
        3,
    )
}

#[test]
fn a_folded_export_gets_its_bn_back() {
    let m = import(&folded(), &ImportOptions::default()).unwrap();
    let names: Vec<&str> = m.model.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "layer1.0.conv1",
            "layer1.0.bn1",
            "relu",
            "avgpool",
            "flatten",
            "fc"
        ]
    );
    assert_eq!((m.model.input, m.model.classes), ((2, 5, 5), 3));
    let t = |n: &str| &m.tensors.iter().find(|t| t.name == n).unwrap().data;
    assert_eq!(t("layer1.0.bn1.bias"), &vec![0.1, -0.2, 0.3, -0.4]);
    assert!(m.tensors.iter().all(|t| t.name != "layer1.0.conv1.bias"));
    let keep = ImportOptions {
        folded_bn: FoldedBn::Keep,
        ..Default::default()
    };
    let m = import(&folded(), &keep).unwrap();
    assert!(m.model.nodes.iter().all(|n| n.op != Op::BatchNorm));
}

#[test]
fn bad_graphs_are_named_errors() {
    let mut g = folded();
    g.graph.as_mut().unwrap().node[1].op_type = Some("Sigmoid".into());
    let e = import(&g, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'/relu/Relu' (Sigmoid)") && e.contains("supported: Conv"),
        "{e}"
    );
    let mut g = folded();
    g.graph.as_mut().unwrap().initializer[2].float_data.pop();
    let e = import(&g, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("fc.weight") && e.contains("11 values"), "{e}");
    let mut g = folded();
    g.opset_import[0].version = Some(99);
    let e = import(&g, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("opset 99"), "{e}");
    // A variance whose sum with epsilon is not positive: ONNX Runtime divides by its root.
    let mut g = every_op();
    let var = (g.graph.as_mut().unwrap().initializer.iter_mut())
        .find(|t| t.name.as_deref() == Some("bn1.var"))
        .unwrap();
    var.float_data[2] = -1.0;
    let e = import(&g, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("var 'bn1.var' channel 2 is -1") && e.contains("must be positive"),
        "{e}"
    );
    // A bias of shape [out, 1] adds per image (ONNX broadcasting), not per output: refused
    // for Gemm's C and for the Add after a MatMul, where its length alone passed.
    let mut g = folded();
    g.graph.as_mut().unwrap().initializer[3].dims = vec![3, 1];
    let e = import(&g, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'/fc/Gemm' (Gemm)") && e.contains("C 'fc.bias' has dims [3, 1]"),
        "{e}"
    );
    let mut g = every_op();
    let bias = (g.graph.as_mut().unwrap().initializer.iter_mut())
        .find(|t| t.name.as_deref() == Some("fc.bias"))
        .unwrap();
    let out = bias.dims[0];
    bias.dims = vec![out, 1];
    let e = import(&g, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'/fc/MatMul' (MatMul)") && e.contains(&format!("dims [{out}, 1]")),
        "{e}"
    );
    // An attribute that is there but of another type: an error, not the default (a `transB`
    // written as a float was read as 0, the weight untransposed).
    let mut g = folded();
    let gemm = g.graph.as_mut().unwrap().node.last_mut().unwrap();
    gemm.attribute = vec![AttributeProto {
        name: Some("transB".into()),
        f: Some(1.0),
        ..Default::default()
    }];
    let e = import(&g, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'/fc/Gemm' (Gemm): attribute 'transB' has type FLOAT; INT expected"),
        "{e}"
    );
    // A shape computed from the input: the batch may lead a Reshape's shape, the other
    // sizes (not tracked) may not, and a shape is no operand of the model's operations.
    let view = |index: f32| {
        let mut g = every_op();
        let graph = g.graph.as_mut().unwrap();
        let at = graph
            .node
            .iter()
            .position(|n| n.op_type.as_deref() == Some("Reshape"));
        let at = at.unwrap();
        graph.node[at].input[1] = "cat".into();
        let computed = [
            node("Shape", "/Shape", &["d"], "sh", vec![]),
            node("Gather", "/Gather", &["sh", "index"], "g", vec![]),
            node("Unsqueeze", "/Unsqueeze", &["g", "axes"], "u", vec![]),
            node(
                "Concat",
                "/Concat",
                &["u", "minus_one"],
                "cat",
                vec![int("axis", 0)],
            ),
        ];
        graph.node.splice(at..at, computed);
        graph.initializer.extend([
            init("index", &[], vec![index]),
            init("axes", &[1], vec![0.0]),
            init("minus_one", &[1], vec![-1.0]),
        ]);
        import(&g, &ImportOptions::default()).map(|m| m.model.nodes.len())
    };
    assert_eq!(
        view(0.0).unwrap(),
        import(&every_op(), &ImportOptions::default())
            .unwrap()
            .model
            .nodes
            .len()
    );
    let e = view(1.0).unwrap_err().to_string();
    assert!(
        e.contains("'/Reshape' (Reshape)")
            && e.contains("shape entry 0 is computed from the input's C, H or W"),
        "{e}"
    );
    let mut g = every_op();
    let graph = g.graph.as_mut().unwrap();
    graph
        .node
        .insert(0, node("Shape", "/Shape", &["x"], "sh", vec![]));
    let add = graph
        .node
        .iter_mut()
        .find(|n| n.name.as_deref() == Some("/add/Add"));
    add.unwrap().input[1] = "sh".into();
    let e = import(&g, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'/add/Add' (Add)") && e.contains("computed from a Shape"),
        "{e}"
    );
    // A Dropout in training mode (opset 12's input) drops values at inference: refused.
    for (flag, refused) in [(1.0, true), (0.0, false)] {
        let mut g = every_op();
        let graph = g.graph.as_mut().unwrap();
        let drop = graph
            .node
            .iter_mut()
            .find(|n| n.op_type.as_deref() == Some("Dropout"));
        drop.unwrap().input = vec!["v".into(), String::new(), "train".into()];
        graph.initializer.push(init("train", &[], vec![flag]));
        let got = import(&g, &ImportOptions::default());
        match got {
            Err(e) if refused => assert!(
                e.to_string()
                    .contains("'/drop/Dropout' (Dropout): training_mode"),
                "{e}"
            ),
            Ok(_) if !refused => {}
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a training-mode Dropout imported"),
        }
    }
    // [1, out] and one value are per output.
    let mut g = folded();
    g.graph.as_mut().unwrap().initializer[3].dims = vec![1, 3];
    import(&g, &ImportOptions::default()).unwrap();
}

/// Every prefix of a valid file, and every single-byte change, is an error or a model,
/// never a panic.
#[test]
fn no_bytes_panic() {
    let bytes = limpq_onnx::write_model(&folded());
    for len in 0..bytes.len() {
        let _ = import_bytes(&bytes[..len], &ImportOptions::default());
    }
    for i in 0..bytes.len() {
        for v in [0u8, 1, 0x7f, 0xff] {
            let mut b = bytes.clone();
            b[i] = v;
            let _ = import_bytes(&b, &ImportOptions::default());
        }
    }
}

/// An index below `n` (0 for an empty list).
fn below(rng: &mut Rng, n: usize) -> usize {
    rng.range(0, n.max(1) as u64 - 1) as usize
}

fn pick<T: Copy>(rng: &mut Rng, from: &[T]) -> T {
    from[below(rng, from.len())]
}

/// Integers at the edges of what the importer converts, multiplies and allocates by.
const INTS: &[i64] = &[
    0,
    1,
    2,
    3,
    4,
    16,
    -1,
    -2,
    (1 << 31) - 1,
    1 << 31,
    1 << 32,
    1 << 40,
    1 << 62,
    i64::MAX,
    i64::MIN,
];

const FLOATS: &[f32] = &[
    0.0,
    -0.0,
    1.0,
    6.0,
    -1.0,
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::MAX,
    f32::MIN_POSITIVE,
    1e-45,
];

const ATTRS: &[&str] = &[
    "kernel_shape",
    "strides",
    "pads",
    "group",
    "dilations",
    "auto_pad",
    "transA",
    "transB",
    "alpha",
    "beta",
    "axis",
    "epsilon",
    "training_mode",
    "ceil_mode",
    "count_include_pad",
    "storage_order",
    "min",
    "max",
    "value",
    "value_ints",
    "value_floats",
    "value_int",
    "value_float",
    "start",
    "end",
    "axes",
    "to",
];

const OPS: &[&str] = &[
    "Conv",
    "BatchNormalization",
    "Relu",
    "Clip",
    "Add",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Flatten",
    "Reshape",
    "Gemm",
    "MatMul",
    "Constant",
    "Identity",
    "Dropout",
    "Shape",
    "Gather",
    "Unsqueeze",
    "Concat",
    "Cast",
    "Sigmoid",
    "",
];

/// Data types: float, int32, int64, double, and ones the importer refuses.
const DTYPES: &[i32] = &[1, 6, 7, 11, 0, 10, 16, -1, 999];

fn edge_dims(rng: &mut Rng) -> Vec<i64> {
    (0..below(rng, 5)).map(|_| pick(rng, INTS)).collect()
}

/// A tensor of edge dimensions and data: zero-sized with huge other dimensions, raw bytes
/// of a length near the right one, values that are not finite.
fn edge_tensor(rng: &mut Rng, mut t: TensorProto) -> TensorProto {
    match below(rng, 7) {
        0 => {
            if t.dims.is_empty() {
                t.dims.push(1);
            }
            let k = below(rng, t.dims.len());
            t.dims[k] = pick(rng, INTS);
        }
        1 => {
            // Zero elements, however large the other dimensions (of the same rank, so that
            // the operator still reads it).
            if t.dims.is_empty() {
                t.dims.push(1);
            }
            for d in t.dims.iter_mut() {
                if below(rng, 2) == 0 {
                    *d = pick(rng, &[1 << 20, 1 << 31, 1 << 40, 1 << 62, i64::MAX]);
                }
            }
            let k = below(rng, t.dims.len());
            t.dims[k] = 0;
            t.float_data.clear();
            t.raw_data = None;
        }
        2 => {
            let n = t.float_data.len();
            match below(rng, 4) {
                0 => t.float_data.truncate(below(rng, n + 1)),
                1 => t.float_data.push(pick(rng, FLOATS)),
                2 if n > 0 => {
                    let k = below(rng, n);
                    t.float_data[k] = pick(rng, FLOATS);
                }
                _ => t.float_data.clear(),
            }
        }
        3 => {
            t.data_type = Some(pick(rng, DTYPES));
            if below(rng, 2) == 0 {
                let n = t.float_data.len() * pick(rng, &[4usize, 8]);
                let len = (n + below(rng, 3)).saturating_sub(1);
                t.raw_data = Some((0..len).map(|_| rng.next_u64() as u8).collect());
            }
        }
        4 => t.dims = edge_dims(rng),
        5 => {
            // One value (a bias broadcast over every output).
            t.dims = vec![1];
            t.float_data = vec![pick(rng, FLOATS)];
            t.raw_data = None;
        }
        _ => {
            t.data_location = Some(1);
        }
    }
    t
}

/// One structural edit of `m`.
fn edit(m: &mut ModelProto, rng: &mut Rng) {
    let Some(g) = m.graph.as_mut() else {
        return;
    };
    // Names that exist in the graph, for rewiring.
    let mut names: Vec<String> = vec!["x".into(), "y".into(), String::new(), "nope".into()];
    names.extend(g.initializer.iter().filter_map(|t| t.name.clone()));
    names.extend(g.node.iter().flat_map(|n| n.output.iter().cloned()));
    let nn = g.node.len();
    match below(rng, 14) {
        0 | 1 if !g.initializer.is_empty() => {
            let k = below(rng, g.initializer.len());
            let t = std::mem::take(&mut g.initializer[k]);
            g.initializer[k] = edge_tensor(rng, t);
        }
        2 if !g.initializer.is_empty() => {
            let k = below(rng, g.initializer.len());
            g.initializer[k].name = Some(names[below(rng, names.len())].clone());
        }
        3 | 4 if nn > 0 => {
            let n = &mut g.node[below(rng, nn)];
            let name = pick(rng, ATTRS);
            n.attribute.retain(|a| a.name.as_deref() != Some(name));
            let mut a = AttributeProto {
                name: Some(name.into()),
                ..Default::default()
            };
            match below(rng, 6) {
                0 => a.i = Some(pick(rng, INTS)),
                1 => a.f = Some(pick(rng, FLOATS)),
                2 => a.ints = (0..below(rng, 6)).map(|_| pick(rng, INTS)).collect(),
                3 => a.floats = (0..below(rng, 4)).map(|_| pick(rng, FLOATS)).collect(),
                4 => {
                    a.s = Some(
                        pick(
                            rng,
                            &[&b"VALID"[..], b"SAME_UPPER", b"NOTSET", b"\xff\xfe", b""],
                        )
                        .to_vec(),
                    )
                }
                _ => {
                    let t = init("t", &[2], vec![pick(rng, FLOATS), 1.0]);
                    a.t = Some(edge_tensor(rng, t))
                }
            }
            if below(rng, 4) != 0 {
                n.attribute.push(a);
            }
        }
        5 if nn > 0 => {
            let k = below(rng, nn);
            g.node[k].op_type = Some(pick(rng, OPS).into());
        }
        6 | 7 if nn > 0 => {
            let n = &mut g.node[below(rng, nn)];
            let name = names[below(rng, names.len())].clone();
            match below(rng, 3) {
                0 if !n.input.is_empty() => {
                    let k = below(rng, n.input.len());
                    n.input.remove(k);
                }
                1 if !n.input.is_empty() => {
                    let k = below(rng, n.input.len());
                    n.input[k] = name;
                }
                _ => n.input.push(name),
            }
        }
        8 if nn > 0 => {
            let n = &mut g.node[below(rng, nn)];
            let name = names[below(rng, names.len())].clone();
            match below(rng, 3) {
                0 => n.output = vec![name],
                1 => n.output.push(name),
                _ => n.output.clear(),
            }
        }
        9 => {
            if let Some(vi) = g.input.first_mut() {
                if let Some(type_proto::Value::TensorType(t)) =
                    vi.r#type.as_mut().and_then(|t| t.value.as_mut())
                {
                    if let Some(s) = t.shape.as_mut() {
                        match below(rng, 4) {
                            0 if !s.dim.is_empty() => {
                                let k = below(rng, s.dim.len());
                                s.dim[k].value = Some(dimension::Value::DimValue(pick(rng, INTS)));
                            }
                            1 if !s.dim.is_empty() => {
                                let k = below(rng, s.dim.len());
                                s.dim[k].value = None;
                            }
                            2 => {
                                s.dim.pop();
                            }
                            _ => t.elem_type = Some(pick(rng, DTYPES)),
                        }
                    }
                }
            } else {
                g.input
                    .push(value_info("x", &[None, Some(2), Some(5), Some(5)]));
            }
        }
        10 => {
            let name = names[below(rng, names.len())].clone();
            match below(rng, 3) {
                0 => g.output = vec![value_info(&name, &[None, Some(3)])],
                1 => g.output.push(value_info(&name, &[None, Some(3)])),
                _ => g.output.clear(),
            }
        }
        11 if nn > 0 => {
            let k = below(rng, nn);
            match below(rng, 3) {
                0 => {
                    g.node.remove(k);
                }
                1 => {
                    let n = g.node[k].clone();
                    g.node.insert(below(rng, nn + 1), n);
                }
                _ => g.node.swap(k, below(rng, nn)),
            }
        }
        12 => {
            m.opset_import[0].version = Some(pick(rng, &[1, 7, 10, 11, 13, 17, 21, 99, -1]));
        }
        _ if nn > 0 => {
            let k = below(rng, nn);
            g.node[k].domain = Some(pick(rng, &["", "ai.onnx", "com.microsoft"]).into());
        }
        _ => {}
    }
}

/// Imports `m` in a thread under a deadline: the import (the model checked) or `None` for an
/// error; a failure naming `what` when it panics or does not end.
fn import_within(m: ModelProto, opts: ImportOptions, what: &str) -> Option<Imported> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = import(&m, &opts).ok();
        if let Some(im) = &r {
            // What imports is a model whose shapes check and whose layers and tensors the
            // rest of the tool reads.
            im.model.analyze().expect("an imported model analyzes");
            im.model
                .quantizable_layers()
                .expect("an imported model lists its layers");
            let lens: std::collections::HashMap<&str, usize> = im
                .tensors
                .iter()
                .map(|t| (t.name.as_str(), t.data.len()))
                .collect();
            for n in &im.model.nodes {
                if let Op::Linear { out_features, .. }
                | Op::Conv2d {
                    out_channels: out_features,
                    ..
                } = n.op
                {
                    let w = lens.get(format!("{}.weight", n.name).as_str());
                    assert!(
                        out_features > 0 && w.is_some_and(|&len| len > 0),
                        "layer {} imported without weights",
                        n.name
                    );
                }
            }
        }
        let _ = tx.send(r);
    });
    // Generous for a graph of a dozen nodes on a loaded 2-core machine, and for the large
    // graphs below, which import in 1–2 s there.
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: the import did not end within 20 s")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            panic!("{what}: the import panicked (its message is above)")
        }
    }
}

#[test]
fn the_base_graphs_import() {
    for m in [folded(), every_op()] {
        let im = import(&m, &ImportOptions::default()).expect("a valid graph");
        assert_eq!(im.model.classes, 3);
    }
}

#[test]
fn hostile_graphs_end_in_a_model_or_an_error() {
    let cases: u64 = std::env::var("LIMPQ_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut imported = 0;
    for seed in 0..cases {
        let mut rng = Rng(seed);
        let mut m = if below(&mut rng, 2) == 0 {
            folded()
        } else {
            every_op()
        };
        for _ in 0..1 + below(&mut rng, 4) {
            edit(&mut m, &mut rng);
        }
        let opts = ImportOptions {
            folded_bn: if below(&mut rng, 2) == 0 {
                FoldedBn::Reinsert
            } else {
                FoldedBn::Keep
            },
            ..Default::default()
        };
        imported += usize::from(import_within(m, opts, &format!("seed {seed}")).is_some());
    }
    // Most edits break the graph; some must leave one that imports, or the deeper checks
    // were never reached.
    assert!(
        imported as u64 > cases / 50,
        "only {imported} of {cases} edited graphs imported"
    );
}

/// What the shape check alone cannot see is refused at import, naming the tensor or layer:
/// a weight with a zero dimension (it holds no values, so its other dimensions are not
/// bounded by the file) and batch-norm tensors of another length than the channels.
#[test]
fn sizes_the_shapes_do_not_check_are_refused_by_name() {
    let mut m = folded();
    let g = m.graph.as_mut().expect("a graph");
    g.initializer[2] = init("fc.weight", &[1 << 40, 0], vec![]);
    g.initializer[3] = init("fc.bias", &[1], vec![0.0]);
    let e = import(&m, &ImportOptions::default())
        .expect_err("a zero-sized weight")
        .to_string();
    assert!(
        e.contains("'fc.weight'") && e.contains("every dimension must be at least 1"),
        "{e}"
    );

    let mut m = every_op();
    let g = m.graph.as_mut().expect("a graph");
    for t in &mut g.initializer {
        if t.name.as_deref().is_some_and(|n| n.starts_with("bn1.")) {
            t.dims = vec![3];
            t.float_data.truncate(3);
        }
    }
    let e = import(&m, &ImportOptions::default())
        .expect_err("a batch norm of 3 values over 4 channels")
        .to_string();
    assert!(
        e.contains("node '/bn1/BatchNormalization' (BatchNormalization): imported as 'bn1'")
            && e.contains("weight has 3 values")
            && e.contains("needs 4"),
        "{e}"
    );

    // Past the engine's 32-bit indices: refused at import, naming the file's node, not when
    // a later command loads the model (`limpq infer` was the first to say so).
    let mut m = every_op();
    let g = m.graph.as_mut().expect("a graph");
    let pool = g
        .node
        .iter_mut()
        .find(|n| n.op_type.as_deref() == Some("MaxPool"));
    pool.expect("a MaxPool").attribute[1] = ints("strides", &[1 << 40, 1 << 40]);
    let e = import(&m, &ImportOptions::default())
        .expect_err("a stride of 2^40")
        .to_string();
    assert!(
        e.contains("node '/pool/MaxPool' (MaxPool): imported as 'pool'")
            && e.contains("field 'stride'")
            && e.contains("32-bit indices"),
        "{e}"
    );
}

/// Gemm with `beta = 0` adds no C at all, as ONNX Runtime computes it: an infinite C made
/// the imported bias NaN (0·inf), and a finite one a trainable bias of zeros.
#[test]
fn a_gemm_with_beta_zero_has_no_bias() {
    let mut m = folded();
    let g = m.graph.as_mut().unwrap();
    let gemm = g.node.last_mut().unwrap();
    gemm.attribute.push(AttributeProto {
        name: Some("beta".into()),
        f: Some(0.0),
        ..Default::default()
    });
    g.initializer[3] = init("fc.bias", &[3], vec![f32::INFINITY, 1.0, 2.0]);
    let imp = import(&m, &ImportOptions::default()).unwrap();
    let fc = imp.model.nodes.last().unwrap();
    assert!(
        matches!(fc.op, Op::Linear { bias: false, .. }),
        "{:?}",
        fc.op
    );
    assert!(imp
        .tensors
        .iter()
        .all(|t| t.data.iter().all(|v| v.is_finite())));
}

/// A Reshape imports as a Flatten only when it flattens each image: `(N, C·H·W)`, N as 0,
/// -1 or the file's fixed batch, C·H·W as -1 or itself. A Reshape that regroups values
/// across images (`[-1, 4]` of 16 values an image: four rows an image) and has no Linear
/// after it to refuse it was imported silently as a flatten to 16 classes.
#[test]
fn a_reshape_that_is_no_flatten_is_refused() {
    // every_op() cut after its Reshape: 4 channels of 2×2, 16 values an image.
    let ending_in_reshape = |target: &[i64], batch: Option<i64>| {
        let mut m = every_op();
        let g = m.graph.as_mut().unwrap();
        let at = g
            .node
            .iter()
            .position(|n| n.op_type.as_deref() == Some("Reshape"))
            .unwrap();
        g.node.truncate(at + 1);
        g.node[at].output[0] = "y".into();
        let shape = g
            .node
            .iter_mut()
            .find(|n| n.name.as_deref() == Some("/Constant"))
            .unwrap();
        shape.attribute = vec![ints("value_ints", target)];
        g.initializer
            .retain(|t| !t.name.as_deref().unwrap_or("").starts_with("fc."));
        g.input[0] = value_info("x", &[batch, Some(2), Some(8), Some(8)]);
        g.output[0] = value_info("y", &[batch, None]);
        import(&m, &ImportOptions::default())
    };
    for (target, batch) in [
        (&[0, -1][..], None),
        (&[0, 16], None),
        (&[-1, 16], None),
        (&[2, -1], Some(2)),
        (&[2, 16], Some(2)),
    ] {
        let m = ending_in_reshape(target, batch)
            .unwrap_or_else(|e| panic!("{target:?} (batch {batch:?}): {e}"));
        assert_eq!(m.model.classes, 16, "{target:?}");
        assert_eq!(m.model.nodes.last().unwrap().op, Op::Flatten);
    }
    for (target, batch, says) in [
        (&[-1, 4][..], None, "the input's batch is free"),
        (&[0, 8], None, "the input's batch is free"),
        (&[2, -1], None, "the input's batch is free"),
        (&[1, -1], Some(2), "the input's batch is 2"),
        (&[4, 8], Some(2), "the input's batch is 2"),
    ] {
        let e = ending_in_reshape(target, batch)
            .map(|m| m.model.classes)
            .expect_err("a reshape across images")
            .to_string();
        assert!(
            e.contains("'/Reshape' (Reshape): imported as")
                && e.contains("of 16 values an image")
                && e.contains(says)
                && e.contains("only the flatten of each image, (N, 16)"),
            "{target:?}: {e}"
        );
    }
}

/// Large graphs import within the deadline: 100,000 ReLUs of one name (a file of ~4 MB),
/// named `relu`, `relu_1`, ... in order, and 150,000 1×1 convs, each with its weight. Each
/// name is made unique in one lookup, not by trying every earlier namesake's (that took
/// ~24 s for 20,000 ReLUs), and each weight's length is checked in one lookup, not by a walk
/// of every tensor (3.7 s for 40,000 convs); both grew with the square of the nodes.
#[test]
fn large_graphs_import_within_the_deadline() {
    let n = 100_000;
    let mut nodes = vec![node("Flatten", "/Flatten", &["x"], "f0", vec![])];
    for i in 0..n {
        let (inp, out) = (format!("f{i}"), format!("f{}", i + 1));
        nodes.push(node("Relu", "/relu/Relu", &[&inp], &out, vec![]));
    }
    let last = format!("f{n}");
    nodes.push(node("MatMul", "/fc/MatMul", &[&last, "w"], "y", vec![]));
    let m = model(
        "namesakes",
        nodes,
        vec![init("w", &[4, 2], vec![0.5; 8])],
        [1, 2, 2],
        2,
    );
    let im = import_within(m, ImportOptions::default(), "100,000 ReLUs of one name")
        .expect("a valid graph");
    let names: Vec<&str> = im.model.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names[..4], ["flatten", "relu", "relu_1", "relu_2"]);
    assert_eq!(names[n], format!("relu_{}", n - 1));

    let n = 150_000;
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    for i in 0..n {
        let inp = if i == 0 { "x".into() } else { format!("c{i}") };
        let (out, w) = (format!("c{}", i + 1), format!("conv{i}.weight"));
        nodes.push(node(
            "Conv",
            &format!("/conv{i}/Conv"),
            &[&inp, &w],
            &out,
            vec![],
        ));
        inits.push(init(&w, &[1, 1, 1, 1], vec![1.0]));
    }
    let last = format!("c{n}");
    nodes.push(node("Flatten", "/Flatten", &[&last], "f", vec![]));
    nodes.push(node("MatMul", "/fc/MatMul", &["f", "w"], "y", vec![]));
    inits.push(init("w", &[1, 2], vec![0.5; 2]));
    let m = model("convs", nodes, inits, [1, 1, 1], 2);
    let im = import_within(m, ImportOptions::default(), "150,000 convs").expect("a valid graph");
    assert_eq!(im.model.nodes.len(), n + 2);
    assert_eq!(im.tensors.len(), n + 1);
    assert_eq!(im.model.nodes[n - 1].name, format!("conv{}", n - 1));
}

/// `t`'s float values stored as element type `dt`: in `raw_data`, or (`typed`) in the field
/// ONNX keeps that type in (`int32_data` for 16-bit floats, bools and small integers).
fn stored_as(mut t: TensorProto, dt: DataType, typed: bool) -> TensorProto {
    let v = std::mem::take(&mut t.float_data);
    let bf16 = |x: f32| (x.to_bits() >> 16) as u16;
    t.data_type = Some(dt as i32);
    if typed {
        match dt {
            DataType::Float => t.float_data = v,
            DataType::Double => t.double_data = v.iter().map(|&x| f64::from(x)).collect(),
            DataType::Int64 => t.int64_data = v.iter().map(|&x| x as i64).collect(),
            DataType::Float16 => {
                t.int32_data = v.iter().map(|&x| i32::from(f32_to_f16_bits(x))).collect()
            }
            DataType::Bfloat16 => t.int32_data = v.iter().map(|&x| i32::from(bf16(x))).collect(),
            _ => t.int32_data = v.iter().map(|&x| x as i32).collect(),
        }
        return t;
    }
    let bytes = |x: f32| -> Vec<u8> {
        match dt {
            DataType::Float => x.to_le_bytes().to_vec(),
            DataType::Double => f64::from(x).to_le_bytes().to_vec(),
            DataType::Int64 => (x as i64).to_le_bytes().to_vec(),
            DataType::Int32 => (x as i32).to_le_bytes().to_vec(),
            DataType::Float16 => f32_to_f16_bits(x).to_le_bytes().to_vec(),
            DataType::Bfloat16 => bf16(x).to_le_bytes().to_vec(),
            DataType::Bool | DataType::Uint8 => vec![x as u8],
            other => panic!("no test encoding for {other:?}"),
        }
    };
    t.raw_data = Some(v.into_iter().flat_map(bytes).collect());
    t
}

/// `m` with its initializer `name` stored as `dt` (see [`stored_as`]).
fn retyped(mut m: ModelProto, names: &[&str], dt: DataType, typed: bool) -> ModelProto {
    let g = m.graph.as_mut().unwrap();
    for name in names {
        let t = (g.initializer.iter_mut())
            .find(|t| t.name.as_deref() == Some(*name))
            .unwrap_or_else(|| panic!("no initializer {name}"));
        *t = stored_as(std::mem::take(t), dt, typed);
    }
    m
}

fn import_err(m: &ModelProto) -> String {
    match import(m, &ImportOptions::default()) {
        Ok(_) => "imported".into(),
        Err(e) => e.to_string(),
    }
}

/// Weights, biases and bounds must have the float input's element type, as ONNX requires of
/// Conv, Gemm, MatMul, Add and Clip: the values are read as the same numbers whatever the
/// type, and a DOUBLE, INT64 or INT32 weight was imported as if the file held floats (ONNX
/// Runtime refuses such a model); a FLOAT16 one, and a type not read at all, was refused
/// without naming the node reading it. Each is refused naming the node, the tensor and its
/// type, whichever field holds the values.
#[test]
fn weights_of_another_element_type_than_float_are_refused_by_name() {
    let conv = "node '/layer1/layer1.0/conv1/Conv' (Conv): ";
    let gemm = "node '/fc/Gemm' (Gemm): ";
    let matmul = "node '/fc/MatMul' (MatMul): ";
    let clip = "node '/act/Clip' (Clip): ";
    type Graph = fn() -> ModelProto;
    let cases: &[(Graph, &str, DataType, String)] = &[
        (
            folded,
            "onnx::Conv_1",
            DataType::Double,
            format!("{conv}weight 'onnx::Conv_1' has element type DOUBLE"),
        ),
        (
            folded,
            "onnx::Conv_1",
            DataType::Int64,
            format!("{conv}weight 'onnx::Conv_1' has element type INT64"),
        ),
        (
            folded,
            "onnx::Conv_1",
            DataType::Float16,
            format!("{conv}weight 'onnx::Conv_1' has element type FLOAT16"),
        ),
        (
            folded,
            "onnx::Conv_2",
            DataType::Int32,
            format!("{conv}bias 'onnx::Conv_2' has element type INT32"),
        ),
        (
            folded,
            "fc.weight",
            DataType::Double,
            format!("{gemm}B 'fc.weight' has element type DOUBLE"),
        ),
        (
            folded,
            "fc.bias",
            DataType::Bfloat16,
            format!("{gemm}C 'fc.bias' has element type BFLOAT16"),
        ),
        (
            every_op,
            "fc.weight",
            DataType::Float16,
            format!("{matmul}B 'fc.weight' has element type FLOAT16"),
        ),
        (
            every_op,
            "fc.bias",
            DataType::Int64,
            format!("{matmul}bias 'fc.bias' has element type INT64"),
        ),
        (
            every_op,
            "six",
            DataType::Double,
            format!("{clip}max 'six' has element type DOUBLE"),
        ),
    ];
    for (base, name, dt, says) in cases {
        for typed in [false, true] {
            let e = import_err(&retyped(base(), &[name], *dt, typed));
            assert!(
                e.contains(&format!("{says}; FLOAT expected")),
                "{name} as {dt:?} (typed field: {typed}): {e}"
            );
        }
    }
    // A type the importer does not read names the node that reads it too; one that no node
    // reads is no error.
    let e = import_err(&retyped(
        every_op(),
        &["conv1.weight"],
        DataType::Uint8,
        false,
    ));
    assert!(
        e.contains("node '/conv1/Conv' (Conv): initializer 'conv1.weight': element type UINT8 not supported"),
        "{e}"
    );
    let mut m = every_op();
    let unused = stored_as(init("unused", &[2], vec![1.0, 2.0]), DataType::Uint8, false);
    m.graph.as_mut().unwrap().initializer.push(unused);
    import(&m, &ImportOptions::default()).unwrap();
}

/// BatchNormalization's scale, bias, mean and variance have the input's type, FLOAT, up to
/// opset 14; from opset 15 the scale and bias (T1) and the mean and variance (T2) may each
/// be FLOAT16, BFLOAT16, FLOAT or DOUBLE (ONNX Runtime runs FLOAT16 statistics on a float
/// input). Those are read as the numbers they hold (they were refused); another type, or a
/// pair of two types, is refused naming the node.
#[test]
fn batch_norm_parameters_of_other_float_types() {
    let bn = ["bn1.weight", "bn1.bias", "bn1.mean", "bn1.var"];
    let tensors = |m: &ModelProto| {
        let im = import(m, &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        im.tensors
            .into_iter()
            .filter(|t| t.name.starts_with("bn1."))
            .map(|t| (t.name, t.data))
            .collect::<Vec<_>>()
    };
    for dt in [DataType::Float16, DataType::Bfloat16, DataType::Double] {
        for names in [&bn[..2], &bn[2..], &bn[..]] {
            // The float model with the values the type rounds them to (0.1, ...).
            let round = |x: f32| match dt {
                DataType::Float16 => f16_bits_to_f32(f32_to_f16_bits(x)),
                DataType::Bfloat16 => f32::from_bits(x.to_bits() & 0xffff_0000),
                _ => x,
            };
            let mut want = every_op();
            for t in &mut want.graph.as_mut().unwrap().initializer {
                if names.contains(&t.name.as_deref().unwrap_or("")) {
                    t.float_data.iter_mut().for_each(|x| *x = round(*x));
                }
            }
            let want = tensors(&want);
            for typed in [false, true] {
                let got = tensors(&retyped(every_op(), names, dt, typed));
                assert_eq!(got, want, "{names:?} as {dt:?} (typed field: {typed})");
            }
        }
    }
    let node = "node '/bn1/BatchNormalization' (BatchNormalization): ";
    let mut m = retyped(every_op(), &bn[2..], DataType::Float16, false);
    m.opset_import[0].version = Some(14);
    let e = import_err(&m);
    assert!(
        e.contains(&format!(
            "{node}mean 'bn1.mean' has element type FLOAT16; FLOAT expected"
        )),
        "{e}"
    );
    let e = import_err(&retyped(
        every_op(),
        &["bn1.mean"],
        DataType::Float16,
        false,
    ));
    assert!(
        e.contains(&format!(
            "{node}inputs 3 ('bn1.mean') and 4 ('bn1.var') have element types FLOAT16 and \
             FLOAT; ONNX requires one type for both"
        )),
        "{e}"
    );
    let e = import_err(&retyped(every_op(), &bn[..2], DataType::Int64, true));
    assert!(
        e.contains(&format!(
            "{node}scale 'bn1.weight' has element type INT64; FLOAT, FLOAT16, BFLOAT16 or \
             DOUBLE expected"
        )),
        "{e}"
    );
}

/// Dropout's `training_mode` (an input from opset 12) is a BOOL: a constant false imports
/// (a BOOL initializer was refused as a type not supported), true is refused.
#[test]
fn a_bool_training_mode_is_read() {
    for (flag, typed, refused) in [
        (0.0, false, false),
        (0.0, true, false),
        (1.0, false, true),
        (1.0, true, true),
    ] {
        let mut m = every_op();
        let g = m.graph.as_mut().unwrap();
        let drop = g
            .node
            .iter_mut()
            .find(|n| n.op_type.as_deref() == Some("Dropout"));
        drop.unwrap().input = vec!["v".into(), String::new(), "train".into()];
        let train = stored_as(init("train", &[], vec![flag]), DataType::Bool, typed);
        g.initializer.push(train);
        let e = import_err(&m);
        if refused {
            assert!(
                e.contains("'/drop/Dropout' (Dropout): training_mode is not a constant false"),
                "{e}"
            );
        } else {
            assert_eq!(e, "imported", "training_mode false (typed field: {typed})");
        }
    }
}

/// `a` with its `type` field set to `t` (the builders leave it out).
fn typed(mut a: AttributeProto, t: AttributeType) -> AttributeProto {
    a.r#type = Some(t as i32);
    a
}

/// every_op() with the attribute `a` of node `node` (replacing one of its name).
fn with_attr(node: &str, a: AttributeProto) -> ModelProto {
    let mut m = every_op();
    let n = (m.graph.as_mut().unwrap().node.iter_mut())
        .find(|n| n.name.as_deref() == Some(node))
        .unwrap_or_else(|| panic!("no node {node}"));
    n.attribute.retain(|b| b.name != a.name);
    n.attribute.push(a);
    m
}

/// Each attribute the importer reads must have the type ONNX gives it (its `type` field, or
/// where that is left out the value field that is set): one of another type is refused,
/// naming the node, the attribute, the type found and the type expected. A Conv's
/// `dilations` written as an INT (not INTS) was read as absent, and the conv imported
/// without its dilation; `strides` alike as a stride of 1, an `auto_pad` of INTS as NOTSET.
/// ONNX Runtime refuses each of these models.
#[test]
fn attributes_of_another_type_are_refused_by_name() {
    let float = |name: &str, v: f32| AttributeProto {
        name: Some(name.into()),
        f: Some(v),
        ..Default::default()
    };
    let conv = "/conv1/Conv";
    let cases = [
        (
            conv,
            typed(int("dilations", 2), AttributeType::Int),
            "'dilations' has type INT; INTS expected",
        ),
        (
            conv,
            int("dilations", 2),
            "'dilations' has type INT; INTS expected",
        ),
        (
            conv,
            typed(int("strides", 2), AttributeType::Int),
            "'strides' has type INT; INTS expected",
        ),
        (
            conv,
            typed(int("pads", 1), AttributeType::Int),
            "'pads' has type INT; INTS expected",
        ),
        (
            conv,
            typed(ints("kernel_shape", &[3, 3]), AttributeType::Floats),
            "'kernel_shape' has type FLOATS; INTS expected",
        ),
        (
            conv,
            typed(ints("auto_pad", &[1]), AttributeType::Ints),
            "'auto_pad' has type INTS; STRING expected",
        ),
        (
            conv,
            typed(ints("group", &[1]), AttributeType::Ints),
            "'group' has type INTS; INT expected",
        ),
        (
            conv,
            typed(int("group", 1), AttributeType::Float),
            "'group' has type FLOAT; INT expected",
        ),
        (
            "/bn1/BatchNormalization",
            int("epsilon", 1),
            "'epsilon' has type INT; FLOAT expected",
        ),
        (
            "/pool/MaxPool",
            float("ceil_mode", 0.0),
            "'ceil_mode' has type FLOAT; INT expected",
        ),
        (
            "/pool/MaxPool",
            typed(int("ceil_mode", 0), AttributeType::Strings),
            "'ceil_mode' has type STRINGS; INT expected",
        ),
        (
            "/avg/AveragePool",
            typed(int("ceil_mode", 0), AttributeType::Float),
            "'ceil_mode' has type FLOAT; INT expected",
        ),
        (
            "/Constant",
            typed(ints("value_ints", &[0, -1]), AttributeType::Floats),
            "'value_ints' has type FLOATS; INTS expected",
        ),
    ];
    for (node, a, says) in cases {
        let what = format!("{a:?}");
        let e = import_err(&with_attr(node, a));
        let op = node.rsplit('/').next().unwrap();
        assert!(
            e.contains(&format!("node '{node}' ({op}): attribute {says}")),
            "{what}: {e}"
        );
    }
    // A type UNDEFINED (0) is a type left out: the INT it holds is read.
    let a = typed(int("group", 1), AttributeType::Undefined);
    assert_eq!(import_err(&with_attr(conv, a)), "imported");
    // A number that is no attribute type.
    let mut a = int("group", 1);
    a.r#type = Some(99);
    let e = import_err(&with_attr(conv, a));
    assert!(
        e.contains("attribute 'group' has type 99 (no ONNX attribute type); INT expected"),
        "{e}"
    );
    // Every attribute of every_op() typed as ONNX types it imports as the untyped ones do.
    let mut m = every_op();
    for n in &mut m.graph.as_mut().unwrap().node {
        for a in &mut n.attribute {
            let t = if a.i.is_some() {
                AttributeType::Int
            } else {
                AttributeType::Ints
            };
            a.r#type = Some(t as i32);
        }
    }
    let (a, b) = (
        import(&m, &ImportOptions::default()).unwrap(),
        import(&every_op(), &ImportOptions::default()).unwrap(),
    );
    assert_eq!(format!("{:?}", a.model), format!("{:?}", b.model));
}

/// Before opset 9 BatchNormalization has `spatial`: 0 normalises each element with C×H×W
/// statistics, which the engine's per-channel BatchNorm does not compute; it was read as 1.
/// It is refused; spatial 1, or none, imports.
#[test]
fn batch_norm_spatial_0_is_refused() {
    let bn_model = |opset: i64, spatial: Option<i64>| {
        let bn_attrs = spatial.map(|s| vec![int("spatial", s)]).unwrap_or_default();
        let mut m = model(
            "spatial",
            [
                node("Conv", "/conv1/Conv", &["x", "conv1.weight"], "c", vec![]),
                node(
                    "BatchNormalization",
                    "/bn1/BatchNormalization",
                    &["c", "bn1.weight", "bn1.bias", "bn1.mean", "bn1.var"],
                    "b",
                    bn_attrs,
                ),
                node("Relu", "/relu/Relu", &["b"], "r", vec![]),
            ]
            .into_iter()
            .chain(gap_fc_head("r"))
            .collect(),
            vec![
                init("conv1.weight", &[4, 2, 1, 1], vec![0.5; 8]),
                init("bn1.weight", &[4], vec![1.0; 4]),
                init("bn1.bias", &[4], vec![0.0; 4]),
                init("bn1.mean", &[4], vec![0.0; 4]),
                init("bn1.var", &[4], vec![1.0; 4]),
                init("fc.weight", &[3, 4], vec![0.5; 12]),
                init("fc.bias", &[3], vec![0.0; 3]),
            ],
            [2, 5, 5],
            3,
        );
        m.opset_import[0].version = Some(opset);
        import_err(&m)
    };
    for opset in [7, 8] {
        let e = bn_model(opset, Some(0));
        assert!(
            e.contains("node '/bn1/BatchNormalization' (BatchNormalization): spatial 0: statistics per element (C×H×W) are not supported"),
            "opset {opset}: {e}"
        );
        assert_eq!(bn_model(opset, Some(1)), "imported");
        assert_eq!(bn_model(opset, None), "imported");
    }
}
