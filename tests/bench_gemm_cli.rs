//! `limpq bench gemm` end to end at a tiny size: every kind the adapter has is checked
//! against the CPU and reports a positive throughput; kinds it lacks are reported as skipped
//! with the reason (`--kind all`) or are an error naming the missing feature (asked for
//! explicitly). Runs on whatever adapter wgpu finds (lavapipe here); skips only without one.
// These commands exist only with the default `gpu` feature.
#![cfg(feature = "gpu")]

mod common;

use common::{have_gpu, limpq, refused_with, stderr, stdout};

const TINY: [&str; 14] = [
    "bench", "gemm", "--m", "40", "--k", "24", "--n", "72", "--iters", "2", "--warmup", "0",
    "--check", "33,20,17",
];

#[test]
fn bench_gemm_all_kinds_json() {
    if !have_gpu("bench_gemm_all_kinds_json") {
        return;
    }
    let mut args = TINY.to_vec();
    args.extend(["--kind", "all", "--reps", "2", "--format", "json"]);
    let out = limpq(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let kinds: Vec<&str> = lines.iter().filter_map(|v| v["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "f32",
            "f16",
            "coop",
            "coop-prefetch",
            "coop-wg4",
            "coop-wg4-prefetch"
        ],
        "{}",
        stdout(&out)
    );
    for v in &lines {
        if let Some(why) = v["skipped"].as_str() {
            assert!(why.contains("adapter"), "{v}");
            continue;
        }
        assert_eq!(
            (v["m"].as_u64(), v["k"].as_u64(), v["n"].as_u64()),
            (Some(40), Some(24), Some(72))
        );
        assert!(v["tflops"].as_f64().unwrap() > 0.0, "{v}");
        let c = &v["check"];
        assert!(
            c["worst_abs_err"].as_f64().unwrap() <= c["tolerance"].as_f64().unwrap(),
            "{v}"
        );
        let rel = c["rel_err_vs_f32_operands"].as_f64().unwrap();
        if v["kind"] == "f32" {
            assert!(rel < 1e-5, "f32 kernel vs f32 product: {v}");
        } else {
            // f16 operands: relative rounding 2^-11 per operand shows up, but stays small.
            assert!(rel > 1e-6 && rel < 2e-3, "f16 operands vs f32 product: {v}");
        }
    }
}

#[test]
fn bench_gemm_text_and_unavailable_kind() {
    if !have_gpu("bench_gemm_text_and_unavailable_kind") {
        return;
    }
    let mut args = TINY.to_vec();
    args.extend(["--kind", "f32", "--reps", "1"]);
    let out = limpq(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("adapter:") && s.contains("TFLOP/s"), "{s}");
    assert!(s.lines().any(|l| l.starts_with("f32 ")), "{s}");
    // Asking for the tensor-core kernel explicitly where it is missing is an error that
    // says why; where it exists it must run.
    let mut args = TINY.to_vec();
    args.extend(["--kind", "coop", "--reps", "1"]);
    let out = limpq(&args);
    if out.status.success() {
        assert!(stdout(&out).lines().any(|l| l.starts_with("coop ")));
    } else {
        refused_with(&out, &["cooperative matrix"]);
    }
    let out = limpq(&["bench", "gemm", "--size", "0"]);
    refused_with(&out, &["--size", "1 or more"]);
}

#[test]
fn bench_gemm_refuses_a_shape_the_adapter_cannot_hold() {
    if !have_gpu("bench_gemm_refuses_a_shape_the_adapter_cannot_hold") {
        return;
    }
    // 100000² f32 = 40 GB per operand: refused by name before any allocation (this used to
    // abort the process trying to allocate it in host memory).
    let out = limpq(&["bench", "gemm", "--size", "100000", "--kind", "f32"]);
    let err = refused_with(
        &out,
        &["operand A (m×k) needs 40000000000 bytes", "smaller size"],
    );
    assert!(!err.contains("memory allocation"), "{err}");
    // The check's shape too, named by its flag; a side past u64 / 7919 made the check's
    // seed overflow.
    for (check, needs) in [
        ("100000,100000,100000", "needs 40000000000 bytes"),
        (
            "9223372036854775808,2,1",
            "needs 18446744073709551615 bytes",
        ),
    ] {
        let out = limpq(&["bench", "gemm", "--size", "16", "--check", check]);
        let err = refused_with(&out, &[&format!("--check {check}"), needs]);
        assert!(
            !err.contains("memory allocation") && !err.contains("panicked"),
            "{err}"
        );
    }
}
