//! Name resolution and shape inference, with overflow-checked arithmetic throughout.

use std::collections::HashMap;

use super::{Model, Node, NodeInfo, Op, Shape, Source, INPUT};
use crate::shapes::Conv2dShape;

/// A problem found in the graph; `Model::analyze` adds the origin.
pub(crate) struct GraphError {
    pub node: Option<String>,
    pub field: Option<&'static str>,
    pub message: String,
}

fn node_err(node: &Node, field: &'static str, message: String) -> GraphError {
    GraphError {
        node: Some(node.name.clone()),
        field: Some(field),
        message,
    }
}

fn model_err(field: &'static str, message: String) -> GraphError {
    GraphError {
        node: None,
        field: Some(field),
        message,
    }
}

fn too_large(node: &Node, field: &'static str) -> GraphError {
    node_err(
        node,
        field,
        "sizes too large (arithmetic overflow)".to_string(),
    )
}

/// Checked product of sizes, as u64.
fn product(factors: &[usize]) -> Option<u64> {
    factors
        .iter()
        .try_fold(1u64, |acc, &f| acc.checked_mul(u64::try_from(f).ok()?))
}

/// A shape whose element count fits in u64 and usize.
fn checked_shape(c: usize, h: usize, w: usize) -> Option<Shape> {
    let n = product(&[c, h, w])?;
    usize::try_from(n).ok()?;
    Some(Shape { c, h, w })
}

pub(super) fn analyze(model: &Model) -> Result<Vec<NodeInfo>, GraphError> {
    let infos = analyze_graph(model)?;
    let last = model.nodes.len() - 1;
    let out = infos[last].output;
    if out
        != (Shape {
            c: model.classes,
            h: 1,
            w: 1,
        })
    {
        return Err(node_err(
            &model.nodes[last],
            "op",
            format!(
                "the last node is the model output and must be {}×1×1 (classes), got {out}",
                model.classes
            ),
        ));
    }
    Ok(infos)
}

/// [`analyze`] without the check of the last node's shape against `classes` (an importer
/// reads the classes from that shape).
pub(crate) fn analyze_graph(model: &Model) -> Result<Vec<NodeInfo>, GraphError> {
    let (c, h, w) = model.input;
    if c == 0 || h == 0 || w == 0 {
        return Err(model_err(
            "input",
            format!("every dimension must be positive, got {c}×{h}×{w}"),
        ));
    }
    let input = checked_shape(c, h, w)
        .filter(|s| s.numel() as u64 <= ENGINE_MAX)
        .ok_or_else(|| {
            model_err(
                "input",
                format!(
                    "{c}×{h}×{w} is past the engine's 32-bit indices (at most {ENGINE_MAX} \
                     values an image)"
                ),
            )
        })?;
    if model.classes == 0 {
        return Err(model_err("classes", "must be positive".to_string()));
    }
    if model.nodes.is_empty() {
        return Err(model_err("nodes", "the model has no nodes".to_string()));
    }

    // Every name with the index of the node that defines it, to tell "defined later" from unknown.
    let mut defined_at: HashMap<&str, usize> = HashMap::new();
    for (i, node) in model.nodes.iter().enumerate() {
        if node.name.is_empty() {
            return Err(model_err("nodes", format!("node #{i} has an empty name")));
        }
        if node.name == INPUT {
            return Err(node_err(
                node,
                "name",
                format!("'{INPUT}' is reserved for the model input"),
            ));
        }
        if let Some(&first) = defined_at.get(node.name.as_str()) {
            return Err(node_err(
                node,
                "name",
                format!("duplicate name (nodes #{first} and #{i})"),
            ));
        }
        defined_at.insert(&node.name, i);
    }

    let mut infos: Vec<NodeInfo> = Vec::with_capacity(model.nodes.len());
    let mut used = vec![false; model.nodes.len()];
    for (i, node) in model.nodes.iter().enumerate() {
        let mut sources = Vec::with_capacity(node.inputs.len());
        let mut shapes = Vec::with_capacity(node.inputs.len());
        for name in &node.inputs {
            if name == INPUT {
                sources.push(Source::Input);
                shapes.push(input);
                continue;
            }
            match defined_at.get(name.as_str()) {
                Some(&j) if j < i => {
                    sources.push(Source::Node(j));
                    shapes.push(infos[j].output);
                    used[j] = true;
                }
                Some(_) => {
                    return Err(node_err(
                        node,
                        "inputs",
                        format!(
                            "'{name}' is defined at or after this node; nodes must be in topological order"
                        ),
                    ))
                }
                None => return Err(node_err(node, "inputs", format!("unknown input '{name}'"))),
            }
        }
        let arity_ok = match node.op {
            Op::Add => node.inputs.len() >= 2,
            _ => node.inputs.len() == 1,
        };
        if !arity_ok {
            let want = if matches!(node.op, Op::Add) {
                "two or more"
            } else {
                "exactly one"
            };
            return Err(node_err(
                node,
                "inputs",
                format!(
                    "{} takes {want} input(s), got {}",
                    node.op.kind(),
                    node.inputs.len()
                ),
            ));
        }
        let (output, macs, params) = infer_node(node, &node.inputs, &shapes)?;
        // Per image: the batch is a run's choice, checked when a run sizes its buffers.
        let values = product(&[output.c, output.h, output.w]).unwrap_or(u64::MAX);
        if values > ENGINE_MAX {
            return Err(node_err(
                node,
                "output",
                format!(
                    "the output {output} is {values} values an image, past the engine's \
                     32-bit indices (at most {ENGINE_MAX})"
                ),
            ));
        }
        fits_engine(node, "weights", params)?;
        infos.push(NodeInfo {
            inputs: sources,
            input_shapes: shapes,
            output,
            macs,
            params,
        });
    }

    let last = model.nodes.len() - 1;
    if let Some(unused) = (0..last).find(|&i| !used[i]) {
        return Err(node_err(
            &model.nodes[unused],
            "name",
            "output is never used (only the last node is the model output)".to_string(),
        ));
    }
    Ok(infos)
}

fn check_positive(node: &Node, field: &'static str, value: usize) -> Result<(), GraphError> {
    if value == 0 {
        return Err(node_err(node, field, "must be positive".to_string()));
    }
    fits_engine(node, field, value as u64)
}

/// The engine's kernels index with 32 bits: every size, kernel, stride and padding, and
/// each image's tensors, must fit u32. Checked here, so that a model file or an imported
/// model is refused when it is read, not when a command loads it into the engine.
const ENGINE_MAX: u64 = u32::MAX as u64;

fn fits_engine(node: &Node, field: &'static str, value: u64) -> Result<(), GraphError> {
    if value > ENGINE_MAX {
        return Err(node_err(
            node,
            field,
            format!("{value} is past the engine's 32-bit indices (at most {ENGINE_MAX})"),
        ));
    }
    Ok(())
}

/// Window output size `floor((n + 2p - k) / s) + 1`, checking that the kernel fits.
fn window_out(
    node: &Node,
    dim: &str,
    n: usize,
    k: usize,
    s: usize,
    p: usize,
) -> Result<usize, GraphError> {
    let padded = p
        .checked_mul(2)
        .and_then(|p2| n.checked_add(p2))
        .ok_or_else(|| too_large(node, "padding"))?;
    if k > padded {
        return Err(node_err(
            node,
            "kernel",
            format!("kernel {k} is larger than the padded input {dim} {padded} ({n} + 2·{p})"),
        ));
    }
    Ok((padded - k) / s + 1)
}

fn infer_node(
    node: &Node,
    names: &[String],
    inputs: &[Shape],
) -> Result<(Shape, u64, u64), GraphError> {
    let x = inputs[0];
    let same = |s: Shape| Ok((s, 0, 0));
    match node.op {
        Op::Conv2d {
            out_channels,
            kernel,
            stride,
            padding,
            groups,
            bias: _,
        } => {
            check_positive(node, "out_channels", out_channels)?;
            check_positive(node, "kernel", kernel)?;
            check_positive(node, "stride", stride)?;
            check_positive(node, "groups", groups)?;
            fits_engine(node, "padding", padding as u64)?;
            if x.c % groups != 0 {
                return Err(node_err(
                    node,
                    "groups",
                    format!("{groups} groups do not divide the {} input channels", x.c),
                ));
            }
            if out_channels % groups != 0 {
                return Err(node_err(
                    node,
                    "groups",
                    format!("{groups} groups do not divide the {out_channels} output channels"),
                ));
            }
            let h_out = window_out(node, "height", x.h, kernel, stride, padding)?;
            let w_out = window_out(node, "width", x.w, kernel, stride, padding)?;
            // An output plane too large on its own comes of the padding (the input is
            // checked already); else of the channels times the plane.
            let blame = match checked_shape(1, h_out, w_out) {
                None => "padding",
                Some(_) => "out_channels",
            };
            let output =
                checked_shape(out_channels, h_out, w_out).ok_or_else(|| too_large(node, blame))?;
            // Checked first so that Conv2dShape's unchecked arithmetic below cannot overflow.
            product(&[out_channels, h_out, w_out, x.c / groups, kernel, kernel])
                .and_then(|m| usize::try_from(m).ok())
                .ok_or_else(|| too_large(node, "kernel"))?;
            let conv = Conv2dShape::square(
                1,
                x.c,
                x.h,
                x.w,
                out_channels,
                kernel,
                stride,
                padding,
                groups,
            );
            debug_assert_eq!((conv.h_out(), conv.w_out()), (h_out, w_out));
            Ok((output, conv.macs(), conv.weight_len() as u64))
        }
        Op::BatchNorm | Op::Relu | Op::Relu6 => same(x),
        Op::Add => {
            for (name, s) in names.iter().zip(inputs).skip(1) {
                if *s != x {
                    return Err(node_err(
                        node,
                        "inputs",
                        format!("shapes differ: '{}' is {x} but '{name}' is {s}", names[0]),
                    ));
                }
            }
            same(x)
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
            check_positive(node, "kernel", kernel)?;
            check_positive(node, "stride", stride)?;
            if padding > kernel / 2 {
                return Err(node_err(
                    node,
                    "padding",
                    format!("padding {padding} is more than half the kernel {kernel}"),
                ));
            }
            let h_out = window_out(node, "height", x.h, kernel, stride, padding)?;
            let w_out = window_out(node, "width", x.w, kernel, stride, padding)?;
            // Padding can make the output a little larger than the input.
            let output =
                checked_shape(x.c, h_out, w_out).ok_or_else(|| too_large(node, "padding"))?;
            same(output)
        }
        Op::GlobalAvgPool => same(Shape { c: x.c, h: 1, w: 1 }),
        Op::Flatten => same(Shape {
            c: x.numel(),
            h: 1,
            w: 1,
        }),
        Op::Linear {
            out_features,
            bias: _,
        } => {
            check_positive(node, "out_features", out_features)?;
            let weights = product(&[x.numel(), out_features])
                .filter(|&m| usize::try_from(m).is_ok())
                .ok_or_else(|| too_large(node, "out_features"))?;
            Ok((
                Shape {
                    c: out_features,
                    h: 1,
                    w: 1,
                },
                weights,
                weights,
            ))
        }
    }
}
