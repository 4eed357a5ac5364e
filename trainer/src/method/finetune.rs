//! Quantization-aware finetuning of one policy: every conv/linear layer at the policy's
//! bits with ONE step size per quantizer (initialised from the learned indicators at those
//! bits when given, else by the LSQ init rule on the first batch), one BN per layer (from
//! the full-precision checkpoint), SGD with momentum, weight decay on conv/linear weights,
//! cosine learning rate per step, evaluation of the test split after every epoch.

use std::path::PathBuf;
use std::sync::Arc;

use limpq_solver::{IndicatorSet, Policy};

use super::epochs::{run_epochs, steps_per_epoch, Schedule};
use super::{MethodError, StopFlag, POLICY_META};
use crate::checkpoint::Checkpoint;
use crate::data::Dataset;
use crate::engine::{Network, NetworkConfig, QuantSpec};
use crate::gpu::Gpu;
use crate::model::Model;
use crate::train::{
    check_checkpoint_model, check_data, evaluate, EpochSummary, Event, SgdSettings,
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
    /// Written after every epoch when set.
    pub checkpoint: Option<PathBuf>,
    /// Checked before every optimizer step: when set, the run returns
    /// [`MethodError::Stopped`] (the last epoch's checkpoint, if any, stays as it was).
    pub stop: StopFlag,
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
    SgdSettings {
        batch: cfg.batch,
        eval_batch: cfg.eval_batch,
        lr: cfg.lr,
        momentum: cfg.momentum,
        weight_decay: cfg.weight_decay,
        label_smoothing: cfg.label_smoothing,
        clip: cfg.clip,
    }
    .check()
    .map_err(MethodError::Config)?;
    steps_per_epoch(train.len(), cfg.batch)?;
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
        pass_names: vec!["policy".into()],
        eval_selection: None,
    };
    let sel = vec![vec![0usize; layers.len()]];
    let mut last_state = None;
    let ran = run_epochs(
        &mut net,
        &mut eval_net,
        &train,
        &test,
        &schedule,
        &mut || sel.clone(),
        &mut |epoch, steps, history, state| {
            if let Some(path) = &cfg.checkpoint {
                checkpoint(model, cfg, policy, epoch, steps, history, state.clone()).save(path)?;
            }
            last_state = Some(state);
            Ok(())
        },
        on_event,
    )?;
    let (state, test_accuracy, test_loss) = match (last_state, ran.history.last()) {
        (Some(state), Some(h)) => (state, h.test_acc, h.test_loss),
        _ => {
            // No epochs: evaluate the initial quantized model.
            let state = net.export_state()?;
            eval_net.import_state(&state, false)?;
            let ev = evaluate(&mut eval_net, &test)?;
            (state, ev.accuracy(), ev.mean_loss())
        }
    };
    Ok(Finetuned {
        checkpoint: checkpoint(
            model,
            cfg,
            policy,
            cfg.epochs,
            ran.steps,
            &ran.history,
            state,
        ),
        test_accuracy,
        test_loss,
        history: ran.history,
    })
}

fn checkpoint(
    model: &Model,
    cfg: &FinetuneConfig,
    policy: &Policy,
    epoch: usize,
    step: usize,
    history: &[EpochSummary],
    tensors: Vec<crate::checkpoint::NamedTensor>,
) -> Checkpoint {
    let mut meta = cfg.meta.clone();
    meta.push(("stage".into(), "finetune".into()));
    meta.push(("lr".into(), cfg.lr.to_string()));
    meta.push(("batch".into(), cfg.batch.to_string()));
    meta.push(("epochs".into(), cfg.epochs.to_string()));
    if let Some(last) = history.last() {
        meta.push(("test_acc".into(), format!("{:.6}", last.test_acc)));
    }
    meta.push((POLICY_META.into(), policy.to_ron_string()));
    Checkpoint {
        model: model.clone(),
        seed: cfg.seed,
        epoch,
        step: step as u64,
        meta,
        tensors,
    }
}
