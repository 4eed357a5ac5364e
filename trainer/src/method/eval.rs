//! Test accuracy of a checkpoint, full precision or quantized at a policy (`limpq eval`),
//! and what a policy costs on a model, as values to serialise and as the lines the CLI
//! prints.

use std::sync::Arc;

use limpq_solver::Policy;
use serde::Serialize;

use super::{policy_cost, recalibrated_eval_network, MethodError, Recalibration};
use crate::checkpoint::Checkpoint;
use crate::data::Dataset;
use crate::engine::{Network, NetworkConfig};
use crate::gpu::Gpu;
use crate::model::Model;
use crate::train::{check_data, evaluate, evaluate_logits};

/// BitOps and weight size of a policy on a model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyCost {
    /// BitOps of the searched layers.
    pub bitops: u64,
    /// BitOps of the fixed (8-bit) layers.
    pub fixed_bitops: u64,
    /// Weights of the whole model, bytes (rounded up).
    pub weight_bytes: u64,
    /// 32-bit weights of the quantizable layers over the policy's weight bits.
    pub compression: f64,
}

impl PolicyCost {
    /// The cost of `policy` on `model` ([`policy_cost`]).
    pub fn of(model: &Model, policy: &Policy) -> Result<PolicyCost, MethodError> {
        let (bitops, fixed_bitops, bits) = policy_cost(model, policy)?;
        let fp32: f64 = model
            .quantizable_layers()?
            .iter()
            .map(|l| l.params as f64 * 32.0)
            .sum();
        Ok(PolicyCost {
            bitops,
            fixed_bitops,
            weight_bytes: bits.div_ceil(8),
            compression: fp32 / bits.max(1) as f64,
        })
    }

    /// One line: `policy: … BitOps in searched layers (+… in fixed layers), …`.
    pub fn line(&self) -> String {
        format!(
            "policy: {} BitOps in searched layers (+{} in fixed layers), weights {} bytes ({:.2}× smaller than fp32)",
            self.bitops, self.fixed_bitops, self.weight_bytes, self.compression
        )
    }
}

/// What `limpq eval` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalReport {
    /// The checkpoint's file.
    pub checkpoint: String,
    pub model: String,
    pub data: String,
    /// Evaluated fake-quantized at a policy (`cost` is its cost), else full precision.
    pub quantized: bool,
    pub images: usize,
    pub correct: usize,
    /// `correct / images`, in [0, 1].
    pub accuracy: f64,
    /// Mean cross-entropy loss.
    pub loss: f64,
    pub cost: Option<PolicyCost>,
}

impl EvalReport {
    /// The lines `limpq eval` prints: the accuracy, and the policy's cost when quantized.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}: {}{} on {} test images of {}: accuracy {:.2}% ({}/{}), loss {:.4}\n",
            self.checkpoint,
            self.model,
            if self.quantized { " quantized," } else { "" },
            self.images,
            self.data,
            self.accuracy * 100.0,
            self.correct,
            self.images,
            self.loss
        );
        if let Some(c) = &self.cost {
            s += &c.line();
            s.push('\n');
        }
        s
    }
}

/// What [`evaluate_checkpoint_with`] computes.
#[derive(Clone, Debug)]
pub struct Evaluated {
    pub report: EvalReport,
    /// Every test image's logits, `[images, classes]` in the data set's order, when asked:
    /// those the report counts.
    pub logits: Option<Vec<f32>>,
    /// The training images the BN statistics were recalibrated on, when a recalibration
    /// was given ([`Recalibration::apply`]: whole batches, at most the training split; 0
    /// leaves the statistics as stored).
    pub recalibrated: Option<usize>,
}

/// Evaluates `ckpt` on `test` in batches of `batch`: at `policy`'s bits (a checkpoint
/// written by `finetune`), else in full precision. `name` names the checkpoint in the
/// report and in errors; `data` is the data set's name. [`evaluate_checkpoint_with`]
/// without its logits.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_checkpoint(
    gpu: &Gpu,
    ckpt: &Checkpoint,
    name: &str,
    policy: Option<&Policy>,
    data: &str,
    test: Arc<Dataset>,
    batch: usize,
    recalibrate: Option<&Recalibration>,
) -> Result<EvalReport, MethodError> {
    evaluate_checkpoint_with(
        gpu,
        ckpt,
        name,
        policy,
        data,
        test,
        batch,
        recalibrate,
        false,
    )
    .map(|e| e.report)
}

/// [`evaluate_checkpoint`], and with `logits` every test image's logits as well: one
/// network, its BN statistics recalibrated first when `recalibrate` is given (a quantized
/// model only), evaluated once, so that the report counts the logits returned (what
/// `limpq eval --predictions` / `--logits` write).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_checkpoint_with(
    gpu: &Gpu,
    ckpt: &Checkpoint,
    name: &str,
    policy: Option<&Policy>,
    data: &str,
    test: Arc<Dataset>,
    batch: usize,
    recalibrate: Option<&Recalibration>,
    logits: bool,
) -> Result<Evaluated, MethodError> {
    super::check_not_joint_state(ckpt)?;
    let named = |e: MethodError| MethodError::Config(format!("{name}: {e}"));
    let model = &ckpt.model;
    let (mut net, recalibrated) = match policy {
        Some(p) => {
            check_data(model, &test).map_err(|e| named(e.into()))?;
            recalibrated_eval_network(gpu, model, ckpt, p, test.len(), batch, recalibrate)
                .map_err(named)?
        }
        None => {
            if recalibrate.is_some() {
                return Err(MethodError::Config(
                    "BN recalibration applies to a quantized model (give a policy)".into(),
                ));
            }
            let cfg = NetworkConfig {
                batch: crate::train::eval_batch(batch, test.len()),
                ..NetworkConfig::default()
            };
            let mut net = Network::new(gpu, model, cfg)?;
            net.import_state(&ckpt.tensors, false)
                .map_err(|e| named(e.into()))?;
            (net, None)
        }
    };
    let (stats, logits) = if logits {
        let (stats, logits) = evaluate_logits(&mut net, &test).map_err(|e| named(e.into()))?;
        (stats, Some(logits))
    } else {
        (
            evaluate(&mut net, &test).map_err(|e| named(e.into()))?,
            None,
        )
    };
    let cost = policy.map(|p| PolicyCost::of(model, p)).transpose()?;
    let report = EvalReport {
        checkpoint: name.to_string(),
        model: model.name.clone(),
        data: data.to_string(),
        quantized: policy.is_some(),
        images: stats.count,
        correct: stats.correct,
        accuracy: stats.accuracy(),
        loss: stats.mean_loss(),
        cost,
    };
    Ok(Evaluated {
        report,
        logits,
        recalibrated,
    })
}
