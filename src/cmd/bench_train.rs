//! `limpq bench train`: training-step throughput on synthetic data (seeded normal images of
//! the model's input shape, seeded random labels), the same batch every step, as the PyTorch
//! peer (`torch_lsq_joint.py`) does. The network is built once; `--warmup` untimed steps,
//! then `--steps` timed ones. Every step is one submission whose loss is read back, so each
//! timed step includes the wait for the GPU to finish it (and the upload of the batch, which
//! every real training step pays too).
use std::time::{Duration, Instant};

use limpq_trainer::engine::{Network, NetworkConfig, QuantSpec};
use limpq_trainer::gpu::{Gpu, GpuOptions};
use limpq_trainer::kernels::conv::ConvAlgo;
use limpq_trainer::kernels::{Recorder, Tensor};
use limpq_trainer::method::JointConfig;
use limpq_trainer::model::Model;
use limpq_trainer::pipeline::report::median;
use limpq_trainer::reference::rng::SeededRng;

/// What one timed step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
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
    fn peer_label(self) -> &'static str {
        match self {
            Mode::Joint => "joint",
            Mode::Single => "single_fp",
            Mode::SingleQuant => "single_bits",
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Built-in model (small_cnn, resnet20 = 1×28×28, resnet20-cifar, resnet18 = 3×224×224)
    /// or MODEL.ron.
    #[arg(long)]
    pub model: String,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// joint: the LIMPQ joint step (a pass per candidate bit-width + one random-policy pass);
    /// single: one full-precision step; single-quant: one quantized pass at the lowest
    /// candidate bit-width (the peer's "single_bits").
    #[arg(long, value_enum, default_value_t = Mode::Joint)]
    pub mode: Mode,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first (pipeline compilation, allocation, clocks).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Candidate bit-widths (joint and single-quant), ascending.
    #[arg(long, value_delimiter = ',', default_value = "2,3,4,5,6")]
    pub bits: Vec<u32>,
    /// Seed of the weights, the synthetic batch and the random policies.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// text: a readable summary; json: one JSON line (keys as the peer's).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Force one conv algorithm on every conv of the network: auto (the built-in per-shape
    /// rule), direct, gemm (implicit GEMM), blocked, broadcast (CPU adapters with subgroups
    /// of 8), or f16gemm (f16 operands for every
    /// forward conv that supports them, auto for the rest). Default: LIMPQ_CONV_ALGO, else
    /// auto.
    #[arg(long, value_name = "ALGO", value_parser = parse_conv_algo)]
    pub conv_algo: Option<ConvAlgo>,
}

/// `--conv-algo` values (clap names the flag in its error).
pub fn parse_conv_algo(s: &str) -> Result<ConvAlgo, String> {
    s.parse()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Refuses, before anything is allocated, a tensor of `elements` f32 that this adapter could
/// not hold (the same test as [`Tensor`]'s allocation; such a tensor would first be built in
/// host memory, where a huge one aborts the process instead of failing cleanly).
pub fn check_fits(gpu: &Gpu, what: &str, elements: usize) -> anyhow::Result<()> {
    if !Tensor::fits(gpu, elements) {
        anyhow::bail!(
            "{what} needs {} bytes, more than this adapter's largest storage buffer \
             ({} bytes, {}); use a smaller size or batch",
            Tensor::padded_bytes(elements),
            gpu.limits.max_storage_buffer_binding_size,
            gpu.summary.name
        );
    }
    Ok(())
}

/// Wall time of one recorded submission, from submit to device idle (the device is idled
/// first, so earlier work is not counted).
pub fn time_submission(gpu: &Gpu, rec: Recorder<'_>) -> anyhow::Result<Duration> {
    gpu.wait()?;
    let t = Instant::now();
    rec.submit()?;
    gpu.wait()?;
    Ok(t.elapsed())
}

/// Median of timed samples (mean of the middle two for an even count); zero for none.
pub fn median_duration(v: &[Duration]) -> Duration {
    let secs: Vec<f64> = v.iter().map(Duration::as_secs_f64).collect();
    let m = median(&secs);
    if m.is_finite() {
        Duration::from_secs_f64(m)
    } else {
        Duration::ZERO
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let model = Model::resolve(&args.model)?;
    if args.batch == 0 {
        anyhow::bail!("--batch must be positive");
    }
    if args.steps == 0 {
        anyhow::bail!("--steps must be positive");
    }
    let mut opts = GpuOptions::from_env();
    if let Some(a) = args.conv_algo {
        opts = opts.with_conv_algo(a);
    }
    let gpu = Gpu::new(&opts)?;
    let (c, h, w) = model.input;
    let per_image = c * h * w;
    check_fits(
        &gpu,
        &format!("--batch {}: the input batch", args.batch),
        args.batch.saturating_mul(per_image),
    )?;
    let mut rng = SeededRng::new(args.seed ^ 0xBE4C_0DA7_A000_0001);
    let x: Vec<f32> = (0..args.batch * c * h * w).map(|_| rng.normal()).collect();
    let y: Vec<u32> = (0..args.batch)
        .map(|_| rng.below(model.classes) as u32)
        .collect();

    let joint = JointConfig::default();
    let lr = joint.run.lr;
    let plain = NetworkConfig {
        batch: args.batch,
        seed: args.seed,
        label_smoothing: 0.0,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
        grad_clip: None,
    };
    let build_start = Instant::now();
    let (mut net, sels): (Network, Vec<Vec<usize>>) = match args.mode {
        Mode::Single => (Network::new(&gpu, &model, plain)?, Vec::new()),
        Mode::Joint | Mode::SingleQuant => {
            let spec = QuantSpec::joint(&model, &args.bits)?;
            let cfg = if args.mode == Mode::Joint {
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
            let mut net = Network::new_quantized(&gpu, &model, cfg, &spec)?;
            let layers = net.quant_layers();
            // LSQ step-size init on the batch (as joint training does on its first batch),
            // so the quantizers see realistic step sizes; untimed.
            net.init_steps(&x, &y, &vec![true; layers.len()])?;
            let searchable: Vec<bool> = layers.iter().map(|l| l.variants.len() > 1).collect();
            let nb = args.bits.len();
            let uniform: Vec<Vec<usize>> = (0..nb)
                .map(|k| searchable.iter().map(|&s| if s { k } else { 0 }).collect())
                .collect();
            let sels = if args.mode == Mode::Joint {
                uniform
            } else {
                vec![uniform[0].clone()]
            };
            (net, sels)
        }
    };
    let build_secs = build_start.elapsed().as_secs_f64();

    // The random-policy pass of the joint step draws a fresh policy every step, as
    // joint_train does (searchable layers only).
    let searchable: Vec<bool> = net
        .quant_layers()
        .iter()
        .map(|l| l.variants.len() > 1)
        .collect();
    let nb = args.bits.len();
    let mut policy_rng = SeededRng::new(args.seed ^ 0x5EED_0F4A_11D0_E5E5);
    let mut step = |net: &mut Network| -> anyhow::Result<f32> {
        let loss = match args.mode {
            Mode::Single => net.train_step(&x, &y, lr)?.loss,
            Mode::SingleQuant => net.train_passes(&x, &y, lr, &sels)?[0].loss,
            Mode::Joint => {
                let mut all = sels.clone();
                all.push(
                    searchable
                        .iter()
                        .map(|&s| if s { policy_rng.below(nb) } else { 0 })
                        .collect(),
                );
                let stats = net.train_passes(&x, &y, lr, &all)?;
                stats.iter().map(|s| s.loss).sum::<f32>() / stats.len() as f32
            }
        };
        Ok(loss)
    };
    let passes = match args.mode {
        Mode::Joint => nb + 1,
        _ => 1,
    };

    let warm_start = Instant::now();
    for _ in 0..args.warmup {
        step(&mut net)?;
    }
    let warm_secs = warm_start.elapsed().as_secs_f64();
    let mut times = Vec::with_capacity(args.steps);
    let mut last_loss = f32::NAN;
    for _ in 0..args.steps {
        let t = Instant::now();
        last_loss = step(&mut net)?;
        times.push(t.elapsed().as_secs_f64());
    }
    if !last_loss.is_finite() {
        anyhow::bail!("the loss is {last_loss} after {} steps", args.steps);
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let median = median(&times);
    let ips = args.batch as f64 / mean;
    let s = &gpu.summary;
    match args.format {
        Format::Json => {
            let v = serde_json::json!({
                "tool": "limpq",
                "model": model.name,
                "batch": args.batch,
                "mode": args.mode.peer_label(),
                "device": s.name,
                "backend": s.backend,
                "device_type": s.device_type,
                "passes": passes,
                "conv_algo": gpu.conv_algo.name(),
                "steps": args.steps,
                "warmup": args.warmup,
                "step_ms": mean * 1e3,
                "step_ms_median": median * 1e3,
                "images_per_s": ips,
                "build_s": build_secs,
                "warmup_s": warm_secs,
                "loss": last_loss,
                args.mode.peer_label(): { "step_ms": mean * 1e3, "images_per_s": ips },
            });
            println!("{v}");
        }
        Format::Text => {
            println!(
                "adapter:      {} ({}, {})",
                s.name, s.backend, s.device_type
            );
            println!(
                "model:        {} ({c}×{h}×{w}, {} classes)",
                model.name, model.classes
            );
            println!("batch:        {}", args.batch);
            println!(
                "conv algo:    {}",
                if gpu.conv_algo == ConvAlgo::Auto {
                    "auto (built-in per-shape rule)"
                } else {
                    gpu.conv_algo.name()
                }
            );
            println!(
                "mode:         {} ({passes} pass{} per step)",
                args.mode.peer_label(),
                if passes == 1 { "" } else { "es" }
            );
            println!(
                "steps:        {} timed after {} warmup ({warm_secs:.2} s); build {build_secs:.2} s",
                args.steps, args.warmup
            );
            println!(
                "ms per step:  median {:.3}, mean {:.3}",
                median * 1e3,
                mean * 1e3
            );
            println!("images/s:     {ips:.1} (batch / mean step)");
            println!("final loss:   {last_loss:.4}");
        }
    }
    Ok(())
}

/// `limpq bench ...`
#[derive(clap::Subcommand)]
pub enum Bench {
    /// Training-step throughput (ms per step, images/s) on synthetic data: the LIMPQ joint
    /// step, one full-precision step or one quantized pass.
    Train(Args),
    /// GEMM TFLOP/s: the f32 kernel, the f16-operand kernel and (where the adapter has
    /// cooperative matrices) the tensor-core kernel, each checked against the CPU first.
    Gemm(super::bench_gemm::Args),
    /// Conv kernels per distinct conv shape of a model: forward, backward data and backward
    /// weight under every algorithm, each checked against the CPU first; the fastest per op,
    /// what Auto picks, and the summed conv time per training step.
    Conv(super::bench_conv::Args),
}

pub fn dispatch(b: Bench) -> anyhow::Result<()> {
    match b {
        Bench::Train(a) => run(a),
        Bench::Gemm(a) => super::bench_gemm::run(a),
        Bench::Conv(a) => super::bench_conv::run(a),
    }
}
