//! Quantization-aware finetuning of one policy: every conv/linear layer at the policy's
//! bits with ONE step size per quantizer (initialised by the LSQ init rule on the first
//! batch, as the reference does, or from the learned indicators at those bits when
//! [`FinetuneConfig::steps_from_indicators`] says so), one BN per layer (from
//! the full-precision checkpoint), SGD with momentum, weight decay on conv/linear weights,
//! the run's learning-rate schedule (by default cosine stepped once per epoch down to 1e-5,
//! as the reference), evaluation of the test split after every epoch.

use std::sync::Arc;

use limpq_solver::{IndicatorSet, Policy};

use super::epochs::{resume_position, run_epochs, steps_per_epoch, Schedule};
use super::{MethodError, POLICY_META};
use crate::checkpoint::Checkpoint;
use crate::data::Dataset;
use crate::engine::{Network, NetworkConfig, QuantSpec};
use crate::gpu::Gpu;
use crate::model::Model;
use crate::train::{
    check_checkpoint_model, check_data, evaluate, EpochSummary, Event, Position, RunConfig,
};

/// Settings of a finetune run (defaults: the reference recipe, [`RunConfig::quantized`]:
/// no clipping).
///
/// `run.resume` continues the run that wrote that checkpoint (a stop, an epoch end or the
/// end) from its exact position; `init` and the indicators then only have to fit the model.
/// The policy, the run settings (epochs, batch, lr, momentum, Nesterov, weight decay, label
/// smoothing, clip, seed, steps per epoch) and the model must be the ones it records, else
/// [`MethodError::Config`] names the difference.
#[derive(Clone, Debug, PartialEq)]
pub struct FinetuneConfig {
    pub run: RunConfig,
    /// Start the step sizes from the indicators given to [`finetune`] at the policy's bits
    /// (the joint run's learned steps) instead of the LSQ init rule on the first training
    /// batch at those bits. Default `false`: the reference re-initialises them.
    pub steps_from_indicators: bool,
    /// Training images the BN statistics are recalibrated on before every evaluation
    /// ([`Recalibration`](super::Recalibration)), as the reference does; 0: none. Default
    /// [`RECALIBRATION_IMAGES`](super::RECALIBRATION_IMAGES) (the reference's 6000),
    /// at most one pass over the training split.
    pub bn_recalibration: usize,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            run: RunConfig::quantized(),
            steps_from_indicators: false,
            bn_recalibration: super::RECALIBRATION_IMAGES,
        }
    }
}

/// The job-file side of [`FinetuneConfig`]'s two recipe choices, shared by the pipeline's
/// `finetune:` stage and the daemon's finetune jobs: each optional, the recipe's default
/// ([`FinetuneConfig::default`]) when a file leaves it out.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FinetuneChoices {
    /// [`FinetuneConfig::steps_from_indicators`].
    pub steps_from_indicators: Option<bool>,
    /// [`FinetuneConfig::bn_recalibration`].
    pub bn_recalibration: Option<usize>,
}

impl FinetuneChoices {
    /// Reads field `key` when it is one of the two (`false` for another key).
    pub fn read<'de, A: serde::de::MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        use crate::train::run_spec::once;
        match key {
            "steps_from_indicators" => once(
                &mut self.steps_from_indicators,
                "steps_from_indicators",
                map,
            )?,
            "bn_recalibration" => once(&mut self.bn_recalibration, "bn_recalibration", map)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Writes the choices that are made.
    pub fn write<S: serde::ser::SerializeStruct>(&self, st: &mut S) -> Result<(), S::Error> {
        use crate::train::run_spec::write_opt;
        write_opt(st, "steps_from_indicators", &self.steps_from_indicators)?;
        write_opt(st, "bn_recalibration", &self.bn_recalibration)
    }

    /// `base` with the choices that are made.
    pub fn apply(&self, base: FinetuneConfig) -> FinetuneConfig {
        FinetuneConfig {
            steps_from_indicators: self
                .steps_from_indicators
                .unwrap_or(base.steps_from_indicators),
            bn_recalibration: self.bn_recalibration.unwrap_or(base.bn_recalibration),
            ..base
        }
    }

    /// `, key: value` for each choice made, for a fingerprint text (nothing when none is,
    /// so files without them keep the fingerprints earlier versions wrote).
    pub fn text(&self) -> String {
        let mut t = String::new();
        if let Some(v) = self.steps_from_indicators {
            t.push_str(&format!(", steps_from_indicators: {v:?}"));
        }
        if let Some(v) = self.bn_recalibration {
            t.push_str(&format!(", bn_recalibration: {v:?}"));
        }
        t
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
    if ind.is_measured_sensitivity() {
        return Err(MethodError::Config(
            "the indicators are measured sensitivity (meta `source: sensitivity`, `limpq \
             sensitivity`): loss increases, not step sizes; start the step sizes from the \
             joint run's indicators (`limpq indicators`), or leave them to the LSQ init rule"
                .into(),
        ));
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

/// Whether `indicators` hold a finite step size at `policy`'s bits for every searchable
/// layer of `model`, as [`FinetuneConfig::steps_from_indicators`] needs: the check
/// [`finetune`] makes, for a caller to make before it loads data and opens a GPU.
pub fn check_steps_from_indicators(
    model: &Model,
    policy: &Policy,
    indicators: &IndicatorSet,
) -> Result<(), MethodError> {
    let spec = QuantSpec::policy(model, policy)?;
    steps_from_indicators(&spec, indicators, model).map(|_| ())
}

/// Finetune `model` from the full-precision checkpoint `init` at `policy`'s bits.
/// `indicators` seed the step sizes only with [`FinetuneConfig::steps_from_indicators`].
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
    check_checkpoint_model(init, model, &init.describe())?;
    super::check_not_joint_state(init)?;
    let run = &cfg.run;
    run.check().map_err(MethodError::Config)?;
    let steps = steps_per_epoch(train.len(), run.batch)?;
    let spec = QuantSpec::policy(model, policy)?;
    let from_ind = match indicators.filter(|_| cfg.steps_from_indicators) {
        Some(ind) => steps_from_indicators(&spec, ind, model)?,
        None => vec![None; spec.layers.len()],
    };
    let ncfg = run.network();
    let mut net = Network::new_quantized(gpu, model, ncfg, &spec)?;
    let left = net
        .import_state_lenient(&init.tensors)
        .map_err(|e| MethodError::Config(format!("{}: {e}", init.describe())))?;
    let layers = net.quant_layers();
    // A checkpoint finetuned at other bits holds step sizes of those bits: a layer whose
    // bits change starts its steps afresh (the LSQ init), as from full precision; they were
    // kept, a W4 step used at W2.
    let changed: Vec<String> = super::policy_changes(init, policy)?
        .into_iter()
        .map(|c| c.layer)
        .collect();
    let mut need_init = Vec::with_capacity(layers.len());
    for (li, l) in layers.iter().enumerate() {
        if let Some((w, a)) = from_ind[li] {
            net.write_steps(li, &[w], &[a])?;
            need_init.push(false);
        } else if changed.contains(&spec.layers[li].0) {
            need_init.push(true);
        } else {
            // Steps stored in `init` (a checkpoint of this policy) are kept.
            need_init.push(left.contains(&l.weight_step) || left.contains(&l.act_step));
        }
    }
    let pos = match &run.resume {
        None => Position::start(run.epochs, steps),
        Some(ck) => {
            check_checkpoint_model(ck, model, "the resume checkpoint")?;
            let pos = resume_position(ck, &recorded_settings(cfg, policy), run.seed, steps)?;
            net.import_state(&ck.tensors, true).map_err(|e| {
                MethodError::Config(format!(
                    "the resume checkpoint {} does not hold this policy's finetune state: {e}",
                    ck.describe()
                ))
            })?;
            pos
        }
    };
    let mut eval_net = Network::new_quantized(
        gpu,
        model,
        NetworkConfig {
            batch: super::recalibration_batch(run.eval_batch, cfg.bn_recalibration, train.len()),
            ..ncfg
        },
        &spec,
    )?;
    let schedule = Schedule {
        stage: "finetuning",
        init_steps: need_init,
        init_record: None,
        pass_names: vec!["policy".into()],
        eval_selection: None,
        recalibrate: (cfg.bn_recalibration > 0).then(|| {
            super::Recalibration::of_finetune(train.clone(), cfg.bn_recalibration, run.seed)
        }),
    };
    let sel = vec![vec![0usize; layers.len()]];
    let ran = run_epochs(
        &mut net,
        &mut eval_net,
        &train,
        &test,
        run,
        &schedule,
        pos,
        &mut || sel.clone(),
        &|pos, state| checkpoint(model, cfg, policy, pos, state),
        on_event,
    )?;
    // The last epoch is always evaluated ([`RunConfig::eval_every`]).
    let last = ran.position.history.last();
    let mut state = ran.state;
    let (test_accuracy, test_loss) = match last.and_then(|h| h.test_acc.zip(h.test_loss)) {
        Some(t) => t,
        None => {
            // No epochs: evaluate the initial quantized model; recalibrated, the state
            // saved keeps the statistics evaluated, as an epoch's evaluation does.
            eval_net.import_state(&state, false)?;
            if let Some(r) = &schedule.recalibrate {
                if r.apply(&mut eval_net)? > 0 {
                    crate::train::take_running_stats(&mut state, &eval_net)?;
                }
            }
            let ev = evaluate(&mut eval_net, &test)?;
            (ev.accuracy(), ev.mean_loss())
        }
    };
    let history = ran.position.history.clone();
    Ok(Finetuned {
        checkpoint: checkpoint(model, cfg, policy, &ran.position, state),
        test_accuracy,
        test_loss,
        history,
    })
}

/// The settings a resumed run must share with the run that wrote its checkpoint, as stored
/// in the checkpoint's meta (`stage` keeps a joint state from being resumed here).
fn recorded_settings(cfg: &FinetuneConfig, policy: &Policy) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("stage", "finetune".into()),
        (
            "step_init",
            if cfg.steps_from_indicators {
                "indicators".into()
            } else {
                "lsq_init".into()
            },
        ),
    ];
    v.push(("bn_recalibration", cfg.bn_recalibration.to_string()));
    v.extend(cfg.run.recorded());
    v.push(("clip", cfg.run.clip_text()));
    v.push((POLICY_META, policy.to_ron_string()));
    v
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
    meta.push((super::ACT_SIGNS_META.into(), super::ACT_SIGNS_RULE.into()));
    if let Some(acc) = pos.history.last().and_then(|h| h.test_acc) {
        meta.push(("test_acc".into(), format!("{acc:.6}")));
    }
    meta.extend(pos.meta());
    meta.extend(cfg.run.meta.iter().cloned());
    Checkpoint {
        origin: None,
        model: model.clone(),
        seed: cfg.run.seed,
        epoch: pos.epochs_done,
        step: pos.global_step as u64,
        meta,
        tensors,
    }
}
