//! `limpq bench train`: training-step throughput on synthetic data; the harness is
//! `limpq_trainer::bench::train`.
use limpq_trainer::bench::train::{self, Mode, TrainBenchConfig};
use limpq_trainer::bench::{ConvAlgo, ConvPolicy};
use limpq_trainer::gpu::{Gpu, GpuOptions};
use limpq_trainer::model::Model;

/// What one timed step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// The LIMPQ joint step exactly as `limpq indicators` runs it: one train-mode pass per
    /// candidate bit-width plus one random-policy pass, gradients summed, clipped, one SGD
    /// update. The peer's "joint".
    Joint,
    /// One full-precision training step, no quantization.
    Single,
    /// One quantized pass at the lowest candidate bit-width (the peer's "single_bits").
    SingleQuant,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Joint => Mode::Joint,
            ModeArg::Single => Mode::Single,
            ModeArg::SingleQuant => Mode::SingleQuant,
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
    #[arg(long, default_value_t = 64, value_parser = super::num::count)]
    pub batch: usize,
    /// joint: the LIMPQ joint step (a pass per candidate bit-width + one random-policy pass);
    /// single: one full-precision step; single-quant: one quantized pass at the lowest
    /// candidate bit-width (the peer's "single_bits").
    #[arg(long, value_enum, default_value_t = ModeArg::Joint)]
    pub mode: ModeArg,
    /// Timed steps.
    #[arg(long, default_value_t = 20, value_parser = super::num::count)]
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

/// The candidate bits of a quantized mode: ascending, each once, each in the engine's
/// 2..=16; the joint step needs two or more, as `limpq indicators` does.
fn check_candidate_bits(bits: &[u32], joint: bool) -> Result<(), String> {
    if joint {
        return limpq_trainer::method::check_bits(bits);
    }
    if bits.is_empty() {
        return Err("give at least one bit-width".into());
    }
    if bits.windows(2).any(|w| w[0] >= w[1]) {
        return Err("must be ascending, each bit-width once".into());
    }
    match bits.iter().find(|b| !(2..=16).contains(*b)) {
        Some(b) => Err(format!("{b} bits is outside 2..=16")),
        None => Ok(()),
    }
}

fn join(bits: &[u32]) -> String {
    let v: Vec<String> = bits.iter().map(u32::to_string).collect();
    v.join(",")
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // The joint step's candidate bits (single-quant takes the lowest): ascending, each in
    // the engine's range, as `limpq indicators` takes them.
    if args.mode != ModeArg::Single {
        check_candidate_bits(&args.bits, args.mode == ModeArg::Joint)
            .map_err(|e| super::out::usage(format!("--bits {}: {e}", join(&args.bits))))?;
    }
    let model = Model::resolve(&args.model)?;
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let conv = ConvPolicy::or_env(args.conv_algo);
    // Checked here, before any allocation; the network checks it again when built.
    let conv_algo = conv.rule(&gpu)?.auto();
    let cfg = TrainBenchConfig {
        batch: args.batch,
        mode: Mode::from(args.mode),
        steps: args.steps,
        warmup: args.warmup,
        bits: args.bits.clone(),
        seed: args.seed,
        conv,
    };
    let r = train::run(&gpu, &model, &cfg)
        .map_err(|e| super::out::name_flag(format!("--batch {}", args.batch), e))?;
    let text = match args.format {
        Format::Json => r.to_json_line(&gpu.summary, &model, &cfg, conv_algo),
        Format::Text => r.to_text(&gpu.summary, &model, &cfg, conv_algo),
    };
    super::out::print(&text)
}
