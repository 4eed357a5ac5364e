//! `limpq bench train` end to end on a tiny model: the joint step runs and reports a positive
//! throughput in text and JSON, and a bad model name is an error that names it. Runs on
//! whatever adapter wgpu finds (lavapipe in CI); skips only without one.

mod common;

use common::{have_gpu, limpq, refused_with, stderr, stdout};

const TINY: [&str; 11] = [
    "bench",
    "train",
    "--model",
    "small_cnn",
    "--batch",
    "4",
    "--mode",
    "joint",
    "--steps",
    "1",
    "--warmup",
];

#[test]
fn joint_step_reports_positive_throughput() {
    if !have_gpu("joint_step_reports_positive_throughput") {
        return;
    }
    let mut args = TINY.to_vec();
    args.push("0");
    let out = limpq(&args);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let stdout = stdout(&out);
    assert!(stdout.contains("small_cnn"), "{stdout}");
    assert!(stdout.contains("6 passes per step"), "{stdout}");
    // The joint step runs the stem and classifier as `limpq indicators` does.
    assert!(stdout.contains("fixed layers: full precision"), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("images/s:"))
        .unwrap_or_else(|| panic!("no images/s line in:\n{stdout}"));
    let ips: f64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unparsable: {line}"));
    assert!(ips.is_finite() && ips > 0.0, "{line}");
}

#[test]
fn json_line_parses_with_peer_keys() {
    if !have_gpu("json_line_parses_with_peer_keys") {
        return;
    }
    let mut args = TINY.to_vec();
    args.extend(["0", "--format", "json"]);
    let out = limpq(&args);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let stdout = stdout(&out);
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON line ({e}):\n{stdout}"));
    assert_eq!(v["model"], "small_cnn");
    assert_eq!(v["batch"], 4);
    assert_eq!(v["mode"], "joint");
    assert_eq!(v["passes"], 6);
    assert!(v["fixed_bits"].is_null(), "{v}");
    let ips = v["joint"]["images_per_s"]
        .as_f64()
        .expect("joint.images_per_s");
    let ms = v["joint"]["step_ms"].as_f64().expect("joint.step_ms");
    assert!(ips > 0.0 && ms > 0.0, "{v}");
    // images/s is batch / mean step time, as the peer computes it.
    assert!((ips * ms / 1e3 - 4.0).abs() < 1e-6, "{v}");
    assert!(v["loss"].as_f64().is_some_and(f64::is_finite), "{v}");
    // The single quantized pass runs them at 8 bits, as finetuning does.
    let mut args = TINY.to_vec();
    args.extend(["0", "--format", "json"]);
    let at = args.iter().position(|a| *a == "joint").unwrap();
    args[at] = "single-quant";
    let out = limpq(&args);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = common::stdout(&out);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(
        (v["passes"].clone(), v["fixed_bits"].clone()),
        (1.into(), serde_json::json!([8, 8]))
    );
}

#[cfg(feature = "gpu")] // `bench train` comes with the default `gpu` feature
#[test]
fn unknown_model_is_named() {
    let out = limpq(&["bench", "train", "--model", "resnet99x", "--batch", "4"]);
    refused_with(&out, &["resnet99x"]);
}

/// `bench solver` (CPU only): every kind has a row with compile, solve and total figures, all
/// proven optimal, the file given with `--indicators` is timed (also under the budgets a
/// `FILE@BITOPS,SIZE` entry names), and a missing file or a bad budget is named.
#[test]
fn solver_bench_times_every_kind_and_the_given_file() {
    let out = limpq(&[
        "bench",
        "solver",
        "--instances",
        "1",
        "--repeats",
        "1",
        "--microlp-budget",
        "0",
        "--sweep-points",
        "2",
        "--indicators",
        "examples/resnet20.indicators.ron",
        "--indicators",
        "examples/resnet20.indicators.ron@w3a4,cr:8",
    ]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let header = text.lines().next().unwrap_or_default();
    for col in ["compile", "solve", "total", "proven", "microlp median"] {
        assert!(header.contains(col), "no {col} column in {header}");
    }
    for kind in [
        "resnet18 ",
        "resnet50 ",
        "resnet18-real",
        "resnet50-real",
        "random200",
        "random1000",
        "resnet50+lat",
        "resnet50-real+lat",
        "resnet20.indicators.ron ",
        "resnet20.indicators.ron@w3a4,cr:8 ",
        "resnet50 sweep ×2",
    ] {
        let row = text
            .lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_else(|| panic!("no {kind} row in:\n{text}"));
        let f: Vec<&str> = row.split_whitespace().collect();
        let proven = f.iter().find(|c| c.contains('/')).expect("a proven column");
        let (a, b) = proven.split_once('/').expect("k/n");
        assert_eq!(a, b, "not every instance proven in {row}");
        assert!(
            row.contains("µs") || row.contains("ms"),
            "no timing in {row}"
        );
    }
    let out = limpq(&["bench", "solver", "--indicators", "no/such.ron"]);
    refused_with(&out, &["no/such.ron"]);
    let out = limpq(&[
        "bench",
        "solver",
        "--indicators",
        "examples/resnet20.indicators.ron@w3x4,cr:8",
    ]);
    refused_with(
        &out,
        &["resnet20.indicators.ron@w3x4,cr:8", "BitOps budget `w3x4`"],
    );
}
