//! TFLOP/s of the GEMM kernels at one shape: the f32 kernel (`gemm.wgsl`), the f16-operand
//! kernel (`gemm_f16.wgsl`: f16 storage, f32 arithmetic) and, where the adapter has
//! cooperative matrices, the tensor-core kernels (`gemm_coop*.wgsl`: 16×16×16 f16·f16→f32).
//!
//! First every kind is checked against the CPU oracle ([`crate::reference::gemm_f64`];
//! operands rounded to f16 for the f16 kinds) on a smaller uneven shape, and the f16 kinds'
//! error against the unrounded f32 product is reported (the accuracy cost of f16 operands).
//! Then each kind is timed at the requested shape on seeded U(-1,1) data: `warmup` untimed
//! samples, then `iters` timed ones; a sample is ONE submission of `reps` back-to-back
//! dispatches of the product (C = A·B, beta = 0), timed from submit to the device going
//! idle, divided by `reps` (several dispatches per submission hide the ~33 µs submission
//! cost of the H200; `reps = 1` includes it). The f16 kinds' operands are packed once
//! before timing (f32 → f16, padded to multiples of 16); the pack of A and B is timed
//! separately, one submission per sample. TFLOP/s = 2·m·n·k / (median seconds per product).
use std::time::Duration;

use super::{check_fits, errors, median_duration, time_submission, BenchError};
use crate::gpu::{Gpu, GpuError};
use crate::kernels::gemm::{Gemm, GemmShape};
use crate::kernels::gemm_f16::{round_f16, GemmF16, HalfKind};
use crate::kernels::{Recorder, Tensor};
use crate::reference::gemm_f64;
use crate::reference::rng::SeededRng;

/// One of the GEMM kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    F32,
    Half(HalfKind),
}

impl Which {
    /// Every kind, in the order the bench runs them.
    pub const ALL: [Which; 6] = [
        Which::F32,
        Which::Half(HalfKind::F16),
        Which::Half(HalfKind::Coop),
        Which::Half(HalfKind::CoopPrefetch),
        Which::Half(HalfKind::CoopWg4),
        Which::Half(HalfKind::CoopWg4Prefetch),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Which::F32 => "f32",
            Which::Half(k) => k.name(),
        }
    }

    /// Why this adapter cannot run the kind, if it cannot.
    pub fn missing(self, gpu: &Gpu) -> Option<String> {
        match self {
            Which::Half(h) if !h.available(gpu) => Some(h.missing(gpu)),
            _ => None,
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct GemmBenchConfig {
    /// The timed shape (m, k, n).
    pub shape: (usize, usize, usize),
    /// The shape of the check against the CPU (m, k, n).
    pub check: (usize, usize, usize),
    /// The kernels, in order. A kind this adapter lacks is an error when it is the only
    /// one asked for, else listed as skipped.
    pub kinds: Vec<Which>,
    pub iters: usize,
    pub warmup: usize,
    /// Dispatches per submission.
    pub reps: usize,
}

/// The check of one kind against the CPU.
#[derive(Clone, Debug)]
pub struct CheckResult {
    /// Worst |GPU − reference on the kernel's own operands|.
    pub worst: f64,
    pub tol: f64,
    /// Relative Frobenius error against the f32-operand product.
    pub rel_vs_f32: f64,
}

/// The timing of one kind.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Median per product.
    pub per_gemm: Duration,
    pub best: Duration,
    /// Median of the f16 operand pack (f16 kinds).
    pub pack: Option<Duration>,
}

/// What happened to one kind.
#[derive(Clone, Debug)]
pub enum Outcome {
    Timed {
        check: CheckResult,
        timing: Timing,
    },
    /// The adapter lacks what the kind needs.
    Skipped(String),
    /// The check was out of tolerance, or the driver refused the shader.
    Failed(String),
}

/// One kind's row.
#[derive(Clone, Debug)]
pub struct Row {
    pub which: Which,
    pub outcome: Outcome,
}

impl Row {
    /// TFLOP/s at `shape` of a timed row.
    pub fn tflops(&self, (m, k, n): (usize, usize, usize)) -> Option<f64> {
        match &self.outcome {
            Outcome::Timed { timing, .. } => {
                Some(2.0 * (m * n * k) as f64 / timing.per_gemm.as_secs_f64() / 1e12)
            }
            _ => None,
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
    ) -> Result<Built, GpuError> {
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

/// Checks the settings and that every operand fits, then checks and times every kind.
pub fn run(gpu: &Gpu, cfg: &GemmBenchConfig) -> Result<Vec<Row>, BenchError> {
    let (m, k, n) = cfg.shape;
    let (cm, ck, cn) = cfg.check;
    if m == 0 || n == 0 || k == 0 || cm == 0 || ck == 0 || cn == 0 {
        return Err(BenchError::Config(format!(
            "shape {m}×{k}×{n} and check {cm}×{ck}×{cn} must be positive"
        )));
    }
    if cfg.iters == 0 || cfg.reps == 0 {
        return Err(BenchError::Config("iters and reps must be positive".into()));
    }
    // Every operand is one storage buffer (and is first built in host memory).
    for (what, r, c) in [
        ("A (m×k)", m, k),
        ("B (k×n)", k, n),
        ("C (m×n)", m, n),
        ("A of the check (m×k)", cm, ck),
        ("B of the check (k×n)", ck, cn),
        ("C of the check (m×n)", cm, cn),
    ] {
        check_fits(gpu, &format!("operand {what}"), r.saturating_mul(c))?;
    }
    if let [only] = cfg.kinds[..] {
        if let Some(why) = only.missing(gpu) {
            return Err(BenchError::Config(format!("{}: {why}", only.name())));
        }
    }
    let mut rows = Vec::with_capacity(cfg.kinds.len());
    for &which in &cfg.kinds {
        let outcome = if let Some(why) = which.missing(gpu) {
            Outcome::Skipped(why)
        } else {
            match check(gpu, which, cfg.check).and_then(|c| Ok((c, time(gpu, which, cfg)?))) {
                Ok((check, timing)) => Outcome::Timed { check, timing },
                Err(e) => Outcome::Failed(e.to_string()),
            }
        };
        rows.push(Row { which, outcome });
    }
    Ok(rows)
}

/// Run `which` on the check shape and compare with the CPU; an error if out of tolerance.
pub fn check(
    gpu: &Gpu,
    which: Which,
    (m, k, n): (usize, usize, usize),
) -> Result<CheckResult, BenchError> {
    let seed = m
        .wrapping_mul(7919)
        .wrapping_add(k.wrapping_mul(31))
        .wrapping_add(n);
    let mut rng = SeededRng::new(0xC4EC_0000 ^ seed as u64);
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
    let exact = gemm_f64(m, k, n, &a, &b);
    let own = if half {
        let r = |v: &[f32]| v.iter().map(|&x| round_f16(x)).collect::<Vec<f32>>();
        gemm_f64(m, k, n, &r(&a), &r(&b))
    } else {
        exact.clone()
    };
    // The kernel tests' tolerance: f32 summation of k exact products, ~50× its expectation.
    let tol = 1e-5 * (k as f64 + 1.0);
    let mut worst = 0.0f64;
    for (idx, (&gv, &w)) in got.iter().zip(&own).enumerate() {
        let e = (f64::from(gv) - w).abs();
        if e.is_nan() || e > tol + 1e-5 * w.abs() {
            return Err(BenchError::Failed(format!(
                "gemm {} {m}x{k}x{n} disagrees with the CPU reference at ({}, {}): got {gv}, \
                 want {w} (tolerance {tol:.1e})",
                which.name(),
                idx / n,
                idx % n
            )));
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

/// Time `which` at `cfg.shape` as the module docs describe.
fn time(gpu: &Gpu, which: Which, cfg: &GemmBenchConfig) -> Result<Timing, BenchError> {
    let (m, k, n) = cfg.shape;
    let mut rng = SeededRng::new(0x7143_0000 ^ (m * 7919 + k * 31 + n) as u64);
    let ta = Tensor::from_f32(gpu, &rng.vec_uniform(m * k, -1.0, 1.0), "bench a")?;
    let tb = Tensor::from_f32(gpu, &rng.vec_uniform(k * n, -1.0, 1.0), "bench b")?;
    let tc = Tensor::zeros(gpu, m * n, "bench c")?;
    let g = Built::new(gpu, which, GemmShape::new(m, k, n), &ta, &tb, &tc)?;
    let submit = |pack: bool| -> Result<Duration, GpuError> {
        let mut rec = Recorder::new(gpu);
        if pack {
            g.record_pack(&mut rec);
        } else {
            for _ in 0..cfg.reps {
                g.record_product(&mut rec);
            }
        }
        time_submission(gpu, rec)
    };
    let pack = if which == Which::F32 {
        None
    } else {
        let mut v = Vec::new();
        for i in 0..cfg.warmup + cfg.iters {
            let t = submit(true)?;
            if i >= cfg.warmup {
                v.push(t);
            }
        }
        Some(median_duration(&v))
    };
    let reps = u32::try_from(cfg.reps).unwrap_or(u32::MAX);
    let mut v = Vec::new();
    for i in 0..cfg.warmup + cfg.iters {
        let t = submit(false)?;
        if i >= cfg.warmup {
            v.push(t / reps);
        }
    }
    let best = v.iter().min().copied().unwrap_or(Duration::ZERO);
    Ok(Timing {
        per_gemm: median_duration(&v),
        best,
        pack,
    })
}
