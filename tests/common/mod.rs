//! Helpers shared by the end-to-end tests of the `limpq` binary.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where Debian's `dataset-fashion-mnist` installs the data.
pub const FMNIST: &str = "/usr/share/datasets/fashion-mnist";

/// The binary under test with `args`, for a caller that sets more (folder, environment) or
/// spawns it.
pub fn limpq_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_limpq"));
    c.args(args);
    c
}

/// Run the binary under test with `args`.
pub fn limpq(args: &[&str]) -> Output {
    limpq_cmd(args).output().expect("run limpq")
}

/// Run the binary under test with `args` and the variables `env` set.
pub fn limpq_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    limpq_cmd(args)
        .envs(env.iter().copied())
        .output()
        .expect("run limpq")
}

/// Run the binary under test with `args` in the folder `dir`.
pub fn limpq_in(dir: &Path, args: &[&str]) -> Output {
    limpq_cmd(args)
        .current_dir(dir)
        .output()
        .expect("run limpq")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The run failed the way a refused command does: exit status 1 (an error `main` returned),
/// 2 (a usage error) or 3 (budgets no policy meets), not 101 (a panic) nor a signal.
/// Returns its stderr.
pub fn refused(out: &Output) -> String {
    let err = stderr(out);
    assert!(
        matches!(out.status.code(), Some(1..=3)),
        "expected a clean refusal (exit status 1, 2 or 3), got {}\nstderr:\n{err}\nstdout:\n{}",
        out.status,
        stdout(out)
    );
    err
}

/// [`refused`], with every one of `needles` in its stderr. Returns the stderr.
pub fn refused_with(out: &Output, needles: &[&str]) -> String {
    let err = refused(out);
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
    }
    err
}

/// A path in a fresh folder of its own under the system temp dir, which goes, with all
/// in it, when this is dropped: a test run leaves nothing behind. It reads as the path
/// (`&Path` by deref, `AsRef<Path>` and `AsRef<OsStr>` for `fs` calls and arguments), so
/// keep it alive while the path is in use: `tmp(..).to_str()` inside one statement is fine.
pub struct Scratch {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

fn scratch_dir(suite: &str, name: &str) -> tempfile::TempDir {
    // The suite and name in the folder's name say whose it is, should one survive a kill.
    tempfile::Builder::new()
        .prefix(&format!("limpq-{suite}-{name}-"))
        .tempdir()
        .expect("create a temp folder")
}

/// The file `name` (not created) in a fresh temp folder of the test suite `suite`.
pub fn tmp(suite: &str, name: &str) -> Scratch {
    let dir = scratch_dir(suite, name);
    let path = dir.path().join(name);
    Scratch { _dir: dir, path }
}

/// A fresh, empty temp folder of the test suite `suite`.
pub fn tmp_dir(suite: &str, name: &str) -> Scratch {
    let dir = scratch_dir(suite, name);
    let path = dir.path().to_path_buf();
    Scratch { _dir: dir, path }
}

/// Skip (with the reason) when wgpu finds no adapter.
pub fn have_gpu(test: &str) -> bool {
    let out = limpq(&["devices"]);
    if !out.status.success() {
        eprintln!("SKIP {test}: no GPU adapter: {}", stderr(&out));
        return false;
    }
    true
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
    have_gpu(test)
}

/// A policy file's text for built-in `model`: every searchable layer at `bits` (weights and
/// activations), the fixed ones at 8.
pub fn uniform_policy(model: &str, bits: u32) -> String {
    let layers = limpq_trainer::model::builtin(model)
        .expect("a built-in model")
        .quantizable_layers()
        .expect("its layers");
    let b = |fixed: bool| if fixed { 8 } else { bits };
    limpq_solver::Policy {
        model: model.into(),
        layers: (layers.iter())
            .map(|l| limpq_solver::LayerBits {
                name: l.name.clone(),
                weight: b(l.fixed),
                act: b(l.fixed),
            })
            .collect(),
        objective: 0.0,
        bitops: 0,
        weight_bits_total: 0,
        optimal: false,
        bitops_budget: None,
        size_budget_bits: None,
    }
    .to_ron_string()
}
