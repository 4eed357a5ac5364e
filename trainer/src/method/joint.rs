//! Joint indicator training: every optimizer step is ONE submission holding a pass per
//! candidate bit-width, from the highest down (all searchable layers at b, BN set b), as
//! the reference's loop, and then one random-policy pass
//! (each searchable layer at its own uniformly drawn b, drawn on the CPU from a seeded
//! generator; its BN follows), gradients summed, every element clipped to ±clip, SGD with
//! momentum, weight decay on conv/linear weights only, the run's learning-rate schedule
//! (by default the reference's: cosine stepped once per epoch down to 1e-5).

use std::cell::OnceCell;
use std::sync::Arc;

use limpq_solver::IndicatorSet;

use super::epochs::{resume_position, run_epochs, steps_per_epoch, Schedule};
use super::{utc_now, MethodError};
use crate::checkpoint::Checkpoint;
use crate::data::Dataset;
use crate::engine::{LayerSteps, Network, NetworkConfig, QuantSpec};
use crate::gpu::Gpu;
use crate::model::Model;
use crate::rng::SeededRng;
use crate::train::{check_checkpoint_model, check_data, EpochSummary, Event, Position, RunConfig};

/// Settings of a joint run (defaults: the reference recipe, [`RunConfig::quantized`] with
/// every gradient element clipped to ±1).
///
/// `run.resume` continues the run that wrote that checkpoint instead of starting from
/// `init`: the state, the schedule's step, the remaining batches and the random policies
/// still to draw. The bits, the run settings (epochs, batch, lr, momentum, Nesterov, weight
/// decay, label smoothing, clip, seed, steps per epoch) and the model must be the ones it
/// records, else [`MethodError::Config`] names the difference. `run.checkpoint` receives
/// the whole joint state (weights, switchable BN sets, step tensors, momentum); `run.meta`
/// is copied into the indicator file's and the checkpoint's meta.
#[derive(Clone, Debug, PartialEq)]
pub struct JointConfig {
    /// Candidate bit-widths, ascending, distinct (weights and activations alike).
    pub bits: Vec<u32>,
    /// The bits of the fixed layers (first conv, last linear) during the run: `None` (the
    /// default) keeps them in full precision, as the reference's joint training does;
    /// `Some((w, a))` quantizes them at those bits with learned steps. Their indicator
    /// entries say `fixed: Some((8, 8))` either way (the bits they are finetuned and
    /// deployed at).
    pub fixed_bits: Option<(u32, u32)>,
    pub run: RunConfig,
}

impl Default for JointConfig {
    fn default() -> Self {
        JointConfig {
            bits: vec![2, 3, 4, 5, 6],
            fixed_bits: None,
            run: RunConfig {
                clip: Some(1.0),
                ..RunConfig::quantized()
            },
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
    /// Step sizes stored below `STEP_MIN` (SGD can push a small one below zero), written as
    /// `STEP_MIN`, the step the quantizer used (also warned and put in the meta).
    pub clamped: Vec<String>,
    /// How far the searchable layers' step sizes moved from their LSQ init (also in the
    /// meta); `None` for a run resumed from a checkpoint that does not record the init.
    pub drift: Option<StepDrift>,
}

impl JointTrained {
    /// The warning for the step sizes written as `STEP_MIN` ([`JointTrained::clamped`]),
    /// if there are any: what `limpq indicators` prints and the daemon's job log says.
    pub fn clamped_warning(&self) -> Option<String> {
        (!self.clamped.is_empty()).then(|| {
            format!(
                "warning: {} step sizes were stored below the quantizer's least step ({:e}) \
                 and are written as that, the step it used (listed in the file's meta)",
                self.clamped.len(),
                crate::kernels::lsq::STEP_MIN
            )
        })
    }
}

/// How far the learned step sizes of the searchable layers ended from the values the LSQ
/// init rule gave them on the first batch: |learned / init − 1| over every (layer,
/// candidate) pair, median and maximum, weights and activations apart. A median of a few
/// per cent means the indicators are still mostly the init rule (weight spread, activation
/// magnitude) rather than learned importance: the run was short.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepDrift {
    pub weight_median: f64,
    pub weight_max: f64,
    pub act_median: f64,
    pub act_max: f64,
}

impl StepDrift {
    /// Below this median (weights and activations alike) the drift is called small.
    pub const SMALL: f64 = 0.05;

    /// Both medians below [`StepDrift::SMALL`].
    pub fn is_small(&self) -> bool {
        self.weight_median < Self::SMALL && self.act_median < Self::SMALL
    }

    /// The drift between `init` and `learned` (per quantized layer, as
    /// [`Network::read_steps`] gives them) over the layers where `searchable` is set, or
    /// `None` when there is no pair to measure.
    pub fn between(
        init: &[LayerSteps],
        learned: &[LayerSteps],
        searchable: &[bool],
    ) -> Option<StepDrift> {
        let (mut w, mut a) = (Vec::new(), Vec::new());
        for ((i, l), &s) in init.iter().zip(learned).zip(searchable) {
            if !s {
                continue;
            }
            for (out, (iv, lv)) in [(&mut w, (&i.0, &l.0)), (&mut a, (&i.1, &l.1))] {
                for (&x0, &x1) in iv.iter().zip(lv.iter()) {
                    let r = (x1 as f64 / x0 as f64 - 1.0).abs();
                    if x0 > 0.0 && r.is_finite() {
                        out.push(r);
                    }
                }
            }
        }
        let (wm, wx) = median_max(&mut w)?;
        let (am, ax) = median_max(&mut a)?;
        Some(StepDrift {
            weight_median: wm,
            weight_max: wx,
            act_median: am,
            act_max: ax,
        })
    }

    /// The meta entries of an indicator file (fractions).
    pub fn meta(&self) -> Vec<(String, String)> {
        [
            ("step_drift.weight.median", self.weight_median),
            ("step_drift.weight.max", self.weight_max),
            ("step_drift.act.median", self.act_median),
            ("step_drift.act.max", self.act_max),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), format!("{v:.6}")))
        .collect()
    }
}

impl std::fmt::Display for StepDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "weights by {:.2} % (median; max {:.2} %), activations by {:.2} % (max {:.2} %)",
            100.0 * self.weight_median,
            100.0 * self.weight_max,
            100.0 * self.act_median,
            100.0 * self.act_max
        )
    }
}

/// Median (upper of the middle two) and maximum; `None` when empty.
fn median_max(v: &mut [f64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some((v[v.len() / 2], v[v.len() - 1]))
}

/// Checkpoint meta key of the step sizes right after the LSQ init (so that a resumed run
/// still reports its drift from them).
const INIT_STEPS_KEY: &str = "init_steps";

/// Step sizes as text: layers separated by `;`, weight and activation steps by `|`,
/// values by spaces, each in its shortest exact form.
fn format_steps(steps: &[LayerSteps]) -> String {
    let vals = |v: &[f32]| v.iter().map(f32::to_string).collect::<Vec<_>>().join(" ");
    steps
        .iter()
        .map(|(w, a)| format!("{}|{}", vals(w), vals(a)))
        .collect::<Vec<_>>()
        .join(";")
}

/// The inverse of [`format_steps`], for `layers` layers.
fn parse_steps(text: &str, layers: usize) -> Result<Vec<LayerSteps>, String> {
    let vals = |t: &str| -> Result<Vec<f32>, String> {
        t.split_whitespace()
            .map(|x| x.parse::<f32>().map_err(|e| format!("'{x}': {e}")))
            .collect()
    };
    let out = text
        .split(';')
        .map(|l| {
            let (w, a) = l
                .split_once('|')
                .ok_or_else(|| format!("layer entry '{l}' has no '|'"))?;
            Ok((vals(w)?, vals(a)?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    if out.len() != layers {
        return Err(format!(
            "{} layers recorded, the model has {layers}",
            out.len()
        ));
    }
    Ok(out)
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

/// The uniform passes of a joint step, in the reference's order: from the highest
/// candidate bit-width down (its loop over `target_bits = [6, 5, 4, 3, 2]`). Each is a
/// selection (searchable layers at that candidate's variant, the others at their only
/// one) with its name (`"6-bit"`). `bits` ascending, as the variants are.
fn uniform_passes(searchable: &[bool], bits: &[u32]) -> (Vec<Vec<usize>>, Vec<String>) {
    (0..bits.len())
        .rev()
        .map(|k| {
            let sel = searchable.iter().map(|&s| if s { k } else { 0 }).collect();
            (sel, format!("{}-bit", bits[k]))
        })
        .unzip()
}

/// Refuses candidate bit-widths joint training cannot use: at least two, ascending, each
/// once, each in 2..=16 (LSQ needs a sign bit and a step). The error is the sentence; each
/// caller names its field.
pub fn check_bits(bits: &[u32]) -> Result<(), String> {
    if bits.len() < 2 {
        return Err("give at least two candidate bit-widths".into());
    }
    if bits.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("{bits:?} must be ascending, each bit-width once"));
    }
    if let Some(b) = bits.iter().find(|b| !(2..=16).contains(*b)) {
        return Err(format!(
            "{b} bits is outside 2..=16 (LSQ needs a sign bit and a step)"
        ));
    }
    Ok(())
}

/// The library's own check: the one the CLI, the daemon and the pipeline make first
/// ([`check_bits`]), so a library caller is held to the same rule.
fn check_config(cfg: &JointConfig) -> Result<(), MethodError> {
    check_bits(&cfg.bits).map_err(|e| MethodError::Config(format!("candidate bits: {e}")))?;
    cfg.run.check().map_err(MethodError::Config)
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
    check_checkpoint_model(init, model, &init.describe())?;
    let run = &cfg.run;
    let steps = steps_per_epoch(train.len(), run.batch)?;
    let spec = QuantSpec::joint_with(model, &cfg.bits, cfg.fixed_bits)?;
    let ncfg = run.network();
    let mut net = Network::new_quantized(gpu, model, ncfg, &spec)?;
    let init_record = OnceCell::new();
    let pos = match &run.resume {
        None => {
            net.import_state_lenient(&init.tensors)
                .map_err(|e| MethodError::Config(format!("{}: {e}", init.describe())))?;
            Position::start(run.epochs, steps)
        }
        Some(ck) => {
            check_checkpoint_model(ck, model, "the resume checkpoint")?;
            let pos = resume_position(ck, &recorded_settings(cfg), run.seed, steps)?;
            net.import_state(&ck.tensors, true).map_err(|e| {
                MethodError::Config(format!(
                    "the resume checkpoint {} does not hold a joint state of this run: {e}",
                    ck.describe()
                ))
            })?;
            // A stop before the first step saved no init; the run makes it then.
            if let Some(t) = ck.meta(INIT_STEPS_KEY) {
                let steps = parse_steps(t, net.quant_layers().len()).map_err(|e| {
                    MethodError::Config(format!(
                        "the resume checkpoint's meta `{INIT_STEPS_KEY}` is damaged: {e}"
                    ))
                })?;
                let _ = init_record.set(steps);
            }
            pos
        }
    };
    let mut eval_net = Network::new_quantized(
        gpu,
        model,
        NetworkConfig {
            batch: crate::train::eval_batch(run.eval_batch, test.len()),
            ..ncfg
        },
        &spec,
    )?;
    let layers = net.quant_layers();
    let nb = cfg.bits.len();
    let searchable: Vec<bool> = layers.iter().map(|l| l.variants.len() > 1).collect();
    let (uniform, mut pass_names) = uniform_passes(&searchable, &cfg.bits);
    let top = uniform[0].clone();
    pass_names.push("random-policy".into());
    let mut policy_rng = SeededRng::new(run.seed ^ 0x5EED_0F4A_11D0_E5E5);

    let schedule = Schedule {
        stage: "joint training",
        init_steps: vec![true; layers.len()],
        pass_names,
        eval_selection: Some(top),
        init_record: Some(&init_record),
        recalibrate: None,
    };
    let ran = run_epochs(
        &mut net,
        &mut eval_net,
        &train,
        &test,
        run,
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
        &|pos, state| checkpoint(model, cfg, pos, state, init_record.get()),
        on_event,
    )?;
    let history = ran.position.history.clone();
    let steps_now = net.read_steps()?;
    let mut ind = model.indicator_skeleton(&cfg.bits, &cfg.bits)?;
    let mut non_monotone = Vec::new();
    let mut clamped = Vec::new();
    for l in ind.layers.iter_mut() {
        if l.fixed.is_some() {
            continue;
        }
        let Some((w, a)) = layers
            .iter()
            .position(|info| info.name == l.name)
            .map(|i| &steps_now[i])
        else {
            return Err(MethodError::Config(format!(
                "internal: searchable layer '{}' is not quantized",
                l.name
            )));
        };
        let mut lists = [Vec::new(), Vec::new()];
        for ((what, vals), list) in [("weight", w), ("activation", a)]
            .into_iter()
            .zip(&mut lists)
        {
            let steps = effective_steps(&l.name, what, vals, &cfg.bits)?;
            for msg in &steps.clamped {
                tracing::warn!("step size clamped: {msg}");
            }
            for msg in &steps.non_monotone {
                tracing::warn!("non-monotone indicator: {msg}");
            }
            clamped.extend(steps.clamped);
            non_monotone.extend(steps.non_monotone);
            *list = steps.values;
        }
        let [weight_scale, act_scale] = lists;
        l.weight_scale = weight_scale;
        l.act_scale = act_scale;
    }
    let mut meta = vec![
        ("model".to_string(), model.name.clone()),
        ("seed".to_string(), run.seed.to_string()),
        ("epochs".to_string(), run.epochs.to_string()),
        (
            "bits".to_string(),
            cfg.bits
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("batch".to_string(), run.batch.to_string()),
        ("lr".to_string(), run.lr.to_string()),
        ("lr_schedule".to_string(), run.schedule.text()),
        ("fixed_bits".to_string(), fixed_bits_text(cfg.fixed_bits)),
        ("train_images".to_string(), (steps * run.batch).to_string()),
        ("date".to_string(), utc_now()),
    ];
    meta.extend(run.meta.iter().cloned());
    if let Some(acc) = history.last().and_then(|h| h.test_acc) {
        meta.push((
            format!("test_acc_{}bit", cfg.bits[nb - 1]),
            format!("{acc:.6}"),
        ));
    }
    let drift = init_record
        .get()
        .and_then(|i| StepDrift::between(i, &steps_now, &searchable));
    if let Some(d) = &drift {
        meta.extend(d.meta());
    }
    if !clamped.is_empty() {
        meta.push(("clamped_steps".to_string(), clamped.len().to_string()));
        for (i, m) in clamped.iter().enumerate() {
            meta.push((format!("clamped_steps.{i}"), m.clone()));
        }
    }
    meta.push(("non_monotone".to_string(), non_monotone.len().to_string()));
    for (i, m) in non_monotone.iter().enumerate() {
        meta.push((format!("non_monotone.{i}"), m.clone()));
    }
    ind.meta = meta;
    Ok(JointTrained {
        indicators: ind,
        checkpoint: checkpoint(model, cfg, &ran.position, ran.state, init_record.get()),
        history,
        non_monotone,
        clamped,
        drift,
    })
}

/// One quantizer list of a layer as the indicator file records it ([`effective_steps`]).
struct StepList {
    values: Vec<f64>,
    /// A message per value raised to `STEP_MIN`.
    clamped: Vec<String>,
    /// A message per pair of neighbouring bit-widths whose values rise with the bits.
    non_monotone: Vec<String>,
}

/// The step sizes of a layer's quantizers at `bits` as the indicator file records them:
/// the stored (learned) values, as the reference records its step parameters, except
/// that a value below `STEP_MIN` is written as `STEP_MIN`, the step the quantizer used
/// (the kernels clamp a step to `[STEP_MIN, STEP_MAX]` when they quantize,
/// `kernels::lsq`). SGD can push a small step (a weight quantizer at 5 or 6 bits) below
/// zero, and a negative step is not an indicator any file reader takes. A value above
/// `STEP_MAX` is kept: it is frozen there (no gradient outside the range) at the value the
/// init rule gave it, and the reference's step parameter keeps that value too. A
/// non-finite value is an error (the run diverged).
fn effective_steps(
    layer: &str,
    what: &str,
    stored: &[f32],
    bits: &[u32],
) -> Result<StepList, MethodError> {
    use crate::kernels::lsq::STEP_MIN;
    if let Some(v) = stored.iter().find(|v| !v.is_finite()) {
        return Err(MethodError::BadIndicator {
            layer: layer.to_string(),
            message: format!("learned {what} step size is {v}"),
        });
    }
    let mut clamped = Vec::new();
    let values: Vec<f64> = stored
        .iter()
        .zip(bits)
        .map(|(&v, b)| {
            let c = v.max(STEP_MIN);
            if c != v {
                clamped.push(format!(
                    "{layer} {what}: s({b}) = {v:.4e} stored, {c:.4e} used"
                ));
            }
            f64::from(c)
        })
        .collect();
    // Step sizes must fall as bits rise: s at b-1 smaller than s at b is suspect.
    let non_monotone = values
        .windows(2)
        .zip(bits.windows(2))
        .filter(|(pair, _)| pair[0] < pair[1])
        .map(|(pair, b)| {
            format!(
                "{layer} {what}: s({}) = {:.4e} < s({}) = {:.4e}",
                b[0], pair[0], b[1], pair[1]
            )
        })
        .collect();
    Ok(StepList {
        values,
        clamped,
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
        ("fixed_bits", fixed_bits_text(cfg.fixed_bits)),
    ];
    v.extend(cfg.run.recorded());
    v.push(("clip", cfg.run.clip_text()));
    v
}

/// The fixed layers' bits as a checkpoint and an indicator file's meta record them:
/// `full_precision`, or `wWaA`.
fn fixed_bits_text(fixed: Option<(u32, u32)>) -> String {
    fixed.map_or("full_precision".into(), |(w, a)| format!("w{w}a{a}"))
}

/// The joint state at `pos`: the recorded settings first (so the caller's meta cannot
/// shadow them), the step sizes after the init when known, the position, then the caller's
/// meta.
fn checkpoint(
    model: &Model,
    cfg: &JointConfig,
    pos: &Position,
    tensors: Vec<crate::checkpoint::NamedTensor>,
    init_steps: Option<&Vec<LayerSteps>>,
) -> Checkpoint {
    let mut meta: Vec<(String, String)> = recorded_settings(cfg)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    meta.push((super::ACT_SIGNS_META.into(), super::ACT_SIGNS_RULE.into()));
    if let Some(acc) = pos.history.last().and_then(|h| h.test_acc) {
        meta.push(("test_acc".into(), format!("{acc:.6}")));
    }
    if let Some(i) = init_steps {
        meta.push((INIT_STEPS_KEY.into(), format_steps(i)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_below_the_quantizer_range_are_written_as_used() {
        use crate::kernels::lsq::{STEP_MAX, STEP_MIN};
        let bits = [2, 3, 4, 5, 6];
        // A weight list whose 5-bit step SGD pushed below zero (as a ResNet-50 joint run
        // on a GPU did), and a 2-bit step over STEP_MAX (frozen at its init: kept).
        let stored = [1.5f32, 0.3, 0.1, -0.011, 0.02];
        assert!(stored[0] > STEP_MAX);
        let l = effective_steps("layer2.3.conv3", "weight", &stored, &bits).unwrap();
        assert_eq!(
            l.values,
            [
                1.5,
                0.3f32.into(),
                0.1f32.into(),
                f64::from(STEP_MIN),
                0.02f32.into()
            ]
        );
        assert_eq!(l.clamped.len(), 1);
        assert!(
            l.clamped[0].starts_with("layer2.3.conv3 weight: s(5) = -1.1000e-2 stored"),
            "{:?}",
            l.clamped
        );
        // Monotonicity is judged on the values written: 1e-5 < 0.02 at 5 → 6 bits.
        assert_eq!(l.non_monotone.len(), 1);
        assert!(
            l.non_monotone[0].contains("s(5) = 1.0000e-5 < s(6) = 2.0000e-2"),
            "{:?}",
            l.non_monotone
        );
        // Every value is one the solver's reader takes.
        assert!(l.values.iter().all(|v| v.is_finite() && *v > 0.0));
        // In range: written as stored, nothing reported.
        let ok =
            effective_steps("l", "activation", &[0.5, 0.25, 0.125, 0.06, 0.03], &bits).unwrap();
        assert!(ok.clamped.is_empty() && ok.non_monotone.is_empty());
        assert_eq!(ok.values[1], 0.25);
        // A diverged run is an error naming the layer.
        let err = effective_steps("fc", "weight", &[f32::NAN; 5], &bits)
            .err()
            .unwrap();
        assert!(err.to_string().contains("fc"), "{err}");
    }

    #[test]
    fn uniform_passes_run_from_the_highest_bit_width_down() {
        let (sels, names) = uniform_passes(&[false, true, true, false], &[2, 4, 6]);
        assert_eq!(names, ["6-bit", "4-bit", "2-bit"]);
        assert_eq!(
            sels,
            [vec![0, 2, 2, 0], vec![0, 1, 1, 0], vec![0, 0, 0, 0]],
            "variant k is bits[k]; fixed layers at their only variant"
        );
    }

    #[test]
    fn init_steps_round_trip_exactly() {
        let steps: Vec<LayerSteps> = vec![
            (vec![1.0], vec![1.0]),
            (
                vec![0.287_903_04, 1e-5, 0.1],
                vec![0.483_713_7, 3.0e-7, 1.0],
            ),
        ];
        let t = format_steps(&steps);
        assert_eq!(parse_steps(&t, 2).unwrap(), steps);
        assert!(parse_steps(&t, 3)
            .unwrap_err()
            .contains("2 layers recorded"));
        assert!(parse_steps("1 2;3|4", 2).unwrap_err().contains("no '|'"));
        assert!(parse_steps("1 x|2", 1).unwrap_err().contains("'x'"));
    }

    #[test]
    fn drift_is_median_and_max_over_searchable_layers() {
        let init: Vec<LayerSteps> = vec![
            (vec![1.0, 1.0], vec![1.0, 1.0]),
            (vec![1.0, 2.0], vec![4.0, 1.0]),
            (vec![1.0, 1.0], vec![1.0, 1.0]),
        ];
        let learned: Vec<LayerSteps> = vec![
            (vec![9.0, 9.0], vec![9.0, 9.0]),
            (vec![1.1, 1.0], vec![4.0, 1.5]),
            (vec![1.0, 1.3], vec![0.9, 1.0]),
        ];
        // Layer 0 is fixed: its huge change does not count.
        let d = StepDrift::between(&init, &learned, &[false, true, true]).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        // Weights: 0.1, 0.5, 0.0, 0.3 -> sorted 0, 0.1, 0.3, 0.5: median (upper) 0.3, max 0.5.
        assert!(
            close(d.weight_median, 0.3) && close(d.weight_max, 0.5),
            "{d:?}"
        );
        // Activations: 0.0, 0.5, 0.1, 0.0 -> 0, 0, 0.1, 0.5: median 0.1, max 0.5.
        assert!(close(d.act_median, 0.1) && close(d.act_max, 0.5), "{d:?}");
        assert!(!d.is_small());
        let same = StepDrift::between(&init, &init, &[false, true, true]).unwrap();
        assert!(same.is_small() && same.weight_max == 0.0 && same.act_max == 0.0);
        assert_eq!(
            StepDrift::between(&init, &learned, &[true, false, false]).map(|d| d.weight_max),
            Some(8.0)
        );
        assert!(StepDrift::between(&init, &learned, &[false; 3]).is_none());
    }
}
