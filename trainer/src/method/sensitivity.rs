//! Measured sensitivity: a second source of indicators beside the learned step sizes.
//!
//! For every searchable layer and candidate bit-width `b`, the loss increase on calibration
//! images when that layer's weights alone (then its input activations alone) are quantized
//! at `b` bits, everything else kept at full precision. Written as an indicator file
//! (`weight_scale[k]` = the increase with the weights at `bits[k]`, `act_scale[k]` the same
//! for the activations), so `limpq solve` searches with it unchanged: the objective then sums
//! per-layer loss increases, the additive approximation of the whole policy's loss.
//!
//! How, on the GPU engine, in ONE network (docs/METHOD.md, "Measured sensitivity"):
//! - every searchable layer has the variants `(16, 16)`, `(b, 16)` and `(16, b)` for every
//!   candidate `b`; the fixed layers (stem, classifier) only `(16, 16)`. "Full precision" is
//!   16 bits with steps that clip nothing: weights `max|w| / (2^15 - 1)`, activations
//!   `2·max|x| / Qp` on the first calibration batch (so each element is off by at most half
//!   a step: 1.5e-5 of the largest weight, 3e-5 of the largest input);
//! - the measured quantizer gets its LSQ init step (the method's init rule: weights
//!   `max(|mean ± 3 std|) / 2^(b-1)`, activations `2·mean|x| / sqrt(Qp)` of its input with
//!   every other layer at full precision);
//! - losses are cross-entropy without label smoothing with batch-norm in train mode, so every
//!   BN normalises with the statistics of the quantized network on that very batch: "BN
//!   statistics refreshed", with nothing carried between measurements;
//! - one forward per calibration batch per measurement; switchable BN keeps each variant's
//!   BN set apart, so a selection (one variant per layer) is all a measurement changes.
//!
//! Loss increases are noisy near zero (a 6-bit layer may even lower the loss a little). The
//! indicator file holds them clamped at 0 and made non-increasing in bits (a running maximum
//! from the highest bit-width down), so the solver's monotonicity rule never forbids a
//! bit-width on noise; the raw increases are in the file's meta (`raw.<layer>.weight`,
//! `raw.<layer>.act`).

use std::sync::Arc;
use std::time::Instant;

use limpq_solver::IndicatorSet;

use super::{utc_now, MethodError};
use crate::checkpoint::Checkpoint;
use crate::data::{Batch, Dataset, Loader, LoaderConfig};
use crate::engine::{act_init_scale, Network, NetworkConfig, QuantSpec};
use crate::gpu::Gpu;
use crate::kernels::conv::ConvPolicy;
use crate::model::Model;
use crate::reference::lsq::lsq_init_weight_scale;
use crate::train::{check_checkpoint_model, check_data};

/// The bit-width that stands in for full precision (with steps that clip nothing).
pub const FULL_BITS: u32 = 16;

/// Settings of [`measure_sensitivity`].
#[derive(Clone, Debug, PartialEq)]
pub struct SensitivityConfig {
    /// Candidate bit-widths, ascending (as for joint training).
    pub bits: Vec<u32>,
    /// Images per forward; the calibration set is used in whole batches.
    pub batch: usize,
    /// What `ConvAlgo::Auto` means for the network's convs.
    pub conv: ConvPolicy,
    /// Copied into the indicator file's meta (data, init path, ...).
    pub meta: Vec<(String, String)>,
}

impl Default for SensitivityConfig {
    fn default() -> Self {
        SensitivityConfig {
            bits: vec![2, 3, 4, 5, 6],
            batch: 256,
            conv: ConvPolicy::FromEnv,
            meta: Vec::new(),
        }
    }
}

/// What [`measure_sensitivity`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Sensitivity {
    /// The indicator file (clamped at 0, non-increasing in bits; `meta` says the source).
    pub indicators: IndicatorSet,
    /// Mean loss of the full-precision network on the calibration images.
    pub base_loss: f64,
    /// Per searchable layer: name, raw loss increases with the weights at `bits[k]`, and
    /// with the activations at `bits[k]`.
    pub raw: Vec<(String, Vec<f64>, Vec<f64>)>,
    /// Calibration images used (whole batches).
    pub images: usize,
    /// Forward passes over one batch, init included.
    pub forwards: usize,
    pub seconds: f64,
}

/// Progress: `done` of `total` measurements (one per layer, bit-width and weight/act).
pub type OnProgress<'a> = dyn FnMut(usize, usize) + 'a;

/// Measures every searchable layer's loss increase at every candidate bit-width on the
/// whole batches of `calib`, from the full-precision checkpoint `init` (see the module doc).
pub fn measure_sensitivity(
    gpu: &Gpu,
    model: &Model,
    init: &Checkpoint,
    calib: Arc<Dataset>,
    cfg: &SensitivityConfig,
    on_progress: &mut OnProgress<'_>,
) -> Result<Sensitivity, MethodError> {
    let started = Instant::now();
    super::check_bits(&cfg.bits).map_err(MethodError::Config)?;
    if cfg.bits.contains(&FULL_BITS) {
        return Err(MethodError::Config(format!(
            "bit-width {FULL_BITS} stands in for full precision here; give candidates below it"
        )));
    }
    check_data(model, &calib)?;
    check_checkpoint_model(init, model, &init.describe())?;
    if cfg.batch == 0 {
        return Err(MethodError::Config(
            "the batch size must be at least 1".into(),
        ));
    }
    if calib.len() < cfg.batch {
        return Err(MethodError::Config(format!(
            "{} calibration images cannot fill one batch of {}: give more images or a smaller \
             batch",
            calib.len(),
            cfg.batch
        )));
    }
    let mut loader = Loader::spawn(calib.clone(), LoaderConfig::eval(&calib, cfg.batch))?;
    let batches: Vec<Batch> = loader.by_ref().filter(|b| b.n == cfg.batch).collect();
    if let Some(e) = loader.take_error() {
        return Err(e.into());
    }
    if batches.is_empty() {
        return Err(MethodError::Config(
            "the calibration loader gave no batch".into(),
        ));
    }
    let nb = cfg.bits.len();
    let full = (FULL_BITS, FULL_BITS);
    let layers = model.quantizable_layers()?;
    let spec = QuantSpec {
        layers: layers
            .iter()
            .map(|l| {
                let mut v = vec![full];
                if !l.fixed {
                    v.extend(cfg.bits.iter().map(|&b| (b, FULL_BITS)));
                    v.extend(cfg.bits.iter().map(|&b| (FULL_BITS, b)));
                }
                (l.name.clone(), v)
            })
            .collect(),
    };
    let ncfg = NetworkConfig {
        batch: cfg.batch,
        label_smoothing: 0.0,
        conv: cfg.conv,
        ..NetworkConfig::default()
    };
    let mut net = Network::new_quantized(gpu, model, ncfg, &spec)?;
    net.import_state_lenient(&init.tensors)
        .map_err(|e| MethodError::Config(format!("{}: {e}", init.describe())))?;
    let infos = net.quant_layers();
    let nl = infos.len();

    // Weight steps: full precision clips nothing; the candidates get the LSQ init rule.
    let params = net.read_params()?;
    let pinfo = net.param_infos();
    let mut steps: Vec<(Vec<f32>, Vec<f32>)> = Vec::with_capacity(nl);
    for info in &infos {
        let name = format!("{}.weight", info.name);
        let w = pinfo
            .iter()
            .position(|p| p.name == name)
            .map(|i| &params[i])
            .ok_or_else(|| MethodError::Config(format!("internal: no parameter '{name}'")))?;
        let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        let ws = info
            .variants
            .iter()
            .map(|&(wb, _)| {
                if wb == FULL_BITS {
                    full_weight_step(max)
                } else {
                    lsq_init_weight_scale(w, wb)
                }
            })
            .collect();
        // Activation steps start clipping nothing at any plausible scale; set below.
        steps.push((ws, vec![1.0; info.variants.len()]));
    }
    // Activation steps at full precision, layer by layer in node order: a layer's input
    // depends on the quantizers before it, so each is set from a forward in which every
    // earlier one already has its final step.
    let first = &batches[0];
    let base_sel = vec![0usize; nl];
    let mut forwards = 0;
    for li in 0..nl {
        for (l, (w, a)) in steps.iter().enumerate() {
            net.write_steps(l, w, a)?;
        }
        let inputs = net.quant_layer_inputs(&first.x, &first.y, &base_sel)?;
        forwards += 1;
        let max = inputs[li].iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = full_act_step(max, infos[li].act_signed);
        for (k, &(_, ab)) in infos[li].variants.iter().enumerate() {
            if ab == FULL_BITS {
                steps[li].1[k] = s;
            }
        }
    }
    // The candidates' activation steps from each layer's full-precision input.
    for (l, (w, a)) in steps.iter().enumerate() {
        net.write_steps(l, w, a)?;
    }
    let inputs = net.quant_layer_inputs(&first.x, &first.y, &base_sel)?;
    forwards += 1;
    for (li, info) in infos.iter().enumerate() {
        for (k, &(wb, ab)) in info.variants.iter().enumerate() {
            if wb == FULL_BITS && ab != FULL_BITS {
                steps[li].1[k] = act_init_scale(&inputs[li], ab, info.act_signed);
            }
        }
        net.write_steps(li, &steps[li].0, &steps[li].1)?;
    }

    let mut mean_loss = |net: &mut Network<'_>, sel: &[usize]| -> Result<f64, MethodError> {
        net.set_selection(sel)?;
        let mut sum = 0f64;
        for b in &batches {
            let l = net.train_loss(&b.x, &b.y)?;
            if !l.is_finite() {
                return Err(MethodError::Config(format!(
                    "the calibration loss is {l} with selection {sel:?}"
                )));
            }
            sum += l as f64;
        }
        forwards += batches.len();
        Ok(sum / batches.len() as f64)
    };
    let base_loss = mean_loss(&mut net, &base_sel)?;
    let searchable: Vec<usize> = (0..nl).filter(|&l| infos[l].variants.len() > 1).collect();
    let total = searchable.len() * 2 * nb;
    let mut done = 0;
    on_progress(done, total);
    let mut raw = Vec::with_capacity(searchable.len());
    for &li in &searchable {
        let mut dw = vec![0f64; nb];
        let mut da = vec![0f64; nb];
        for k in 0..nb {
            for (out, variant) in [(&mut dw, 1 + k), (&mut da, 1 + nb + k)] {
                let mut sel = base_sel.clone();
                sel[li] = variant;
                out[k] = mean_loss(&mut net, &sel)? - base_loss;
                done += 1;
                on_progress(done, total);
            }
        }
        raw.push((infos[li].name.clone(), dw, da));
    }

    let mut ind = model.indicator_skeleton(&cfg.bits, &cfg.bits)?;
    for (name, dw, da) in &raw {
        let l = ind
            .layers
            .iter_mut()
            .find(|l| &l.name == name)
            .ok_or_else(|| MethodError::Config(format!("internal: no indicator layer '{name}'")))?;
        l.weight_scale = monotone(dw);
        l.act_scale = monotone(da);
    }
    let images = batches.len() * cfg.batch;
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.6e}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut meta = vec![
        ("source".to_string(), "sensitivity".to_string()),
        ("model".to_string(), model.name.clone()),
        (
            "bits".to_string(),
            cfg.bits
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("calibration_images".to_string(), images.to_string()),
        ("batch".to_string(), cfg.batch.to_string()),
        ("base_loss".to_string(), format!("{base_loss:.6}")),
        ("date".to_string(), utc_now()),
    ];
    meta.extend(cfg.meta.iter().cloned());
    for (name, dw, da) in &raw {
        meta.push((format!("raw.{name}.weight"), list(dw)));
        meta.push((format!("raw.{name}.act"), list(da)));
    }
    ind.meta = meta;
    Ok(Sensitivity {
        indicators: ind,
        base_loss,
        raw,
        images,
        forwards,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A weight step at `FULL_BITS` whose signed range ends exactly at `max`: nothing clipped.
fn full_weight_step(max: f32) -> f32 {
    (max / ((1u32 << (FULL_BITS - 1)) - 1) as f32).max(f32::MIN_POSITIVE)
}

/// An input step at `FULL_BITS` (signed for the model input, else unsigned) whose range
/// reaches twice the largest value of the first calibration batch, as later batches may
/// reach a little further.
fn full_act_step(max: f32, signed: bool) -> f32 {
    let qp = if signed {
        (1u32 << (FULL_BITS - 1)) - 1
    } else {
        (1u32 << FULL_BITS) - 1
    };
    (2.0 * max / qp as f32).max(f32::MIN_POSITIVE)
}

/// Loss increases (bits ascending) as indicator values: clamped at 0, then a running
/// maximum from the highest bit-width down, so fewer bits never look cheaper.
pub fn monotone(raw: &[f64]) -> Vec<f64> {
    let mut out = vec![0f64; raw.len()];
    let mut run = 0f64;
    for k in (0..raw.len()).rev() {
        run = run.max(raw[k].max(0.0));
        out[k] = run;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::monotone;

    #[test]
    fn indicator_values_are_clamped_and_never_fall_with_fewer_bits() {
        // bits 2..6: noise makes 5 bits look harmless and 6 bits look helpful.
        let raw = [0.9, 0.2, 0.01, -0.002, 0.003];
        assert_eq!(monotone(&raw), vec![0.9, 0.2, 0.01, 0.003, 0.003]);
        assert_eq!(monotone(&[-1.0, -2.0]), vec![0.0, 0.0]);
        assert_eq!(monotone(&[]), Vec::<f64>::new());
    }
}
