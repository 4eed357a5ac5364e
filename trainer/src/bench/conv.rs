//! The conv kernels on every DISTINCT conv shape of a model (layers with
//! identical [`Conv2dShape`] at the given batch are timed once and counted as often as they
//! occur), so the choice of algorithm per shape class (stem, 1×1, 3×3, depthwise, strided)
//! can be made from measurements instead of a fixed rule.
//!
//! For each shape and each op (forward, backward data, backward weight) every requested
//! algorithm ([`ConvAlgo`]) is first run at a small batch (`check_batch`) on
//! seeded U(-1,1) data and compared with the CPU reference (`limpq_trainer::reference`,
//! f64-free naive loops; for `f16gemm` the operands are rounded to f16 first, as the kernel's
//! pack does): a wrong kernel is reported, not timed. Then it is timed at `batch`:
//! `warmup` untimed samples, then `iters` timed ones; a sample is ONE submission of
//! `reps` back-to-back dispatches of the op, timed from submit to the device going idle,
//! divided by `reps` (several dispatches per submission hide the submission latency);
//! sampling one (shape, op, algorithm) stops early after `max_ms` once one
//! timed sample exists, and the number of samples taken is reported.
//! TFLOP/s = 2·MACs·batch / (median seconds per op), the same count for all three ops.
//!
//! Backward data of a shape whose layers all read the model input (the stem) is never run
//! in training and is listed as skipped, not timed. Backward weight has two kernels: the per-weight reduction (`direct`; `gemm` would run the
//! same kernel, so it is listed as skipped), the register-blocked one (`blocked`) and the
//! subgroup-broadcast one (`broadcast`, where subgroups of 8 were given). `f16gemm`
//! is forward only; `pointwise` covers forward and backward data of 1×1 stride-1 pad-0 convs
//! (elsewhere the op's `Unsupported` reason is listed). The fastest f32 algorithm per op is marked `*`; `auto` marks what
//! `ConvAlgo::Auto` resolves to on this adapter today (after any `LIMPQ_CONV_ALGO` override).
//! The last line sums one full-precision training step's conv time over all conv layers
//! (forward + backward weight for every layer, backward data for every layer that does not
//! read the model input, as the engine builds it) with Auto's picks and with the per-shape
//! fastest f32 algorithm. The quantized (joint) network runs the same kernels with
//! quantize-on-load specializations, which this bench does not time separately.
use std::time::Instant;

use super::{check_fits, median_duration, time_submission, BenchError};
use crate::gpu::{Gpu, GpuError};
use crate::kernels::conv::{
    Conv2dBackwardData, Conv2dBackwardWeight, Conv2dForward, ConvAlgo, ConvPolicy, ConvRule,
};
use crate::kernels::gemm_f16::round_f16;
use crate::kernels::{Recorder, Tensor};
use crate::model::{Model, ModelError, Op, Source};
use crate::reference;
use crate::reference::rng::SeededRng;
use crate::shapes::Conv2dShape;

/// Every algorithm the bench can run, in its order.
pub const ALL_ALGOS: [ConvAlgo; 6] = [
    ConvAlgo::Direct,
    ConvAlgo::ImplicitGemm,
    ConvAlgo::Blocked,
    ConvAlgo::Broadcast,
    ConvAlgo::F16Gemm,
    ConvAlgo::Pointwise,
];

/// What to run.
#[derive(Clone, Debug)]
pub struct ConvBenchConfig {
    /// Images per op (the training batch).
    pub batch: usize,
    /// The algorithms, in order (no `Auto`).
    pub algos: Vec<ConvAlgo>,
    /// Timed samples per (shape, op, algorithm); the median is reported.
    pub iters: usize,
    /// Untimed samples first.
    pub warmup: usize,
    /// Dispatches of the op per submission.
    pub reps: usize,
    /// Sampling of one (shape, op, algorithm) stops once this many milliseconds have passed
    /// and one timed sample exists.
    pub max_ms: f64,
    /// Batch of the check against the CPU (capped at `batch`).
    pub check_batch: usize,
}

/// The three timed ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvOp {
    Forward,
    BackwardData,
    BackwardWeight,
}

/// The ops in the bench's order.
pub const OPS: [ConvOp; 3] = [
    ConvOp::Forward,
    ConvOp::BackwardData,
    ConvOp::BackwardWeight,
];

impl ConvOp {
    pub fn name(self) -> &'static str {
        match self {
            ConvOp::Forward => "forward",
            ConvOp::BackwardData => "backward_data",
            ConvOp::BackwardWeight => "backward_weight",
        }
    }

    fn index(self) -> usize {
        match self {
            ConvOp::Forward => 0,
            ConvOp::BackwardData => 1,
            ConvOp::BackwardWeight => 2,
        }
    }
}

/// One distinct conv shape of the model and the layers that have it.
#[derive(Clone, Debug)]
pub struct Group {
    /// At the bench's batch.
    pub shape: Conv2dShape,
    pub class: &'static str,
    pub layers: Vec<String>,
    /// Layers of the group whose backward data the engine computes (not reading the input).
    pub with_dx: usize,
}

/// The shape class: `stem` (reads the model input), `depthwise`, `grouped`, else the kernel
/// size (`1x1`, `3x3`, `KxK`); `-strided` appended when the stride is above 1 (not for the
/// stem, which is its own class).
fn class_of(s: &Conv2dShape, reads_input: bool) -> &'static str {
    let strided = s.stride > 1;
    if reads_input {
        return "stem";
    }
    if s.groups > 1 && s.groups == s.c_in {
        return if strided {
            "depthwise-strided"
        } else {
            "depthwise"
        };
    }
    if s.groups > 1 {
        return if strided {
            "grouped-strided"
        } else {
            "grouped"
        };
    }
    match (s.kh, s.kw, strided) {
        (1, 1, false) => "1x1",
        (1, 1, true) => "1x1-strided",
        (3, 3, false) => "3x3",
        (3, 3, true) => "3x3-strided",
        (_, _, false) => "KxK",
        (_, _, true) => "KxK-strided",
    }
}

/// The distinct conv shapes of `model` at batch `n`, in order of first appearance.
pub fn groups(model: &Model, n: usize) -> Result<Vec<Group>, ModelError> {
    let infos = model.analyze()?;
    let mut out: Vec<Group> = Vec::new();
    for (node, info) in model.nodes.iter().zip(&infos) {
        let Op::Conv2d {
            out_channels,
            kernel,
            stride,
            padding,
            groups,
            ..
        } = node.op
        else {
            continue;
        };
        let x = info.input_shapes[0];
        let shape = Conv2dShape::square(
            n,
            x.c,
            x.h,
            x.w,
            out_channels,
            kernel,
            stride,
            padding,
            groups,
        );
        let reads_input = info.inputs[0] == Source::Input;
        let class = class_of(&shape, reads_input);
        match out
            .iter_mut()
            .find(|g| g.shape == shape && g.class == class)
        {
            Some(g) => {
                g.layers.push(node.name.clone());
                g.with_dx += usize::from(!reads_input);
            }
            None => out.push(Group {
                shape,
                class,
                layers: vec![node.name.clone()],
                with_dx: usize::from(!reads_input),
            }),
        }
    }
    Ok(out)
}

/// Seeded operands of one shape.
struct Data {
    x: Vec<f32>,
    w: Vec<f32>,
    dy: Vec<f32>,
}

impl Data {
    fn new(s: &Conv2dShape, salt: u64) -> Data {
        let mut rng = SeededRng::new(salt ^ (s.input_len() as u64 * 31 + s.weight_len() as u64));
        Data {
            x: rng.vec_uniform(s.input_len(), -1.0, 1.0),
            w: rng.vec_uniform(s.weight_len(), -1.0, 1.0),
            dy: rng.vec_uniform(s.output_len(), -1.0, 1.0),
        }
    }
}

/// CPU results of one check shape: forward (f32 operands and, when `f16gemm` runs,
/// f16-rounded operands), backward data (when it runs), backward weight; empty when skipped.
struct Want {
    y: Vec<f32>,
    y_half: Vec<f32>,
    dx: Vec<f32>,
    dw: Vec<f32>,
}

fn want(s: &Conv2dShape, d: &Data, half: bool, dx: bool) -> Want {
    let r = |v: &[f32]| v.iter().map(|&a| round_f16(a)).collect::<Vec<f32>>();
    Want {
        y: reference::conv2d_forward(s, &d.x, &d.w, None),
        y_half: if half {
            reference::conv2d_forward(s, &r(&d.x), &r(&d.w), None)
        } else {
            Vec::new()
        },
        dx: if dx {
            reference::conv2d_backward_data(s, &d.dy, &d.w)
        } else {
            Vec::new()
        },
        dw: reference::conv2d_backward_weight(s, &d.x, &d.dy),
    }
}

/// GPU tensors of one shape; outputs start as NaN so an unwritten element fails the check.
struct Tensors {
    x: Tensor,
    w: Tensor,
    y: Tensor,
    dy: Tensor,
    dx: Tensor,
    dw: Tensor,
}

impl Tensors {
    fn new(gpu: &Gpu, s: &Conv2dShape, d: &Data) -> Result<Tensors, GpuError> {
        let nan = |len: usize, l: &str| Tensor::from_f32(gpu, &vec![f32::NAN; len], l);
        Ok(Tensors {
            x: Tensor::from_f32(gpu, &d.x, "bench conv x")?,
            w: Tensor::from_f32(gpu, &d.w, "bench conv w")?,
            dy: Tensor::from_f32(gpu, &d.dy, "bench conv dy")?,
            y: nan(s.output_len(), "bench conv y")?,
            dx: nan(s.input_len(), "bench conv dx")?,
            dw: nan(s.weight_len(), "bench conv dw")?,
        })
    }
}

/// A built op of any kind.
enum Built {
    F(Box<Conv2dForward>),
    D(Conv2dBackwardData),
    W(Conv2dBackwardWeight),
}

impl Built {
    fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        match self {
            Built::F(o) => o.record(rec),
            Built::D(o) => o.record(rec),
            Built::W(o) => o.record(rec),
        }
    }

    /// The algorithm the op resolved to.
    fn algo(&self) -> ConvAlgo {
        match self {
            Built::F(o) => o.algo,
            Built::D(o) => o.algo,
            Built::W(o) => o.algo,
        }
    }
}

/// Build `op` with `algo` on `t`.
fn build(
    gpu: &Gpu,
    op: ConvOp,
    s: &Conv2dShape,
    t: &Tensors,
    algo: ConvAlgo,
) -> Result<Built, GpuError> {
    Ok(match op {
        ConvOp::Forward => Built::F(Box::new(Conv2dForward::with_algo(
            gpu, s, &t.x, &t.w, None, &t.y, algo,
        )?)),
        ConvOp::BackwardData => Built::D(Conv2dBackwardData::with_algo(
            gpu, s, &t.dy, &t.w, &t.dx, false, algo,
        )?),
        ConvOp::BackwardWeight => Built::W(Conv2dBackwardWeight::with_algo(
            gpu, s, &t.x, &t.dy, &t.dw, false, algo,
        )?),
    })
}

/// Why `algo` is not run for `op` (before building anything), if it is not.
fn not_applicable(op: ConvOp, algo: ConvAlgo) -> Option<&'static str> {
    match (op, algo) {
        (ConvOp::BackwardData | ConvOp::BackwardWeight, ConvAlgo::F16Gemm) => Some("forward only"),
        (ConvOp::BackwardWeight, ConvAlgo::ImplicitGemm) => {
            Some("same kernel as direct (per-weight reduction)")
        }
        _ => None,
    }
}

/// Terms summed per output element of `op` (the kernel tests' `Tol::sum_of`).
fn terms(op: ConvOp, s: &Conv2dShape) -> usize {
    let k2 = s.kh * s.kw;
    match op {
        ConvOp::Forward => (s.c_in / s.groups) * k2,
        ConvOp::BackwardData => (s.c_out / s.groups) * k2,
        ConvOp::BackwardWeight => s.n * s.h_out() * s.w_out(),
    }
}

/// Run `op` with `algo` at the check shape and compare with the CPU: the worst absolute
/// error, or an error naming the first element out of tolerance (`1e-5·terms + 1e-5·|want|`,
/// the kernel tests' tolerance).
fn check(
    gpu: &Gpu,
    op: ConvOp,
    algo: ConvAlgo,
    s: &Conv2dShape,
    t: &Tensors,
    want: &Want,
) -> Result<f64, BenchError> {
    let b = build(gpu, op, s, t, algo)?;
    let out_t = match op {
        ConvOp::Forward => &t.y,
        ConvOp::BackwardData => &t.dx,
        ConvOp::BackwardWeight => &t.dw,
    };
    // Poison first: a kernel that skips elements must not pass on an earlier algo's output.
    out_t.write_f32(gpu, &vec![f32::NAN; out_t.len()])?;
    let mut rec = Recorder::new(gpu);
    b.record(&mut rec);
    let i = rec.read(out_t);
    let out = rec.submit()?;
    let got = out.f32(i);
    let w = match (op, algo) {
        (ConvOp::Forward, ConvAlgo::F16Gemm) => &want.y_half,
        (ConvOp::Forward, _) => &want.y,
        (ConvOp::BackwardData, _) => &want.dx,
        (ConvOp::BackwardWeight, _) => &want.dw,
    };
    let abs = 1e-5 * terms(op, s).max(1) as f64;
    if got.len() != w.len() {
        return Err(BenchError::Failed(format!(
            "{} {}: {} output elements, the reference has {}",
            op.name(),
            b.algo().name(),
            got.len(),
            w.len()
        )));
    }
    let mut worst = 0.0f64;
    for (idx, (&g, &r)) in got.iter().zip(w).enumerate() {
        let e = (f64::from(g) - f64::from(r)).abs();
        if e.is_nan() || e > abs + 1e-5 * f64::from(r).abs() {
            return Err(BenchError::Failed(format!(
                "{} {} disagrees with the CPU reference at element {idx} of {}: got {g}, \
                 want {r} (tolerance {abs:.1e} + 1e-5·|want|)",
                op.name(),
                b.algo().name(),
                got.len()
            )));
        }
        worst = worst.max(e);
    }
    Ok(worst)
}

/// Median and best seconds per op and the timed samples taken, as the module docs
/// describe; sampling stops early once `max_ms` have passed and one timed sample exists.
fn time(gpu: &Gpu, b: &Built, cfg: &ConvBenchConfig) -> Result<(f64, f64, usize), GpuError> {
    let mut v = Vec::with_capacity(cfg.iters);
    let reps = u32::try_from(cfg.reps).unwrap_or(u32::MAX);
    let start = Instant::now();
    for i in 0..cfg.warmup + cfg.iters {
        if !v.is_empty() && start.elapsed().as_secs_f64() * 1e3 > cfg.max_ms {
            break;
        }
        let mut rec = Recorder::new(gpu);
        for _ in 0..cfg.reps {
            b.record(&mut rec);
        }
        let t = time_submission(gpu, rec)?;
        if i >= cfg.warmup {
            v.push(t / reps);
        }
    }
    let best = v.iter().min().copied().unwrap_or_default();
    let n = v.len();
    Ok((median_duration(&v).as_secs_f64(), best.as_secs_f64(), n))
}

/// The outcome of one (shape, op, algorithm).
#[derive(Clone, Debug)]
pub enum Outcome {
    Timed {
        ms: f64,
        best_ms: f64,
        check_err: f64,
        samples: usize,
    },
    Skipped(String),
    Failed(String),
}

/// One (op, algorithm) of a shape.
#[derive(Clone, Debug)]
pub struct Row {
    pub op: ConvOp,
    pub algo: ConvAlgo,
    pub outcome: Outcome,
}

impl Row {
    /// Median milliseconds of a timed row.
    pub fn ms(&self) -> Option<f64> {
        match self.outcome {
            Outcome::Timed { ms, .. } => Some(ms),
            _ => None,
        }
    }
}

/// Every op and algorithm on one distinct shape.
#[derive(Clone, Debug)]
pub struct ShapeResult {
    pub group: Group,
    pub rows: Vec<Row>,
    /// What `Auto` resolves each op to on this adapter, in [`OPS`] order.
    pub picks: [Option<ConvAlgo>; 3],
}

impl ShapeResult {
    /// GFLOP of one op at the bench's batch (2·MACs).
    pub fn gflop(&self) -> f64 {
        2.0 * self.group.shape.macs() as f64 / 1e9
    }

    /// The f32 algorithm with the smallest time for `op`.
    pub fn fastest(&self, op: ConvOp) -> Option<(ConvAlgo, f64)> {
        self.rows
            .iter()
            .filter(|r| r.op == op && r.algo != ConvAlgo::F16Gemm)
            .filter_map(|r| r.ms().map(|ms| (r.algo, ms)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// What `Auto` picks for `op`.
    pub fn auto_pick(&self, op: ConvOp) -> Option<ConvAlgo> {
        self.picks[op.index()]
    }

    /// `row` is the fastest f32 algorithm of its op.
    pub fn is_fastest(&self, row: &Row) -> bool {
        row.algo != ConvAlgo::F16Gemm && self.fastest(row.op).is_some_and(|(a, _)| a == row.algo)
    }
}

/// The whole run.
#[derive(Clone, Debug)]
pub struct ConvBenchResult {
    pub shapes: Vec<ShapeResult>,
    /// The batch the checks ran at.
    pub check_batch: usize,
    /// Seconds the CPU references took.
    pub cpu_reference_s: f64,
    /// One full-precision training step's conv time with Auto's picks, ms.
    pub auto_ms_per_step: f64,
    /// The same with the per-shape fastest f32 algorithm, ms.
    pub best_ms_per_step: f64,
    /// Every op of every shape had a timed algorithm for both sums.
    pub complete: bool,
}

impl ConvBenchResult {
    /// Conv layers of the model.
    pub fn layers(&self) -> usize {
        self.shapes.iter().map(|s| s.group.layers.len()).sum()
    }

    /// `auto / best` per step (NaN when nothing was timed).
    pub fn auto_over_best(&self) -> f64 {
        if self.best_ms_per_step > 0.0 {
            self.auto_ms_per_step / self.best_ms_per_step
        } else {
            f64::NAN
        }
    }

    /// "shape #N op algo: why" for every failed row.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (gi, s) in self.shapes.iter().enumerate() {
            for r in &s.rows {
                if let Outcome::Failed(m) = &r.outcome {
                    out.push(format!(
                        "shape #{} {} {}: {m}",
                        gi + 1,
                        r.op.name(),
                        r.algo.name()
                    ));
                }
            }
        }
        out
    }
}

/// What `Auto` resolves `op` to on `s` under `rule` (built on zero tensors; nothing is run).
fn auto_pick(gpu: &Gpu, rule: ConvRule, op: ConvOp, s: &Conv2dShape) -> Result<ConvAlgo, GpuError> {
    let t = Tensors {
        x: Tensor::zeros(gpu, s.input_len(), "auto x")?,
        w: Tensor::zeros(gpu, s.weight_len(), "auto w")?,
        y: Tensor::zeros(gpu, s.output_len(), "auto y")?,
        dy: Tensor::zeros(gpu, s.output_len(), "auto dy")?,
        dx: Tensor::zeros(gpu, s.input_len(), "auto dx")?,
        dw: Tensor::zeros(gpu, s.weight_len(), "auto dw")?,
    };
    let algo = match op {
        ConvOp::Forward => rule.forward_algo(gpu, s, false, false),
        _ => rule.f32_algo(),
    };
    Ok(build(gpu, op, s, &t, algo)?.algo())
}

/// A readable description of a shape.
pub fn describe(s: &Conv2dShape) -> String {
    format!(
        "{}→{} ch, {}×{} in, {}×{} kernel, stride {}, pad {}, groups {} → {}×{} out",
        s.c_in,
        s.c_out,
        s.h,
        s.w,
        s.kh,
        s.kw,
        s.stride,
        s.pad,
        s.groups,
        s.h_out(),
        s.w_out()
    )
}

/// An error that means "this algorithm does not run here" is a skip, anything else a
/// failure.
fn outcome_of_error(e: &BenchError) -> Outcome {
    match e {
        BenchError::Gpu(GpuError::Unsupported(m)) => Outcome::Skipped(m.clone()),
        e => Outcome::Failed(e.to_string()),
    }
}

/// Checks and times every op of every distinct conv shape of `model` with every
/// algorithm of `cfg`, as the module docs describe.
pub fn run(gpu: &Gpu, model: &Model, cfg: &ConvBenchConfig) -> Result<ConvBenchResult, BenchError> {
    if cfg.batch == 0 || cfg.check_batch == 0 {
        return Err(BenchError::Config(
            "batch and check_batch must be positive".into(),
        ));
    }
    if cfg.iters == 0 || cfg.reps == 0 {
        return Err(BenchError::Config("iters and reps must be positive".into()));
    }
    if cfg.algos.contains(&ConvAlgo::Auto) {
        return Err(BenchError::Config(
            "algos: auto is what the bench compares against, not one of the algorithms".into(),
        ));
    }
    let groups = groups(model, cfg.batch)?;
    if groups.is_empty() {
        return Err(BenchError::Config(format!(
            "model {} has no conv layers",
            model.name
        )));
    }
    let check_n = cfg.check_batch.min(cfg.batch);
    let rule = ConvPolicy::FromEnv.rule(gpu)?;
    for g in &groups {
        // One image's lengths (the model check bounds them) times the batch, saturated: a
        // huge `--batch` is refused here, before any product of it can overflow.
        let one = Conv2dShape { n: 1, ..g.shape };
        for (what, len) in [
            ("input", one.input_len().saturating_mul(cfg.batch)),
            ("output", one.output_len().saturating_mul(cfg.batch)),
            ("weight", one.weight_len()),
        ] {
            check_fits(gpu, &format!("the {what} of {}", g.layers.join(", ")), len)?;
        }
    }

    // CPU references of every check shape, computed in parallel (the naive loops are the
    // slowest part of a run on a fast GPU).
    let checks: Vec<(Conv2dShape, Data)> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let s = Conv2dShape {
                n: check_n,
                ..g.shape
            };
            (s, Data::new(&s, 0xC0DE_0000 + i as u64))
        })
        .collect();
    let t0 = Instant::now();
    let half = cfg.algos.contains(&ConvAlgo::F16Gemm);
    let wants: Vec<Want> = std::thread::scope(|sc| {
        let hs: Vec<_> = checks
            .iter()
            .zip(&groups)
            .map(|((s, d), g)| sc.spawn(move || want(s, d, half, g.with_dx > 0)))
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| BenchError::Failed("the CPU reference panicked".into()))
            })
            .collect::<Result<Vec<Want>, BenchError>>()
    })?;
    let cpu_reference_s = t0.elapsed().as_secs_f64();

    let (mut total_auto, mut total_best) = (0.0f64, 0.0f64);
    let mut complete = true;
    let mut shapes = Vec::with_capacity(groups.len());
    for (gi, g) in groups.into_iter().enumerate() {
        let s = g.shape;
        let (cs, cd) = &checks[gi];
        let check_t = Tensors::new(gpu, cs, cd)?;
        let full = Data::new(&s, 0x7143_0000 + gi as u64);
        let t = Tensors::new(gpu, &s, &full)?;
        let mut rows = Vec::new();
        for op in OPS {
            for &algo in &cfg.algos {
                let outcome = if let Some(why) = not_applicable(op, algo) {
                    Outcome::Skipped(why.to_string())
                } else if op == ConvOp::BackwardData && g.with_dx == 0 {
                    Outcome::Skipped(
                        "never run in training: the layer reads the model input".into(),
                    )
                } else {
                    match check(gpu, op, algo, cs, &check_t, &wants[gi]) {
                        Err(e) => outcome_of_error(&e),
                        Ok(err) => {
                            match build(gpu, op, &s, &t, algo).and_then(|b| time(gpu, &b, cfg)) {
                                Ok((med, best, samples)) => Outcome::Timed {
                                    ms: med * 1e3,
                                    best_ms: best * 1e3,
                                    check_err: err,
                                    samples,
                                },
                                Err(e) => outcome_of_error(&BenchError::Gpu(e)),
                            }
                        }
                    }
                };
                rows.push(Row { op, algo, outcome });
            }
        }
        let picks = OPS.map(|op| auto_pick(gpu, rule, op, &s).ok());
        let shape = ShapeResult {
            group: g,
            rows,
            picks,
        };

        // Per-step contribution: count × (auto time, best time) per op.
        for op in OPS {
            let count = match op {
                ConvOp::BackwardData => shape.group.with_dx,
                _ => shape.group.layers.len(),
            };
            if count == 0 {
                continue;
            }
            let auto_ms = shape.auto_pick(op).and_then(|p| {
                shape
                    .rows
                    .iter()
                    .find(|r| r.op == op && r.algo == p)
                    .and_then(Row::ms)
            });
            match (auto_ms, shape.fastest(op)) {
                (Some(a), Some((_, b))) => {
                    total_auto += a * count as f64;
                    total_best += b * count as f64;
                }
                _ => complete = false,
            }
        }
        shapes.push(shape);
    }
    Ok(ConvBenchResult {
        shapes,
        check_batch: check_n,
        cpu_reference_s,
        auto_ms_per_step: total_auto,
        best_ms_per_step: total_best,
        complete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Classes as the module docs define them (no GPU needed).
    #[test]
    fn shape_classes() {
        let sq = |c_in, c_out, k, stride, groups| {
            Conv2dShape::square(2, c_in, 8, 8, c_out, k, stride, k / 2, groups)
        };
        assert_eq!(class_of(&sq(3, 8, 3, 1, 1), true), "stem");
        assert_eq!(class_of(&sq(8, 8, 3, 2, 1), true), "stem");
        assert_eq!(class_of(&sq(8, 8, 3, 1, 8), false), "depthwise");
        assert_eq!(class_of(&sq(8, 8, 3, 2, 8), false), "depthwise-strided");
        assert_eq!(class_of(&sq(8, 8, 3, 1, 2), false), "grouped");
        assert_eq!(class_of(&sq(8, 16, 1, 1, 1), false), "1x1");
        assert_eq!(class_of(&sq(8, 16, 1, 2, 1), false), "1x1-strided");
        assert_eq!(class_of(&sq(8, 16, 3, 1, 1), false), "3x3");
        assert_eq!(class_of(&sq(8, 16, 5, 2, 1), false), "KxK-strided");
    }

    /// resnet20's convs, grouped: every conv layer counted once.
    #[test]
    fn groups_cover_every_conv_layer() {
        let model = crate::model::builtin("resnet20").expect("built-in resnet20");
        let gs = groups(&model, 4).unwrap();
        let convs = model
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Conv2d { .. }))
            .count();
        assert_eq!(gs.iter().map(|g| g.layers.len()).sum::<usize>(), convs);
        assert_eq!(gs[0].class, "stem");
        assert_eq!(gs[0].with_dx, 0);
        assert!(gs.iter().all(|g| g.shape.n == 4));
        // Distinct: no two groups share shape and class.
        for (i, a) in gs.iter().enumerate() {
            for b in &gs[i + 1..] {
                assert!(!(a.shape == b.shape && a.class == b.class));
            }
        }
        assert!(gs.len() < convs, "resnet20 repeats its block shapes");
    }
}
