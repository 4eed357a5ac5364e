//! Models and weights a job imports: an ONNX file as `model` (its graph is the model, its
//! weights the full-precision start), or a safetensors file as `pretrain.init` of a model
//! description. Read with the code of `limpq import-onnx` / `import-safetensors`; the
//! imported description and checkpoint are written into the run folder (`imported/`), so
//! the run can be inspected, repeated and resumed from its own files.

use std::path::{Path, PathBuf};

use super::{fingerprint, io_err, save_ckpt, write_atomic, Job, PipelineError};
use crate::checkpoint::Checkpoint;
use crate::import::{self, FoldedBn, ImportOptions};
use crate::model::Model;

/// Folder of the run that holds what was imported.
pub const IMPORT_DIR: &str = "imported";
/// Largest ONNX or safetensors file read.
const MAX_IMPORT: u64 = 8 << 30;

/// Pretrained weights the plan imported: every seed starts from them.
#[derive(Clone, Debug)]
pub struct Imported {
    pub checkpoint: Checkpoint,
    /// The file they came from.
    pub source: PathBuf,
    /// Hash of the source's bytes and the import settings (a changed file re-runs the stages).
    pub fingerprint: String,
}

/// Whether the job's model is an ONNX file (by its extension).
pub fn is_onnx(model: &str) -> bool {
    Path::new(model)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// Whether `pretrain.init` names a safetensors file (by its extension).
pub fn is_safetensors(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
}

fn read(field: &str, path: &Path) -> Result<Vec<u8>, String> {
    limpq_io::files::read_regular(path, MAX_IMPORT).map_err(|e| format!("field `{field}`: {e}"))
}

/// The job's model and, when it imports weights, those weights: an ONNX `model` (BatchNorms
/// the exporter folded are re-inserted, as `limpq import-onnx` does by default), or a
/// safetensors `pretrain.init` for the model description.
pub fn resolve(job: &Job) -> Result<(Model, Option<Imported>), String> {
    if is_onnx(&job.model) {
        let path = PathBuf::from(&job.model);
        let bytes = read("model", &path)?;
        let opts = ImportOptions {
            name: path.file_stem().map(|s| s.to_string_lossy().into_owned()),
            folded_bn: FoldedBn::Reinsert,
        };
        let imp = import::import_bytes(&bytes, &opts)
            .map_err(|e| format!("field `model`: {}: {e}", path.display()))?;
        let checkpoint = Checkpoint {
            model: imp.model.clone(),
            seed: 0,
            epoch: 0,
            step: 0,
            meta: vec![
                ("source".into(), "onnx".into()),
                ("onnx_file".into(), path.display().to_string()),
                ("onnx_opset".into(), imp.opset.to_string()),
                ("folded_bn".into(), "reinsert".into()),
            ],
            tensors: imp.tensors,
            origin: None,
        };
        let fp = fingerprint(&[&hash_bytes(&bytes), "onnx", "reinsert"]);
        return Ok((
            imp.model,
            Some(Imported {
                checkpoint,
                source: path,
                fingerprint: fp,
            }),
        ));
    }
    let model = Model::resolve_for_data(&job.model, &job.data.name)
        .map_err(|e| format!("field `model`: {e}"))?;
    let Some(init) = job.pretrain.init.as_ref().filter(|p| is_safetensors(p)) else {
        return Ok((model, None));
    };
    let bytes = read("pretrain.init", init)?;
    let tensors = crate::weights::import_safetensors(&bytes, &model)
        .map_err(|e| format!("field `pretrain.init`: {}: {e}", init.display()))?;
    let checkpoint = Checkpoint {
        model: model.clone(),
        seed: 0,
        epoch: 0,
        step: 0,
        meta: vec![
            ("source".into(), "safetensors".into()),
            ("weights_file".into(), init.display().to_string()),
        ],
        tensors,
        origin: None,
    };
    let fp = fingerprint(&[&hash_bytes(&bytes), "safetensors"]);
    Ok((
        model,
        Some(Imported {
            checkpoint,
            source: init.clone(),
            fingerprint: fp,
        }),
    ))
}

/// FNV-1a 64 of `bytes`, as hex.
pub(super) fn hash_bytes(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Writes the imported description (`imported/model.ron`) and weights
/// (`imported/weights.ckpt`) into the run folder `out`; returns the checkpoint's path.
pub fn write(out: &Path, imp: &Imported) -> Result<PathBuf, PipelineError> {
    let dir = out.join(IMPORT_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    write_atomic(
        &dir.join("model.ron"),
        imp.checkpoint.model.to_ron_versioned().as_bytes(),
    )?;
    let ck = dir.join("weights.ckpt");
    save_ckpt(&imp.checkpoint, &ck)?;
    Ok(ck)
}
