//! The method (docs/METHOD.md) on the GPU engine: joint training of the
//! LSQ importance indicators ([`joint_train`]), quantization-aware finetuning of a solved
//! policy ([`finetune`]) and evaluation of a quantized checkpoint ([`evaluate_quantized`]).
//! The network side — fake quantization, switchable BN, several passes per submission — is
//! the quantization hook of `crate::engine` (`engine/quantizers.rs`).

mod epochs;
mod eval;
pub mod export;
mod finetune;
mod infer;
mod joint;
pub mod runtime;
mod sensitivity;

pub use crate::train::{Position, RunConfig, StopFlag, Stopped};
use std::fmt;
use std::sync::Arc;

use limpq_solver::Policy;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::data::{DataError, Dataset};
use crate::engine::{EngineError, EvalStats, Network, NetworkConfig, QuantSpec};
use crate::gpu::Gpu;
use crate::model::Model;
use crate::train::{check_checkpoint_model, check_data, evaluate, TrainError};

pub use eval::{evaluate_checkpoint, evaluate_checkpoint_with, EvalReport, Evaluated, PolicyCost};
pub use finetune::{
    check_steps_from_indicators, finetune, FinetuneChoices, FinetuneConfig, Finetuned,
};
pub use infer::infer_logits;
pub use joint::{check_bits, joint_train, joint_train_full, JointConfig, JointTrained, StepDrift};
pub use sensitivity::{
    measure_sensitivity, monotone, Sensitivity, SensitivityConfig,
    FULL_BITS as SENSITIVITY_FULL_BITS,
};

/// Meta key under which a finetuned checkpoint stores its policy (RON text).
pub const POLICY_META: &str = "policy";

/// Meta key of a quantized checkpoint (finetuned, or a joint-training state) whose
/// activation quantizers are signed wherever their input can be negative
/// ([`crate::model::Model::act_signs`]); its value is [`ACT_SIGNS_RULE`]. A quantized
/// checkpoint without it was trained when only the model input's quantizer was signed:
/// [`act_signs_changed`] names the layers whose steps it learned for the other range.
pub const ACT_SIGNS_META: &str = "act_signs";

/// The value of [`ACT_SIGNS_META`].
pub const ACT_SIGNS_RULE: &str = "signed_where_negative";

/// The quantizable layers of `ck`'s model whose activation quantizer is signed under
/// today's rule and was not when `ck` was trained (or the reverse): empty for a checkpoint
/// of today's rule ([`ACT_SIGNS_META`]), one that is not quantized (no `.act_step`
/// tensor), or a model where the rules agree (every ResNet: only the stem reads a signed
/// input).
pub fn act_signs_changed(ck: &Checkpoint) -> Vec<String> {
    if ck.meta(ACT_SIGNS_META).is_some()
        || !ck.tensors.iter().any(|t| t.name.ends_with(".act_step"))
    {
        return Vec::new();
    }
    act_signs_changed_in(&ck.model)
}

/// The quantizable layers of `model` whose activation quantizer's sign today's rule
/// ([`crate::model::Model::act_signs`]) changed: signed now, unsigned when only the model
/// input's was signed. Empty for every ResNet and small_cnn; MobileNetV2's 17 layers that
/// read a linear bottleneck.
pub fn act_signs_changed_in(model: &Model) -> Vec<String> {
    let (Ok(infos), Ok(layers)) = (model.analyze(), model.quantizable_layers()) else {
        return Vec::new();
    };
    let signs = model.act_signs(&infos);
    layers
        .into_iter()
        .filter(|l| {
            let before = infos[l.node].inputs.first() == Some(&crate::model::Source::Input);
            signs.get(l.node).is_some_and(|&now| now != before)
        })
        .map(|l| l.name)
        .collect()
}

/// Why joint training, finetuning or a quantized evaluation stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum MethodError {
    Engine(EngineError),
    Data(DataError),
    Checkpoint(CheckpointError),
    /// A loss became NaN or infinite.
    Diverged {
        stage: &'static str,
        epoch: usize,
        step: usize,
        /// Which pass of the step (`"6 bits"`, `"random policy"`, ...).
        pass: String,
        loss: f32,
        lr: f32,
    },
    /// A learned step size is not a finite number.
    BadIndicator {
        layer: String,
        message: String,
    },
    /// Settings or inputs that cannot work together.
    Config(String),
    /// The run's [`StopFlag`] was set; it stopped between two optimizer steps (or after
    /// an epoch's last step, before its evaluation: then `step` is one past the last).
    /// Not a failure: `state` holds the exact position and the state at the stop (also
    /// saved to the run's `checkpoint` path when it has one), and setting the config's
    /// `resume` to that checkpoint continues the run.
    Stopped {
        stage: &'static str,
        epoch: usize,
        /// The step of `epoch` (from 1) that would have run next.
        step: usize,
        state: Box<Stopped>,
    },
}

impl fmt::Display for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MethodError::Engine(e) => write!(f, "{e}"),
            MethodError::Data(e) => write!(f, "{e}"),
            MethodError::Checkpoint(e) => write!(f, "{e}"),
            MethodError::Diverged {
                stage,
                epoch,
                step,
                pass,
                loss,
                lr,
            } => write!(
                f,
                "{stage} diverged: loss is {loss} in the {pass} pass at epoch {epoch} step {step} \
                 (lr {lr}); try a smaller --lr"
            ),
            MethodError::BadIndicator { layer, message } => {
                write!(f, "layer '{layer}': {message}")
            }
            MethodError::Config(m) => f.write_str(m),
            MethodError::Stopped {
                stage,
                epoch,
                step,
                state,
            } => {
                if *step > state.position.steps_per_epoch {
                    write!(
                        f,
                        "{stage} stopped on request after the last step of epoch {epoch}, \
                         before its evaluation"
                    )?;
                } else {
                    write!(
                        f,
                        "{stage} stopped on request before step {step} of epoch {epoch}"
                    )?;
                }
                write!(f, " (global step {})", state.position.global_step)?;
                match &state.saved {
                    Some(path) => write!(f, "; its state is saved in {}", path.display()),
                    None => f.write_str("; no checkpoint path was set, so nothing was saved"),
                }
            }
        }
    }
}

impl std::error::Error for MethodError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MethodError::Engine(e) => Some(e),
            MethodError::Data(e) => Some(e),
            MethodError::Checkpoint(e) => Some(e),
            _ => None,
        }
    }
}

impl From<EngineError> for MethodError {
    fn from(e: EngineError) -> Self {
        MethodError::Engine(e)
    }
}
impl From<crate::model::ModelError> for MethodError {
    fn from(e: crate::model::ModelError) -> Self {
        MethodError::Engine(EngineError::Model(e))
    }
}
impl From<DataError> for MethodError {
    fn from(e: DataError) -> Self {
        MethodError::Data(e)
    }
}
impl From<CheckpointError> for MethodError {
    fn from(e: CheckpointError) -> Self {
        MethodError::Checkpoint(e)
    }
}
impl From<TrainError> for MethodError {
    fn from(e: TrainError) -> Self {
        match e {
            TrainError::Engine(e) => MethodError::Engine(e),
            TrainError::Data(e) => MethodError::Data(e),
            TrainError::Checkpoint(e) => MethodError::Checkpoint(e),
            other => MethodError::Config(other.to_string()),
        }
    }
}

/// The policy stored in a finetuned checkpoint's meta, if any.
pub fn checkpoint_policy(ckpt: &Checkpoint) -> Result<Option<Policy>, MethodError> {
    match ckpt.meta(POLICY_META) {
        None => Ok(None),
        Some(text) => Policy::from_ron_str(text)
            .map(Some)
            .map_err(|e| MethodError::Config(format!("policy stored in the checkpoint: {e}"))),
    }
}

/// Refuses a joint-training state (`limpq indicators --checkpoint`, meta `stage: joint`)
/// where a full-precision or finetuned model is wanted: it keeps one batch norm per
/// bit-width, and the refusal used to be "missing parameter 'bn2.weight'".
pub fn check_not_joint_state(ck: &Checkpoint) -> Result<(), MethodError> {
    if ck.meta("stage") == Some("joint") {
        return Err(MethodError::Config(format!(
            "{} is a joint-training state (`limpq indicators --checkpoint`), which keeps one \
             batch norm per bit-width: give a full-precision checkpoint (`limpq train`) or a \
             finetuned one",
            ck.describe()
        )));
    }
    Ok(())
}

/// A layer whose (weight, act) bits differ between two policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitsChange {
    pub layer: String,
    /// The bits it was finetuned at.
    pub was: (u32, u32),
    pub now: (u32, u32),
}

/// The layers `policy` gives other bits than the policy `ckpt` was finetuned at (stored in
/// its meta): name, the finetuned (weight, act) bits and the policy's. Empty for a
/// checkpoint with no stored policy (full precision) or the same bits everywhere.
pub fn policy_changes(ckpt: &Checkpoint, policy: &Policy) -> Result<Vec<BitsChange>, MethodError> {
    let Some(stored) = checkpoint_policy(ckpt)? else {
        return Ok(Vec::new());
    };
    // Both read against the checkpoint's model as every run reads a policy (a fixed layer
    // left out is at its fixed bits), so that only a real difference counts.
    let was = QuantSpec::policy(&ckpt.model, &stored)?;
    let now = QuantSpec::policy(&ckpt.model, policy)?;
    Ok((was.layers.iter().zip(&now.layers))
        .filter_map(|((layer, was), (_, now))| {
            let (was, now) = (was[0], now[0]);
            (was != now).then(|| BitsChange {
                layer: layer.clone(),
                was,
                now,
            })
        })
        .collect())
}

/// A policy written for another model is refused (its layers may still match by name,
/// e.g. two ResNets of one family).
pub fn check_policy_model(policy: &Policy, model: &Model) -> Result<(), MethodError> {
    if policy.model != model.name {
        return Err(MethodError::Config(format!(
            "the policy is for model '{}', the checkpoint holds '{}'",
            policy.model, model.name
        )));
    }
    Ok(())
}

/// An error for the first of [`policy_changes`]: a checkpoint's step sizes are those of the
/// bits it was finetuned at, and evaluating or exporting it at others is not that model.
pub fn check_finetuned_policy(ckpt: &Checkpoint, policy: &Policy) -> Result<(), MethodError> {
    match policy_changes(ckpt, policy)?.first() {
        None => Ok(()),
        Some(BitsChange {
            layer: name,
            was: (sw, sa),
            now: (w, a),
        }) => Err(MethodError::Config(format!(
            "layer '{name}': the checkpoint was finetuned at W{sw}A{sa}, the policy says \
             W{w}A{a}; its step sizes are those of the finetuned bits (finetune it at this \
             policy first)"
        ))),
    }
}

/// BN recalibration before an evaluation, as the reference does before every evaluation
/// of a quantized model: `images` training images (whole batches of the evaluating
/// network's size, rounded up, at most one pass over `train`), shuffled with `seed` and
/// augmented as in training, run through train-mode forwards; every BN's running
/// statistics become the mean of those batches' statistics ([`Network::recalibrate_bn`]).
#[derive(Clone, Debug)]
pub struct Recalibration {
    pub train: Arc<Dataset>,
    pub images: usize,
    pub seed: u64,
}

/// Mixed into a finetuning run's seed for its recalibration draws.
const RECALIBRATION_SEED: u64 = 0xBA7C_4A11_B2A7_10E5;

/// The images the reference recalibrates BN statistics on (`calibration_samples` in its
/// finetuning code).
pub const RECALIBRATION_IMAGES: usize = 6000;

/// The batch of a network that evaluates `batch` images at a time and recalibrates its BN
/// on up to `images` of a training split of `train_len`: recalibration takes whole batches,
/// so a split smaller than the batch (128 images against the default 256) was silently not
/// recalibrated at all; the batch is then the split's size. Evaluation gives the same
/// results at any batch (BN in eval mode treats each image alone).
pub fn recalibration_batch(batch: usize, images: usize, train_len: usize) -> usize {
    if images > 0 && train_len > 0 && train_len < batch {
        train_len
    } else {
        batch
    }
}

impl Recalibration {
    /// The recalibration `limpq finetune` runs before each evaluation of a run seeded
    /// `run_seed`: `images` of `train` (the run's training images), drawn with a seed of
    /// their own derived from the run's.
    pub fn of_finetune(train: Arc<Dataset>, images: usize, run_seed: u64) -> Recalibration {
        Recalibration {
            train,
            images,
            seed: run_seed ^ RECALIBRATION_SEED,
        }
    }

    /// Recalibrates `net` (its current selection); returns the images used (0 when the
    /// training split holds no whole batch of `net`'s size: the statistics stay).
    pub fn apply(&self, net: &mut Network<'_>) -> Result<usize, MethodError> {
        let batch = net.batch();
        let wanted = self.images.div_ceil(batch.max(1));
        if wanted == 0 || self.train.len() < batch {
            return Ok(0);
        }
        let cfg = crate::data::LoaderConfig::train(&self.train, batch, self.seed, 1);
        let mut loader = crate::data::Loader::spawn(self.train.clone(), cfg)?.take(wanted);
        let n = net.recalibrate_bn(&mut || loader.next().map(|b| (b.x, b.y)))?;
        Ok(n * batch)
    }
}

/// Test accuracy and loss of a quantized checkpoint (written by [`finetune`]) at `policy`'s
/// bits: eval-mode BN, every conv/linear fake-quantized with the stored step sizes.
pub fn evaluate_quantized(
    gpu: &Gpu,
    model: &Model,
    ckpt: &Checkpoint,
    policy: &Policy,
    test: Arc<Dataset>,
    batch: usize,
) -> Result<EvalStats, MethodError> {
    evaluate_quantized_with(gpu, model, ckpt, policy, test, batch, None)
}

/// [`evaluate_quantized`], with the BN statistics recalibrated first when `recalibrate`
/// is given.
pub fn evaluate_quantized_with(
    gpu: &Gpu,
    model: &Model,
    ckpt: &Checkpoint,
    policy: &Policy,
    test: Arc<Dataset>,
    batch: usize,
    recalibrate: Option<&Recalibration>,
) -> Result<EvalStats, MethodError> {
    check_data(model, &test)?;
    let mut net = quantized_eval_network(gpu, model, ckpt, policy, test.len(), batch, recalibrate)?;
    Ok(evaluate(&mut net, &test)?)
}

/// The network [`evaluate_quantized_with`] evaluates `test_len` test images with: `ckpt`
/// quantized at `policy`, its BN statistics recalibrated first when `recalibrate` is given.
pub fn quantized_eval_network<'g>(
    gpu: &'g Gpu,
    model: &Model,
    ckpt: &Checkpoint,
    policy: &Policy,
    test_len: usize,
    batch: usize,
    recalibrate: Option<&Recalibration>,
) -> Result<Network<'g>, MethodError> {
    recalibrated_eval_network(gpu, model, ckpt, policy, test_len, batch, recalibrate)
        .map(|(net, _)| net)
}

/// [`quantized_eval_network`], and the training images its BN statistics were recalibrated
/// on when `recalibrate` is given ([`Recalibration::apply`]).
pub(crate) fn recalibrated_eval_network<'g>(
    gpu: &'g Gpu,
    model: &Model,
    ckpt: &Checkpoint,
    policy: &Policy,
    test_len: usize,
    batch: usize,
    recalibrate: Option<&Recalibration>,
) -> Result<(Network<'g>, Option<usize>), MethodError> {
    check_checkpoint_model(ckpt, model, "the checkpoint")?;
    if batch == 0 {
        return Err(MethodError::Config("batch size must be positive".into()));
    }
    check_policy_model(policy, model)?;
    check_finetuned_policy(ckpt, policy)?;
    let spec = QuantSpec::policy(model, policy)?;
    let batch = match recalibrate {
        Some(r) => recalibration_batch(batch, r.images, r.train.len()),
        None => crate::train::eval_batch(batch, test_len),
    };
    let cfg = NetworkConfig {
        batch,
        ..NetworkConfig::default()
    };
    let mut net = Network::new_quantized(gpu, model, cfg, &spec)?;
    net.import_state(&ckpt.tensors, false).map_err(|e| {
        MethodError::Config(format!(
            "the checkpoint does not hold a model quantized at this policy ({e}); \
             was it written by `limpq finetune` with this policy?"
        ))
    })?;
    let recalibrated = match recalibrate {
        Some(r) => {
            check_data(model, &r.train)?;
            Some(r.apply(&mut net)?)
        }
        None => None,
    };
    Ok((net, recalibrated))
}

/// What a policy costs on `model`, priced by the solver's [`limpq_solver::Problem::evaluate`]:
/// `(BitOps of the searchable layers, BitOps of the fixed layers, weight storage of the
/// whole model in bits)`. Fixed layers the policy leaves out count at their fixed bits.
pub fn policy_cost(model: &Model, policy: &Policy) -> Result<(u64, u64, u64), MethodError> {
    let layers = model.quantizable_layers()?;
    let mut bits: Vec<u32> = Vec::new();
    let mut chosen = Vec::with_capacity(layers.len());
    for l in &layers {
        let given = policy.layers.iter().find(|p| p.name == l.name);
        let lb = match (given, l.fixed) {
            (Some(p), _) => p.clone(),
            (None, true) => limpq_solver::LayerBits {
                name: l.name.clone(),
                weight: crate::model::FIXED_BITS.0,
                act: crate::model::FIXED_BITS.1,
            },
            (None, false) => {
                return Err(MethodError::Config(format!(
                    "policy has no layer '{}'",
                    l.name
                )))
            }
        };
        if !l.fixed {
            bits.extend([lb.weight, lb.act]);
        }
        chosen.push(lb);
    }
    bits.sort_unstable();
    bits.dedup();
    if bits.is_empty() {
        bits.push(crate::model::FIXED_BITS.0);
    }
    let mut ind = model.indicator_skeleton(&bits, &bits)?;
    for l in &mut ind.layers {
        l.weight_scale.iter_mut().for_each(|v| *v = 1.0);
        l.act_scale.iter_mut().for_each(|v| *v = 1.0);
    }
    let e = limpq_solver::Problem::new(ind)
        .non_monotone_rule(false)
        .evaluate(&chosen)
        .map_err(|e| MethodError::Config(format!("cost of the policy: {e}")))?;
    Ok((e.policy.bitops, e.fixed_bitops, e.policy.weight_bits_total))
}

/// `YYYY-MM-DDTHH:MM:SSZ` of now (UTC), for provenance in written files.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy that leaves the fixed layers out (they count at their fixed bits) is the
    /// same policy as one that lists them at 8: no change, either way round; a searchable
    /// layer at other bits is one.
    #[test]
    fn policy_changes_read_both_policies_against_the_model() {
        let model = crate::model::builtin("small_cnn").unwrap();
        let layers = model.quantizable_layers().unwrap();
        let full: Vec<(&str, u32, u32)> = (layers.iter())
            .map(|l| {
                (
                    l.name.as_str(),
                    if l.fixed { 8 } else { 4 },
                    if l.fixed { 8 } else { 4 },
                )
            })
            .collect();
        let searchable: Vec<(&str, u32, u32)> = (layers.iter())
            .filter(|l| !l.fixed)
            .map(|l| (l.name.as_str(), 4, 4))
            .collect();
        assert!(searchable.len() < full.len());
        let ckpt = |p: &Policy| Checkpoint {
            model: model.clone(),
            seed: 0,
            epoch: 0,
            step: 0,
            meta: vec![(POLICY_META.into(), p.to_ron_string())],
            tensors: vec![],
            origin: None,
        };
        let (full, searchable) = (
            crate::test_support::policy("small_cnn", &full),
            crate::test_support::policy("small_cnn", &searchable),
        );
        assert_eq!(policy_changes(&ckpt(&searchable), &full).unwrap(), vec![]);
        assert_eq!(policy_changes(&ckpt(&full), &searchable).unwrap(), vec![]);
        let mut other = full.clone();
        let first = layers.iter().find(|l| !l.fixed).unwrap();
        other
            .layers
            .iter_mut()
            .find(|l| l.name == first.name)
            .unwrap()
            .weight = 2;
        assert_eq!(
            policy_changes(&ckpt(&searchable), &other).unwrap(),
            vec![BitsChange {
                layer: first.name.clone(),
                was: (4, 4),
                now: (2, 4),
            }]
        );
        assert!(check_finetuned_policy(&ckpt(&searchable), &full).is_ok());
    }

    #[test]
    fn utc_now_is_well_formed() {
        let s = super::utc_now();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.starts_with("20"), "{s}");
        assert_eq!(&s[4..5], "-");
        assert!(s.ends_with('Z'));
    }
}
