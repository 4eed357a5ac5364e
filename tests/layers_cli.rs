//! `limpq layers` end to end: the sums of issue 2, the example file, and error messages.

mod common;

use common::{limpq, refused_with, tmp_dir};

fn stdout_of(args: &[&str]) -> String {
    let out = limpq(args);
    assert!(
        out.status.success(),
        "limpq {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The numbers on the table's `sum over {what}` line: (MACs, params).
fn sum_line(table: &str, what: &str) -> (String, String) {
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("sum over {what}")))
        .unwrap_or_else(|| panic!("no '{what}' sum in:\n{table}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    let n = fields.len();
    (fields[n - 2].to_string(), fields[n - 1].to_string())
}

#[test]
fn conv_sums_of_issue_2() {
    for (model, macs, params) in [
        ("resnet18", "1,813,561,344", "11,166,912"),
        ("resnet50", "4,087,136,256", "23,454,912"),
        ("resnet20", "31,021,312", "269,968"),
    ] {
        let table = stdout_of(&["layers", model]);
        assert_eq!(
            sum_line(&table, "conv layers"),
            (macs.to_string(), params.to_string()),
            "{model}"
        );
    }
}

#[test]
fn table_rows_and_other_sums() {
    let table = stdout_of(&["layers", "resnet18"]);
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name}"))
            .to_string()
    };
    let conv1 = row("conv1");
    assert!(conv1.contains("3×224×224 → 64×112×112") && conv1.contains("118,013,952"));
    assert!(
        conv1.contains("9,408") && conv1.contains("fixed"),
        "{conv1}"
    );
    let ds = row("layer2.0.downsample.0");
    assert!(
        ds.contains("64×56×56 → 128×28×28") && ds.contains("searched"),
        "{ds}"
    );
    assert!(row("fc").contains("512,000"));
    assert_eq!(
        sum_line(&table, "linear layers"),
        ("512,000".into(), "512,000".into())
    );
    assert_eq!(
        sum_line(&table, "all layers"),
        ("1,814,073,344".into(), "11,678,912".into())
    );
    // Searchable = all minus the stem conv (118,013,952 MACs, 9,408 weights) and fc.
    assert_eq!(
        sum_line(&table, "searchable layers"),
        ("1,695,547,392".into(), "11,157,504".into())
    );
}

#[test]
fn ron_output_reads_back_and_matches_the_example() {
    let ron_text = stdout_of(&["layers", "small_cnn", "--format", "ron"]);
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/small_cnn.model.ron"
    ))
    .unwrap();
    assert_eq!(ron_text.trim_end(), example.trim_end());

    let dir = tmp_dir("layers-cli", "ron");
    let path = dir.join("r20.ron");
    std::fs::write(&path, stdout_of(&["layers", "resnet20", "--format", "ron"])).unwrap();
    let from_file = stdout_of(&["layers", path.to_str().unwrap()]);
    assert_eq!(from_file, stdout_of(&["layers", "resnet20"]));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn errors_name_the_file_and_node() {
    let dir = tmp_dir("layers-cli", "err");
    let path = dir.join("broken.ron");
    let text = stdout_of(&["layers", "small_cnn", "--format", "ron"]).replace(
        "out_channels: 16, kernel: 3, stride: 1",
        "out_channels: 24, kernel: 3, stride: 1",
    );
    std::fs::write(&path, text).unwrap();
    let out = limpq(&["layers", path.to_str().unwrap()]);
    refused_with(&out, &["broken.ron", "layer1.0.add", "24×7×7"]);

    let out = limpq(&["layers", "no-such-model"]);
    refused_with(&out, &["no-such-model", "resnet50"]);

    let out = limpq(&["layers", dir.join("absent.ron").to_str().unwrap()]);
    refused_with(&out, &["absent.ron"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn all_lists_every_node_with_its_shapes() {
    let table = stdout_of(&["layers", "small_cnn", "--all"]);
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name} in:\n{table}"))
            .to_string()
    };
    assert!(row("bn1").contains("bn") && row("bn1").contains("8×14×14 → 8×14×14"));
    assert!(row("layer1.0.add").contains("16×7×7 + 16×7×7 → 16×7×7"));
    assert!(row("avgpool").contains("32×4×4 → 32×1×1"));
    // The sums are the same with or without --all.
    let plain = stdout_of(&["layers", "small_cnn"]);
    let sums = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with("sum over"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    };
    assert_eq!(sums(&table), sums(&plain));
    assert!(!plain.lines().any(|l| l.starts_with("bn1")));
}
