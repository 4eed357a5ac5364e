//! End-to-end tests of `limpq solve` on the fixtures in tests/fixtures/solver.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{limpq_in, refused_with};
use limpq_solver::{Frontier, IndicatorSet, Policy, ResourceTable};

const IND: &str = "tests/fixtures/solver/tiny.indicators.ron";
const LAT: &str = "tests/fixtures/solver/latency.ron";

/// The binary in the package folder, where the fixture paths above are relative to.
fn limpq(args: &[&str]) -> Output {
    limpq_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

fn ok(args: &[&str]) -> String {
    let o = limpq(args);
    assert!(
        o.status.success(),
        "limpq {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    common::tmp_dir("solve-cli", name)
}

fn indicators() -> IndicatorSet {
    IndicatorSet::from_ron_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(IND)).unwrap(),
    )
    .unwrap()
}

/// BitOps of searchable layers, recomputed here from the fixture.
fn bitops(ind: &IndicatorSet, p: &Policy) -> u64 {
    ind.layers
        .iter()
        .zip(&p.layers)
        .filter(|(l, _)| l.fixed.is_none())
        .map(|(l, b)| l.macs * u64::from(b.weight * b.act))
        .sum()
}

#[test]
fn table_reports_proof_budget_and_counting_rules() {
    let out = ok(&["solve", IND, "--bitops", "w3a3"]);
    for want in [
        "optimal (proven)",
        "BitOps",
        "fixed BitOps",
        "conv1 at W8A8",
        "compression",
        "solve time",
        "counting",
        "not counted in BitOps",
    ] {
        assert!(out.contains(want), "table lacks `{want}`:\n{out}");
    }
}

#[test]
fn policy_file_meets_the_budget_and_keeps_fixed_layers() {
    let d = tmp("policy");
    let out = d.join("p.ron");
    ok(&[
        "solve",
        IND,
        "--bitops",
        "w3a3",
        "--size",
        "cr:9",
        "-o",
        out.to_str().unwrap(),
        "--format",
        "ron",
    ]);
    let p = Policy::from_ron_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let ind = indicators();
    let budget: u64 = ind
        .layers
        .iter()
        .filter(|l| l.fixed.is_none())
        .map(|l| l.macs * 9)
        .sum();
    assert!(p.optimal);
    assert_eq!(p.bitops_budget, Some(budget));
    assert_eq!(bitops(&ind, &p), p.bitops);
    assert!(p.bitops <= budget, "{} > {budget}", p.bitops);
    let size: u64 = ind
        .layers
        .iter()
        .zip(&p.layers)
        .map(|(l, b)| l.params * u64::from(b.weight))
        .sum();
    assert_eq!(size, p.weight_bits_total);
    let total: u64 = ind.layers.iter().map(|l| l.params).sum();
    assert!(size as f64 <= total as f64 * 32.0 / 9.0);
    for (l, b) in ind.layers.iter().zip(&p.layers) {
        if let Some((w, a)) = l.fixed {
            assert_eq!((b.weight, b.act), (w, a), "{}", l.name);
        }
        // layer2.shortcut's weight indicator is non-monotone at 3 bits: forbidden.
        if l.name == "layer2.shortcut" {
            assert_ne!(b.weight, 3);
        }
    }
    // No temporary file left behind.
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
}

#[test]
fn json_input_and_output_and_microlp_agree_with_exact() {
    let d = tmp("json");
    let j = d.join("ind.json");
    std::fs::write(&j, indicators().to_json_string()).unwrap();
    let a = Policy::from_json_str(&ok(&[
        "solve",
        j.to_str().unwrap(),
        "--bitops",
        "w3a4",
        "--format",
        "json",
    ]))
    .unwrap();
    let b = Policy::from_json_str(&ok(&[
        "solve",
        IND,
        "--bitops",
        "w3a4",
        "--format",
        "json",
        "--backend",
        "microlp",
    ]))
    .unwrap();
    assert!(
        (a.objective - b.objective).abs() < 1e-9,
        "exact {} microlp {}",
        a.objective,
        b.objective
    );
}

#[test]
fn infeasible_budget_names_the_budget_and_the_floor() {
    refused_with(
        &limpq(&["solve", IND, "--bitops", "1000"]),
        &["BitOps", "smallest achievable", "tiny.indicators.ron"],
    );
}

#[test]
fn bad_input_names_file_layer_and_field() {
    refused_with(
        &limpq(&["solve", "no/such/file.ron", "--bitops", "w4a4"]),
        &["no/such/file.ron"],
    );
    let d = tmp("bad");
    let mut ind = indicators();
    ind.layers[2].act_scale.pop();
    let f = d.join("short.ron");
    std::fs::write(&f, ind.to_ron_string()).unwrap();
    refused_with(
        &limpq(&["solve", f.to_str().unwrap(), "--bitops", "w4a4"]),
        &["layer1.conv2", "act_scale", "short.ron"],
    );
    let mut ind = indicators();
    ind.layers[3].name = ind.layers[1].name.clone();
    std::fs::write(&f, ind.to_ron_string()).unwrap();
    refused_with(
        &limpq(&["solve", f.to_str().unwrap(), "--bitops", "w4a4"]),
        &["duplicate", "layer1.conv1"],
    );
    refused_with(
        &limpq(&["solve", IND, "--bitops", "w4a4", "--pin", "nope=4,4"]),
        &["nope", "pinned"],
    );
    refused_with(&limpq(&["solve", IND, "--bitops", "w4x4"]), &["w4x4"]);
}

#[test]
fn sweep_writes_a_monotone_frontier() {
    let d = tmp("sweep");
    let out = d.join("f.ron");
    let table = ok(&["solve", IND, "--sweep", "6", "-o", out.to_str().unwrap()]);
    assert!(table.contains("Pareto frontier"), "{table}");
    let f = Frontier::from_ron_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(f.points.len(), 6);
    let ind = indicators();
    // The last budget is every searchable layer at its highest allowed bits.
    let hi: u64 = ind
        .layers
        .iter()
        .filter(|l| l.fixed.is_none())
        .map(|l| l.macs * 16)
        .sum();
    assert_eq!(f.points[5].bitops_budget, hi);
    for w in f.points.windows(2) {
        assert!(w[0].bitops_budget <= w[1].bitops_budget);
        assert!(
            w[1].objective <= w[0].objective + 1e-12,
            "objective rose with the budget"
        );
    }
    for p in &f.points {
        assert!(p.optimal && p.bitops <= p.bitops_budget);
    }
}

#[test]
fn resource_pin_and_tie_are_honoured() {
    let d = tmp("res");
    let out = d.join("p.json");
    ok(&[
        "solve",
        IND,
        "--bitops",
        "w4a4",
        "--resource",
        LAT,
        "--max",
        "20",
        "--pin",
        "layer2.conv1=4,2",
        "--tie-acts",
        "layer1.conv2,layer2.shortcut",
        "-o",
        out.to_str().unwrap(),
    ]);
    let p = Policy::from_json_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let t = ResourceTable::from_ron_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(LAT)).unwrap(),
    )
    .unwrap();
    let mut used = 0.0;
    for b in &p.layers {
        if let Some(r) = t.layers.iter().find(|r| r.name == b.name) {
            used += r
                .costs
                .iter()
                .find(|c| c.0 == b.weight && c.1 == b.act)
                .map_or(0.0, |c| c.2);
        }
    }
    assert!(used <= 20.0 + 1e-9, "latency {used} > 20");
    let get = |n: &str| p.layers.iter().find(|b| b.name == n).unwrap();
    assert_eq!(
        (get("layer2.conv1").weight, get("layer2.conv1").act),
        (4, 2)
    );
    assert_eq!(get("layer1.conv2").act, get("layer2.shortcut").act);
    refused_with(
        &limpq(&["solve", IND, "--bitops", "w4a4", "--resource", LAT]),
        &["--max"],
    );
}

#[test]
fn weight_only_fixes_activations() {
    let p = Policy::from_ron_str(&ok(&[
        "solve",
        IND,
        "--bitops",
        "w3a8",
        "--weight-only",
        "--format",
        "ron",
    ]))
    .unwrap();
    let ind = indicators();
    for (l, b) in ind.layers.iter().zip(&p.layers) {
        assert_eq!(b.act, 8, "{}", l.name);
    }
}
