//! `limpq bench conv` end to end on tiny models: the table names every distinct conv shape
//! (layers with the same shape grouped, with their class), every algorithm is checked and
//! timed or skipped with a reason, the JSON lines parse and cover every (shape, op,
//! algorithm); bad override values are errors that name the variable / flag. Runs on
//! whatever adapter wgpu finds (lavapipe in CI); skips only without one.
// These commands exist only with the default `gpu` feature.
#![cfg(feature = "gpu")]

mod common;

use std::process::Output;

use common::{have_gpu, limpq_cmd, refused, refused_with, stderr, stdout};

/// The binary with `args` and `env`, without the caller's `LIMPQ_CONV_ALGO`: these tests
/// set that override themselves.
fn limpq_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    limpq_cmd(args)
        .env_remove("LIMPQ_CONV_ALGO")
        .envs(env.iter().copied())
        .output()
        .expect("run limpq")
}

fn limpq(args: &[&str]) -> Output {
    limpq_env(args, &[])
}

/// Six convs, five distinct shapes: a stem, two identical 3×3 (one group), a depthwise 3×3,
/// a 1×1 and a strided 3×3.
const MODEL: &str = r#"Model(
    name: "conv_classes",
    input: (3, 6, 6),
    classes: 4,
    nodes: [
        Node(name: "stem", op: Conv2d(out_channels: 8, kernel: 3, stride: 1, padding: 1), inputs: ["input"]),
        Node(name: "a", op: Conv2d(out_channels: 8, kernel: 3, stride: 1, padding: 1), inputs: ["stem"]),
        Node(name: "b", op: Conv2d(out_channels: 8, kernel: 3, stride: 1, padding: 1), inputs: ["a"]),
        Node(name: "dw", op: Conv2d(out_channels: 8, kernel: 3, stride: 1, padding: 1, groups: 8), inputs: ["b"]),
        Node(name: "pw", op: Conv2d(out_channels: 12, kernel: 1), inputs: ["dw"]),
        Node(name: "down", op: Conv2d(out_channels: 12, kernel: 3, stride: 2, padding: 1), inputs: ["pw"]),
        Node(name: "pool", op: GlobalAvgPool, inputs: ["down"]),
        Node(name: "fc", op: Linear(out_features: 4), inputs: ["pool"]),
    ],
)"#;

/// The model file in a temp folder that goes when the result is dropped.
fn model_file(name: &str) -> common::Scratch {
    let p = common::tmp(&format!("bench-conv-{name}"), "conv_classes.ron");
    std::fs::write(&p, MODEL).unwrap();
    p
}

const TINY: [&str; 10] = [
    "--batch",
    "2",
    "--iters",
    "1",
    "--warmup",
    "0",
    "--reps",
    "1",
    "--check-batch",
    "1",
];

fn bench(model: &str, format: &str) -> String {
    let mut args = vec!["bench", "conv", "--model", model, "--format", format];
    args.extend_from_slice(&TINY);
    let out = limpq(&args);
    assert!(
        out.status.success(),
        "bench conv --model {model} failed: {}\n{}",
        stderr(&out),
        stdout(&out)
    );
    stdout(&out)
}

/// The table's per-shape header lines (`#k class description`) and the layers lines.
fn shapes_and_layers(table: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = table.lines().collect();
    let mut v = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with('#') {
            let layers = lines
                .get(i + 1)
                .copied()
                .unwrap_or_default()
                .trim()
                .to_string();
            v.push((l.to_string(), layers));
        }
    }
    v
}

#[test]
fn table_names_every_distinct_shape_of_small_cnn() {
    if !have_gpu("table_names_every_distinct_shape_of_small_cnn") {
        return;
    }
    let t = bench("small_cnn", "table");
    assert!(t.contains("4 conv layers, 4 distinct shapes"), "{t}");
    let shapes = shapes_and_layers(&t);
    assert_eq!(shapes.len(), 4, "{t}");
    let want = [
        ("stem", "1→8 ch, 28×28 in", "conv1"),
        ("3x3-strided", "8→16 ch, 14×14 in", "conv2"),
        ("3x3", "16→16 ch, 7×7 in", "layer1.0.conv1"),
        ("3x3-strided", "16→32 ch, 7×7 in", "conv3"),
    ];
    for ((head, layers), (class, desc, layer)) in shapes.iter().zip(want) {
        assert!(
            head.split_whitespace().nth(1) == Some(class) && head.contains(desc),
            "{head}"
        );
        assert_eq!(
            layers.split(": ").nth(1).map(|s| s.split(' ').next()),
            Some(Some(layer)),
            "{layers}"
        );
    }
    // One fastest f32 algorithm per op of every shape, except the stem's backward data,
    // which training never runs (skipped, not timed).
    let fastest = t
        .lines()
        .filter(|l| l.starts_with("   ") && l.contains(" *"))
        .count();
    assert_eq!(fastest, 4 * 3 - 1, "{t}");
    assert!(t.contains("skipped: never run in training"), "{t}");
    assert!(t.contains("skipped: same kernel as direct"), "{t}");
    assert!(t.contains("skipped: forward only"), "{t}");
    assert!(!t.contains("FAILED"), "{t}");
    let last = t.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("per training step (all 4 conv layers"),
        "{last}"
    );
}

#[test]
fn duplicate_shapes_are_grouped_and_classed() {
    if !have_gpu("duplicate_shapes_are_grouped_and_classed") {
        return;
    }
    let ron = model_file("table");
    let t = bench(ron.to_str().unwrap(), "table");
    assert!(t.contains("6 conv layers, 5 distinct shapes"), "{t}");
    let shapes = shapes_and_layers(&t);
    let classes: Vec<&str> = shapes
        .iter()
        .map(|(h, _)| h.split_whitespace().nth(1).unwrap_or_default())
        .collect();
    assert_eq!(
        classes,
        ["stem", "3x3", "depthwise", "1x1", "3x3-strided"],
        "{t}"
    );
    assert_eq!(shapes[1].1, "layers (2): a, b", "{t}");
    assert!(shapes[0].1.contains("no backward data"), "{t}");
}

#[test]
fn json_lines_cover_every_shape_op_and_algo() {
    if !have_gpu("json_lines_cover_every_shape_op_and_algo") {
        return;
    }
    let ron = model_file("json");
    let out = bench(ron.to_str().unwrap(), "json");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let (rows, total): (Vec<_>, Vec<_>) = lines.iter().partition(|v| v["bench"] == "conv");
    // 5 shapes × 3 ops × 6 algorithms.
    assert_eq!(rows.len(), 5 * 3 * 6, "{out}");
    assert_eq!(total.len(), 1, "{out}");
    for shape_id in 1..=5u64 {
        for op in ["forward", "backward_data", "backward_weight"] {
            let of: Vec<_> = rows
                .iter()
                .filter(|v| v["shape_id"] == shape_id && v["op"] == op)
                .collect();
            let algos: Vec<&str> = of.iter().filter_map(|v| v["algo"].as_str()).collect();
            assert_eq!(
                algos,
                [
                    "direct",
                    "gemm",
                    "blocked",
                    "broadcast",
                    "f16gemm",
                    "pointwise"
                ],
                "{shape_id} {op}"
            );
            let timed: Vec<_> = of.iter().filter(|v| v.get("ms").is_some()).collect();
            // Shape 1 is the stem: its backward data is never run in training.
            let stem_dx = shape_id == 1 && op == "backward_data";
            assert_eq!(
                timed.is_empty(),
                stem_dx,
                "shape {shape_id} {op}: timed {}",
                timed.len()
            );
            for v in &timed {
                assert!(v["ms"].as_f64().unwrap() > 0.0, "{v}");
                assert!(v["tflops"].as_f64().unwrap() > 0.0, "{v}");
                assert!(v["check_worst_abs_err"].as_f64().unwrap() < 1e-3, "{v}");
            }
            for v in &of {
                assert!(v.get("error").is_none(), "{v}");
                assert!(
                    v.get("ms").is_some() || v["skipped"].as_str().is_some_and(|s| !s.is_empty()),
                    "neither timed nor skipped with a reason: {v}"
                );
            }
            assert_eq!(
                of.iter().filter(|v| v["fastest"] == true).count(),
                usize::from(!stem_dx),
                "shape {shape_id} {op}"
            );
            assert!(
                of.iter().any(|v| v["is_auto"] == true),
                "shape {shape_id} {op}: no auto"
            );
        }
    }
    // Pointwise runs only on the 1×1 stride-1 shape (#4), forward and backward data.
    for v in rows.iter().filter(|v| v["algo"] == "pointwise") {
        let timed = v["shape_id"] == 4 && v["op"] != "backward_weight";
        assert_eq!(v.get("ms").is_some(), timed, "{v}");
    }
    let tot = total[0];
    assert_eq!(tot["conv_layers"], 6);
    assert_eq!(tot["distinct_shapes"], 5);
    assert_eq!(tot["complete"], true);
    let (auto, best) = (
        tot["auto_ms_per_step"].as_f64().unwrap(),
        tot["best_ms_per_step"].as_f64().unwrap(),
    );
    assert!(best > 0.0 && best <= auto, "{tot}");
}

#[test]
fn bad_override_values_name_the_variable_and_flag() {
    let out = limpq_env(
        &["bench", "conv", "--model", "small_cnn", "--batch", "1"],
        &[("LIMPQ_CONV_ALGO", "fastest")],
    );
    let e = refused(&out);
    // Without an adapter the device error may come first; with one, the override's.
    if have_gpu("bad_override_values_name_the_variable_and_flag") {
        assert!(
            e.contains("LIMPQ_CONV_ALGO")
                && e.contains("auto, direct, gemm, blocked, broadcast, f16gemm"),
            "{e}"
        );
        // The f16 override on a device without f16 shaders says so, in one sentence.
        let out = limpq_env(
            &["bench", "train", "--model", "small_cnn", "--batch", "1"],
            &[("LIMPQ_CONV_ALGO", "f16gemm"), ("LIMPQ_NO_F16", "1")],
        );
        refused_with(
            &out,
            &[
                "override f16gemm (LIMPQ_CONV_ALGO): adapter",
                " was not given SHADER_F16 (not offered, or LIMPQ_NO_F16 set)",
            ],
        );
    }
    let out = limpq(&[
        "bench",
        "train",
        "--model",
        "small_cnn",
        "--conv-algo",
        "fastest",
    ]);
    refused_with(
        &out,
        &[
            "--conv-algo",
            "auto, direct, gemm, blocked, broadcast, f16gemm",
        ],
    );
    let out = limpq(&["bench", "conv", "--model", "small_cnn", "--algo", "fastest"]);
    refused_with(&out, &["--algo"]);
}

#[test]
fn a_batch_the_adapter_cannot_hold_is_refused_by_name() {
    if have_gpu("a_batch_the_adapter_cannot_hold_is_refused_by_name") {
        // resnet18 at batch 100000: the stem's input alone is 60 GB; refused before any
        // allocation (this used to abort the process allocating it in host memory).
        for args in [
            &["bench", "conv", "--model", "resnet18", "--batch", "100000"][..],
            &["bench", "train", "--model", "resnet18", "--batch", "100000"][..],
        ] {
            let out = limpq(args);
            let err = refused_with(&out, &["--batch 100000", "largest storage buffer"]);
            assert!(!err.contains("memory allocation"), "{err}");
        }
        // A batch whose products pass u64 (an overflow panic in the conv's lengths).
        let out = limpq(&[
            "bench",
            "conv",
            "--model",
            "small_cnn",
            "--batch",
            "18446744073709551615",
        ]);
        let err = refused_with(
            &out,
            &["--batch 18446744073709551615", "largest storage buffer"],
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
