//! `limpq bench gemm`: TFLOP/s of our GEMM kernels at one shape: the f32 kernel
//! (`gemm.wgsl`), the f16-operand kernel (`gemm_f16.wgsl`: f16 storage, f32 arithmetic) and,
//! where the adapter has cooperative matrices, the tensor-core kernel (`gemm_coop.wgsl`:
//! 16×16×16 f16·f16→f32).
//!
//! First every kind is checked against a CPU reference (f64 accumulation; operands rounded
//! to f16 for the f16 kinds) on a smaller uneven shape, and the f16 kinds' error against the
//! unrounded f32 product is reported (the accuracy cost of f16 operands). Then each kind is
//! timed at the requested shape on seeded U(-1,1) data: `--warmup` untimed samples, then
//! `--iters` timed ones; a sample is ONE submission of `--reps` back-to-back dispatches of the
//! product (C = A·B, beta = 0), timed from submit to the device going idle, divided by
//! `--reps` (several dispatches per submission hide the ~33 µs submission cost of the H200;
//! `--reps 1` includes it). The f16 kinds' operands are packed once before timing (f32 →
//! f16, padded to multiples of 16); the pack of A and B is timed separately, one submission
//! per sample. TFLOP/s = 2·m·n·k / (median seconds per product).
use std::time::Duration;

use super::bench_train::{check_fits, median_duration, time_submission};
use limpq_trainer::gpu::{Gpu, GpuOptions};
use limpq_trainer::kernels::gemm::{Gemm, GemmShape};
use limpq_trainer::kernels::gemm_f16::{round_f16, GemmF16, HalfKind};
use limpq_trainer::kernels::{Recorder, Tensor};
use limpq_trainer::reference::rng::SeededRng;

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
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Rows of A and C.
    #[arg(long)]
    pub m: Option<usize>,
    /// Columns of B and C.
    #[arg(long)]
    pub n: Option<usize>,
    /// Columns of A, rows of B.
    #[arg(long)]
    pub k: Option<usize>,
    /// Which GEMMs to time (each is checked on the CPU first).
    #[arg(long, value_enum, default_value_t = Kind::All)]
    pub kind: Kind,
    /// Timed samples; the median is reported.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Untimed samples first (pipeline compilation, clocks).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// GEMM dispatches per submission (per sample).
    #[arg(long, default_value_t = 10)]
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

/// One of the three kernels, as the bench runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    F32,
    Half(HalfKind),
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::F32 => "f32",
            Which::Half(k) => k.name(),
        }
    }
}

/// A built GEMM of either precision.
enum Built {
    F32(Gemm),
    Half(Box<GemmF16>),
}

impl Built {
    fn new(
        gpu: &Gpu,
        which: Which,
        s: GemmShape,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
    ) -> anyhow::Result<Built> {
        Ok(match which {
            Which::F32 => Built::F32(Gemm::new(gpu, s, a, b, c)?),
            Which::Half(k) => Built::Half(Box::new(GemmF16::new(gpu, s, a, b, c, k)?)),
        })
    }

    fn record_pack<'a>(&'a self, rec: &mut Recorder<'a>) {
        if let Built::Half(g) = self {
            g.record_pack(rec);
        }
    }

    fn record_product<'a>(&'a self, rec: &mut Recorder<'a>) {
        match self {
            Built::F32(g) => g.record(rec),
            Built::Half(g) => g.record_product(rec),
        }
    }
}

/// `C = A·B` in f64 (row-major), operands rounded to f16 first when `half`.
fn reference(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], half: bool) -> Vec<f64> {
    let r = |x: f32| f64::from(if half { round_f16(x) } else { x });
    let bt: Vec<f64> = (0..n * k).map(|i| r(b[(i % k) * n + i / k])).collect();
    let ar: Vec<f64> = a.iter().map(|&x| r(x)).collect();
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = ar[i * k..(i + 1) * k]
                .iter()
                .zip(&bt[j * k..(j + 1) * k])
                .map(|(x, y)| x * y)
                .sum();
        }
    }
    c
}

/// Relative Frobenius error ‖got − want‖ / ‖want‖ and the worst absolute error.
fn errors(got: &[f32], want: &[f64]) -> (f64, f64) {
    let (mut num, mut den, mut worst) = (0.0f64, 0.0f64, 0.0f64);
    for (&g, &w) in got.iter().zip(want) {
        let d = f64::from(g) - w;
        num += d * d;
        den += w * w;
        worst = worst.max(d.abs());
    }
    ((num / den.max(f64::MIN_POSITIVE)).sqrt(), worst)
}

struct CheckResult {
    /// Worst |GPU − reference on the kernel's own operands|.
    worst: f64,
    tol: f64,
    /// Relative Frobenius error against the f32-operand product.
    rel_vs_f32: f64,
}

/// Run `which` on the check shape and compare with the CPU; an error if out of tolerance.
fn check(gpu: &Gpu, which: Which, (m, k, n): (usize, usize, usize)) -> anyhow::Result<CheckResult> {
    let mut rng = SeededRng::new(0xC4EC_0000 ^ (m * 7919 + k * 31 + n) as u64);
    let a = rng.vec_uniform(m * k, -1.0, 1.0);
    let b = rng.vec_uniform(k * n, -1.0, 1.0);
    let ta = Tensor::from_f32(gpu, &a, "check a")?;
    let tb = Tensor::from_f32(gpu, &b, "check b")?;
    let tc = Tensor::from_f32(gpu, &vec![f32::NAN; m * n], "check c")?;
    let g = Built::new(gpu, which, GemmShape::new(m, k, n), &ta, &tb, &tc)?;
    let mut rec = Recorder::new(gpu);
    g.record_pack(&mut rec);
    g.record_product(&mut rec);
    let i = rec.read(&tc);
    let out = rec.submit()?;
    let got = out.f32(i);
    let half = which != Which::F32;
    let own = reference(m, k, n, &a, &b, half);
    let exact = if half {
        reference(m, k, n, &a, &b, false)
    } else {
        own.clone()
    };
    // The kernel tests' tolerance: f32 summation of k exact products, ~50× its expectation.
    let tol = 1e-5 * (k as f64 + 1.0);
    let mut worst = 0.0f64;
    for (idx, (&gv, &w)) in got.iter().zip(&own).enumerate() {
        let e = (f64::from(gv) - w).abs();
        if e.is_nan() || e > tol + 1e-5 * w.abs() {
            anyhow::bail!(
                "gemm {} {m}x{k}x{n} disagrees with the CPU reference at ({}, {}): got {gv}, \
                 want {w} (tolerance {tol:.1e})",
                which.name(),
                idx / n,
                idx % n
            );
        }
        worst = worst.max(e);
    }
    let (rel_vs_f32, _) = errors(got, &exact);
    Ok(CheckResult {
        worst,
        tol,
        rel_vs_f32,
    })
}

struct Timing {
    per_gemm: Duration,
    best: Duration,
    pack: Option<Duration>,
}

/// Time `which` at `m×k×n` as the module docs describe.
fn time(
    gpu: &Gpu,
    which: Which,
    (m, k, n): (usize, usize, usize),
    args: &Args,
) -> anyhow::Result<Timing> {
    let mut rng = SeededRng::new(0x7143_0000 ^ (m * 7919 + k * 31 + n) as u64);
    let ta = Tensor::from_f32(gpu, &rng.vec_uniform(m * k, -1.0, 1.0), "bench a")?;
    let tb = Tensor::from_f32(gpu, &rng.vec_uniform(k * n, -1.0, 1.0), "bench b")?;
    let tc = Tensor::zeros(gpu, m * n, "bench c")?;
    let g = Built::new(gpu, which, GemmShape::new(m, k, n), &ta, &tb, &tc)?;
    let submit = |pack: bool| -> anyhow::Result<Duration> {
        let mut rec = Recorder::new(gpu);
        if pack {
            g.record_pack(&mut rec);
        } else {
            for _ in 0..args.reps {
                g.record_product(&mut rec);
            }
        }
        time_submission(gpu, rec)
    };
    let pack = if which == Which::F32 {
        None
    } else {
        let mut v = Vec::new();
        for i in 0..args.warmup + args.iters {
            let t = submit(true)?;
            if i >= args.warmup {
                v.push(t);
            }
        }
        Some(median_duration(&v))
    };
    let mut v = Vec::new();
    for i in 0..args.warmup + args.iters {
        let t = submit(false)?;
        if i >= args.warmup {
            v.push(t / args.reps as u32);
        }
    }
    let best = *v.iter().min().unwrap_or(&Duration::ZERO);
    Ok(Timing {
        per_gemm: median_duration(&v),
        best,
        pack,
    })
}

fn parse_check(s: &str) -> anyhow::Result<(usize, usize, usize)> {
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("--check {s:?}: {e} (want M,K,N)"))?;
    match v[..] {
        [m, k, n] if m > 0 && k > 0 && n > 0 => Ok((m, k, n)),
        _ => anyhow::bail!("--check {s:?}: want three positive numbers M,K,N"),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let m = args.m.unwrap_or(args.size);
    let n = args.n.unwrap_or(args.size);
    let k = args.k.unwrap_or(args.size);
    if m == 0 || n == 0 || k == 0 {
        anyhow::bail!("--m/--n/--k/--size must be positive (got {m}x{k}x{n})");
    }
    if args.iters == 0 || args.reps == 0 {
        anyhow::bail!("--iters and --reps must be positive");
    }
    let check_shape = parse_check(&args.check)?;
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let s = &gpu.summary;
    // Every operand is one storage buffer (and is first built in host memory).
    for (what, r, c) in [("A (m×k)", m, k), ("B (k×n)", k, n), ("C (m×n)", m, n)] {
        check_fits(
            &gpu,
            &format!("--m/--k/--n {m}×{k}×{n}: operand {what}"),
            r.saturating_mul(c),
        )?;
    }
    let wanted: Vec<Which> = match args.kind {
        Kind::F32 => vec![Which::F32],
        Kind::F16 => vec![Which::Half(HalfKind::F16)],
        Kind::Coop => vec![Which::Half(HalfKind::Coop)],
        Kind::CoopPrefetch => vec![Which::Half(HalfKind::CoopPrefetch)],
        Kind::CoopWg4 => vec![Which::Half(HalfKind::CoopWg4)],
        Kind::CoopWg4Prefetch => vec![Which::Half(HalfKind::CoopWg4Prefetch)],
        Kind::All => vec![
            Which::F32,
            Which::Half(HalfKind::F16),
            Which::Half(HalfKind::Coop),
            Which::Half(HalfKind::CoopPrefetch),
            Which::Half(HalfKind::CoopWg4),
            Which::Half(HalfKind::CoopWg4Prefetch),
        ],
    };
    let text = args.format == Format::Text;
    if text {
        println!(
            "adapter:  {} ({}, {}); shader-f16 {}, cooperative matrix 16×16×16 f16→f32 {}",
            s.name,
            s.backend,
            s.device_type,
            if gpu.shader_f16 { "yes" } else { "no" },
            if gpu.coop_f16 { "yes" } else { "no" }
        );
        println!(
            "shape:    {m}×{k}×{n} (m×k×n), {:.3} GFLOP per GEMM; median of {} samples after \
             {} warm-up; a sample = one submission of {} dispatches",
            2.0 * (m * n * k) as f64 / 1e9,
            args.iters,
            args.warmup,
            args.reps
        );
        let (cm, ck, cn) = check_shape;
        println!(
            "check:    {cm}×{ck}×{cn} against a CPU f64 reference (f16 kinds: operands rounded \
             to f16 as the pack kernel does)"
        );
        println!(
            "{:<17} {:>10} {:>10} {:>9} {:>10} {:>11} {:>12} {:>13}",
            "kind",
            "ms/GEMM",
            "best ms",
            "TFLOP/s",
            "GFLOP/s",
            "pack ms",
            "check |err|",
            "rel err vs f32"
        );
    }
    let flops = 2.0 * (m * n * k) as f64;
    // A kind that fails (check out of tolerance, shader refused by the driver) is reported
    // and the others still run; the command fails at the end.
    let mut failed = Vec::new();
    for which in wanted {
        if let Which::Half(h) = which {
            if !h.available(&gpu) {
                if args.kind != Kind::All {
                    anyhow::bail!("--kind {}: {}", h.name(), h.missing(&gpu));
                }
                if text {
                    println!("{:<17} skipped: {}", h.name(), h.missing(&gpu));
                } else {
                    let v = serde_json::json!({
                        "tool": "limpq", "bench": "gemm", "kind": h.name(),
                        "device": s.name, "skipped": h.missing(&gpu),
                    });
                    println!("{v}");
                }
                continue;
            }
        }
        let (c, t) = match check(&gpu, which, check_shape)
            .and_then(|c| Ok((c, time(&gpu, which, (m, k, n), &args)?)))
        {
            Ok(ct) => ct,
            Err(e) => {
                if text {
                    println!("{:<17} FAILED: {e:#}", which.name());
                } else {
                    let v = serde_json::json!({
                        "tool": "limpq", "bench": "gemm", "kind": which.name(),
                        "device": s.name, "error": format!("{e:#}"),
                    });
                    println!("{v}");
                }
                failed.push(format!("{}: {e:#}", which.name()));
                continue;
            }
        };
        let secs = t.per_gemm.as_secs_f64();
        let tflops = flops / secs / 1e12;
        let pack_ms = t.pack.map(|p| p.as_secs_f64() * 1e3);
        if text {
            println!(
                "{:<17} {:>10.3} {:>10.3} {:>9.3} {:>10.2} {:>11} {:>12.1e} {:>13.2e}",
                which.name(),
                secs * 1e3,
                t.best.as_secs_f64() * 1e3,
                tflops,
                tflops * 1e3,
                pack_ms.map_or("-".to_string(), |p| format!("{p:.3}")),
                c.worst,
                c.rel_vs_f32
            );
        } else {
            let v = serde_json::json!({
                "tool": "limpq", "bench": "gemm", "kind": which.name(),
                "device": s.name, "backend": s.backend, "device_type": s.device_type,
                "m": m, "n": n, "k": k, "iters": args.iters, "warmup": args.warmup,
                "reps_per_submit": args.reps,
                "ms_per_gemm_median": secs * 1e3, "ms_per_gemm_best": t.best.as_secs_f64() * 1e3,
                "tflops": tflops, "pack_ms": pack_ms,
                "check": { "m": check_shape.0, "k": check_shape.1, "n": check_shape.2,
                           "worst_abs_err": c.worst, "tolerance": c.tol,
                           "rel_err_vs_f32_operands": c.rel_vs_f32 },
            });
            println!("{v}");
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("{} kind(s) failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}
