//! Your own images and model end to end: `limpq train` / `limpq eval` on an image folder,
//! and `limpq pipeline` on an imported ONNX model and an image folder, then `limpq export
//! --onnx` of its finetuned model. Tiny PNGs and a tiny ONNX graph written by the test; runs
//! on whatever adapter wgpu finds (lavapipe in CI), skips only without one.
// These tests call the trainer's and the ONNX crate's own APIs, which exist only with
// the default `gpu` feature; the solver-only build (`--no-default-features`) has no
// `train` to test.
#![cfg(feature = "gpu")]

mod common;

use std::path::Path;

use common::{have_gpu, limpq, stderr, stdout};
use limpq_onnx::build::{float_init, gap_fc_head, ints, model, node};
use limpq_onnx::proto::ModelProto;

/// `root/{train,val}/{bright,dark}/i.png`, `w`×`w` RGB: bright or dark noise, easy to tell.
fn make_folder(root: &Path, train: u32, val: u32, w: u32) {
    let mut k = 0u32;
    for (split, n) in [("train", train), ("val", val)] {
        for (ci, class) in ["bright", "dark"].iter().enumerate() {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                k += 1;
                let img = image::RgbImage::from_fn(w, w, |x, y| {
                    let noise = ((k * 31 + x * 7 + y * 13) % 60) as u8;
                    let base = if ci == 0 { 170 } else { 20 };
                    image::Rgb([base + noise, base + noise / 2, base + 60 - noise])
                });
                img.save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}

#[test]
fn train_and_eval_on_an_image_folder() {
    if !have_gpu("train on an image folder") {
        return;
    }
    let dir = common::tmp_dir("folder-cli", "train");
    let imgs = dir.join("imgs");
    // small_cnn reads 1×28×28: RGB 30×30 pictures become gray, resized to 32, cropped to 28.
    make_folder(&imgs, 8, 4, 30);
    let ckpt = dir.join("fp.ckpt");
    let out = limpq(&[
        "train",
        "--model",
        "small_cnn",
        "--data",
        "folder",
        "--data-dir",
        imgs.to_str().unwrap(),
        "--transform",
        "(resize: 32, mean: [0.5], std: [0.25])",
        "--batch",
        "4",
        "--epochs",
        "1",
        "-o",
        ckpt.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "train failed: {}", stderr(&out));
    assert!(
        stderr(&out).contains("small_cnn on folder (16 train / 8 test images)"),
        "{}",
        stderr(&out)
    );
    // eval finds the folder and the transform in the checkpoint.
    let out = limpq(&["eval", "--ckpt", ckpt.to_str().unwrap()]);
    assert!(out.status.success(), "eval failed: {}", stderr(&out));
    assert!(
        stdout(&out).contains("on 8 test images of folder: accuracy"),
        "{}",
        stdout(&out)
    );
    // `--data ROOT` names the folder itself, whatever folder the checkpoint recorded (it
    // was refused as an unknown dataset).
    let out = limpq(&[
        "eval",
        "--ckpt",
        ckpt.to_str().unwrap(),
        "--data",
        imgs.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "eval --data ROOT: {}", stderr(&out));
    // BN recalibration reads the training split as eval reads the test split: from the
    // checkpoint's folder, at the model's input (it failed: "needs its folder").
    let policy = dir.join("w8a8.ron");
    std::fs::write(&policy, common::uniform_policy("small_cnn", 8)).unwrap();
    let ft = dir.join("ft.ckpt");
    let out = limpq(&[
        "finetune",
        "--ckpt",
        ckpt.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch",
        "4",
        "--bn-recalibration",
        "0",
        "-o",
        ft.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "finetune: {}", stderr(&out));
    let out = limpq(&[
        "eval",
        "--ckpt",
        ft.to_str().unwrap(),
        "--recalibrate-bn",
        "8",
    ]);
    assert!(
        out.status.success(),
        "eval --recalibrate-bn: {}",
        stderr(&out)
    );
    // --transform is for an image folder (exit 2 for a fixed dataset, as `train` says), and
    // one that does not parse is a usage error too.
    let ck = ckpt.to_str().unwrap();
    for (args, says) in [
        (
            vec![
                "eval",
                "--ckpt",
                ck,
                "--data",
                "fashion-mnist",
                "--transform",
                "(resize: 32)",
            ],
            "--transform applies to an image folder",
        ),
        (
            vec!["eval", "--ckpt", ck, "--transform", "garbage"],
            "--transform:",
        ),
    ] {
        let out = limpq(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    // Its weights as safetensors start a pipeline of the same model description: imported
    // into the run folder, evaluated as the FP32 start (the same images, the same accuracy
    // as the eval above).
    let st = dir.join("w.safetensors");
    let out = limpq(&[
        "export",
        ckpt.to_str().unwrap(),
        "--safetensors",
        st.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "export --safetensors: {}",
        stderr(&out)
    );
    let run = dir.join("run");
    let job = dir.join("job.ron");
    std::fs::write(
        &job,
        format!(
            r#"Job(
    model: "small_cnn",
    data: (name: "folder", dir: Some("{}"), transform: Some((resize: 32, mean: [0.5], std: [0.25]))),
    seeds: [0],
    pretrain: (init: Some("{}")),
    joint: (bits: [2, 4], epochs: 1, batch: 8),
    budgets: ["w4a4"],
    finetune: (epochs: 1, batch: 8),
    output: "{}",
)"#,
            imgs.display(),
            st.display(),
            run.display()
        ),
    )
    .unwrap();
    let out = limpq(&["pipeline", job.to_str().unwrap()]);
    assert!(out.status.success(), "pipeline: {}", stderr(&out));
    assert!(run.join("imported/weights.ckpt").is_file());
    let eval_acc = stdout(&limpq(&["eval", "--ckpt", ckpt.to_str().unwrap()]))
        .split("accuracy ")
        .nth(1)
        .and_then(|t| t.split('%').next())
        .map(str::to_string)
        .expect("accuracy");
    assert!(
        stdout(&out).contains(&format!("FP32 test accuracy {eval_acc}%")),
        "{} / eval {eval_acc}",
        stdout(&out)
    );
    // A corrupt image stops the run with an error naming it (no hang, no panic).
    let bad = imgs.join("train/dark/2.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\ntruncated").unwrap();
    let out = limpq(&[
        "train",
        "--model",
        "small_cnn",
        "--data",
        imgs.to_str().unwrap(),
        "--batch",
        "4",
        "--epochs",
        "1",
        "-o",
        dir.join("bad.ckpt").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains(bad.to_str().unwrap()) && !e.contains("panicked"),
        "{e}"
    );
}

/// Seeded values in [-a, a].
fn values(n: usize, seed: u64, a: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0) * a
        })
        .collect()
}

/// A torch-style folded export of a small residual net on 3×8×8 inputs, 2 classes:
/// conv1 → ReLU → layer1.0.conv1 → ReLU → layer1.0.conv2 → Add → ReLU → GAP → fc.
fn tiny_resnet() -> ModelProto {
    let conv = |name: &str, path: &str, x: &str, out: &str| {
        node(
            "Conv",
            path,
            &[x, &format!("{name}.weight"), &format!("{name}.bias")],
            out,
            vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1])],
        )
    };
    model(
        "tiny_resnet",
        vec![
            conv("conv1", "/conv1/Conv", "x", "c1"),
            node("Relu", "/relu/Relu", &["c1"], "r1", vec![]),
            conv("layer1.0.conv1", "/layer1/layer1.0/conv1/Conv", "r1", "c2"),
            node("Relu", "/layer1/layer1.0/relu/Relu", &["c2"], "r2", vec![]),
            conv("layer1.0.conv2", "/layer1/layer1.0/conv2/Conv", "r2", "c3"),
            node("Add", "/layer1/layer1.0/Add", &["c3", "r1"], "a", vec![]),
            node("Relu", "/layer1/layer1.0/relu_1/Relu", &["a"], "r3", vec![]),
        ]
        .into_iter()
        .chain(gap_fc_head("r3"))
        .collect(),
        vec![
            float_init("conv1.weight", &[8, 3, 3, 3], values(216, 1, 0.3)),
            float_init("conv1.bias", &[8], values(8, 2, 0.1)),
            float_init("layer1.0.conv1.weight", &[8, 8, 3, 3], values(576, 3, 0.15)),
            float_init("layer1.0.conv1.bias", &[8], values(8, 4, 0.1)),
            float_init("layer1.0.conv2.weight", &[8, 8, 3, 3], values(576, 5, 0.15)),
            float_init("layer1.0.conv2.bias", &[8], values(8, 6, 0.1)),
            float_init("fc.weight", &[2, 8], values(16, 7, 0.5)),
            float_init("fc.bias", &[2], vec![0.0; 2]),
        ],
        [3, 8, 8],
        2,
    )
}

#[test]
fn pipeline_on_an_imported_onnx_model_and_an_image_folder_then_export() {
    if !have_gpu("pipeline on an imported model") {
        return;
    }
    let dir = common::tmp_dir("folder-cli", "pipeline");
    let imgs = dir.join("imgs");
    make_folder(&imgs, 8, 4, 10);
    let onnx = dir.join("tiny_resnet.onnx");
    std::fs::write(&onnx, limpq_onnx::write_model(&tiny_resnet())).unwrap();
    let out_dir = dir.join("run");
    let job = dir.join("job.ron");
    std::fs::write(
        &job,
        format!(
            r#"Job(
    model: "{}",
    data: (name: "folder", dir: Some("{}"), transform: Some((resize: 9))),
    seeds: [0],
    pretrain: (),
    joint: (bits: [2, 4], epochs: 1, batch: 8),
    budgets: ["w4a4"],
    finetune: (epochs: 1, batch: 8),
    random_policies: 3,
    output: "{}",
)"#,
            onnx.display(),
            imgs.display(),
            out_dir.display()
        ),
    )
    .unwrap();
    let out = limpq(&["pipeline", job.to_str().unwrap()]);
    assert!(out.status.success(), "pipeline failed: {}", stderr(&out));
    // The imported description and weights are in the run folder, named as in the graph.
    let model = std::fs::read_to_string(out_dir.join("imported/model.ron")).unwrap();
    assert!(
        model.contains("layer1.0.conv1") && model.contains("layer1.0.bn1"),
        "{model}"
    );
    assert!(out_dir.join("imported/weights.ckpt").is_file());
    let report = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(report.contains("imported from"), "{report}");
    // The default search's measured sensitivity names the graph's layers.
    let ind = std::fs::read_to_string(out_dir.join("seed0/sensitivity.ron")).unwrap();
    assert!(ind.contains("layer1.0.conv2"), "{ind}");
    // A rerun has nothing left to do.
    let again = limpq(&["pipeline", job.to_str().unwrap()]);
    assert!(again.status.success(), "rerun: {}", stderr(&again));
    assert!(
        !stdout(&again).contains("FP32 test accuracy"),
        "{}",
        stdout(&again)
    );
    assert!(
        stdout(&again).contains("done earlier, skipped"),
        "{}",
        stdout(&again)
    );
    // The searched policy's finetuned model exports as ONNX QDQ.
    let ft = out_dir.join("seed0/finetune/w4a4_searched.ckpt");
    assert!(ft.is_file(), "no {}", ft.display());
    // The pipeline's checkpoints record the folder and transform: eval needs no flags.
    let out = limpq(&["eval", "--ckpt", ft.to_str().unwrap()]);
    assert!(out.status.success(), "eval failed: {}", stderr(&out));
    assert!(
        stdout(&out).contains("quantized, on 8 test images of folder"),
        "{}",
        stdout(&out)
    );
    let q = dir.join("q.onnx");
    let out = limpq(&[
        "export",
        ft.to_str().unwrap(),
        "--onnx",
        q.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "export failed: {}", stderr(&out));
    let bytes = std::fs::read(&q).unwrap();
    let m = limpq_onnx::read_model(&bytes).unwrap();
    let ops: Vec<String> = m
        .graph
        .unwrap()
        .node
        .iter()
        .filter_map(|n| n.op_type.clone())
        .collect();
    assert!(ops.iter().any(|o| o == "DequantizeLinear"), "{ops:?}");
    assert!(ops.iter().any(|o| o == "Conv"), "{ops:?}");
}

/// `import-onnx --data FOLDER` and `import-safetensors --data FOLDER` check the folder's
/// classes (the class folders of its `train/`) against the model's at import: more than
/// the model has is refused, naming the folder and both counts, before anything is
/// written, as `train` and `eval` would refuse it later; as many is recorded.
#[test]
fn an_import_refuses_an_image_folder_with_more_classes_than_its_model() {
    let dir = common::tmp_dir("folder-cli", "import-classes");
    let classes = |name: &str, n: usize| {
        let root = dir.join(name);
        for c in 0..n {
            std::fs::create_dir_all(root.join("train").join(format!("class{c}"))).unwrap();
        }
        root.to_str().unwrap().to_string()
    };
    let (three, two) = (classes("three", 3), classes("two", 2));
    let onnx = dir.join("tiny_resnet.onnx");
    std::fs::write(&onnx, limpq_onnx::write_model(&tiny_resnet())).unwrap();
    let (ron, ckpt) = (dir.join("m.ron"), dir.join("m.ckpt"));
    let import_onnx = |data: &str| {
        limpq(&[
            "import-onnx",
            onnx.to_str().unwrap(),
            "-o",
            ron.to_str().unwrap(),
            "--weights",
            ckpt.to_str().unwrap(),
            "--data",
            data,
        ])
    };
    let refused = |out: &std::process::Output| {
        let err = common::refused(out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&three)
                && err.contains("has 3 classes")
                && err.contains("model 'tiny_resnet' has 2 classes"),
            "{err}"
        );
    };
    refused(&import_onnx(&three));
    assert!(!ron.exists() && !ckpt.exists());
    let out = import_onnx(&two);
    assert!(out.status.success(), "{}", stderr(&out));
    let ck = limpq_trainer::checkpoint::Checkpoint::load(&ckpt).unwrap();
    assert_eq!(ck.meta("data"), Some("folder"));

    // The same weights as safetensors, imported onto the description import-onnx wrote.
    let st = dir.join("w.safetensors");
    std::fs::write(
        &st,
        limpq_trainer::weights::export_safetensors(&ck).unwrap(),
    )
    .unwrap();
    let out_ckpt = dir.join("st.ckpt");
    let import_st = |data: &str| {
        limpq(&[
            "import-safetensors",
            st.to_str().unwrap(),
            "--model",
            ron.to_str().unwrap(),
            "-o",
            out_ckpt.to_str().unwrap(),
            "--data",
            data,
        ])
    };
    refused(&import_st(&three));
    assert!(!out_ckpt.exists());
    let out = import_st(&two);
    assert!(out.status.success(), "{}", stderr(&out));
}
