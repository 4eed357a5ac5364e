//! The wasm module under Node.js gives the Rust answer: docs/SOLVER.md's "From
//! WebAssembly" caller is run as written on the ResNet-20 example (a solve, a sweep, a
//! priced policy, an infeasible budget), and each answer must be the one `handle` gives
//! natively, whose policy must be `Problem::solve`'s. Skips, saying why, without `node` or
//! without the `wasm32-unknown-unknown` target; `.ci/run` builds the module first when the
//! target is installable.

use std::path::{Path, PathBuf};
use std::process::Command;

use limpq_solver::format::versioned::Versioned;
use limpq_solver::{BitOpsBudget, IndicatorSet, Policy, Problem, SizeBudget};
use serde_json::{json, Value};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn node() -> bool {
    let ok = Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: node (Node.js) is not installed");
    }
    ok
}

/// Builds the module (a no-op when `.ci/run` already has); `None` when the target is not
/// installed.
fn wasm_module() -> Option<PathBuf> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(rustc)
        .args([
            "--print",
            "target-libdir",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = libdir
        .and_then(|d| std::fs::read_dir(d).ok())
        .is_some_and(|mut d| d.next().is_some());
    if !installed {
        eprintln!(
            "SKIPPED: the wasm32-unknown-unknown target is not installed \
             (rustup target add wasm32-unknown-unknown)"
        );
        return None;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // CARGO_TARGET_TMPDIR is <target dir>/tmp: the module goes to the same target dir.
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let out = Command::new(cargo)
        .current_dir(root())
        .args([
            "build",
            "-p",
            "limpq-solver-wasm",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "--target-dir",
        ])
        .arg(target_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building the wasm module failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = target_dir.join("wasm32-unknown-unknown/release/limpq_solver_wasm.wasm");
    assert!(wasm.is_file(), "{} missing after the build", wasm.display());
    Some(wasm)
}

/// The ```js block of docs/SOLVER.md's "From WebAssembly" section.
fn docs_caller() -> String {
    let md = std::fs::read_to_string(root().join("docs/SOLVER.md")).unwrap();
    let section = md
        .split("## From WebAssembly")
        .nth(1)
        .expect("docs/SOLVER.md has a From WebAssembly section");
    let section = section.split("\n## ").next().unwrap();
    let code = section
        .split("```js\n")
        .nth(1)
        .expect("a ```js block in From WebAssembly");
    code.split("```").next().unwrap().to_string()
}

fn resnet20() -> IndicatorSet {
    let text = std::fs::read_to_string(root().join("examples/resnet20.indicators.ron")).unwrap();
    IndicatorSet::from_ron_str(&text).unwrap()
}

#[test]
fn node_runs_the_module_and_agrees_with_rust() {
    if !node() {
        return;
    }
    let Some(wasm) = wasm_module() else {
        return;
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasm-node");
    std::fs::create_dir_all(&dir).unwrap();
    let caller = dir.join("solve.mjs");
    std::fs::write(&caller, docs_caller()).unwrap();

    let ind = resnet20();
    let ind_json: Value = serde_json::from_str(&ind.to_json_string()).unwrap();
    let native = Problem::new(ind.clone())
        .bitops(BitOpsBudget::Uniform { weight: 3, act: 3 })
        .size(SizeBudget::CompressionRatio(10.0))
        .solve()
        .unwrap();
    let requests = [
        json!({ "indicators": ind_json, "bitops": "w3a3", "size": "cr:10" }),
        json!({ "indicators_ron": ind.to_ron_string(), "bitops": "w3a3", "size": "cr:10" }),
        json!({ "indicators": ind_json, "sweep": 4, "size": "cr:8", "alpha": 1.5 }),
        json!({ "indicators": ind_json, "bitops": "w4a4", "pins": [["layer2.0.conv1", 6, 2]],
                "tie_weights": [["layer1.0.conv1", "layer1.0.conv2"]] }),
        json!({ "indicators": ind_json, "bitops": "w3a3",
                "evaluate": native.policy.layers }),
        json!({ "indicators": ind_json, "bitops": 1000 }),
        json!({ "indicators": ind_json, "bitops": "w3" }),
    ];
    for (i, req) in requests.iter().enumerate() {
        let path = dir.join(format!("request{i}.json"));
        std::fs::write(&path, req.to_string()).unwrap();
        let out = Command::new("node")
            .arg(&caller)
            .arg(&wasm)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "node failed on request {i}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The module's answer byte for byte (the caller prints it as it came).
        let got = String::from_utf8(out.stdout).unwrap();
        let want = limpq_solver_wasm::handle(&req.to_string());
        assert_eq!(
            got.trim_end(),
            want,
            "request {i}: node's answer differs from the native one"
        );
    }

    // The native answers themselves are the solver's.
    let first: Value =
        serde_json::from_str(&limpq_solver_wasm::handle(&requests[0].to_string())).unwrap();
    assert_eq!(first["ok"], true);
    // serde_json reads floats to within an ulp: the objective to 1e-12, the rest exactly.
    let mut policy = first["solution"]["policy"].clone();
    let objective = policy["objective"].as_f64().unwrap();
    assert!((objective - native.policy.objective).abs() <= 1e-12 * native.policy.objective);
    policy["objective"] = json!(native.policy.objective);
    let versioned = Versioned(&native.policy, Policy::FORMAT_VERSION);
    assert_eq!(policy, serde_json::to_value(versioned).unwrap());
    assert_eq!(first["solution"]["proof"]["optimal"], true);
    let second: Value =
        serde_json::from_str(&limpq_solver_wasm::handle(&requests[1].to_string())).unwrap();
    assert_eq!(
        first, second,
        "RON and JSON indicators give the same answer"
    );
}
