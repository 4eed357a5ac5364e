//! Helpers shared by the end-to-end tests of the `limpq` binary.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where Debian's `dataset-fashion-mnist` installs the data.
pub const FMNIST: &str = "/usr/share/datasets/fashion-mnist";

/// Run the binary under test with `args`.
pub fn limpq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_limpq"))
        .args(args)
        .output()
        .expect("run limpq")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `name` inside a per-process temp folder of the test suite `suite`.
pub fn tmp(suite: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("limpq-{suite}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Skip (with the reason) when there is no adapter or no Fashion-MNIST.
pub fn have_gpu_and_data(test: &str) -> bool {
    if !Path::new(FMNIST)
        .join("train-images-idx3-ubyte.gz")
        .exists()
    {
        eprintln!("SKIP {test}: no Fashion-MNIST at {FMNIST}");
        return false;
    }
    let out = limpq(&["devices"]);
    if !out.status.success() {
        eprintln!("SKIP {test}: no GPU adapter: {}", stderr(&out));
        return false;
    }
    true
}
