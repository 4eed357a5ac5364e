//! `limpq train` and `limpq eval` end to end on a tiny Fashion-MNIST subset: the checkpoint
//! written by train loads in eval, and data / model / checkpoint errors name what is wrong.
//! Runs on whatever adapter wgpu finds (lavapipe in CI); skips only without one.
// These tests call the trainer's and the ONNX crate's own APIs, which exist only with
// the default `gpu` feature; the solver-only build (`--no-default-features`) has no
// `train` to test.
#![cfg(feature = "gpu")]

mod common;

use common::{have_gpu_and_data, limpq, limpq_cmd, refused_with, stderr, stdout, FMNIST};

fn tmp(name: &str) -> common::Scratch {
    common::tmp("train-cli", name)
}

#[test]
fn train_writes_a_checkpoint_that_eval_loads() {
    if !have_gpu_and_data("train then eval") {
        return;
    }
    let ckpt = tmp("fp.ckpt");
    let c = ckpt.to_str().unwrap();
    let out = limpq(&[
        "train",
        "--model",
        "small_cnn",
        "--data",
        "fashion-mnist",
        "--data-dir",
        FMNIST,
        "--subset",
        "64",
        "--test-subset",
        "50",
        "--batch",
        "32",
        "--epochs",
        "2",
        "--eval-every",
        "2",
        "--lr",
        "0.05",
        "--seed",
        "3",
        "-o",
        c,
    ]);
    assert!(out.status.success(), "train failed: {}", stderr(&out));
    let summary = stdout(&out);
    // `--eval-every 2`: epoch 1 is not evaluated, the last always is.
    let line = |e: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(e))
            .unwrap_or_else(|| panic!("no '{e}' line in {summary}"))
    };
    assert!(
        line("epoch 1/2: train loss").contains("| not evaluated |"),
        "{summary}"
    );
    assert!(
        line("epoch 2/2: train loss").contains("| test loss"),
        "{summary}"
    );
    assert!(ckpt.exists());
    // `eval --subset`, the older spelling of `--test-subset`, still works.
    let out = limpq(&["eval", "--ckpt", c, "--data-dir", FMNIST, "--subset", "50"]);
    assert!(out.status.success(), "eval failed: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("small_cnn on 50 test images of fashion-mnist: accuracy"),
        "{text}"
    );
    // The same 50 test images were evaluated at the end of training: same accuracy.
    let after = |s: &str, key: &str| {
        let at = s.find(key).unwrap_or_else(|| panic!("no '{key}' in {s}")) + key.len();
        s[at..].split('%').next().unwrap().trim().to_string()
    };
    let test_part = &summary[summary.find("| test").expect("test part")..];
    assert_eq!(
        after(&text, "accuracy"),
        after(test_part, "acc"),
        "{summary} / {text}"
    );
    // `--format json` carries the figures of the line above.
    let out = limpq(&[
        "eval",
        "--ckpt",
        c,
        "--data-dir",
        FMNIST,
        "--test-subset",
        "50",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "eval --format json: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(v["model"], "small_cnn");
    assert_eq!(v["data"], "fashion-mnist");
    assert_eq!(v["quantized"], false);
    assert_eq!(v["images"], 50);
    assert!(v["cost"].is_null(), "{v}");
    let (correct, acc) = (
        v["correct"].as_u64().unwrap(),
        v["accuracy"].as_f64().unwrap(),
    );
    assert!(text.contains(&format!("({correct}/50)")), "{text} vs {v}");
    assert_eq!(
        format!("{:.2}", acc * 100.0),
        after(&text, "accuracy"),
        "{v}"
    );
    let loss = v["loss"].as_f64().unwrap();
    assert!(text.contains(&format!("loss {loss:.4}")), "{text} vs {v}");

    // --init from that checkpoint is accepted for the same model and refused for another.
    let out = limpq(&[
        "train",
        "--model",
        "resnet20",
        "--data-dir",
        FMNIST,
        "--subset",
        "8",
        "--test-subset",
        "8",
        "--batch",
        "8",
        "--epochs",
        "0",
        "--init",
        c,
        "-o",
        tmp("other.ckpt").to_str().unwrap(),
    ]);
    refused_with(&out, &["differs from 'resnet20'"]);

    // A damaged checkpoint is refused with its path.
    let bad = tmp("bad.ckpt");
    let mut bytes = std::fs::read(&ckpt).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&bad, bytes).unwrap();
    let out = limpq(&[
        "eval",
        "--ckpt",
        bad.to_str().unwrap(),
        "--data-dir",
        FMNIST,
    ]);
    refused_with(&out, &["bad.ckpt", "truncated"]);
}

#[test]
fn missing_data_dir_is_named() {
    let missing = tmp("no-such-data");
    let out = limpq(&[
        "train",
        "--model",
        "small_cnn",
        "--data",
        "fashion-mnist",
        "--data-dir",
        missing.to_str().unwrap(),
        "-o",
        tmp("x.ckpt").to_str().unwrap(),
    ]);
    refused_with(&out, &["no-such-data"]);
}

#[test]
fn unknown_model_is_named() {
    let out = limpq(&[
        "train",
        "--model",
        "resnet7",
        "--data-dir",
        FMNIST,
        "-o",
        tmp("y.ckpt").to_str().unwrap(),
    ]);
    refused_with(&out, &["unknown model 'resnet7'"]);
}

#[test]
fn missing_checkpoint_is_named() {
    let p = tmp("absent.ckpt");
    let out = limpq(&["eval", "--ckpt", p.to_str().unwrap()]);
    refused_with(&out, &["absent.ckpt"]);
}

/// `limpq train` of small_cnn on 64 Fashion-MNIST images (10 to test, batch 32), then
/// `more`.
fn small_train<'a>(more: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "train",
        "--model",
        "small_cnn",
        "--data-dir",
        FMNIST,
        "--subset",
        "64",
        "--test-subset",
        "10",
        "--batch",
        "32",
    ];
    v.extend_from_slice(more);
    v
}

/// A learning rate that blows the weights up stops the run with a clear error.
#[test]
fn divergence_stops_with_a_clear_error() {
    if !have_gpu_and_data("divergence") {
        return;
    }
    let nan = tmp("nan.ckpt");
    let out = limpq(&small_train(&[
        "--epochs",
        "2",
        "--lr",
        "1e30",
        "-o",
        nan.to_str().unwrap(),
    ]));
    // Caught at the first step whose loss is not finite, or at the end of epoch 1, whose
    // weights are no longer finite, whichever comes first.
    refused_with(&out, &["training diverged: ", "try a smaller --lr"]);
    // Diverged on the last step: its loss was finite, the test loss is not. Refused, and
    // the checkpoint of NaN weights not written (this exited 0 with "test loss NaN").
    let last = tmp("nan-last.ckpt");
    let _ = std::fs::remove_file(&last);
    let out = limpq(&[
        "train",
        "--model",
        "small_cnn",
        "--data-dir",
        FMNIST,
        "--subset",
        "128",
        "--test-subset",
        "64",
        "--lr",
        "1e6",
        "-o",
        last.to_str().unwrap(),
    ]);
    refused_with(&out, &["training diverged"]);
    assert!(!last.exists());
}

/// A reader that closes stdout early does not stop a run: the epoch lines it no longer
/// reads are dropped, the checkpoint is written, and the exit status is 0 (a panic at the
/// first epoch line lost the checkpoint, exit 101).
#[test]
fn a_closed_stdout_does_not_cost_the_checkpoint() {
    if !have_gpu_and_data("closed stdout") {
        return;
    }
    let ckpt = tmp("closed-stdout.ckpt");
    let _ = std::fs::remove_file(&ckpt);
    let mut child = limpq_cmd(&small_train(&[
        "--epochs",
        "2",
        "-o",
        ckpt.to_str().unwrap(),
    ]))
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let ck = limpq_trainer::checkpoint::Checkpoint::load(&ckpt).unwrap();
    assert_eq!(ck.epoch, 2);
}

#[test]
fn ctrl_c_saves_the_position_and_resume_finishes_the_run() {
    if !have_gpu_and_data("ctrl-c then --resume") {
        return;
    }
    let ckpt = tmp("interrupted.ckpt");
    let c = ckpt.to_str().unwrap();
    let _ = std::fs::remove_file(&ckpt);
    let args = [
        "train",
        "--model",
        "small_cnn",
        "--data-dir",
        FMNIST,
        "--subset",
        "512",
        "--test-subset",
        "50",
        "--batch",
        "32",
        "--epochs",
        "3",
        "--lr",
        "0.05",
        "-o",
        c,
    ];
    let child = limpq_cmd(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The checkpoint appears at the end of epoch 1; interrupt during epoch 2.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !ckpt.exists() && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(ckpt.exists(), "no checkpoint after epoch 1");
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the run finished before the interrupt: {}",
        stderr(&out)
    );
    refused_with(&out, &["training stopped after step", "--resume"]);
    // The same command without --resume would replace the stopped run: refused, the file
    // kept as it was.
    let stopped = std::fs::read(&ckpt).unwrap();
    let out = limpq(&args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    refused_with(&out, &["holds a run stopped in epoch", "add --resume"]);
    assert_eq!(std::fs::read(&ckpt).unwrap(), stopped);
    // Read as an input (evaluated here), it is used with a note that it is unfinished.
    let out = limpq(&[
        "eval",
        "--ckpt",
        c,
        "--data-dir",
        FMNIST,
        "--test-subset",
        "10",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds a run stopped in epoch"),
        "{}",
        stderr(&out)
    );

    // A resume that fails (here: another learning rate) leaves the stopped run in place,
    // and a note says how to go on from it.
    let before = std::fs::read(&ckpt).unwrap();
    let mut other: Vec<&str> = args.to_vec();
    let lr = other.len() - 3;
    other[lr] = "0.01";
    other.push("--resume");
    let out = limpq(&other);
    refused_with(
        &out,
        &[
            "keeps a run stopped in epoch",
            "--resume continues it with the same settings (a run that diverged diverges again); \
             remove the file, or name another, to start over",
        ],
    );
    assert_eq!(std::fs::read(&ckpt).unwrap(), before);
    // So does one refused for other data (its message said to start afresh without
    // --resume, which is refused while the file holds the stopped run).
    let mut other: Vec<&str> = args.to_vec();
    let subset = other.iter().position(|a| *a == "--subset").unwrap() + 1;
    other[subset] = "256";
    other.push("--resume");
    refused_with(
        &limpq(&other),
        &[
            "subset 512 (this run 256)",
            "remove the file (or name another) and start afresh",
            "keeps a run stopped in epoch",
        ],
    );
    assert_eq!(std::fs::read(&ckpt).unwrap(), before);

    let mut resume: Vec<&str> = args.to_vec();
    resume.push("--resume");
    let out = limpq(&resume);
    assert!(out.status.success(), "resume failed: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("epoch 3/3: train loss"), "{text}");
    // Epoch 1 was not trained again.
    assert!(!text.contains("epoch 1/3: train loss"), "{text}");

    // --resume without a run to continue names the file.
    let missing = tmp("nothing-here.ckpt");
    let mut bad: Vec<&str> = args[..args.len() - 1].to_vec();
    bad.extend([missing.to_str().unwrap(), "--resume"]);
    let out = limpq(&bad);
    refused_with(&out, &["nothing-here.ckpt"]);
}

/// A checkpoint whose tensors do not fit its own model is refused by every command that
/// starts from one, and the error names the file.
#[test]
fn a_checkpoint_whose_tensors_do_not_fit_is_named() {
    if !have_gpu_and_data("checkpoint whose tensors do not fit") {
        return;
    }
    use limpq_trainer::checkpoint::{Checkpoint, NamedTensor, TensorKind};
    let path = tmp("forged.ckpt");
    Checkpoint {
        model: limpq_trainer::model::Model::resolve("small_cnn").unwrap(),
        seed: 0,
        epoch: 1,
        step: 1,
        meta: vec![("data".into(), "fashion-mnist".into())],
        tensors: vec![NamedTensor {
            name: "conv1.weight".into(),
            kind: TensorKind::Param,
            data: vec![0.0; 3],
        }],
        origin: None,
    }
    .save(&path)
    .unwrap();
    let p = path.to_str().unwrap();
    let common = [
        "--data-dir",
        FMNIST,
        "--subset",
        "32",
        "--test-subset",
        "32",
        "--batch",
        "16",
        "--epochs",
        "1",
    ];
    let policy = tmp("w4a4.ron");
    std::fs::write(&policy, common::uniform_policy("small_cnn", 4)).unwrap();
    let out_ckpt = tmp("never.ckpt");
    let out_ind = tmp("never.ron");
    let runs: [Vec<&str>; 3] = [
        vec!["train", "--model", "small_cnn", "--init", p],
        vec![
            "indicators",
            "--model",
            "small_cnn",
            "--ckpt",
            p,
            "--bits",
            "2,4",
        ],
        vec![
            "finetune",
            "--ckpt",
            p,
            "--policy",
            policy.to_str().unwrap(),
        ],
    ];
    for (run, o) in runs.iter().zip([&out_ckpt, &out_ind, &out_ckpt]) {
        let mut args = run.clone();
        args.extend(common);
        args.extend(["-o", o.to_str().unwrap()]);
        refused_with(&limpq(&args), &[p, "missing parameter"]);
    }
}

/// `--resume` continues only the run of the same data: another `--subset-seed` (other
/// images of the same count, so the same steps per epoch) or another `--subset` is refused,
/// naming each difference; it used to resume silently on the other images and record them.
#[test]
fn a_resume_on_other_data_is_refused() {
    if !have_gpu_and_data("resume on other data") {
        return;
    }
    let ckpt = tmp("other-data.ckpt");
    let c = ckpt.to_str().unwrap();
    let run = |subset: &'static str, seed: &'static str, resume: bool| {
        let mut args = vec![
            "train",
            "--model",
            "small_cnn",
            "--data-dir",
            FMNIST,
            "--subset",
            subset,
            "--subset-seed",
            seed,
            "--test-subset",
            "32",
            "--batch",
            "32",
            "--epochs",
            "1",
            "-o",
            c,
        ];
        if resume {
            args.push("--resume");
        }
        limpq(&args)
    };
    let out = run("64", "7", false);
    assert!(out.status.success(), "train failed: {}", stderr(&out));
    refused_with(
        &run("64", "99", true),
        &["--resume", "other-data.ckpt", "subset_seed 7 (this run 99)"],
    );
    refused_with(&run("32", "7", true), &["subset 64 (this run 32)"]);
}

/// Epochs times steps past a usize is refused by name (an overflow panic in the loop).
#[test]
fn epochs_past_counting_are_refused() {
    if !have_gpu_and_data("huge --epochs") {
        return;
    }
    let huge = tmp("huge-epochs.ckpt");
    let out = limpq(&small_train(&[
        "--epochs",
        "18446744073709551615",
        "-o",
        huge.to_str().unwrap(),
    ]));
    let err = refused_with(
        &out,
        &["18446744073709551615 epochs of 2 steps are more steps than can be counted"],
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// `infer` refuses an input holding NaN or infinity, naming the image: ReLU and max
/// pooling pass over a NaN, and it was answered with finite logits.
#[test]
fn infer_refuses_non_finite_inputs() {
    if !have_gpu_and_data("infer of NaN") {
        return;
    }
    let ckpt = tmp("infer-init.ckpt");
    let out = limpq(&small_train(&[
        "--epochs",
        "0",
        "-o",
        ckpt.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    // An evaluation batch far past the test images is cut to them, not refused as a
    // network the adapter cannot hold.
    let out = limpq(&[
        "eval",
        "--ckpt",
        ckpt.to_str().unwrap(),
        "--data-dir",
        FMNIST,
        "--test-subset",
        "16",
        "--eval-batch",
        "100000000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut x = vec![0.5f32; 2 * 28 * 28];
    x[28 * 28 + 3] = f32::NAN;
    let input = tmp("nan-input.npy");
    std::fs::write(&input, limpq_io::npy::to_bytes(&[2, 1, 28, 28], &x)).unwrap();
    let logits = tmp("nan-logits.npy");
    let _ = std::fs::remove_file(&logits);
    let out = limpq(&[
        "infer",
        ckpt.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        logits.to_str().unwrap(),
    ]);
    refused_with(
        &out,
        &["nan-input.npy: value NaN of image 1 (its element 3) is not finite"],
    );
    assert!(!logits.exists());
}
