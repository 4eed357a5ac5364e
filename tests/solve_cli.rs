//! End-to-end tests of `limpq solve` on the fixtures in tests/fixtures/solver.

mod common;

use limpq_solver::format::versioned::ron_from_str;
use std::path::Path;
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

fn tmp(name: &str) -> common::Scratch {
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
    // A ratio so small that the budget's bits pass a 64-bit count: the flag is named, and
    // the ratio is not taken as "no budget".
    refused_with(
        &limpq(&["solve", IND, "--bitops", "w4a4", "--size", "cr:1e-20"]),
        &[
            "--size cr:1e-20 for",
            "compression ratio 1e-20 gives more bits than a 64-bit count holds",
        ],
    );
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

/// A resource table that lacks a value is blamed on the table's file, not on the indicator
/// file beside it, when solving, sweeping and pricing.
#[test]
fn an_incomplete_resource_table_names_its_own_file() {
    let d = tmp("incomplete-table");
    let table = d.join("holes.ron");
    std::fs::write(
        &table,
        "(name: \"holes\", layers: [(name: \"layer2.conv1\", costs: [(4, 4, 1.0)])])",
    )
    .unwrap();
    let policy = d.join("p.ron");
    ok(&[
        "solve",
        IND,
        "--bitops",
        "w4a4",
        "-o",
        policy.to_str().unwrap(),
    ]);
    let t = table.to_str().unwrap();
    for extra in [
        &["--bitops", "w4a4"][..],
        &["--sweep", "3"],
        &["--bitops", "w4a4", "--price", policy.to_str().unwrap()],
    ] {
        let mut args = vec!["solve", IND, "--resource", t, "--max", "3"];
        args.extend_from_slice(extra);
        let err = refused_with(&limpq(&args), &[&format!("in {t} (--resource) for {IND}")]);
        assert!(
            err.contains("resource `holes`") && err.contains("no value"),
            "{err}"
        );
    }
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

/// `a` equals `b`, the objective to within an ulp (JSON text parses floats to within
/// one, RON text exactly).
fn same_policy(mut a: Policy, b: &Policy) {
    assert!(
        (a.objective - b.objective).abs() <= 1e-12 * b.objective.abs(),
        "objective {} vs {}",
        a.objective,
        b.objective
    );
    a.objective = b.objective;
    assert_eq!(&a, b);
}

/// Two documents equal but for the last bits of their floats.
fn same_value(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-12 * y.abs().max(1.0),
                "{at}: {x} vs {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                same_value(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (k, v) in x {
                same_value(v, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

/// `--format json|ron` prints a solve report: the policy file's fields (a policy reader
/// reads it as the policy written by -o) and everything the table shows.
#[test]
fn json_and_ron_reports_carry_what_the_table_shows() {
    let d = tmp("report");
    let file = d.join("p.ron");
    let args = [
        "solve",
        IND,
        "--bitops",
        "w3a3",
        "--size",
        "cr:9",
        "--resource",
        LAT,
        "--max",
        "20",
        "--pin",
        "layer2.conv1=4,2",
        "-o",
        file.to_str().unwrap(),
        "--format",
    ];
    let json = ok(&[&args[..], &["json"]].concat());
    let ron_text = ok(&[&args[..], &["ron"]].concat());
    let written = Policy::from_ron_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    same_policy(Policy::from_json_str(&json).unwrap(), &written);
    assert_eq!(Policy::from_ron_str(&ron_text).unwrap(), written);
    // The RON report holds the same document as the JSON one.
    let r: serde_json::Value = ron_from_str(&ron_text).unwrap();
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    for key in [
        "objective",
        "bitops",
        "fixed_bitops",
        "resources",
        "proof",
        "layers",
    ] {
        same_value(&r[key], &j[key], key);
    }

    let ind = indicators();
    let fixed: u64 = ind
        .layers
        .iter()
        .filter_map(|l| l.fixed.map(|(w, a)| l.macs * u64::from(w * a)))
        .sum();
    assert_eq!(j["fixed_bitops"], fixed);
    assert_eq!(j["bitops"], bitops(&ind, &written));
    let total: u64 = ind.layers.iter().map(|l| l.params).sum();
    let cr = j["compression_ratio"].as_f64().unwrap();
    assert!((cr - 32.0 * total as f64 / written.weight_bits_total as f64).abs() < 1e-9);
    let pct = j["bitops_budget_percent"].as_f64().unwrap();
    let budget = written.bitops_budget.unwrap();
    assert!((pct - 100.0 * written.bitops as f64 / budget as f64).abs() < 1e-9);
    assert_eq!(j["searchable_layers"], 4);
    assert_eq!(j["alpha"], 2.0);
    assert!(j["solve_seconds"].as_f64().unwrap() >= 0.0);
    assert!(j["counting"].as_str().unwrap().contains("BitOps"));
    assert_eq!(j["overflow"], serde_json::json!([]));

    let proof = &j["proof"];
    assert_eq!(proof["optimal"], true);
    assert_eq!(proof["backend"], "Exact");
    assert!(proof["gap"].as_f64().unwrap().abs() < 1e-9);
    assert!(proof["lower_bound"].as_f64().unwrap() <= written.objective + 1e-9);
    assert!(proof["nodes"].is_u64());

    let res = j["resources"].as_array().unwrap();
    assert_eq!(res.len(), 1);
    assert_eq!(res[0]["name"], "latency_us");
    assert_eq!(res[0]["max"], 20.0);
    assert!(res[0]["used"].as_f64().unwrap() <= 20.0 + 1e-9);

    let layers = j["layers"].as_array().unwrap();
    assert_eq!(layers.len(), ind.layers.len());
    for ((l, b), r) in ind.layers.iter().zip(&written.layers).zip(layers) {
        assert_eq!(r["name"], l.name.as_str());
        assert_eq!(r["macs"], l.macs);
        assert_eq!(r["params"], l.params);
        assert_eq!(r["bitops"], l.macs * u64::from(b.weight * b.act));
        assert_eq!(r["fixed"], l.fixed.is_some());
        assert_eq!(r["pinned"], l.name == "layer2.conv1");
    }
}

/// The sweep's report is the frontier file's document plus each point's proof, fixed
/// BitOps and compression.
#[test]
fn sweep_report_is_the_frontier_and_more() {
    let d = tmp("sweep-report");
    let file = d.join("f.json");
    let json = ok(&[
        "solve",
        IND,
        "--sweep",
        "4",
        "--format",
        "json",
        "-o",
        file.to_str().unwrap(),
    ]);
    let written = Frontier::from_json_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(Frontier::from_json_str(&json).unwrap(), written);
    let ron_text = ok(&["solve", IND, "--sweep", "4", "--format", "ron"]);
    let from_ron = Frontier::from_ron_str(&ron_text).unwrap();
    assert_eq!(from_ron.points.len(), written.points.len());
    for (a, b) in from_ron.points.iter().zip(&written.points) {
        // JSON text parses floats to within an ulp, RON text exactly.
        assert!((a.objective - b.objective).abs() <= 1e-12 * b.objective.abs());
        assert_eq!(
            (
                a.bitops_budget,
                a.bitops,
                a.weight_bits_total,
                a.optimal,
                &a.layers
            ),
            (
                b.bitops_budget,
                b.bitops,
                b.weight_bits_total,
                b.optimal,
                &b.layers
            )
        );
    }
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    let total: u64 = indicators().layers.iter().map(|l| l.params).sum();
    for (p, r) in written.points.iter().zip(j["points"].as_array().unwrap()) {
        assert_eq!(r["proof"]["optimal"], p.optimal);
        assert_eq!(r["fixed_bitops"], 5_578_752u64);
        let cr = r["compression_ratio"].as_f64().unwrap();
        assert!((cr - 32.0 * total as f64 / p.weight_bits_total as f64).abs() < 1e-9);
    }
    assert!(j["solve_seconds"].as_f64().unwrap() >= 0.0);
}

/// A 65,536-character layer name (wider than any format width) is printed, not a panic;
/// the layer column stays narrow for the other rows.
#[test]
fn a_huge_layer_name_does_not_break_the_table() {
    let d = tmp("long-name");
    let mut ind = indicators();
    let long = "x".repeat(65_536);
    ind.layers[1].name = long.clone();
    let f = d.join("long.ron");
    std::fs::write(&f, ind.to_ron_string()).unwrap();
    let out = ok(&["solve", f.to_str().unwrap(), "--bitops", "w3a3"]);
    assert!(out.contains(&long));
    let header = out.lines().nth(1).unwrap();
    assert!(header.len() < 200, "header widened: {} chars", header.len());
}

/// Totals that do not fit in 64 bits (the solver saturates them) are shown as overflow,
/// never as the figure u64::MAX.
#[test]
fn saturated_totals_are_not_printed_as_figures() {
    let d = tmp("overflow");
    let mut ind = indicators();
    // conv1 is fixed at W8A8: its BitOps and bits of weights exceed 64 bits.
    assert!(ind.layers[0].fixed.is_some());
    ind.layers[0].macs = u64::MAX / 2;
    ind.layers[0].params = u64::MAX / 2;
    let f = d.join("huge.ron");
    std::fs::write(&f, ind.to_ron_string()).unwrap();
    let table = ok(&["solve", f.to_str().unwrap(), "--bitops", "w3a3"]);
    assert!(!table.contains(&u64::MAX.to_string()), "{table}");
    let line = |start: &str| {
        table
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no `{start}` line:\n{table}"))
            .to_string()
    };
    assert!(line("fixed BitOps").contains("overflow"), "{table}");
    assert!(line("size").contains("overflow"), "{table}");
    assert!(line("conv1").contains("overflow"), "{table}");
    // The searchable layers' BitOps still fit and are shown.
    assert!(!line("BitOps ").contains("overflow"), "{table}");
    let j: serde_json::Value = serde_json::from_str(&ok(&[
        "solve",
        f.to_str().unwrap(),
        "--bitops",
        "w3a3",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        j["overflow"],
        serde_json::json!(["weight_bits_total", "fixed_bitops"])
    );
    assert_eq!(j["layers"][0]["bitops"], serde_json::Value::Null);
    assert_eq!(j["compression_ratio"], serde_json::Value::Null);
}

/// A measured-sensitivity file (meta `source: sensitivity`) is solved with α = 1 unless
/// `--alpha` says otherwise; any other file with α = 2.
#[test]
fn a_sensitivity_file_is_solved_with_alpha_one_by_default() {
    let dir = tmp("sens-alpha");
    let mut ind = indicators();
    ind.meta.retain(|(k, _)| k != "source");
    ind.meta.push(("source".into(), "sensitivity".into()));
    let file = dir.join("sens.ron");
    std::fs::write(&file, ind.to_ron_string()).unwrap();
    let f = file.to_str().unwrap();
    let alpha = |file: &str, extra: &[&str]| -> f64 {
        let mut args = vec!["solve", file, "--bitops", "w4a4", "--format", "json"];
        args.extend_from_slice(extra);
        let j: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
        j["alpha"].as_f64().unwrap()
    };
    assert_eq!(alpha(f, &[]), 1.0);
    assert_eq!(alpha(f, &["--alpha", "3"]), 3.0);
    assert_eq!(alpha(IND, &[]), 2.0);
}

/// A long sweep shows `sweep: K/N points, T s` on a terminal and clears it at the end; with
/// stderr a pipe (scripts, logs) it prints no progress at all. The terminal is `script`'s
/// (util-linux), skipped, saying so, without it. The sweep runs ~4.5 s in a debug build
/// here, its points ~75 µs each; one that ends within 1.2 s may rightly show nothing, and
/// is not checked.
#[test]
fn a_long_sweep_shows_progress_on_a_terminal_only() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let args = [
        "solve",
        "examples/resnet20.indicators.ron",
        "--sweep",
        "60000",
        "--size",
        "cr:8",
    ];
    let t = std::time::Instant::now();
    let piped = limpq_in(dir, &args);
    let took = t.elapsed();
    assert!(piped.status.success(), "{}", common::stderr(&piped));
    assert!(
        !common::stderr(&piped).contains("sweep:"),
        "progress written to a pipe: {}",
        common::stderr(&piped)
    );

    let found = std::process::Command::new("script")
        .arg("--version")
        .output();
    if !found.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: no `script` to run the sweep on a terminal");
        return;
    }
    let line = format!(
        "'{}' {} > /dev/null",
        env!("CARGO_BIN_EXE_limpq"),
        args.join(" ")
    );
    let t = std::time::Instant::now();
    let tty = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(dir)
        .output()
        .expect("run script");
    let took_tty = t.elapsed();
    assert!(tty.status.success(), "{}", common::stderr(&tty));
    // What the terminal received: stderr only (stdout went to /dev/null).
    let screen = String::from_utf8_lossy(&tty.stdout).into_owned();
    if took.min(took_tty) < std::time::Duration::from_millis(1200) {
        eprintln!("not checked: the sweep took {took:?} / {took_tty:?}, too short for progress");
        return;
    }
    assert!(
        screen.contains("\rsweep: "),
        "no progress shown: {screen:?}"
    );
    assert!(screen.contains("/60000 points, "), "{screen:?}");
    assert!(
        screen.ends_with("\r\x1b[2K"),
        "the line is not cleared: {screen:?}"
    );
}

/// `--price POLICY` prices a policy file under the same flags, as the search counts it:
/// the solved policy at its own budgets is feasible at its objective; under a smaller
/// budget or against a pin it is not (exit 3, each reason named); the report reads as a
/// policy; flags of a search are refused.
#[test]
fn a_given_policy_is_priced_as_the_search_counts_it() {
    let d = tmp("price");
    let out = d.join("p.json");
    let flags = [
        "--bitops",
        "w4a4",
        "--resource",
        LAT,
        "--max",
        "20",
        "--tie-acts",
        "layer1.conv2,layer2.shortcut",
    ];
    let o = out.to_str().unwrap();
    let solve: serde_json::Value = serde_json::from_str(&ok(&[
        &["solve", IND, "--format", "json", "-o", o][..],
        &flags[..],
    ]
    .concat()))
    .unwrap();
    let report = ok(&[
        &["solve", IND, "--price", o, "--format", "json"][..],
        &flags[..],
    ]
    .concat());
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["feasible"], true);
    assert_eq!(v["violations"], serde_json::json!([]));
    assert_eq!(v["optimal"], false, "a priced policy is not proven optimal");
    for k in [
        "objective",
        "bitops",
        "weight_bits_total",
        "bitops_budget",
        "fixed_bitops",
    ] {
        assert_eq!(v[k], solve[k], "{k}");
    }
    let usage = v["usage"].as_array().unwrap();
    let names: Vec<&str> = usage.iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["BitOps", "size", "latency_us"]);
    assert_eq!(usage[2]["max"], 20.0);
    assert_eq!(usage[2]["used"], solve["resources"][0]["used"]);
    // The report reads as the policy it priced.
    let read = Policy::from_json_str(&report).unwrap();
    let solved = Policy::from_json_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(read.layers, solved.layers);

    // Under a smaller BitOps budget, and against a pin it does not hold: exit 3, each
    // reason on stderr, the table on stdout.
    let pinned = solved
        .layers
        .iter()
        .find(|b| b.name == "layer2.conv1")
        .map(|b| {
            format!(
                "layer2.conv1={},{}",
                if b.weight == 2 { 3 } else { 2 },
                b.act
            )
        })
        .unwrap();
    let r = limpq(&[
        "solve", IND, "--price", o, "--bitops", "w2a2", "--pin", &pinned,
    ]);
    assert_eq!(r.status.code(), Some(3));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains(&format!("{o} does not meet the budgets and rules")),
        "{err}"
    );
    assert!(err.contains("is over its budget"), "{err}");
    assert!(err.contains("layer2.conv1"), "{err}");
    let table = String::from_utf8_lossy(&r.stdout);
    assert!(table.contains("feasible      NO:"), "{table}");
    assert!(table.contains("objective"), "{table}");

    // No BitOps budget is needed; the flags of a search are refused; the file is named.
    let table = ok(&["solve", IND, "--price", o]);
    assert!(table.contains("feasible      yes"), "{table}");
    for extra in [
        &["--sweep", "3"][..],
        &["-o", "x.ron"],
        &["--node-limit", "5"],
        &["--backend", "microlp"],
    ] {
        refused_with(
            &limpq(&[&["solve", IND, "--price", o][..], extra].concat()),
            &[
                "--price prices a given policy and searches nothing",
                extra[0],
            ],
        );
    }
    let missing = d.join("none.ron");
    let r = limpq(&["solve", IND, "--price", missing.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("none.ron"));

    // A policy for another model is refused, as finetune refuses it, though its layer
    // names would all be found.
    let model = solved.model.clone();
    let other = d.join("other-model.ron");
    let elsewhere = Policy {
        model: "elsewhere".into(),
        ..solved.clone()
    };
    std::fs::write(&other, elsewhere.to_ron_string()).unwrap();
    let r = limpq(&["solve", IND, "--price", other.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains(&format!(
            "field `model`: the policy is for model 'elsewhere', the indicators are of '{model}'"
        )),
        "{err}"
    );
}
