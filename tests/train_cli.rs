//! `limpq train` and `limpq eval` end to end on a tiny Fashion-MNIST subset: the checkpoint
//! written by train loads in eval, and data / model / checkpoint errors name what is wrong.
//! Runs on whatever adapter wgpu finds (lavapipe in CI); skips only without one.

mod common;

use common::{have_gpu_and_data, limpq, stderr, FMNIST};

fn tmp(name: &str) -> std::path::PathBuf {
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
        "1",
        "--lr",
        "0.05",
        "--seed",
        "3",
        "-o",
        c,
    ]);
    assert!(out.status.success(), "train failed: {}", stderr(&out));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("epoch 1/1: train loss"), "{summary}");
    assert!(ckpt.exists());
    let out = limpq(&["eval", "--ckpt", c, "--data-dir", FMNIST, "--subset", "50"]);
    assert!(out.status.success(), "eval failed: {}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
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
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("differs from 'resnet20'"),
        "{}",
        stderr(&out)
    );

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
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("bad.ckpt") && stderr(&out).contains("truncated"),
        "{}",
        stderr(&out)
    );
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
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no-such-data"), "{}", stderr(&out));
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
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown model 'resnet7'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_checkpoint_is_named() {
    let p = tmp("absent.ckpt");
    let out = limpq(&["eval", "--ckpt", p.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("absent.ckpt"), "{}", stderr(&out));
}

/// A learning rate that blows the weights up stops the run with a clear error.
#[test]
fn divergence_stops_with_a_clear_error() {
    if !have_gpu_and_data("divergence") {
        return;
    }
    let out = limpq(&[
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
        "--epochs",
        "2",
        "--lr",
        "1e30",
        "-o",
        tmp("nan.ckpt").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("training diverged: loss is"), "{err}");
}
