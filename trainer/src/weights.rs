//! Weights from and to PyTorch without ONNX: safetensors files (the `safetensors` crate) with
//! PyTorch's parameter names, for a model description that names its layers as the PyTorch
//! module does (`layer1.0.conv1`, `bn1`, `fc`; the built-ins and imported models do).
//!
//! The tensors of a full-precision model, in PyTorch's names and shapes
//! ([`tensor_specs`]): a conv's `{name}.weight` `[out, in/groups, k, k]` and `{name}.bias`
//! `[out]`, a linear layer's `{name}.weight` `[out, in]` and `{name}.bias`, a batch norm's
//! `{name}.weight`, `.bias`, `.running_mean`, `.running_var` `[C]`. [`import_safetensors`]
//! reads exactly those (F32, F64, F16 or BF16, converted to f32; PyTorch's
//! `{bn}.num_batches_tracked` counters are skipped), refusing a missing tensor, a wrong shape,
//! a non-finite value or a tensor the model does not have, each by name.
//! [`export_safetensors`] writes them as F32 from a full-precision checkpoint, which
//! `torch.nn.Module.load_state_dict(safetensors.torch.load_file(...))` takes.

use std::collections::HashMap;
use std::fmt;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::checkpoint::{by_kind_and_name, Checkpoint, NamedTensor, TensorKind};
use crate::kernels::norm::BN_EPS;
use crate::model::{Model, ModelError, Op};

/// One tensor a full-precision model holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub kind: TensorKind,
    pub shape: Vec<usize>,
}

/// Why weights could not be read or written; every message names the tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsError(pub String);

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WeightsError {}

impl From<ModelError> for WeightsError {
    fn from(e: ModelError) -> Self {
        WeightsError(e.to_string())
    }
}

/// PyTorch's counter of a batch norm's updates, which limpq does not keep.
const BN_COUNTER: &str = ".num_batches_tracked";

/// Every tensor of a full-precision `model`, in node order, with PyTorch's names and shapes.
pub fn tensor_specs(model: &Model) -> Result<Vec<TensorSpec>, WeightsError> {
    let infos = model.analyze()?;
    let mut out = Vec::new();
    let param = |name: String, shape: Vec<usize>| TensorSpec {
        name,
        kind: TensorKind::Param,
        shape,
    };
    for (node, info) in model.nodes.iter().zip(&infos) {
        let x = info.input_shapes.first().copied();
        let n = &node.name;
        match (&node.op, x) {
            (
                Op::Conv2d {
                    out_channels,
                    kernel,
                    groups,
                    bias,
                    ..
                },
                Some(x),
            ) => {
                let g = (*groups).max(1);
                out.push(param(
                    format!("{n}.weight"),
                    vec![*out_channels, x.c / g, *kernel, *kernel],
                ));
                if *bias {
                    out.push(param(format!("{n}.bias"), vec![*out_channels]));
                }
            }
            (Op::Linear { out_features, bias }, Some(x)) => {
                out.push(param(
                    format!("{n}.weight"),
                    vec![*out_features, x.c * x.h * x.w],
                ));
                if *bias {
                    out.push(param(format!("{n}.bias"), vec![*out_features]));
                }
            }
            (Op::BatchNorm, Some(x)) => {
                out.push(param(format!("{n}.weight"), vec![x.c]));
                out.push(param(format!("{n}.bias"), vec![x.c]));
                for stat in ["running_mean", "running_var"] {
                    out.push(TensorSpec {
                        name: format!("{n}.{stat}"),
                        kind: TensorKind::RunningStat,
                        shape: vec![x.c],
                    });
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// `bits` of an IEEE half as f32 (exact: every half is a float).
fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f32::from(bits & 0x3ff);
    match exp {
        0 => sign * frac * (-24f32).exp2(),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + frac / 1024.0) * ((e - 15) as f32).exp2(),
    }
}

/// A tensor's values as f32.
fn values(name: &str, t: &TensorView<'_>) -> Result<Vec<f32>, WeightsError> {
    let d = t.data();
    let v: Vec<f32> = match t.dtype() {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => d
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dtype::F16 => d
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::BF16 => d
            .chunks_exact(2)
            .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
            .collect(),
        other => {
            return Err(WeightsError(format!(
                "tensor '{name}': dtype {other:?} (supported: F32, F64, F16, BF16)"
            )))
        }
    };
    if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
        return Err(WeightsError(format!("tensor '{name}': holds {bad}")));
    }
    Ok(v)
}

/// The full-precision tensors of `model` from the bytes of a safetensors file (see the
/// module doc), ready to be a checkpoint's tensors.
pub fn import_safetensors(bytes: &[u8], model: &Model) -> Result<Vec<NamedTensor>, WeightsError> {
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| WeightsError(format!("not a valid safetensors file: {e}")))?;
    let specs = tensor_specs(model)?;
    let mut out = Vec::with_capacity(specs.len());
    for s in &specs {
        let t = file.tensor(&s.name).map_err(|_| {
            WeightsError(format!(
                "no tensor '{}' (model '{}' needs it, shape {:?})",
                s.name, model.name, s.shape
            ))
        })?;
        if t.shape() != s.shape.as_slice() {
            return Err(WeightsError(format!(
                "tensor '{}': shape {:?}, model '{}' needs {:?}",
                s.name,
                t.shape(),
                model.name,
                s.shape
            )));
        }
        let data = values(&s.name, &t)?;
        // A variance the engine's 1/sqrt(var + eps) cannot take (NaN, which a ReLU after
        // it turned into 0: wrong logits, silently); import-onnx refuses it alike. (Every
        // value is finite here: `values` refused the others.)
        if s.name.ends_with(".running_var") {
            if let Some((c, v)) = data.iter().enumerate().find(|(_, v)| **v + BN_EPS <= 0.0) {
                return Err(WeightsError(format!(
                    "tensor '{}': channel {c} holds the variance {v}; a running variance \
                     plus the engine's epsilon ({BN_EPS}) must be positive",
                    s.name
                )));
            }
        }
        out.push(NamedTensor {
            name: s.name.clone(),
            kind: s.kind,
            data,
        });
    }
    let known: std::collections::HashSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let mut extra: Vec<String> = file
        .names()
        .into_iter()
        .filter(|n| !known.contains(n) && !n.ends_with(BN_COUNTER))
        .map(str::to_string)
        .collect();
    if !extra.is_empty() {
        extra.sort();
        let more = extra.len().saturating_sub(5);
        extra.truncate(5);
        return Err(WeightsError(format!(
            "tensors model '{}' does not have: {}{} (do its layer names match the PyTorch \
             module's? `limpq layers MODEL` lists them)",
            model.name,
            extra.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )));
    }
    Ok(out)
}

/// The full-precision tensors of `ck` as the bytes of a safetensors file (F32, PyTorch's
/// names and shapes; the model's name in the header's metadata).
pub fn export_safetensors(ck: &Checkpoint) -> Result<Vec<u8>, WeightsError> {
    let specs = tensor_specs(&ck.model)?;
    let held = by_kind_and_name(&ck.tensors);
    let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(specs.len());
    for s in specs {
        let t = held.get(&(s.kind, s.name.as_str())).ok_or_else(|| {
            WeightsError(format!(
                "the checkpoint holds no full-precision '{}' (a joint-training state keeps \
                     one batch norm per bit-width: export a full-precision or finetuned one)",
                s.name
            ))
        })?;
        let want: usize = s.shape.iter().product();
        if t.data.len() != want {
            return Err(WeightsError(format!(
                "tensor '{}': {} values, shape {:?} needs {want}",
                s.name,
                t.data.len(),
                s.shape
            )));
        }
        let raw: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes.push((s.name, s.shape, raw));
    }
    let views = bytes
        .iter()
        .map(|(n, shape, raw)| {
            TensorView::new(Dtype::F32, shape.clone(), raw)
                .map(|v| (n.clone(), v))
                .map_err(|e| WeightsError(format!("tensor '{n}': {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let meta = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("limpq.model".to_string(), ck.model.name.clone()),
    ]);
    safetensors::serialize(views, Some(meta))
        .map_err(|e| WeightsError(format!("writing safetensors: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn small_cnn_specs_are_pytorch_shapes() {
        let m = Model::resolve("small_cnn").unwrap();
        let specs = tensor_specs(&m).unwrap();
        let find = |n: &str| specs.iter().find(|s| s.name == n).unwrap().shape.clone();
        assert_eq!(find("conv1.weight"), vec![8, 1, 3, 3]);
        assert_eq!(find("bn1.running_var"), vec![8]);
        assert_eq!(find("fc.weight"), vec![10, 32]);
        assert_eq!(find("fc.bias"), vec![10]);
        assert!(specs.iter().all(|s| !s.name.ends_with("conv1.bias")));
    }

    fn file(tensors: &[(&str, Vec<usize>, Dtype, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, s, d, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    fn f32s(n: usize, v: f32) -> Vec<u8> {
        (0..n).flat_map(|_| v.to_le_bytes()).collect()
    }

    #[test]
    fn what_does_not_fit_is_refused_by_name() {
        let m = Model::resolve("small_cnn").unwrap();
        let specs = tensor_specs(&m).unwrap();
        let full: Vec<(&str, Vec<usize>, Dtype, Vec<u8>)> = specs
            .iter()
            .map(|s| {
                let n: usize = s.shape.iter().product();
                (s.name.as_str(), s.shape.clone(), Dtype::F32, f32s(n, 0.5))
            })
            .collect();
        let got = import_safetensors(&file(&full), &m).unwrap();
        assert_eq!(got.len(), specs.len());
        assert!(got.iter().all(|t| t.data.iter().all(|v| *v == 0.5)));

        let mut missing = full.clone();
        missing.retain(|t| t.0 != "bn2.running_mean");
        let e = import_safetensors(&file(&missing), &m).unwrap_err().0;
        assert!(e.contains("no tensor 'bn2.running_mean'"), "{e}");

        let mut shape = full.clone();
        shape[0] = ("conv1.weight", vec![8, 3, 3, 3], Dtype::F32, f32s(216, 0.5));
        let e = import_safetensors(&file(&shape), &m).unwrap_err().0;
        assert!(
            e.contains("'conv1.weight': shape [8, 3, 3, 3]") && e.contains("[8, 1, 3, 3]"),
            "{e}"
        );

        let mut extra = full.clone();
        extra.push(("features.0.weight", vec![2], Dtype::F32, f32s(2, 0.0)));
        extra.push(("bn1.num_batches_tracked", vec![], Dtype::I64, vec![0; 8]));
        let e = import_safetensors(&file(&extra), &m).unwrap_err().0;
        assert!(
            e.contains("features.0.weight") && !e.contains("num_batches"),
            "{e}"
        );

        let mut nan = full.clone();
        nan[1].3 = f32s(nan[1].1.iter().product(), f32::NAN);
        let e = import_safetensors(&file(&nan), &m).unwrap_err().0;
        assert!(e.contains("NaN"), "{e}");

        let mut negative = full.clone();
        let at = negative
            .iter()
            .position(|t| t.0 == "bn1.running_var")
            .unwrap();
        let mut var = f32s(8, 0.5);
        var[8..12].copy_from_slice(&(-1.0f32).to_le_bytes());
        negative[at].3 = var;
        let e = import_safetensors(&file(&negative), &m).unwrap_err().0;
        assert!(
            e.contains("'bn1.running_var': channel 2 holds the variance -1"),
            "{e}"
        );

        let mut ints = full.clone();
        let n: usize = ints[1].1.iter().product();
        ints[1] = (ints[1].0, ints[1].1.clone(), Dtype::I32, vec![0; 4 * n]);
        let e = import_safetensors(&file(&ints), &m).unwrap_err().0;
        assert!(e.contains("dtype I32"), "{e}");

        let e = import_safetensors(b"\x08\0\0\0\0\0\0\0{\"a\":1}", &m)
            .unwrap_err()
            .0;
        assert!(e.contains("not a valid safetensors file"), "{e}");
        for cut in 0..20 {
            assert!(import_safetensors(&file(&full)[..cut], &m).is_err());
        }
    }

    #[test]
    fn halves_and_bfloats_are_read_as_floats() {
        let m = Model::resolve("small_cnn").unwrap();
        let specs = tensor_specs(&m).unwrap();
        let tensors: Vec<(&str, Vec<usize>, Dtype, Vec<u8>)> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let n: usize = s.shape.iter().product();
                // 1.5 as half 0x3e00, as bfloat 0x3fc0.
                let (d, b) = if i % 2 == 0 {
                    (Dtype::F16, 0x3e00u16)
                } else {
                    (Dtype::BF16, 0x3fc0u16)
                };
                (
                    s.name.as_str(),
                    s.shape.clone(),
                    d,
                    (0..n).flat_map(|_| b.to_le_bytes()).collect(),
                )
            })
            .collect();
        let got = import_safetensors(&file(&tensors), &m).unwrap();
        assert!(got.iter().all(|t| t.data.iter().all(|v| *v == 1.5)));
    }
}

#[cfg(test)]
mod round_trip {
    use super::*;
    use crate::model::Node;

    /// A checkpoint of `tensors` for `model`, made in memory.
    fn checkpoint(model: &Model, tensors: &[NamedTensor]) -> Checkpoint {
        Checkpoint {
            model: model.clone(),
            seed: 0,
            epoch: 0,
            step: 0,
            meta: vec![],
            tensors: tensors.to_vec(),
            origin: None,
        }
    }

    #[test]
    fn a_checkpoint_exported_and_imported_is_the_same_checkpoint() {
        let m = Model::resolve("small_cnn").unwrap();
        let specs = tensor_specs(&m).unwrap();
        let mut k = 0f32;
        let tensors: Vec<NamedTensor> = specs
            .iter()
            .map(|s| NamedTensor {
                name: s.name.clone(),
                kind: s.kind,
                data: (0..s.shape.iter().product::<usize>())
                    .map(|_| {
                        k += 1.0;
                        let v = (k * 0.618_034).sin() * 3.0;
                        // A variance is never negative (one is refused).
                        if s.name.ends_with(".running_var") {
                            v.abs()
                        } else {
                            v
                        }
                    })
                    .collect(),
            })
            .collect();
        let ck = checkpoint(&m, &tensors);
        let bytes = export_safetensors(&ck).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(file.tensor("conv1.weight").unwrap().shape(), [8, 1, 3, 3]);
        assert_eq!(file.tensor("conv1.weight").unwrap().dtype(), Dtype::F32);
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().unwrap();
        assert_eq!(
            meta.get("limpq.model").map(String::as_str),
            Some("small_cnn")
        );
        assert_eq!(import_safetensors(&bytes, &m).unwrap(), tensors);
        // A joint-training state keeps BN sets per bit-width, not the plain ones.
        let mut joint = ck.clone();
        for t in &mut joint.tensors {
            t.name = t.name.replace("bn1.", "bn1.w4a4.");
        }
        let e = export_safetensors(&joint).unwrap_err().0;
        assert!(e.contains("'bn1.weight'"), "{e}");
    }

    /// A model of many layers (an imported graph can have 100,000 and more) exports and
    /// imports in time linear in its tensors: 40,000 conv + batch norm blocks (200,000
    /// tensors) both ways, and through a checkpoint's bytes, within a deadline (~2 s; with
    /// a search per tensor the export missed it, and took 13.6 s at half the size).
    #[test]
    fn large_models_export_and_import_within_a_deadline() {
        let n = 40_000;
        let mut nodes = Vec::new();
        let mut prev = crate::model::INPUT.to_string();
        for i in 0..n {
            let node = |name: String, op, input: &str| Node {
                name,
                op,
                inputs: vec![input.to_string()],
            };
            let conv = Op::Conv2d {
                out_channels: 2,
                kernel: 1,
                stride: 1,
                padding: 0,
                groups: 1,
                bias: false,
            };
            nodes.push(node(format!("c{i}"), conv, &prev));
            nodes.push(node(format!("b{i}"), Op::BatchNorm, &format!("c{i}")));
            prev = format!("b{i}");
        }
        nodes.push(Node {
            name: "gap".into(),
            op: Op::GlobalAvgPool,
            inputs: vec![prev],
        });
        nodes.push(Node {
            name: "fc".into(),
            op: Op::Linear {
                out_features: 3,
                bias: true,
            },
            inputs: vec!["gap".into()],
        });
        let m = Model {
            name: "chain".into(),
            input: (2, 2, 2),
            classes: 3,
            nodes,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let tensors: Vec<NamedTensor> = tensor_specs(&m)
                .unwrap()
                .into_iter()
                .enumerate()
                .map(|(i, s)| NamedTensor {
                    data: vec![i as f32; s.shape.iter().product()],
                    name: s.name,
                    kind: s.kind,
                })
                .collect();
            let ck = checkpoint(&m, &tensors);
            let bytes = export_safetensors(&ck).unwrap();
            let back = import_safetensors(&bytes, &m).unwrap();
            let stored = Checkpoint::from_bytes(&ck.to_bytes(), "mem.ckpt".as_ref()).unwrap();
            tx.send((tensors.len(), back == tensors && stored == ck))
                .unwrap();
        });
        let (count, same) = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("exported and imported within 20 s");
        assert_eq!(count, 5 * n + 2);
        assert!(same);
    }
}
