//! Training-step throughput on synthetic data (seeded normal images of the model's input
//! shape, seeded random labels), the same batch every step, as the PyTorch peer
//! (`torch_lsq_joint.py`) does. The network is built once; `warmup` untimed steps, then
//! `steps` timed ones. Every step is one submission whose loss is read back, so each timed
//! step includes the wait for the GPU to finish it (and the upload of the batch, which
//! every real training step pays too).
use std::time::Instant;

use super::{check_fits, BenchError};
use crate::engine::{Network, NetworkConfig, QuantSpec};
use crate::gpu::Gpu;
use crate::kernels::conv::ConvPolicy;
use crate::method::JointConfig;
use crate::model::{Model, FIXED_BITS};
use crate::pipeline::report::median;
use crate::reference::rng::SeededRng;

/// What one timed step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The LIMPQ joint step exactly as `limpq indicators` runs it: on a network with every
    /// searchable conv/linear fake-quantized at each candidate bit-width (switchable BN), one
    /// train-mode pass per candidate bit-width plus one random-policy pass, each with its
    /// backward, gradients summed, clipped to ±1, one SGD update (Nesterov momentum 0.9,
    /// label smoothing 0.1). The peer's "joint".
    Joint,
    /// One full-precision training step: forward, loss, backward, SGD (momentum 0.9), no
    /// quantization. Our baseline for the cost of a plain pass.
    Single,
    /// One quantized pass: the joint network with every searchable layer at the lowest
    /// candidate bit-width, forward, loss, backward, SGD (momentum 0.9, no clip, no
    /// smoothing). Like for like with the peer's "single_bits".
    SingleQuant,
}

impl Mode {
    /// The peer's name for the same measurement (its JSON key).
    pub fn peer_label(self) -> &'static str {
        match self {
            Mode::Joint => "joint",
            Mode::Single => "single_fp",
            Mode::SingleQuant => "single_bits",
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct TrainBenchConfig {
    pub batch: usize,
    pub mode: Mode,
    pub steps: usize,
    pub warmup: usize,
    /// Candidate bit-widths (joint and single-quant), ascending.
    pub bits: Vec<u32>,
    /// Seed of the weights, the synthetic batch and the random policies.
    pub seed: u64,
    /// What `ConvAlgo::Auto` means for the network's convs (`--conv-algo`, else
    /// `LIMPQ_CONV_ALGO`).
    pub conv: ConvPolicy,
}

/// The figures of one run.
#[derive(Clone, Debug)]
pub struct TrainBenchResult {
    /// Passes (forward + backward) per step.
    pub passes: usize,
    /// Seconds to build the network.
    pub build_s: f64,
    /// Seconds of the warm-up steps together.
    pub warmup_s: f64,
    /// Seconds of every timed step, in order.
    pub step_s: Vec<f64>,
    /// The loss of the last step.
    pub loss: f32,
    /// The bits the fixed layers (stem, classifier) ran at; `None`: full precision.
    pub fixed_bits: Option<(u32, u32)>,
}

impl TrainBenchResult {
    pub fn mean_s(&self) -> f64 {
        self.step_s.iter().sum::<f64>() / self.step_s.len().max(1) as f64
    }

    pub fn median_s(&self) -> f64 {
        median(&self.step_s)
    }

    /// Images per second: batch / mean step time, as the peer computes it.
    pub fn images_per_s(&self, batch: usize) -> f64 {
        batch as f64 / self.mean_s()
    }
}

/// Builds the network of `model` for `cfg.mode` on `gpu` and times its steps.
pub fn run(
    gpu: &Gpu,
    model: &Model,
    cfg: &TrainBenchConfig,
) -> Result<TrainBenchResult, BenchError> {
    if cfg.batch == 0 {
        return Err(BenchError::Config("batch must be positive".into()));
    }
    if cfg.steps == 0 {
        return Err(BenchError::Config("steps must be positive".into()));
    }
    let (c, h, w) = model.input;
    let per_image = c * h * w;
    check_fits(gpu, "the input batch", cfg.batch.saturating_mul(per_image))?;
    let mut rng = SeededRng::new(cfg.seed ^ 0xBE4C_0DA7_A000_0001);
    let x: Vec<f32> = (0..cfg.batch * per_image).map(|_| rng.normal()).collect();
    let y: Vec<u32> = (0..cfg.batch)
        .map(|_| rng.below(model.classes) as u32)
        .collect();

    let joint = JointConfig::default();
    let lr = joint.run.lr;
    let plain = NetworkConfig {
        batch: cfg.batch,
        seed: cfg.seed,
        label_smoothing: 0.0,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
        grad_clip: None,
        conv: cfg.conv,
        ranks: 1,
    };
    // The fixed layers as the step timed runs them: in the joint step as `limpq
    // indicators` trains them (the recipe's `fixed_bits`, full precision by default); in
    // the single quantized pass at 8 bits, as finetuning and deployment run them.
    let fixed_bits = match cfg.mode {
        Mode::Single => None,
        Mode::Joint => joint.fixed_bits,
        Mode::SingleQuant => Some(FIXED_BITS),
    };
    let build_start = Instant::now();
    let (mut net, sels): (Network, Vec<Vec<usize>>) = match cfg.mode {
        Mode::Single => (Network::new(gpu, model, plain)?, Vec::new()),
        Mode::Joint | Mode::SingleQuant => {
            let spec = QuantSpec::joint_with(model, &cfg.bits, fixed_bits)?;
            let net_cfg = if cfg.mode == Mode::Joint {
                NetworkConfig {
                    label_smoothing: joint.run.label_smoothing,
                    momentum: joint.run.momentum,
                    nesterov: joint.run.nesterov,
                    weight_decay: joint.run.weight_decay,
                    grad_clip: joint.run.clip,
                    ..plain
                }
            } else {
                plain
            };
            let mut net = Network::new_quantized(gpu, model, net_cfg, &spec)?;
            let layers = net.quant_layers();
            // LSQ step-size init on the batch (as joint training does on its first batch),
            // so the quantizers see realistic step sizes; untimed.
            net.init_steps(&x, &y, &vec![true; layers.len()])?;
            let searchable: Vec<bool> = layers.iter().map(|l| l.variants.len() > 1).collect();
            let nb = cfg.bits.len();
            let uniform: Vec<Vec<usize>> = (0..nb)
                .map(|k| searchable.iter().map(|&s| if s { k } else { 0 }).collect())
                .collect();
            let sels = if cfg.mode == Mode::Joint {
                uniform
            } else {
                uniform.into_iter().take(1).collect()
            };
            (net, sels)
        }
    };
    let build_s = build_start.elapsed().as_secs_f64();

    // The random-policy pass of the joint step draws a fresh policy every step, as
    // joint_train does (searchable layers only).
    let searchable: Vec<bool> = net
        .quant_layers()
        .iter()
        .map(|l| l.variants.len() > 1)
        .collect();
    let nb = cfg.bits.len();
    let mut policy_rng = SeededRng::new(cfg.seed ^ 0x5EED_0F4A_11D0_E5E5);
    let mut step = |net: &mut Network| -> Result<f32, BenchError> {
        let loss = match cfg.mode {
            Mode::Single => net.train_step(&x, &y, lr)?.loss,
            Mode::SingleQuant => {
                let stats = net.train_passes(&x, &y, lr, &sels)?;
                stats.first().map_or(f32::NAN, |s| s.loss)
            }
            Mode::Joint => {
                let mut all = sels.clone();
                all.push(
                    searchable
                        .iter()
                        .map(|&s| if s { policy_rng.below(nb) } else { 0 })
                        .collect(),
                );
                let stats = net.train_passes(&x, &y, lr, &all)?;
                stats.iter().map(|s| s.loss).sum::<f32>() / stats.len().max(1) as f32
            }
        };
        Ok(loss)
    };
    let passes = match cfg.mode {
        Mode::Joint => nb + 1,
        _ => 1,
    };

    let warm_start = Instant::now();
    for _ in 0..cfg.warmup {
        step(&mut net)?;
    }
    let warmup_s = warm_start.elapsed().as_secs_f64();
    let mut step_s = Vec::with_capacity(cfg.steps);
    let mut loss = f32::NAN;
    for _ in 0..cfg.steps {
        let t = Instant::now();
        loss = step(&mut net)?;
        step_s.push(t.elapsed().as_secs_f64());
    }
    if !loss.is_finite() {
        return Err(BenchError::Failed(format!(
            "the loss is {loss} after {} steps",
            cfg.steps
        )));
    }
    Ok(TrainBenchResult {
        passes,
        build_s,
        warmup_s,
        step_s,
        loss,
        fixed_bits,
    })
}
