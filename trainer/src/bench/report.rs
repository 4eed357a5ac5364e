//! The figures of the benchmarks as the CLI prints them: readable text, or JSON lines
//! (keys as the peer's scripts read them) for `limpq bench conv|gemm|train --format json`.
use std::fmt::Write as _;

use super::conv::{describe, ConvBenchConfig, ConvBenchResult, Outcome, ShapeResult};
use super::gemm::{self, GemmBenchConfig, Row as GemmRow};
use super::train::{TrainBenchConfig, TrainBenchResult};
use crate::gpu::{AdapterSummary, Gpu};
use crate::kernels::conv::{ConvAlgo, ConvPolicy};
use crate::model::Model;

impl ConvBenchResult {
    /// The readable report: the adapter, the model, how samples are timed, a table per
    /// shape (* marks the fastest f32 algorithm of an op, `auto` Auto's pick) and the
    /// totals per training step.
    pub fn to_text(&self, sum: &AdapterSummary, model: &Model, cfg: &ConvBenchConfig) -> String {
        let (r, args) = (self, cfg);
        let mut s = String::new();
        let layers = r.layers();
        let _ = writeln!(
            s,
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
        let _ = writeln!(
            s,
            "model:    {} ({c}×{h}×{w}), batch {}: {layers} conv layers, {} distinct shapes",
            model.name,
            args.batch,
            r.shapes.len()
        );
        let _ = writeln!(
            s,
            "timing:   median of {} samples after {} warm-up; a sample = one submission of {} \
         dispatches of the op, submit → idle, ÷ {}, sampling cut after {} ms; TFLOP/s = \
         2·MACs·batch / time",
            args.iters, args.warmup, args.reps, args.reps, args.max_ms
        );
        let _ = writeln!(
            s,
            "check:    every algorithm at batch {} against the CPU reference first \
         ({:.1} s of CPU); * = fastest f32 algorithm of the op, auto = Auto's pick",
            r.check_batch, r.cpu_reference_s
        );
        for (gi, sh) in r.shapes.iter().enumerate() {
            let g = &sh.group;
            let gflop = sh.gflop();
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "#{} {:<17} {}; {gflop:.4} GFLOP per op",
                gi + 1,
                g.class,
                describe(&g.shape)
            );
            let _ = writeln!(
                s,
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
            let _ = writeln!(
                s,
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
                let _ = match &row.outcome {
                    Outcome::Timed {
                        ms,
                        best_ms,
                        check_err,
                        samples,
                    } => writeln!(
                        s,
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
                    Outcome::Skipped(why) => {
                        writeln!(s, "   {op:<16} {algo:<9} skipped: {why}{mark}")
                    }
                    Outcome::Failed(why) => writeln!(s, "   {op:<16} {algo:<9} FAILED: {why}"),
                };
            }
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
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
        s
    }
}

impl ConvBenchResult {
    /// One JSON line per (shape, op, algorithm), then one summary line.
    pub fn to_json_lines(
        &self,
        sum: &AdapterSummary,
        model: &Model,
        cfg: &ConvBenchConfig,
    ) -> String {
        let (r, args) = (self, cfg);
        let mut s = String::new();
        for (gi, sh) in r.shapes.iter().enumerate() {
            shape_json(&mut s, sum, model, args, r.check_batch, gi, sh);
        }
        let v = serde_json::json!({
            "tool": "limpq", "bench": "conv-total", "model": model.name, "batch": args.batch,
            "device": sum.name, "conv_layers": r.layers(), "distinct_shapes": r.shapes.len(),
            "auto_ms_per_step": r.auto_ms_per_step, "best_ms_per_step": r.best_ms_per_step,
            "auto_over_best": r.auto_over_best(), "complete": r.complete,
            "cpu_reference_s": r.cpu_reference_s,
        });
        let _ = writeln!(s, "{v}");
        s
    }
}

fn shape_json(
    out: &mut String,
    sum: &AdapterSummary,
    model: &Model,
    args: &ConvBenchConfig,
    check_n: usize,
    gi: usize,
    sh: &ShapeResult,
) {
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
        let _ = writeln!(out, "{v}");
    }
}

/// The readable GEMM report: the adapter, the shape and timing rule, the check, and a row
/// per kind (timed, skipped with the reason, or FAILED with the error).
pub fn gemm_text(gpu: &Gpu, cfg: &GemmBenchConfig, rows: &[GemmRow]) -> String {
    let s = &gpu.summary;
    let (m, k, n) = cfg.shape;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "adapter:  {} ({}, {}); shader-f16 {}, cooperative matrix 16×16×16 f16→f32 {}",
        s.name,
        s.backend,
        s.device_type,
        if gpu.shader_f16 { "yes" } else { "no" },
        if gpu.coop_f16 { "yes" } else { "no" }
    );
    let _ = writeln!(
        out,
        "shape:    {m}×{k}×{n} (m×k×n), {:.3} GFLOP per GEMM; median of {} samples after \
         {} warm-up; a sample = one submission of {} dispatches",
        2.0 * (m * n * k) as f64 / 1e9,
        cfg.iters,
        cfg.warmup,
        cfg.reps
    );
    let (cm, ck, cn) = cfg.check;
    let _ = writeln!(
        out,
        "check:    {cm}×{ck}×{cn} against a CPU f64 reference (f16 kinds: operands rounded \
         to f16 as the pack kernel does)"
    );
    let _ = writeln!(
        out,
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
    for row in rows {
        let name = row.which.name();
        let _ = match &row.outcome {
            gemm::Outcome::Skipped(why) => writeln!(out, "{name:<17} skipped: {why}"),
            gemm::Outcome::Failed(e) => writeln!(out, "{name:<17} FAILED: {e}"),
            gemm::Outcome::Timed {
                check: c,
                timing: t,
            } => {
                let tflops = row.tflops(cfg.shape).unwrap_or(f64::NAN);
                let pack_ms = t.pack.map(|p| p.as_secs_f64() * 1e3);
                writeln!(
                    out,
                    "{:<17} {:>10.3} {:>10.3} {:>9.3} {:>10.2} {:>11} {:>12.1e} {:>13.2e}",
                    name,
                    t.per_gemm.as_secs_f64() * 1e3,
                    t.best.as_secs_f64() * 1e3,
                    tflops,
                    tflops * 1e3,
                    pack_ms.map_or("-".to_string(), |p| format!("{p:.3}")),
                    c.worst,
                    c.rel_vs_f32
                )
            }
        };
    }
    out
}

/// One JSON line per GEMM kind.
pub fn gemm_json_lines(sum: &AdapterSummary, cfg: &GemmBenchConfig, rows: &[GemmRow]) -> String {
    let (m, k, n) = cfg.shape;
    let mut out = String::new();
    for row in rows {
        let name = row.which.name();
        let v = match &row.outcome {
            gemm::Outcome::Skipped(why) => serde_json::json!({
                "tool": "limpq", "bench": "gemm", "kind": name,
                "device": sum.name, "skipped": why,
            }),
            gemm::Outcome::Failed(e) => serde_json::json!({
                "tool": "limpq", "bench": "gemm", "kind": name,
                "device": sum.name, "error": e,
            }),
            gemm::Outcome::Timed {
                check: c,
                timing: t,
            } => serde_json::json!({
                "tool": "limpq", "bench": "gemm", "kind": name,
                "device": sum.name, "backend": sum.backend, "device_type": sum.device_type,
                "m": m, "n": n, "k": k, "iters": cfg.iters, "warmup": cfg.warmup,
                "reps_per_submit": cfg.reps,
                "ms_per_gemm_median": t.per_gemm.as_secs_f64() * 1e3,
                "ms_per_gemm_best": t.best.as_secs_f64() * 1e3,
                "tflops": row.tflops(cfg.shape).unwrap_or(f64::NAN),
                "pack_ms": t.pack.map(|p| p.as_secs_f64() * 1e3),
                "check": { "m": cfg.check.0, "k": cfg.check.1, "n": cfg.check.2,
                           "worst_abs_err": c.worst, "tolerance": c.tol,
                           "rel_err_vs_f32_operands": c.rel_vs_f32 },
            }),
        };
        let _ = writeln!(out, "{v}");
    }
    out
}

/// `kind: error` of every GEMM kind that failed (check out of tolerance, shader refused).
pub fn gemm_failures(rows: &[GemmRow]) -> Vec<String> {
    rows.iter()
        .filter_map(|r| match &r.outcome {
            gemm::Outcome::Failed(e) => Some(format!("{}: {e}", r.which.name())),
            _ => None,
        })
        .collect()
}

impl TrainBenchResult {
    /// The readable summary; `conv_algo` is what the run's conv policy resolved to.
    pub fn to_text(
        &self,
        s: &AdapterSummary,
        model: &Model,
        cfg: &TrainBenchConfig,
        conv_algo: ConvAlgo,
    ) -> String {
        let (c, h, w) = model.input;
        let (mean, median) = (self.mean_s(), self.median_s());
        let passes = self.passes;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "adapter:      {} ({}, {})",
            s.name, s.backend, s.device_type
        );
        let _ = writeln!(
            out,
            "model:        {} ({c}×{h}×{w}, {} classes)",
            model.name, model.classes
        );
        let _ = writeln!(out, "batch:        {}", cfg.batch);
        let _ = writeln!(
            out,
            "conv algo:    {}",
            if conv_algo == ConvAlgo::Auto {
                "auto (built-in per-shape rule)"
            } else {
                conv_algo.name()
            }
        );
        let _ = writeln!(
            out,
            "mode:         {} ({passes} pass{} per step)",
            cfg.mode.peer_label(),
            if passes == 1 { "" } else { "es" }
        );
        let _ = writeln!(
            out,
            "fixed layers: {} (stem, classifier)",
            match self.fixed_bits {
                Some((w, a)) => format!("W{w}A{a}"),
                None => "full precision".into(),
            }
        );
        let _ = writeln!(
            out,
            "steps:        {} timed after {} warmup ({:.2} s); build {:.2} s",
            cfg.steps, cfg.warmup, self.warmup_s, self.build_s
        );
        let _ = writeln!(
            out,
            "ms per step:  median {:.3}, mean {:.3}",
            median * 1e3,
            mean * 1e3
        );
        let _ = writeln!(
            out,
            "images/s:     {:.1} (batch / mean step)",
            self.images_per_s(cfg.batch)
        );
        let _ = writeln!(out, "final loss:   {:.4}", self.loss);
        out
    }

    /// One JSON line (keys as the peer's).
    pub fn to_json_line(
        &self,
        s: &AdapterSummary,
        model: &Model,
        cfg: &TrainBenchConfig,
        conv_algo: ConvAlgo,
    ) -> String {
        let (mean, ips) = (self.mean_s(), self.images_per_s(cfg.batch));
        let label = cfg.mode.peer_label();
        let v = serde_json::json!({
            "tool": "limpq",
            "model": model.name,
            "batch": cfg.batch,
            "mode": label,
            "device": s.name,
            "backend": s.backend,
            "device_type": s.device_type,
            "passes": self.passes,
            "fixed_bits": self.fixed_bits.map(|(w, a)| [w, a]),
            "conv_algo": conv_algo.name(),
            "steps": cfg.steps,
            "warmup": cfg.warmup,
            "step_ms": mean * 1e3,
            "step_ms_median": self.median_s() * 1e3,
            "images_per_s": ips,
            "build_s": self.build_s,
            "warmup_s": self.warmup_s,
            "loss": self.loss,
            cfg.mode.peer_label(): { "step_ms": mean * 1e3, "images_per_s": ips },
        });
        format!("{v}\n")
    }
}
