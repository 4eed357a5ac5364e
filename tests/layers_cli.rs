//! `limpq layers` end to end: the sums of issue 2, the example file, and error messages.

mod common;

use common::{limpq, limpq_cmd, refused_with, tmp_dir};
use limpq_solver::format::versioned::ron_from_str;

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
    let ron_text = stdout_of(&["layers", "small_cnn", "--description"]);
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/small_cnn.model.ron"
    ))
    .unwrap();
    assert_eq!(ron_text.trim_end(), example.trim_end());

    let dir = tmp_dir("layers-cli", "ron");
    let path = dir.join("r20.ron");
    std::fs::write(&path, stdout_of(&["layers", "resnet20", "--description"])).unwrap();
    let from_file = stdout_of(&["layers", path.to_str().unwrap()]);
    assert_eq!(from_file, stdout_of(&["layers", "resnet20"]));
    std::fs::remove_dir_all(&dir).ok();
}

/// A checkpoint names its model: `limpq layers` prints that model's table (it said the
/// file "is not UTF-8 text").
#[cfg(feature = "gpu")]
#[test]
fn a_checkpoint_shows_the_model_it_holds() {
    use limpq_trainer::checkpoint::{Checkpoint, NamedTensor};
    use limpq_trainer::model::builtin;
    let dir = tmp_dir("layers-cli", "ckpt");
    let path = dir.join("r20.ckpt");
    let model = builtin("resnet20").unwrap();
    let tensors = limpq_trainer::weights::tensor_specs(&model)
        .unwrap()
        .into_iter()
        .map(|s| NamedTensor {
            data: vec![0.0; s.shape.iter().product()],
            name: s.name,
            kind: s.kind,
        })
        .collect();
    let ck = Checkpoint {
        origin: None,
        model,
        seed: 0,
        epoch: 0,
        step: 0,
        meta: Vec::new(),
        tensors,
    };
    ck.save(&path).unwrap();
    let p = path.to_str().unwrap();
    assert_eq!(
        stdout_of(&["layers", p]),
        stdout_of(&["layers", "resnet20"])
    );
    // A damaged checkpoint: the checkpoint's error, not "not UTF-8 text".
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.join("cut.ckpt");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    refused_with(
        &limpq(&["layers", cut.to_str().unwrap()]),
        &["cut.ckpt", "not a valid limpq checkpoint", "truncated"],
    );
    // A file that is neither: the description's error, as before.
    std::fs::write(&path, b"\xff\xfe not a model").unwrap();
    refused_with(&limpq(&["layers", p]), &["r20.ckpt", "not UTF-8 text"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn errors_name_the_file_and_node() {
    let dir = tmp_dir("layers-cli", "err");
    let path = dir.join("broken.ron");
    let text = stdout_of(&["layers", "small_cnn", "--description"]).replace(
        "out_channels: 16, kernel: 3, stride: 1",
        "out_channels: 24, kernel: 3, stride: 1",
    );
    std::fs::write(&path, text).unwrap();
    let out = limpq(&["layers", path.to_str().unwrap()]);
    refused_with(&out, &["broken.ron", "layer1.0.add", "24×7×7"]);

    let out = limpq(&["layers", "no-such-model"]);
    refused_with(&out, &["no-such-model", "resnet50"]);

    // A padding that makes the output plane too large is named, not out_channels.
    let padded = dir.join("padded.ron");
    std::fs::write(
        &padded,
        "Model(name: \"pad\", input: (1, 28, 28), classes: 10, nodes: [\n\
         Node(name: \"c1\", op: Conv2d(out_channels: 4, kernel: 3, padding: 4000000000), \
         inputs: [\"input\"]),\n\
         Node(name: \"fc\", op: Linear(out_features: 10, bias: true), inputs: [\"c1\"]),\n])\n",
    )
    .unwrap();
    let out = limpq(&["layers", padded.to_str().unwrap()]);
    refused_with(&out, &["padded.ron", "node 'c1': field 'padding'"]);

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

/// A number as the table prints it (`1,813,561,344`).
fn number(cell: &str) -> u64 {
    cell.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {cell}"))
}

/// `--format json` and `ron` carry the table's rows, shapes and sums, with the same figures.
#[test]
fn json_and_ron_carry_what_the_table_shows() {
    let table = stdout_of(&["layers", "resnet18", "--all"]);
    let json = stdout_of(&["layers", "resnet18", "--all", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["model"], "resnet18");
    assert_eq!(v["input"], serde_json::json!([3, 224, 224]));
    let sums = v["sums"].as_array().unwrap();
    assert_eq!(sums.len(), 4);
    for s in sums {
        let over = s["over"].as_str().unwrap();
        let (macs, params) = sum_line(&table, over);
        assert_eq!(s["macs"].as_u64(), Some(number(&macs)), "{over}");
        assert_eq!(s["params"].as_u64(), Some(number(&params)), "{over}");
    }
    let rows = v["rows"].as_array().unwrap();
    let table_rows: Vec<&str> = table
        .lines()
        .skip(2)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(rows.len(), table_rows.len(), "one JSON row per table row");
    for (r, line) in rows.iter().zip(&table_rows) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(r["name"].as_str(), Some(cells[0]), "{line}");
        assert_eq!(r["kind"].as_str(), Some(cells[1]), "{line}");
        let out = r["output"].as_array().unwrap();
        let shape = format!("→ {}×{}×{}", out[0], out[1], out[2]);
        assert!(line.contains(&shape), "{line} lacks {shape}");
        match r["macs"].as_u64() {
            Some(m) => {
                assert!(
                    line.contains(&format!(" {} ", sep(m))),
                    "{line} lacks MACs {m}"
                );
                let bits = if r["fixed"] == true {
                    "fixed 8/8"
                } else {
                    "searched"
                };
                assert!(line.ends_with(bits), "{line}: {bits}");
            }
            None => assert!(r["fixed"].is_null() && r["params"].is_null(), "{r}"),
        }
    }
    let ron_text = stdout_of(&["layers", "resnet18", "--all", "--format", "ron"]);
    let r: ron::Value = ron_from_str(&ron_text).expect("RON");
    let back: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(back["sums"], v["sums"], "RON and JSON agree");
}

fn sep(n: u64) -> String {
    let d = n.to_string();
    let mut s = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i) % 3 == 0 {
            s.push(',');
        }
        s.push(c);
    }
    s
}

/// A reader that closed the pipe before the first byte ends `layers` quietly with 0.
#[test]
fn a_closed_pipe_ends_quietly() {
    for format in ["table", "json"] {
        let mut child = limpq_cmd(&["layers", "resnet50", "--all", "--format", format])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{format}: {:?}", out);
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{format}");
    }
}

/// Where a command's help lists the built-in models, it lists every one (train's list had
/// fallen behind the models added since).
#[cfg(feature = "gpu")]
#[test]
fn help_that_lists_built_in_models_lists_them_all() {
    for cmd in ["train", "layers", "import-limpq"] {
        let help = stdout_of(&[cmd, "--help"]);
        for name in limpq_trainer::model::BUILTIN_NAMES {
            assert!(
                help.contains(name),
                "`limpq {cmd} --help` lacks {name}:\n{help}"
            );
        }
    }
}
