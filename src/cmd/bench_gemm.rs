//! `limpq bench gemm`: TFLOP/s of the GEMM kernels at one shape, each checked against the
//! CPU first; the harness is `limpq_trainer::bench::gemm` (its docs say what a sample is).
use limpq_trainer::bench::gemm::{self, GemmBenchConfig, Which};
use limpq_trainer::bench::report;
use limpq_trainer::bench::{BenchError, HalfKind};
use limpq_trainer::gpu::{Gpu, GpuOptions};

/// Which kernels to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// The f32 tiled GEMM (the default path everywhere).
    F32,
    /// f16 operands in storage, f32 multiply-adds (needs SHADER_F16).
    F16,
    /// Tensor cores through cooperative matrices (needs EXPERIMENTAL_COOPERATIVE_MATRIX).
    Coop,
    /// The tensor-core kernel with its K loop software-pipelined (loads one step ahead).
    CoopPrefetch,
    /// The tensor-core kernel with 4 subgroups per workgroup (needs subgroups of 32).
    CoopWg4,
    /// The 4-subgroup tensor-core kernel with the software-pipelined K loop.
    CoopWg4Prefetch,
    /// Every kind the adapter can run; the others are listed as skipped with the reason.
    All,
}

#[derive(clap::Args)]
pub struct Args {
    /// Square shape m = n = k (overridden per dimension by --m / --n / --k).
    #[arg(long, default_value_t = 1024, value_parser = super::num::count)]
    pub size: usize,
    /// Rows of A and C.
    #[arg(long, value_parser = super::num::count)]
    pub m: Option<usize>,
    /// Columns of B and C.
    #[arg(long, value_parser = super::num::count)]
    pub n: Option<usize>,
    /// Columns of A, rows of B.
    #[arg(long, value_parser = super::num::count)]
    pub k: Option<usize>,
    /// Which GEMMs to time (each is checked on the CPU first).
    #[arg(long, value_enum, default_value_t = Kind::All)]
    pub kind: Kind,
    /// Timed samples; the median is reported.
    #[arg(long, default_value_t = 10, value_parser = super::num::count)]
    pub iters: usize,
    /// Untimed samples first (pipeline compilation, clocks).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// GEMM dispatches per submission (per sample).
    #[arg(long, default_value_t = 10, value_parser = super::num::dispatches)]
    pub reps: usize,
    /// Shape of the correctness check against the CPU reference (m = n = k would be slow on
    /// the CPU; the default is uneven on purpose: edge tiles and padding).
    #[arg(long, default_value = "200,176,144")]
    pub check: String,
    /// text: a readable table; json: one JSON line per kind.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

fn parse_check(s: &str) -> anyhow::Result<(usize, usize, usize)> {
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| super::out::usage(format!("--check {s:?}: {e} (want M,K,N)")))?;
    match v[..] {
        [m, k, n] if m > 0 && k > 0 && n > 0 => Ok((m, k, n)),
        _ => Err(super::out::usage(format!(
            "--check {s:?}: want three positive numbers M,K,N"
        ))),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let m = args.m.unwrap_or(args.size);
    let n = args.n.unwrap_or(args.size);
    let k = args.k.unwrap_or(args.size);
    let check_shape = parse_check(&args.check)?;
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let kinds: Vec<Which> = match args.kind {
        Kind::F32 => vec![Which::F32],
        Kind::F16 => vec![Which::Half(HalfKind::F16)],
        Kind::Coop => vec![Which::Half(HalfKind::Coop)],
        Kind::CoopPrefetch => vec![Which::Half(HalfKind::CoopPrefetch)],
        Kind::CoopWg4 => vec![Which::Half(HalfKind::CoopWg4)],
        Kind::CoopWg4Prefetch => vec![Which::Half(HalfKind::CoopWg4Prefetch)],
        Kind::All => Which::ALL.to_vec(),
    };
    if args.kind != Kind::All {
        if let Some(why) = kinds[0].missing(&gpu) {
            anyhow::bail!("--kind {}: {why}", kinds[0].name());
        }
    }
    let cfg = GemmBenchConfig {
        shape: (m, k, n),
        check: check_shape,
        kinds,
        iters: args.iters,
        warmup: args.warmup,
        reps: args.reps,
    };
    let rows = gemm::run(&gpu, &cfg).map_err(|e| {
        let (cm, ck, cn) = check_shape;
        let flag = match &e {
            BenchError::DoesNotFit { what, .. } if what.contains("of the check") => {
                format!("--check {cm},{ck},{cn}")
            }
            _ => format!("--m/--k/--n {m}×{k}×{n}"),
        };
        super::out::name_flag(flag, e)
    })?;
    let text = match args.format {
        Format::Text => report::gemm_text(&gpu, &cfg, &rows),
        Format::Json => report::gemm_json_lines(&gpu.summary, &cfg, &rows),
    };
    super::out::print(&text)?;
    // A kind that failed (check out of tolerance, shader refused by the driver) is
    // reported with the others; the command fails at the end.
    let failed = report::gemm_failures(&rows);
    if !failed.is_empty() {
        anyhow::bail!("{} kind(s) failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}
