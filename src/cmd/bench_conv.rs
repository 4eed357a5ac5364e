//! `limpq bench conv`: the conv kernels on every distinct conv shape of a model, each
//! checked against the CPU first; the harness is `limpq_trainer::bench::conv` (its docs
//! say how shapes are grouped and classed, what a sample is and what the totals sum), its
//! text and JSON lines `limpq_trainer::bench::report`.
use limpq_trainer::bench::conv::{self, ConvBenchConfig, ALL_ALGOS};
use limpq_trainer::bench::ConvAlgo;
use limpq_trainer::gpu::{Gpu, GpuOptions};
use limpq_trainer::model::Model;

/// Which algorithms to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AlgoArg {
    /// Every algorithm below.
    All,
    /// One invocation per output element.
    Direct,
    /// 64×64-tiled implicit GEMM.
    Gemm,
    /// Register-blocked direct kernels (made for software adapters).
    Blocked,
    /// Subgroup-broadcast direct kernels (software adapters with subgroups of 8).
    Broadcast,
    /// Forward only: f16 operands (im2col + f16 / tensor-core GEMM), f32 accumulation.
    F16gemm,
    /// 1×1 stride-1 pad-0 convs only, forward and backward data: one batched GEMM.
    Pointwise,
}

#[derive(clap::Args)]
pub struct Args {
    /// Built-in model (small_cnn, resnet20 = 1×28×28, resnet20-cifar, resnet18 = 3×224×224)
    /// or MODEL.ron.
    #[arg(long)]
    pub model: String,
    /// Images per op (the training batch).
    #[arg(long, default_value_t = 64, value_parser = super::num::count)]
    pub batch: usize,
    /// Algorithms, a comma list (all, direct, gemm, blocked, broadcast, f16gemm, pointwise).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    pub algo: Vec<AlgoArg>,
    /// Timed samples per (shape, op, algorithm); the median is reported.
    #[arg(long, default_value_t = 5, value_parser = super::num::count)]
    pub iters: usize,
    /// Untimed samples first (pipeline compilation, clocks).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Dispatches of the op per submission (per sample).
    #[arg(long, default_value_t = 10, value_parser = super::num::dispatches)]
    pub reps: usize,
    /// Stop sampling one (shape, op, algorithm) once this many milliseconds have passed
    /// (warm-up included) and one timed sample exists, so a very slow kernel cannot eat the
    /// run; the samples taken are reported.
    #[arg(long, default_value_t = 2000.0, value_parser = super::num::non_negative, allow_negative_numbers = true)]
    pub max_ms: f64,
    /// Batch of the correctness check against the CPU reference (capped at --batch).
    #[arg(long, default_value_t = 2, value_parser = super::num::count)]
    pub check_batch: usize,
    /// table: a readable table per shape; json: one JSON line per (shape, op, algorithm),
    /// then one summary line.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// The algorithms `--algo` names, in the bench's order, each once.
fn algos(args: &[AlgoArg]) -> Vec<ConvAlgo> {
    if args.contains(&AlgoArg::All) {
        return ALL_ALGOS.to_vec();
    }
    let mut v: Vec<ConvAlgo> = Vec::new();
    for a in args {
        let c = match a {
            AlgoArg::All | AlgoArg::Direct => ConvAlgo::Direct,
            AlgoArg::Gemm => ConvAlgo::ImplicitGemm,
            AlgoArg::Blocked => ConvAlgo::Blocked,
            AlgoArg::Broadcast => ConvAlgo::Broadcast,
            AlgoArg::F16gemm => ConvAlgo::F16Gemm,
            AlgoArg::Pointwise => ConvAlgo::Pointwise,
        };
        if !v.contains(&c) {
            v.push(c);
        }
    }
    v
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let model = Model::resolve(&args.model)?;
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let cfg = ConvBenchConfig {
        batch: args.batch,
        algos: algos(&args.algo),
        iters: args.iters,
        warmup: args.warmup,
        reps: args.reps,
        max_ms: args.max_ms,
        check_batch: args.check_batch,
    };
    let r = conv::run(&gpu, &model, &cfg)
        .map_err(|e| super::out::name_flag(format!("--batch {}", args.batch), e))?;
    let text = match args.format {
        Format::Table => r.to_text(&gpu.summary, &model, &cfg),
        Format::Json => r.to_json_lines(&gpu.summary, &model, &cfg),
    };
    super::out::print(&text)?;
    let failed = r.failures();
    if !failed.is_empty() {
        anyhow::bail!("{} conv run(s) failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}
