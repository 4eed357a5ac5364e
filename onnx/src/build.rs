//! Small constructors of ONNX messages for code that writes a graph by hand (the import
//! tests, the CLI tests that need an `.onnx` file): a model of an image classifier, float
//! initializers in `float_data`, nodes, integer and integer-list attributes and float value
//! infos with a free batch dimension.

use crate::proto::tensor_proto::DataType;
use crate::proto::tensor_shape_proto::{dimension, Dimension};
use crate::proto::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

/// A float initializer `name` of shape `dims`, its values in `float_data`.
pub fn float_init(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        float_data: data,
        ..Default::default()
    }
}

/// A node `name` of type `op` reading `inputs`, writing `out`, with `attrs`.
pub fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    out: &str,
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        attribute: attrs,
        ..Default::default()
    }
}

/// A model (default-domain opset 17) of graph `name`: `nodes` over `initializer`, one image
/// input `x` of `N×chw`, one output `y` of `N×classes`.
pub fn model(
    name: &str,
    nodes: Vec<NodeProto>,
    initializer: Vec<TensorProto>,
    chw: [i64; 3],
    classes: i64,
) -> ModelProto {
    ModelProto {
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some(name.into()),
            node: nodes,
            initializer,
            input: vec![value_info(
                "x",
                &[None, Some(chw[0]), Some(chw[1]), Some(chw[2])],
            )],
            output: vec![value_info("y", &[None, Some(classes)])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The head `torch.onnx.export` writes for a torchvision-style classifier, reading `x`:
/// GlobalAveragePool → Flatten → Gemm of the initializers `fc.weight` and `fc.bias`
/// (`transB` 1), writing the output `y`.
pub fn gap_fc_head(x: &str) -> [NodeProto; 3] {
    [
        node(
            "GlobalAveragePool",
            "/avgpool/GlobalAveragePool",
            &[x],
            "p",
            vec![],
        ),
        node("Flatten", "/Flatten", &["p"], "f", vec![]),
        node(
            "Gemm",
            "/fc/Gemm",
            &["f", "fc.weight", "fc.bias"],
            "y",
            vec![int("transB", 1)],
        ),
    ]
}

/// An attribute `name` holding the integer `v` (no type field, as some writers leave it).
pub fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        ..Default::default()
    }
}

/// An attribute `name` holding the integers `v` (no type field, as some writers leave it).
pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// A float tensor `name` of shape `dims`, `None` being the free batch dimension `batch`.
pub fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v),
                None => dimension::Value::DimParam("batch".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
