//! `limpq compare` end to end: a file against itself, against a copy with two layers'
//! indicators swapped, and against a file with other layers.

mod common;

use common::{limpq, refused_with, stdout, tmp_dir};

const EXAMPLE: &str = "examples/resnet20.indicators.ron";

fn rows(json: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(json).expect("json");
    v["rows"].as_array().expect("rows").clone()
}

#[test]
fn a_file_agrees_with_itself_and_less_with_two_layers_swapped() {
    let out = limpq(&["compare", EXAMPLE, EXAMPLE, "--format", "json"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let same = rows(&stdout(&out));
    // Two sides × (4 steps between 5 bit-widths + all steps pooled).
    assert_eq!(same.len(), 10);
    for r in &same {
        assert!((r["rho"].as_f64().unwrap() - 1.0).abs() < 1e-12, "{r}");
    }
    // The same numbers with the names of two layers exchanged: the increments now belong
    // to other layers, so the ranks differ.
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let swapped = text
        .replace("\"layer1.0.conv1\"", "\"TMP\"")
        .replace("\"layer3.1.conv2\"", "\"layer1.0.conv1\"")
        .replace("\"TMP\"", "\"layer3.1.conv2\"");
    let dir = tmp_dir("compare", "swap");
    let b = dir.join("swapped.ron");
    std::fs::write(&b, swapped).unwrap();
    let out = limpq(&["compare", EXAMPLE, b.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let moved = rows(&stdout(&out));
    assert!(
        moved.iter().any(|r| r["rho"].as_f64().unwrap() < 0.999),
        "{moved:?}"
    );
    let out = limpq(&["compare", EXAMPLE, b.to_str().unwrap()]);
    let table = stdout(&out);
    assert!(table.contains("20 searchable layers"), "{table}");
    assert!(table.contains("critical"), "{table}");
}

#[test]
fn files_with_other_layers_are_refused_by_name() {
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let dir = tmp_dir("compare", "rename");
    let b = dir.join("renamed.ron");
    std::fs::write(&b, text.replace("\"layer2.1.conv1\"", "\"elsewhere\"")).unwrap();
    let out = limpq(&["compare", EXAMPLE, b.to_str().unwrap()]);
    refused_with(&out, &["layer2.1.conv1", "renamed.ron", EXAMPLE]);
    let out = limpq(&["compare", EXAMPLE, "/nonexistent/x.ron"]);
    refused_with(&out, &["/nonexistent/x.ron"]);
}

/// Values a solve refuses (NaN, negative, one missing) are refused here too, naming the
/// file, the layer and the field: a rank correlation of NaN printed a confident-looking
/// figure before.
#[test]
fn values_the_solver_refuses_are_refused() {
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let dir = tmp_dir("compare", "values");
    let layer = "weight_scale: [0.4217, 0.2418, 0.1141, 0.06857, 0.03666]";
    assert!(text.contains(layer));
    for (name, value, why) in [
        (
            "nan.ron",
            "weight_scale: [NaN, 0.2418, 0.1141, 0.06857, 0.03666]",
            "value NaN is not a finite non-negative number",
        ),
        (
            "negative.ron",
            "weight_scale: [-0.4, 0.2418, 0.1141, 0.06857, 0.03666]",
            "value -0.4 is not a finite non-negative number",
        ),
        (
            "short.ron",
            "weight_scale: [0.4217, 0.2418, 0.1141, 0.06857]",
            "has 4 values but the bit list has 5",
        ),
    ] {
        let b = dir.join(name);
        std::fs::write(&b, text.replacen(layer, value, 1)).unwrap();
        let b = b.to_str().unwrap();
        // Either side.
        for args in [["compare", EXAMPLE, b], ["compare", b, EXAMPLE]] {
            refused_with(
                &limpq(&args),
                &[&format!(
                    "in {b}: layer `layer1.0.conv1`, field `weight_scale`: {why}"
                )],
            );
        }
    }
}
