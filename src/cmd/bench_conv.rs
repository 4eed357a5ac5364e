//! `limpq bench conv`: the conv kernels on every distinct conv shape of a model, each
//! checked against the CPU first; the harness is `limpq_trainer::bench::conv` (its docs
//! say how shapes are grouped and classed, what a sample is and what the totals sum).
use limpq_trainer::bench::conv::{
    self, describe, ConvBenchConfig, ConvBenchResult, Outcome, ShapeResult, ALL_ALGOS,
};
use limpq_trainer::gpu::{Gpu, GpuOptions};
use limpq_trainer::kernels::conv::{ConvAlgo, ConvPolicy};
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
    if args.batch == 0 || args.check_batch == 0 {
        anyhow::bail!("--batch and --check-batch must be positive");
    }
    if args.iters == 0 || args.reps == 0 {
        anyhow::bail!("--iters and --reps must be positive");
    }
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
    if args.format == Format::Table {
        print_table(&gpu, &model, &args, &r);
    } else {
        print_json(&gpu, &model, &args, &r);
    }
    let failed = r.failures();
    if !failed.is_empty() {
        anyhow::bail!("{} conv run(s) failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

fn print_table(gpu: &Gpu, model: &Model, args: &Args, r: &ConvBenchResult) {
    let sum = &gpu.summary;
    let layers = r.layers();
    println!(
        "adapter:  {} ({}, {}); conv override {}",
        sum.name,
        sum.backend,
        sum.device_type,
        match ConvPolicy::FromEnv.algo() {
            Ok(ConvAlgo::Auto) | Err(_) => "none".to_string(),
            Ok(a) => format!("{} (LIMPQ_CONV_ALGO)", a.name()),
        }
    );
    let (c, h, w) = model.input;
    println!(
        "model:    {} ({c}×{h}×{w}), batch {}: {layers} conv layers, {} distinct shapes",
        model.name,
        args.batch,
        r.shapes.len()
    );
    println!(
        "timing:   median of {} samples after {} warm-up; a sample = one submission of {} \
         dispatches of the op, submit → idle, ÷ {}, sampling cut after {} ms; TFLOP/s = \
         2·MACs·batch / time",
        args.iters, args.warmup, args.reps, args.reps, args.max_ms
    );
    println!(
        "check:    every algorithm at batch {} against the CPU reference first \
         ({:.1} s of CPU); * = fastest f32 algorithm of the op, auto = Auto's pick",
        r.check_batch, r.cpu_reference_s
    );
    for (gi, sh) in r.shapes.iter().enumerate() {
        let g = &sh.group;
        let gflop = sh.gflop();
        println!();
        println!(
            "#{} {:<17} {}; {gflop:.4} GFLOP per op",
            gi + 1,
            g.class,
            describe(&g.shape)
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
        for row in &sh.rows {
            let mark = format!(
                "{}{}",
                if sh.is_fastest(row) { " *" } else { "" },
                if sh.auto_pick(row.op) == Some(row.algo) {
                    " auto"
                } else {
                    ""
                }
            );
            let (op, algo) = (row.op.name(), row.algo.name());
            match &row.outcome {
                Outcome::Timed {
                    ms,
                    best_ms,
                    check_err,
                    samples,
                } => println!(
                    "   {op:<16} {algo:<9} {:>10.4} {:>10.4} {:>9.3} {:>9.2} {:>11.1e}{mark}{}",
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
                Outcome::Skipped(why) => println!("   {op:<16} {algo:<9} skipped: {why}{mark}"),
                Outcome::Failed(why) => println!("   {op:<16} {algo:<9} FAILED: {why}"),
            }
        }
    }
    println!();
    println!(
        "per training step (all {layers} conv layers; forward + backward weight each, \
         backward data where the layer does not read the model input): auto {:.3} \
         ms, per-shape fastest f32 {:.3} ms ({:.2}×){}",
        r.auto_ms_per_step,
        r.best_ms_per_step,
        r.auto_over_best(),
        if r.complete {
            ""
        } else {
            "; INCOMPLETE: some op had no timed algorithm"
        }
    );
}

fn print_json(gpu: &Gpu, model: &Model, args: &Args, r: &ConvBenchResult) {
    let sum = &gpu.summary;
    for (gi, sh) in r.shapes.iter().enumerate() {
        print_shape_json(gpu, model, args, r.check_batch, gi, sh);
    }
    let v = serde_json::json!({
        "tool": "limpq", "bench": "conv-total", "model": model.name, "batch": args.batch,
        "device": sum.name, "conv_layers": r.layers(), "distinct_shapes": r.shapes.len(),
        "auto_ms_per_step": r.auto_ms_per_step, "best_ms_per_step": r.best_ms_per_step,
        "auto_over_best": r.auto_over_best(), "complete": r.complete,
        "cpu_reference_s": r.cpu_reference_s,
    });
    println!("{v}");
}

fn print_shape_json(
    gpu: &Gpu,
    model: &Model,
    args: &Args,
    check_n: usize,
    gi: usize,
    sh: &ShapeResult,
) {
    let sum = &gpu.summary;
    let (g, s) = (&sh.group, &sh.group.shape);
    for row in &sh.rows {
        let pick = sh.auto_pick(row.op);
        let mut v = serde_json::json!({
            "tool": "limpq", "bench": "conv", "model": model.name, "batch": args.batch,
            "device": sum.name, "backend": sum.backend, "device_type": sum.device_type,
            "shape_id": gi + 1, "class": g.class,
            "shape": { "n": s.n, "c_in": s.c_in, "h": s.h, "w": s.w, "c_out": s.c_out,
                       "kh": s.kh, "kw": s.kw, "stride": s.stride, "pad": s.pad,
                       "groups": s.groups, "h_out": s.h_out(), "w_out": s.w_out() },
            "layers": g.layers, "count": g.layers.len(), "with_backward_data": g.with_dx,
            "op": row.op.name(), "algo": row.algo.name(),
            "auto_pick": pick.map(ConvAlgo::name), "is_auto": pick == Some(row.algo),
            "fastest": sh.is_fastest(row), "gflop": sh.gflop(),
            "iters": args.iters, "warmup": args.warmup, "reps_per_submit": args.reps,
            "max_ms": args.max_ms,
            "check_batch": check_n,
        });
        match &row.outcome {
            Outcome::Timed {
                ms,
                best_ms,
                check_err,
                samples,
            } => {
                v["samples"] = serde_json::json!(samples);
                v["ms"] = serde_json::json!(ms);
                v["ms_best"] = serde_json::json!(best_ms);
                v["tflops"] = serde_json::json!(sh.gflop() / ms);
                v["check_worst_abs_err"] = serde_json::json!(check_err);
            }
            Outcome::Skipped(why) => v["skipped"] = serde_json::json!(why),
            Outcome::Failed(why) => v["error"] = serde_json::json!(why),
        }
        println!("{v}");
    }
}
