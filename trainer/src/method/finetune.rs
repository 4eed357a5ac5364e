//! Quantization-aware finetuning of one policy: every conv/linear layer at the policy's
//! bits with ONE step size per quantizer (initialised from the learned indicators at those
//! bits when given, else by the LSQ init rule on the first batch), one BN per layer (from
//! the full-precision checkpoint), SGD with momentum, weight decay on conv/linear weights,
//! cosine learning rate per step, evaluation of the test split after every epoch.

use std::path::PathBuf;
use std::sync::Arc;

use limpq_solver::{IndicatorSet, Policy};

use super::epochs::{resume_position, run_epochs, steps_per_epoch, Schedule};
use super::{MethodError, StopFlag, POLICY_META};
use crate::checkpoint::Checkpoint;
use crate::data::Dataset;
use crate::engine::{Network, NetworkConfig, QuantSpec};
use crate::gpu::Gpu;
use crate::model::Model;
use crate::train::{
    check_checkpoint_model, check_data, evaluate, EpochSummary, Event, Position, SgdSettings,
};

/// Settings of a finetune run (defaults: the reference recipe).
#[derive(Clone, Debug, PartialEq)]
pub struct FinetuneConfig {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
    pub label_smoothing: f32,
    /// Optional ±clip of every gradient element (the reference finetune does not clip).
    pub clip: Option<f32>,
    pub seed: u64,
    pub eval_batch: usize,
    pub meta: Vec<(String, String)>,
    /// Written (atomically) after every epoch and at a stop when set, with the run's exact
    /// position.
    pub checkpoint: Option<PathBuf>,
    /// Checked before every optimizer step and before each epoch's evaluation: once set,
    /// the run saves its exact position (to `checkpoint` when set) and returns
    /// [`MethodError::Stopped`], from which `resume` continues.
    pub stop: StopFlag,
    /// Continue the run that wrote this checkpoint (a stop, an epoch end or the end) from
    /// its exact position: the state (momentum included), the schedule's step and the
    /// remaining batches; `init` and the indicators then only have to fit the model. The
    /// policy, the settings (epochs, batch, lr, momentum, Nesterov, weight decay, label
    /// smoothing, clip, seed, steps per epoch) and the model must be the ones it records,
    /// else [`MethodError::Config`] names the difference. The run then ends with the same
    /// state, bit for bit, as the run never stopped (same adapter).
    pub resume: Option<Arc<Checkpoint>>,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            epochs: 1,
            batch: 64,
            lr: 0.01,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 2.5e-5,
            label_smoothing: 0.1,
            clip: None,
            seed: 0,
            eval_batch: 256,
            meta: Vec::new(),
            checkpoint: None,
            stop: StopFlag::default(),
            resume: None,
        }
    }
}

/// The finetuned model and its final test figures.
#[derive(Clone, Debug)]
pub struct Finetuned {
    /// Holds the policy in its meta under [`POLICY_META`].
    pub checkpoint: Checkpoint,
    pub test_accuracy: f64,
    pub test_loss: f64,
    pub history: Vec<EpochSummary>,
}

/// Step sizes of every quantized layer at the policy's bits from `ind`, where it has them:
/// `(weight, act)` per layer of `spec`, `None` for layers it does not cover (fixed layers).
fn steps_from_indicators(
    spec: &QuantSpec,
    ind: &IndicatorSet,
    model: &Model,
) -> Result<Vec<Option<(f32, f32)>>, MethodError> {
    if ind.model != model.name {
        return Err(MethodError::Config(format!(
            "indicators are for model '{}', not '{}'",
            ind.model, model.name
        )));
    }
    let mut out = Vec::new();
    for (name, variants) in &spec.layers {
        let (wb, ab) = variants[0];
        let Some(l) = ind.layers.iter().find(|l| l.name == *name) else {
            return Err(MethodError::Config(format!(
                "indicators have no layer '{name}'"
            )));
        };
        if l.fixed.is_some() {
            out.push(None);
            continue;
        }
        let wi = ind.weight_bits.iter().position(|&b| b == wb);
        let ai = ind.act_bits.iter().position(|&b| b == ab);
        let (Some(wi), Some(ai)) = (wi, ai) else {
            return Err(MethodError::Config(format!(
                "layer '{name}': the policy's W{wb}A{ab} is not among the indicators' bits \
                 (weights {:?}, activations {:?})",
                ind.weight_bits, ind.act_bits
            )));
        };
        let (w, a) = (
            l.weight_scale.get(wi).copied(),
            l.act_scale.get(ai).copied(),
        );
        match (w, a) {
            (Some(w), Some(a)) if w.is_finite() && a.is_finite() => {
                out.push(Some((w as f32, a as f32)))
            }
            _ => {
                return Err(MethodError::BadIndicator {
                    layer: name.clone(),
                    message: "indicator at the policy's bits is missing or not finite".into(),
                })
            }
        }
    }
    Ok(out)
}

/// Finetune `model` from the full-precision checkpoint `init` at `policy`'s bits.
#[allow(clippy::too_many_arguments)]
pub fn finetune(
    gpu: &Gpu,
    model: &Model,
    init: &Checkpoint,
    policy: &Policy,
    indicators: Option<&IndicatorSet>,
    train: Arc<Dataset>,
    test: Arc<Dataset>,
    cfg: &FinetuneConfig,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Finetuned, MethodError> {
    check_data(model, &train)?;
    check_data(model, &test)?;
    check_checkpoint_model(init, model, "the --init checkpoint")?;
    sgd(cfg).check().map_err(MethodError::Config)?;
    let steps = steps_per_epoch(train.len(), cfg.batch)?;
    let spec = QuantSpec::policy(model, policy)?;
    let from_ind = match indicators {
        Some(ind) => steps_from_indicators(&spec, ind, model)?,
        None => vec![None; spec.layers.len()],
    };
    let ncfg = NetworkConfig {
        batch: cfg.batch,
        seed: cfg.seed,
        label_smoothing: cfg.label_smoothing,
        momentum: cfg.momentum,
        nesterov: cfg.nesterov,
        weight_decay: cfg.weight_decay,
        grad_clip: cfg.clip,
        conv: Default::default(),
    };
    let mut net = Network::new_quantized(gpu, model, ncfg, &spec)?;
    let left = net.import_state_lenient(&init.tensors)?;
    let layers = net.quant_layers();
    let mut need_init = Vec::with_capacity(layers.len());
    for (li, l) in layers.iter().enumerate() {
        if let Some((w, a)) = from_ind[li] {
            net.write_steps(li, &[w], &[a])?;
            need_init.push(false);
        } else {
            // Steps stored in `init` (a checkpoint of this policy) are kept.
            need_init.push(left.contains(&l.weight_step) || left.contains(&l.act_step));
        }
    }
    let pos = match &cfg.resume {
        None => Position::start(cfg.epochs, steps),
        Some(ck) => {
            check_checkpoint_model(ck, model, "the resume checkpoint")?;
            let pos = resume_position(ck, &recorded_settings(cfg, policy), cfg.seed, steps)?;
            net.import_state(&ck.tensors, true).map_err(|e| {
                MethodError::Config(format!(
                    "the resume checkpoint does not hold this policy's finetune state: {e}"
                ))
            })?;
            pos
        }
    };
    let mut eval_net = Network::new_quantized(
        gpu,
        model,
        NetworkConfig {
            batch: cfg.eval_batch,
            ..ncfg
        },
        &spec,
    )?;
    let schedule = Schedule {
        stage: "finetuning",
        epochs: cfg.epochs,
        batch: cfg.batch,
        lr: cfg.lr,
        seed: cfg.seed,
        stop: &cfg.stop,
        init_steps: need_init,
        init_record: None,
        pass_names: vec!["policy".into()],
        eval_selection: None,
        checkpoint: cfg.checkpoint.as_deref(),
    };
    let sel = vec![vec![0usize; layers.len()]];
    let ran = run_epochs(
        &mut net,
        &mut eval_net,
        &train,
        &test,
        &schedule,
        pos,
        &mut || sel.clone(),
        &|pos, state| checkpoint(model, cfg, policy, pos, state),
        on_event,
    )?;
    let (test_accuracy, test_loss) = match ran.position.history.last() {
        Some(h) => (h.test_acc, h.test_loss),
        None => {
            // No epochs: evaluate the initial quantized model.
            eval_net.import_state(&ran.state, false)?;
            let ev = evaluate(&mut eval_net, &test)?;
            (ev.accuracy(), ev.mean_loss())
        }
    };
    let history = ran.position.history.clone();
    Ok(Finetuned {
        checkpoint: checkpoint(model, cfg, policy, &ran.position, ran.state),
        test_accuracy,
        test_loss,
        history,
    })
}

/// The settings a resumed run must share with the run that wrote its checkpoint, as stored
/// in the checkpoint's meta (`stage` keeps a joint state from being resumed here).
fn recorded_settings(cfg: &FinetuneConfig, policy: &Policy) -> Vec<(&'static str, String)> {
    let mut v = vec![("stage", "finetune".into())];
    v.extend(sgd(cfg).recorded());
    v.push(("clip", cfg.clip.map_or("none".into(), |c| c.to_string())));
    v.push((POLICY_META, policy.to_ron_string()));
    v
}

/// The run's SGD settings.
fn sgd(cfg: &FinetuneConfig) -> SgdSettings {
    SgdSettings {
        epochs: cfg.epochs,
        batch: cfg.batch,
        eval_batch: cfg.eval_batch,
        lr: cfg.lr,
        momentum: cfg.momentum,
        nesterov: cfg.nesterov,
        weight_decay: cfg.weight_decay,
        label_smoothing: cfg.label_smoothing,
        clip: cfg.clip,
    }
}

/// The finetune state at `pos`: the recorded settings (policy included) first, so the
/// caller's meta cannot shadow them, then the position and the caller's meta.
fn checkpoint(
    model: &Model,
    cfg: &FinetuneConfig,
    policy: &Policy,
    pos: &Position,
    tensors: Vec<crate::checkpoint::NamedTensor>,
) -> Checkpoint {
    let mut meta: Vec<(String, String)> = recorded_settings(cfg, policy)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    if let Some(last) = pos.history.last() {
        meta.push(("test_acc".into(), format!("{:.6}", last.test_acc)));
    }
    meta.extend(pos.meta());
    meta.extend(cfg.meta.iter().cloned());
    Checkpoint {
        model: model.clone(),
        seed: cfg.seed,
        epoch: pos.epochs_done,
        step: pos.global_step as u64,
        meta,
        tensors,
    }
}
