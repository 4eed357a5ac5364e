//! `limpq bench conv`: the conv kernels on every DISTINCT conv shape of a model (layers with
//! identical [`Conv2dShape`] at the given batch are timed once and counted as often as they
//! occur), so the choice of algorithm per shape class (stem, 1×1, 3×3, depthwise, strided)
//! can be made from measurements instead of a fixed rule.
//!
//! For each shape and each op (forward, backward data, backward weight) every requested
//! algorithm ([`ConvAlgo`]) is first run at a small batch (`--check-batch`, default 2) on
//! seeded U(-1,1) data and compared with the CPU reference (`limpq_trainer::reference`,
//! f64-free naive loops; for `f16gemm` the operands are rounded to f16 first, as the kernel's
//! pack does): a wrong kernel is reported, not timed. Then it is timed at `--batch`:
//! `--warmup` untimed samples, then `--iters` timed ones; a sample is ONE submission of
//! `--reps` back-to-back dispatches of the op, timed from submit to the device going idle,
//! divided by `--reps` (several dispatches per submission hide the submission latency);
//! sampling one (shape, op, algorithm) stops early after `--max-ms` (default 2 s) once one
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

use super::bench_train::{check_fits, median_duration, time_submission};
use limpq_trainer::gpu::{Gpu, GpuError, GpuOptions};
use limpq_trainer::kernels::conv::{
    Conv2dBackwardData, Conv2dBackwardWeight, Conv2dForward, ConvAlgo, ConvPolicy, ConvRule,
};
use limpq_trainer::kernels::gemm_f16::round_f16;
use limpq_trainer::kernels::{Recorder, Tensor};
use limpq_trainer::model::{Model, Op, Source};
use limpq_trainer::reference;
use limpq_trainer::reference::rng::SeededRng;
use limpq_trainer::shapes::Conv2dShape;

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

const ALL: [ConvAlgo; 6] = [
    ConvAlgo::Direct,
    ConvAlgo::ImplicitGemm,
    ConvAlgo::Blocked,
    ConvAlgo::Broadcast,
    ConvAlgo::F16Gemm,
    ConvAlgo::Pointwise,
];

#[derive(clap::Args)]
pub struct Args {
    /// Built-in model (small_cnn, resnet20 = 1×28×28, resnet20-cifar, resnet18 = 3×224×224)
    /// or MODEL.ron.
    #[arg(long)]
    pub model: String,
    /// Images per op (the training batch).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Algorithms, a comma list (all, direct, gemm, blocked, broadcast, f16gemm, pointwise).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    pub algo: Vec<AlgoArg>,
    /// Timed samples per (shape, op, algorithm); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Untimed samples first (pipeline compilation, clocks).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Dispatches of the op per submission (per sample).
    #[arg(long, default_value_t = 10)]
    pub reps: usize,
    /// Stop sampling one (shape, op, algorithm) once this many milliseconds have passed
    /// (warm-up included) and one timed sample exists, so a very slow kernel cannot eat the
    /// run; the samples taken are reported.
    #[arg(long, default_value_t = 2000.0)]
    pub max_ms: f64,
    /// Batch of the correctness check against the CPU reference (capped at --batch).
    #[arg(long, default_value_t = 2)]
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

/// The three timed ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConvOp {
    Forward,
    BackwardData,
    BackwardWeight,
}

const OPS: [ConvOp; 3] = [
    ConvOp::Forward,
    ConvOp::BackwardData,
    ConvOp::BackwardWeight,
];

impl ConvOp {
    fn name(self) -> &'static str {
        match self {
            ConvOp::Forward => "forward",
            ConvOp::BackwardData => "backward_data",
            ConvOp::BackwardWeight => "backward_weight",
        }
    }
}

/// One distinct conv shape of the model and the layers that have it.
struct Group {
    /// At `--batch`.
    shape: Conv2dShape,
    class: &'static str,
    layers: Vec<String>,
    /// Layers of the group whose backward data the engine computes (not reading the input).
    with_dx: usize,
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
fn groups(model: &Model, n: usize) -> anyhow::Result<Vec<Group>> {
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
) -> anyhow::Result<f64> {
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
        anyhow::bail!(
            "{} {}: {} output elements, the reference has {}",
            op.name(),
            b.algo().name(),
            got.len(),
            w.len()
        );
    }
    let mut worst = 0.0f64;
    for (idx, (&g, &r)) in got.iter().zip(w).enumerate() {
        let e = (f64::from(g) - f64::from(r)).abs();
        if e.is_nan() || e > abs + 1e-5 * f64::from(r).abs() {
            anyhow::bail!(
                "{} {} disagrees with the CPU reference at element {idx} of {}: got {g}, \
                 want {r} (tolerance {abs:.1e} + 1e-5·|want|)",
                op.name(),
                b.algo().name(),
                got.len()
            );
        }
        worst = worst.max(e);
    }
    Ok(worst)
}

/// Median and best seconds per op and the timed samples taken, as the module docs
/// describe; sampling stops early once `--max-ms` have passed and one timed sample exists.
fn time(gpu: &Gpu, b: &Built, args: &Args) -> anyhow::Result<(f64, f64, usize)> {
    let mut v = Vec::with_capacity(args.iters);
    let start = Instant::now();
    for i in 0..args.warmup + args.iters {
        if !v.is_empty() && start.elapsed().as_secs_f64() * 1e3 > args.max_ms {
            break;
        }
        let mut rec = Recorder::new(gpu);
        for _ in 0..args.reps {
            b.record(&mut rec);
        }
        let t = time_submission(gpu, rec)?;
        if i >= args.warmup {
            v.push(t / args.reps as u32);
        }
    }
    let best = v.iter().min().copied().unwrap_or_default();
    let n = v.len();
    Ok((median_duration(&v).as_secs_f64(), best.as_secs_f64(), n))
}

/// The outcome of one (shape, op, algorithm).
enum Outcome {
    Timed {
        ms: f64,
        best_ms: f64,
        check_err: f64,
        samples: usize,
    },
    Skipped(String),
    Failed(String),
}

struct Row {
    op: ConvOp,
    algo: ConvAlgo,
    outcome: Outcome,
}

impl Row {
    fn ms(&self) -> Option<f64> {
        match self.outcome {
            Outcome::Timed { ms, .. } => Some(ms),
            _ => None,
        }
    }
}

/// The f32 algorithm with the smallest time for `op` among `rows`.
fn fastest(rows: &[Row], op: ConvOp) -> Option<(ConvAlgo, f64)> {
    rows.iter()
        .filter(|r| r.op == op && r.algo != ConvAlgo::F16Gemm)
        .filter_map(|r| r.ms().map(|ms| (r.algo, ms)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
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

fn describe(s: &Conv2dShape) -> String {
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

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.batch == 0 || args.check_batch == 0 {
        anyhow::bail!("--batch and --check-batch must be positive");
    }
    if args.iters == 0 || args.reps == 0 {
        anyhow::bail!("--iters and --reps must be positive");
    }
    let model = Model::resolve(&args.model)?;
    let groups = groups(&model, args.batch)?;
    if groups.is_empty() {
        anyhow::bail!("model {} has no conv layers", model.name);
    }
    let algos: Vec<ConvAlgo> = if args.algo.contains(&AlgoArg::All) {
        ALL.to_vec()
    } else {
        let mut v: Vec<ConvAlgo> = Vec::new();
        for a in &args.algo {
            let c = match a {
                AlgoArg::All => unreachable!("handled above"),
                AlgoArg::Direct => ConvAlgo::Direct,
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
    };
    let check_n = args.check_batch.min(args.batch);
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let rule = ConvPolicy::FromEnv.rule(&gpu)?;
    let sum = &gpu.summary;
    for g in &groups {
        let s = &g.shape;
        for (what, len) in [
            ("input", s.input_len()),
            ("output", s.output_len()),
            ("weight", s.weight_len()),
        ] {
            check_fits(
                &gpu,
                &format!(
                    "--batch {}: the {what} of {}",
                    args.batch,
                    g.layers.join(", ")
                ),
                len,
            )?;
        }
    }
    let text = args.format == Format::Table;
    let layers: usize = groups.iter().map(|g| g.layers.len()).sum();

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
    let half = algos.contains(&ConvAlgo::F16Gemm);
    let wants: Vec<Want> = std::thread::scope(|sc| {
        let hs: Vec<_> = checks
            .iter()
            .zip(&groups)
            .map(|((s, d), g)| sc.spawn(move || want(s, d, half, g.with_dx > 0)))
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("CPU reference panicked"))
            })
            .collect::<anyhow::Result<Vec<Want>>>()
    })?;
    let ref_secs = t0.elapsed().as_secs_f64();

    if text {
        println!(
            "adapter:  {} ({}, {}); conv override {}",
            sum.name,
            sum.backend,
            sum.device_type,
            if rule.auto() == ConvAlgo::Auto {
                "none".to_string()
            } else {
                format!("{} (LIMPQ_CONV_ALGO)", rule.auto().name())
            }
        );
        let (c, h, w) = model.input;
        println!(
            "model:    {} ({c}×{h}×{w}), batch {}: {layers} conv layers, {} distinct shapes",
            model.name,
            args.batch,
            groups.len()
        );
        println!(
            "timing:   median of {} samples after {} warm-up; a sample = one submission of {} \
             dispatches of the op, submit → idle, ÷ {}, sampling cut after {} ms; TFLOP/s = \
             2·MACs·batch / time",
            args.iters, args.warmup, args.reps, args.reps, args.max_ms
        );
        println!(
            "check:    every algorithm at batch {check_n} against the CPU reference first \
             ({ref_secs:.1} s of CPU); * = fastest f32 algorithm of the op, auto = Auto's pick"
        );
    }

    let mut failed = Vec::new();
    let (mut total_auto, mut total_best) = (0.0f64, 0.0f64);
    let mut total_complete = true;
    for (gi, g) in groups.iter().enumerate() {
        let s = &g.shape;
        let (cs, cd) = &checks[gi];
        let gflop = 2.0 * s.macs() as f64 / 1e9;
        let check_t = Tensors::new(&gpu, cs, cd)?;
        let full = Data::new(s, 0x7143_0000 + gi as u64);
        let t = Tensors::new(&gpu, s, &full)?;
        let mut rows = Vec::new();
        for op in OPS {
            for &algo in &algos {
                let outcome = if let Some(why) = not_applicable(op, algo) {
                    Outcome::Skipped(why.to_string())
                } else if op == ConvOp::BackwardData && g.with_dx == 0 {
                    Outcome::Skipped(
                        "never run in training: the layer reads the model input".into(),
                    )
                } else {
                    match check(&gpu, op, algo, cs, &check_t, &wants[gi]) {
                        Err(e) => match e.downcast_ref::<GpuError>() {
                            Some(GpuError::Unsupported(m)) => Outcome::Skipped(m.clone()),
                            _ => Outcome::Failed(format!("{e:#}")),
                        },
                        Ok(err) => match build(&gpu, op, s, &t, algo)
                            .map_err(anyhow::Error::from)
                            .and_then(|b| time(&gpu, &b, &args))
                        {
                            Ok((med, best, samples)) => Outcome::Timed {
                                ms: med * 1e3,
                                best_ms: best * 1e3,
                                check_err: err,
                                samples,
                            },
                            Err(e) => match e.downcast_ref::<GpuError>() {
                                Some(GpuError::Unsupported(m)) => Outcome::Skipped(m.clone()),
                                _ => Outcome::Failed(format!("{e:#}")),
                            },
                        },
                    }
                };
                if let Outcome::Failed(m) = &outcome {
                    failed.push(format!(
                        "shape #{} {} {}: {m}",
                        gi + 1,
                        op.name(),
                        algo.name()
                    ));
                }
                rows.push(Row { op, algo, outcome });
            }
        }
        let picks: Vec<Option<ConvAlgo>> = OPS
            .iter()
            .map(|&op| auto_pick(&gpu, rule, op, s).ok())
            .collect();

        // Per-step contribution: count × (auto time, best time) per op.
        for (oi, &op) in OPS.iter().enumerate() {
            let count = match op {
                ConvOp::BackwardData => g.with_dx,
                _ => g.layers.len(),
            };
            if count == 0 {
                continue;
            }
            let auto_ms = picks[oi].and_then(|p| {
                rows.iter()
                    .find(|r| r.op == op && r.algo == p)
                    .and_then(Row::ms)
            });
            let best = fastest(&rows, op);
            match (auto_ms, best) {
                (Some(a), Some((_, b))) => {
                    total_auto += a * count as f64;
                    total_best += b * count as f64;
                }
                _ => total_complete = false,
            }
        }

        if text {
            println!();
            println!(
                "#{} {:<17} {}; {gflop:.4} GFLOP per op",
                gi + 1,
                g.class,
                describe(s)
            );
            println!(
                "   layers ({}): {}{}",
                g.layers.len(),
                g.layers.join(", "),
                if g.with_dx < g.layers.len() {
                    format!(
                        " ({} read the model input: no backward data)",
                        g.layers.len() - g.with_dx
                    )
                } else {
                    String::new()
                }
            );
            println!(
                "   {:<16} {:<9} {:>10} {:>10} {:>9} {:>9} {:>11}",
                "op", "algo", "ms", "best ms", "TFLOP/s", "GFLOP/s", "check |err|"
            );
        }
        for r in &rows {
            let oi = OPS.iter().position(|&o| o == r.op).unwrap_or(0);
            let is_fastest = fastest(&rows, r.op).is_some_and(|(a, _)| a == r.algo)
                && r.algo != ConvAlgo::F16Gemm;
            let is_auto = picks[oi] == Some(r.algo);
            if text {
                let mark = format!(
                    "{}{}",
                    if is_fastest { " *" } else { "" },
                    if is_auto { " auto" } else { "" }
                );
                match &r.outcome {
                    Outcome::Timed {
                        ms,
                        best_ms,
                        check_err,
                        samples,
                    } => println!(
                        "   {:<16} {:<9} {:>10.4} {:>10.4} {:>9.3} {:>9.2} {:>11.1e}{mark}{}",
                        r.op.name(),
                        r.algo.name(),
                        ms,
                        best_ms,
                        gflop / ms, // GFLOP / ms = TFLOP/s
                        gflop / ms * 1e3,
                        check_err,
                        if *samples < args.iters {
                            format!(" ({samples} of {} samples: --max-ms)", args.iters)
                        } else {
                            String::new()
                        }
                    ),
                    Outcome::Skipped(why) => println!(
                        "   {:<16} {:<9} skipped: {why}{mark}",
                        r.op.name(),
                        r.algo.name()
                    ),
                    Outcome::Failed(why) => {
                        println!("   {:<16} {:<9} FAILED: {why}", r.op.name(), r.algo.name())
                    }
                }
            } else {
                let mut v = serde_json::json!({
                    "tool": "limpq", "bench": "conv", "model": model.name, "batch": args.batch,
                    "device": sum.name, "backend": sum.backend, "device_type": sum.device_type,
                    "shape_id": gi + 1, "class": g.class,
                    "shape": { "n": s.n, "c_in": s.c_in, "h": s.h, "w": s.w, "c_out": s.c_out,
                               "kh": s.kh, "kw": s.kw, "stride": s.stride, "pad": s.pad,
                               "groups": s.groups, "h_out": s.h_out(), "w_out": s.w_out() },
                    "layers": g.layers, "count": g.layers.len(), "with_backward_data": g.with_dx,
                    "op": r.op.name(), "algo": r.algo.name(),
                    "auto_pick": picks[oi].map(ConvAlgo::name), "is_auto": is_auto,
                    "fastest": is_fastest, "gflop": gflop,
                    "iters": args.iters, "warmup": args.warmup, "reps_per_submit": args.reps,
                    "max_ms": args.max_ms,
                    "check_batch": check_n,
                });
                match &r.outcome {
                    Outcome::Timed {
                        ms,
                        best_ms,
                        check_err,
                        samples,
                    } => {
                        v["samples"] = serde_json::json!(samples);
                        v["ms"] = serde_json::json!(ms);
                        v["ms_best"] = serde_json::json!(best_ms);
                        v["tflops"] = serde_json::json!(gflop / ms);
                        v["check_worst_abs_err"] = serde_json::json!(check_err);
                    }
                    Outcome::Skipped(why) => v["skipped"] = serde_json::json!(why),
                    Outcome::Failed(why) => v["error"] = serde_json::json!(why),
                }
                println!("{v}");
            }
        }
    }

    let ratio = if total_best > 0.0 {
        total_auto / total_best
    } else {
        f64::NAN
    };
    if text {
        println!();
        println!(
            "per training step (all {layers} conv layers; forward + backward weight each, \
             backward data where the layer does not read the model input): auto {total_auto:.3} \
             ms, per-shape fastest f32 {total_best:.3} ms ({ratio:.2}×){}",
            if total_complete {
                ""
            } else {
                "; INCOMPLETE: some op had no timed algorithm"
            }
        );
    } else {
        let v = serde_json::json!({
            "tool": "limpq", "bench": "conv-total", "model": model.name, "batch": args.batch,
            "device": sum.name, "conv_layers": layers, "distinct_shapes": groups.len(),
            "auto_ms_per_step": total_auto, "best_ms_per_step": total_best,
            "auto_over_best": ratio, "complete": total_complete,
            "cpu_reference_s": ref_secs,
        });
        println!("{v}");
    }
    if !failed.is_empty() {
        anyhow::bail!("{} conv run(s) failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}
