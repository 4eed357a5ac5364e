//! Logits of a checkpoint on given inputs (`limpq infer`): full precision, or fake-quantized
//! at a policy exactly as [`super::evaluate_quantized`] evaluates it.

use limpq_solver::Policy;

use super::MethodError;
use crate::checkpoint::Checkpoint;
use crate::engine::{Network, NetworkConfig, QuantSpec};
use crate::gpu::Gpu;

/// The logits `[images, classes]` of `x` (`images × C×H×W` values, NCHW) under `ckpt`, in
/// eval mode (BN running statistics), in batches of `batch`. With `policy`: every conv and
/// linear layer fake-quantized at its bits with the checkpoint's learned step sizes (a
/// checkpoint written by `limpq finetune` at that policy).
pub fn infer_logits(
    gpu: &Gpu,
    ckpt: &Checkpoint,
    policy: Option<&Policy>,
    x: &[f32],
    batch: usize,
) -> Result<Vec<f32>, MethodError> {
    let model = &ckpt.model;
    let (c, h, w) = model.input;
    let per = c * h * w;
    if batch == 0 {
        return Err(MethodError::Config("batch size must be positive".into()));
    }
    if x.is_empty() || x.len() % per != 0 {
        return Err(MethodError::Config(format!(
            "{} input values are not a whole number of {c}×{h}×{w} images (the model's input)",
            x.len()
        )));
    }
    let images = x.len() / per;
    let cfg = NetworkConfig {
        batch: batch.min(images),
        ..NetworkConfig::default()
    };
    let mut net = match policy {
        Some(p) => {
            // As `limpq eval --policy`: the model's policy, at the bits it was finetuned at.
            super::check_policy_model(p, model)?;
            super::check_finetuned_policy(ckpt, p)?;
            let spec = QuantSpec::policy(model, p)?;
            let mut net = Network::new_quantized(gpu, model, cfg, &spec)?;
            net.import_state(&ckpt.tensors, false).map_err(|e| {
                MethodError::Config(format!(
                    "{}: the checkpoint does not hold a model quantized at this policy ({e}); \
                     was it written by `limpq finetune` with this policy?",
                    ckpt.describe()
                ))
            })?;
            net
        }
        None => {
            let mut net = Network::new(gpu, model, cfg)?;
            net.import_state(&ckpt.tensors, false)
                .map_err(|e| MethodError::Config(format!("{}: {e}", ckpt.describe())))?;
            net
        }
    };
    let mut out = Vec::with_capacity(images * model.classes);
    for chunk in x.chunks(net.batch() * per) {
        out.extend(net.eval_logits(chunk)?);
    }
    Ok(out)
}
