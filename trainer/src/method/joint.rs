//! Joint indicator training: every optimizer step is ONE submission holding a pass per
//! candidate bit-width (all searchable layers at b, BN set b) and one random-policy pass
//! (each searchable layer at its own uniformly drawn b, drawn on the CPU from a seeded
//! generator; its BN follows), gradients summed, every element clipped to ±clip, SGD with
//! momentum, weight decay on conv/linear weights only, cosine learning rate per step.

use std::path::PathBuf;
use std::sync::Arc;

use limpq_solver::IndicatorSet;

use super::epochs::{resume_position, run_epochs, steps_per_epoch, Schedule};
use super::{utc_now, MethodError, StopFlag};
use crate::checkpoint::Checkpoint;
use crate::data::Dataset;
use crate::engine::{Network, NetworkConfig, QuantSpec};
use crate::gpu::Gpu;
use crate::model::Model;
use crate::reference::rng::SeededRng;
use crate::train::{
    check_checkpoint_model, check_data, EpochSummary, Event, Position, SgdSettings,
};

/// Settings of a joint run (defaults: DESIGN.md's recipe).
#[derive(Clone, Debug, PartialEq)]
pub struct JointConfig {
    /// Candidate bit-widths, ascending, distinct (weights and activations alike).
    pub bits: Vec<u32>,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub momentum: f32,
    /// The PyTorch reference recipe uses Nesterov momentum.
    pub nesterov: bool,
    /// On conv/linear weights only.
    pub weight_decay: f32,
    pub label_smoothing: f32,
    /// Every gradient element is clipped to ±clip before the update.
    pub clip: f32,
    pub seed: u64,
    /// Images per evaluation batch.
    pub eval_batch: usize,
    /// Provenance copied into the indicator file's and checkpoint's meta (data, init, ...).
    pub meta: Vec<(String, String)>,
    /// Written (atomically) after every epoch and at a stop when set: the whole joint state
    /// (weights, switchable BN sets, step tensors, momentum) with the run's exact position.
    pub checkpoint: Option<PathBuf>,
    /// Checked before every optimizer step and before each epoch's evaluation: once set,
    /// the run saves its exact position (to `checkpoint` when set) and returns
    /// [`MethodError::Stopped`], from which `resume` continues.
    pub stop: StopFlag,
    /// Continue the run that wrote this checkpoint (a stop, an epoch end or the end) from
    /// its exact position instead of starting from `init`: the state (momentum included),
    /// the schedule's step, the remaining batches and the random policies still to draw.
    /// The settings (bits, epochs, batch, lr, momentum, Nesterov, weight decay, label
    /// smoothing, clip, seed, steps per epoch) and the model must be the ones it records,
    /// else [`MethodError::Config`] names the difference. The run then ends with the same
    /// state and indicators, bit for bit, as the run never stopped (same adapter).
    pub resume: Option<Arc<Checkpoint>>,
}

impl Default for JointConfig {
    fn default() -> Self {
        JointConfig {
            bits: vec![2, 3, 4, 5, 6],
            epochs: 1,
            batch: 64,
            lr: 0.01,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 2.5e-5,
            label_smoothing: 0.1,
            clip: 1.0,
            seed: 0,
            eval_batch: 256,
            meta: Vec::new(),
            checkpoint: None,
            stop: StopFlag::default(),
            resume: None,
        }
    }
}

/// Everything a joint run produced.
#[derive(Clone, Debug)]
pub struct JointTrained {
    pub indicators: IndicatorSet,
    /// Final joint state.
    pub checkpoint: Checkpoint,
    /// Per epoch; the test figures are at the highest candidate bit-width.
    pub history: Vec<EpochSummary>,
    /// Indicators that are not monotone in bits (also warned and put in the meta).
    pub non_monotone: Vec<String>,
}

/// Learn the indicators of `model` from the full-precision checkpoint `init`.
pub fn joint_train(
    gpu: &Gpu,
    model: &Model,
    init: &Checkpoint,
    train: Arc<Dataset>,
    test: Arc<Dataset>,
    cfg: &JointConfig,
    on_event: &mut dyn FnMut(&Event),
) -> Result<IndicatorSet, MethodError> {
    joint_train_full(gpu, model, init, train, test, cfg, on_event).map(|r| r.indicators)
}

fn check_config(cfg: &JointConfig) -> Result<(), MethodError> {
    if cfg.bits.is_empty() || cfg.bits.windows(2).any(|w| w[0] >= w[1]) {
        return Err(MethodError::Config(format!(
            "candidate bits {:?} must be non-empty, ascending and distinct",
            cfg.bits
        )));
    }
    sgd(cfg).check().map_err(MethodError::Config)
}

/// [`joint_train`] with the final state, history and monotonicity report.
pub fn joint_train_full(
    gpu: &Gpu,
    model: &Model,
    init: &Checkpoint,
    train: Arc<Dataset>,
    test: Arc<Dataset>,
    cfg: &JointConfig,
    on_event: &mut dyn FnMut(&Event),
) -> Result<JointTrained, MethodError> {
    check_config(cfg)?;
    check_data(model, &train)?;
    check_data(model, &test)?;
    check_checkpoint_model(init, model, "the --init checkpoint")?;
    let steps = steps_per_epoch(train.len(), cfg.batch)?;
    let spec = QuantSpec::joint(model, &cfg.bits)?;
    let ncfg = NetworkConfig {
        batch: cfg.batch,
        seed: cfg.seed,
        label_smoothing: cfg.label_smoothing,
        momentum: cfg.momentum,
        nesterov: cfg.nesterov,
        weight_decay: cfg.weight_decay,
        grad_clip: Some(cfg.clip),
    };
    let mut net = Network::new_quantized(gpu, model, ncfg, &spec)?;
    let pos = match &cfg.resume {
        None => {
            net.import_state_lenient(&init.tensors)?;
            Position::start(cfg.epochs, steps)
        }
        Some(ck) => {
            check_checkpoint_model(ck, model, "the resume checkpoint")?;
            let pos = resume_position(ck, &recorded_settings(cfg), cfg.seed, steps)?;
            net.import_state(&ck.tensors, true).map_err(|e| {
                MethodError::Config(format!(
                    "the resume checkpoint does not hold a joint state of this run: {e}"
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
    let layers = net.quant_layers();
    let nb = cfg.bits.len();
    let searchable: Vec<bool> = layers.iter().map(|l| l.variants.len() > 1).collect();
    // Pass k: searchable layers at candidate k, fixed layers at their only variant.
    let uniform: Vec<Vec<usize>> = (0..nb)
        .map(|k| searchable.iter().map(|&s| if s { k } else { 0 }).collect())
        .collect();
    let top = uniform[nb - 1].clone();
    let mut pass_names: Vec<String> = cfg.bits.iter().map(|b| format!("{b}-bit")).collect();
    pass_names.push("random-policy".into());
    let mut policy_rng = SeededRng::new(cfg.seed ^ 0x5EED_0F4A_11D0_E5E5);

    let schedule = Schedule {
        stage: "joint training",
        epochs: cfg.epochs,
        batch: cfg.batch,
        lr: cfg.lr,
        seed: cfg.seed,
        stop: &cfg.stop,
        init_steps: vec![true; layers.len()],
        pass_names,
        eval_selection: Some(top),
        checkpoint: cfg.checkpoint.as_deref(),
    };
    let ran = run_epochs(
        &mut net,
        &mut eval_net,
        &train,
        &test,
        &schedule,
        pos,
        &mut || {
            let mut sels = uniform.clone();
            sels.push(
                searchable
                    .iter()
                    .map(|&s| if s { policy_rng.below(nb) } else { 0 })
                    .collect(),
            );
            sels
        },
        &|pos, state| checkpoint(model, cfg, pos, state),
        on_event,
    )?;
    let history = ran.position.history.clone();
    let steps_now = net.read_steps()?;
    let mut ind = model.indicator_skeleton(&cfg.bits, &cfg.bits)?;
    let mut non_monotone = Vec::new();
    for ((l, info), (w, a)) in ind.layers.iter_mut().zip(&layers).zip(&steps_now) {
        if info.name != l.name {
            return Err(MethodError::Config(format!(
                "internal: layer order differs ('{}' vs '{}')",
                info.name, l.name
            )));
        }
        if l.fixed.is_some() {
            continue;
        }
        for (what, vals) in [("weight", w), ("activation", a)] {
            if let Some(v) = vals.iter().find(|v| !v.is_finite()) {
                return Err(MethodError::BadIndicator {
                    layer: l.name.clone(),
                    message: format!("learned {what} step size is {v}"),
                });
            }
            // Step sizes must fall as bits rise: s at b-1 smaller than s at b is suspect.
            for (k, pair) in vals.windows(2).enumerate() {
                if pair[0] < pair[1] {
                    let msg = format!(
                        "{} {what}: s({}) = {:.4e} < s({}) = {:.4e}",
                        l.name,
                        cfg.bits[k],
                        pair[0],
                        cfg.bits[k + 1],
                        pair[1]
                    );
                    tracing::warn!("non-monotone indicator: {msg}");
                    non_monotone.push(msg);
                }
            }
        }
        l.weight_scale = w.iter().map(|&v| v as f64).collect();
        l.act_scale = a.iter().map(|&v| v as f64).collect();
    }
    let mut meta = vec![
        ("model".to_string(), model.name.clone()),
        ("seed".to_string(), cfg.seed.to_string()),
        ("epochs".to_string(), cfg.epochs.to_string()),
        (
            "bits".to_string(),
            cfg.bits
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("batch".to_string(), cfg.batch.to_string()),
        ("lr".to_string(), cfg.lr.to_string()),
        ("train_images".to_string(), (steps * cfg.batch).to_string()),
        ("date".to_string(), utc_now()),
    ];
    meta.extend(cfg.meta.iter().cloned());
    if let Some(last) = history.last() {
        meta.push((
            format!("test_acc_{}bit", cfg.bits[nb - 1]),
            format!("{:.6}", last.test_acc),
        ));
    }
    meta.push(("non_monotone".to_string(), non_monotone.len().to_string()));
    for (i, m) in non_monotone.iter().enumerate() {
        meta.push((format!("non_monotone.{i}"), m.clone()));
    }
    ind.meta = meta;
    Ok(JointTrained {
        indicators: ind,
        checkpoint: checkpoint(model, cfg, &ran.position, ran.state),
        history,
        non_monotone,
    })
}

/// The settings a resumed run must share with the run that wrote its checkpoint, as stored
/// in the checkpoint's meta (`stage` keeps a finetune state from being resumed here).
fn recorded_settings(cfg: &JointConfig) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("stage", "joint".into()),
        (
            "bits",
            cfg.bits
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
    ];
    v.extend(sgd(cfg).recorded());
    v.push(("clip", cfg.clip.to_string()));
    v
}

/// The run's SGD settings.
fn sgd(cfg: &JointConfig) -> SgdSettings {
    SgdSettings {
        epochs: cfg.epochs,
        batch: cfg.batch,
        eval_batch: cfg.eval_batch,
        lr: cfg.lr,
        momentum: cfg.momentum,
        nesterov: cfg.nesterov,
        weight_decay: cfg.weight_decay,
        label_smoothing: cfg.label_smoothing,
        clip: Some(cfg.clip),
    }
}

/// The joint state at `pos`: the recorded settings first (so the caller's meta cannot
/// shadow them), the position, then the caller's meta.
fn checkpoint(
    model: &Model,
    cfg: &JointConfig,
    pos: &Position,
    tensors: Vec<crate::checkpoint::NamedTensor>,
) -> Checkpoint {
    let mut meta: Vec<(String, String)> = recorded_settings(cfg)
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
