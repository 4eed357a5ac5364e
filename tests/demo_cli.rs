//! `limpq pipeline` and `limpq demo` on the real binary: a tiny job end to end on whatever
//! adapter wgpu finds (lavapipe in CI), its re-run resuming with nothing left to do, and the
//! errors for a missing dataset and a bad job file. The GPU run skips only without an adapter
//! or Fashion-MNIST.
// These commands exist only with the default `gpu` feature.
#![cfg(feature = "gpu")]

mod common;

use std::path::Path;

use common::{have_gpu_and_data, limpq, limpq_env, refused_with, stderr, stdout, FMNIST};

fn tmp(name: &str) -> common::Scratch {
    common::tmp_dir("demo-cli", name)
}

fn tiny_job(out: &Path) -> String {
    format!(
        r#"Job(
    model: "small_cnn",
    data: (name: "fashion-mnist", dir: Some("{FMNIST}"), train: Some(64), test: Some(64)),
    seeds: [3],
    pretrain: (epochs: 1, batch: 32, lr: 0.05),
    joint: (bits: [2, 3, 4], epochs: 1, batch: 32, lr: 0.01),
    budgets: ["w3a3"],
    finetune: (epochs: 1, batch: 32, lr: 0.01),
    random_policies: 3,
    output: "{}",
)"#,
        out.display()
    )
}

/// The row of `budget` in the printed table, split into cells.
fn row(stdout: &str, budget: &str) -> Vec<String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("| {budget} |")))
        .unwrap_or_else(|| panic!("no {budget} row in:\n{stdout}"));
    line.trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

#[test]
fn tiny_pipeline_runs_end_to_end_and_resumes() {
    if !have_gpu_and_data("tiny pipeline") {
        return;
    }
    let dir = tmp("tiny");
    let out = dir.join("run");
    let job = dir.join("tiny.pipeline.ron");
    std::fs::write(&job, tiny_job(&out)).unwrap();
    let o = limpq(&["pipeline", job.to_str().unwrap()]);
    let printed = stdout(&o);
    assert!(o.status.success(), "{printed}\n{}", stderr(&o));
    // pretrain + sensitivity + searched + uniform + 3 random: with the default search and
    // nothing else using learned step sizes, no joint run.
    assert!(printed.contains("7 stages"), "{printed}");
    assert!(printed.contains("[2/7] seed 3: sensitivity"), "{printed}");
    assert!(printed.contains("[7/7] seed 3: finetune w3a3"), "{printed}");
    assert!(!printed.contains("indicators"), "{printed}");
    assert!(!printed.contains("skipped"), "{printed}");
    let cells = row(&printed, "w3a3");
    // budget, BitOps budget, searched BitOps, uniform, searched, random median, each, FP32
    assert_eq!(cells.len(), 8, "{cells:?}");
    for c in [&cells[3], &cells[4], &cells[5], &cells[7]] {
        let v: f64 = c.parse().unwrap_or_else(|_| panic!("{c:?} in {cells:?}"));
        assert!((0.0..=100.0).contains(&v), "{cells:?}");
    }
    assert_eq!(cells[6].split(", ").count(), 3, "{cells:?}");
    for f in [
        "report.md",
        "accuracy_vs_bitops.svg",
        "bits_w3a3.svg",
        "state.ron",
        "seed3/pretrain.ckpt",
        "seed3/sensitivity.ron",
        "seed3/policies/w3a3_searched.ron",
        "seed3/finetune/w3a3_random2.ckpt",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // The searched policy is a policy file `limpq solve` wrote the same way: check it
    // against the measured sensitivity (the default search, α = 1) with the solver's own
    // command.
    let ind = out.join("seed3/sensitivity.ron");
    let solve = |extra: &[&str]| {
        let mut a = vec![
            "solve",
            ind.to_str().unwrap(),
            "--bitops",
            "w3a3",
            "--alpha",
            "1",
            "--format",
            "ron",
        ];
        a.extend_from_slice(extra);
        limpq(&a)
    };
    let mut o2 = solve(&[]);
    if !o2.status.success() {
        // The pipeline solves without the non-monotone rule when it makes the budget
        // infeasible, and says so in the report.
        refused_with(&o2, &["infeasible"]);
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(md.contains("solved without it"), "{md}");
        o2 = solve(&["--allow-non-monotone"]);
    }
    assert!(o2.status.success(), "{}", stderr(&o2));
    let solved = limpq_solver::Policy::from_ron_str(&stdout(&o2)).unwrap();
    let written = limpq_solver::Policy::from_ron_str(
        &std::fs::read_to_string(out.join("seed3/policies/w3a3_searched.ron")).unwrap(),
    )
    .unwrap();
    assert_eq!(solved.layers, written.layers);

    // Re-run, naming the job's one seed with --seeds: every stage done earlier, the same
    // table (the flag keeps the per-seed stages' identity).
    let o3 = limpq(&["pipeline", job.to_str().unwrap(), "--seeds", "3"]);
    let stdout3 = stdout(&o3);
    assert!(o3.status.success(), "{stdout3}\n{}", stderr(&o3));
    assert_eq!(
        stdout3.matches("done earlier, skipped").count(),
        7,
        "{stdout3}"
    );
    assert_eq!(row(&stdout3, "w3a3"), cells);

    // `eval --recalibrate-bn` draws from the run's own training images (the checkpoint
    // records the pipeline's subset): recalibrating as the finetune did changes nothing.
    let ck = out.join("seed3/finetune/w3a3_searched.ckpt");
    let eval = |more: &[&str]| {
        let mut a = vec![
            "eval",
            "--ckpt",
            ck.to_str().unwrap(),
            "--test-subset",
            "64",
            "--format",
            "json",
        ];
        a.extend_from_slice(more);
        let o = limpq(&a);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()
    };
    let plain = eval(&[]);
    let again = eval(&["--recalibrate-bn", "6000"]);
    assert_eq!(plain["loss"], again["loss"], "{plain}\n{again}");
}

#[test]
fn missing_fashion_mnist_says_how_to_install_it() {
    let dir = tmp("nodata");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = limpq_env(
        &[
            "demo",
            "--quick",
            "--out",
            dir.join("out").to_str().unwrap(),
        ],
        &[("LIMPQ_DATA", empty.to_str().unwrap())],
    );
    refused_with(&o, &["apt-get install dataset-fashion-mnist", "LIMPQ_DATA"]);
}

#[test]
fn bad_job_files_are_refused_with_the_field() {
    let dir = tmp("badjob");
    let job = dir.join("bad.pipeline.ron");
    let out = dir.join("run");
    std::fs::write(&job, tiny_job(&out).replace("lr: 0.05", "lr: NaN")).unwrap();
    let o = limpq(&["pipeline", job.to_str().unwrap()]);
    refused_with(&o, &["bad.pipeline.ron", "pretrain.lr"]);
    std::fs::write(&job, tiny_job(&out).replace("\"w3a3\"", "\"w1a1\"")).unwrap();
    let o = limpq(&["pipeline", job.to_str().unwrap()]);
    refused_with(&o, &["w1a1", "joint.bits"]);
    assert!(!out.exists(), "nothing is written for an invalid job");

    std::fs::write(&job, tiny_job(&out)).unwrap();
    // An output that is a file: refused before the data is read, not at the first write.
    let o = limpq(&[
        "pipeline",
        job.to_str().unwrap(),
        "-o",
        job.to_str().unwrap(),
    ]);
    refused_with(&o, &["bad.pipeline.ron", "exists and is not a folder"]);
    let o = limpq(&["pipeline", job.to_str().unwrap(), "--seeds", "1,1"]);
    refused_with(&o, &["--seeds", "listed twice"]);
    let o = limpq(&["pipeline", job.to_str().unwrap(), "--seeds", "x"]);
    refused_with(&o, &["--seeds"]);
    assert!(!out.exists(), "nothing is written for refused seeds");
}
