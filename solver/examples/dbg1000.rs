//! Times exact solves of one benchmark kind: `cargo run --release -p limpq-solver --example
//! dbg1000 -- KIND SEEDS LIMIT` (compile + solve per seed), or the 100-point ResNet-50 sweep
//! N times: `-- sweep N` (`-- sweep N KIND`: another kind's seed 0, e.g. a latency kind).
//! Env FIRST sets `SolveOptions::first_pass_states`, for both; COLD
//! `cold_first_pass_states`, SURMIN `surrogate_min_candidates` and SURBACK
//! `surrogate_back_min_candidates`, per seed; SEED=n solves only seed n. With the
//! `serde` feature, KIND may be an indicator file (`.ron` or `.json`), solved SEEDS times
//! under the bench's budgets (`gen::bench_budgets`), or `FILE@BITOPS,SIZE` under those
//! (`gen::bench_entry`, e.g. `@w3a4,cr:12.2`).
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let kind = a.get(1).map_or("random1000", |s| s.as_str());
    let seeds: u64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    if kind == "sweep" {
        // `-- sweep N KIND`: the sweep of another bench kind (seed 0).
        let of = a.get(3).map_or("resnet50", |s| s.as_str());
        let mut p =
            limpq_solver::gen::bench_problem(of, 0).unwrap_or_else(|| panic!("no kind {of}"));
        p.options.bitops = None;
        let mut o = limpq_solver::SolveOptions::default();
        if let Some(f) = std::env::var("FIRST").ok().and_then(|v| v.parse().ok()) {
            o.first_pass_states = f;
        }
        let sweep = |p: &limpq_solver::Problem| p.compile_for_sweep().unwrap().sweep(100, &o);
        let mut ts = Vec::new();
        for _ in 0..seeds {
            let t = Instant::now();
            let pts = sweep(&p).unwrap();
            ts.push(t.elapsed());
            println!(
                "sweep {:?} all optimal {} max nodes {} total nodes {}",
                t.elapsed(),
                pts.iter().all(|s| s.proof.optimal),
                pts.iter().map(|s| s.proof.nodes).max().unwrap(),
                pts.iter().map(|s| s.proof.nodes).sum::<u64>()
            );
        }
        if std::env::var("PTS").is_ok() {
            let pts = sweep(&p).unwrap();
            for (i, s) in pts.iter().enumerate() {
                print!("{i}:{} ", s.proof.nodes);
            }
            println!();
        }
        ts.sort();
        println!("median {:?}", ts[ts.len() / 2]);
        return;
    }
    let limit: u64 = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let file = file_problem(kind);
    let only: Option<u64> = std::env::var("SEED").ok().and_then(|v| v.parse().ok());
    for seed in 0..seeds {
        if only.is_some_and(|o| o != seed) {
            continue;
        }
        let p = file.clone().unwrap_or_else(|| {
            limpq_solver::gen::bench_problem(kind, seed).unwrap_or_else(|| panic!("no kind {kind}"))
        });
        let t = Instant::now();
        let c = p.compile().unwrap();
        let tc = t.elapsed();
        let mut o = limpq_solver::SolveOptions::default();
        o.node_limit = limit;
        if let Some(f) = std::env::var("FIRST").ok().and_then(|v| v.parse().ok()) {
            o.first_pass_states = f;
        }
        if let Some(f) = std::env::var("COLD").ok().and_then(|v| v.parse().ok()) {
            o.cold_first_pass_states = f;
        }
        if let Some(f) = std::env::var("SURMIN").ok().and_then(|v| v.parse().ok()) {
            o.surrogate_min_candidates = f;
        }
        if let Some(f) = std::env::var("SURBACK").ok().and_then(|v| v.parse().ok()) {
            o.surrogate_back_min_candidates = f;
        }
        let s = c.solve(&o).unwrap();
        println!(
            "{kind} seed {seed}: compile {tc:?} total {:?} optimal {} nodes {} obj {:.9} lb {:.9}",
            t.elapsed(),
            s.proof.optimal,
            s.proof.nodes,
            s.policy.objective,
            s.proof.lower_bound
        );
    }
}

/// The indicator file entry `kind` under its budgets, read once (`None`: a kind).
fn file_problem(entry: &str) -> Option<limpq_solver::Problem> {
    let (kind, budgets) = limpq_solver::gen::bench_entry(entry);
    if !(kind.ends_with(".ron") || kind.ends_with(".json")) {
        return None;
    }
    #[cfg(feature = "serde")]
    {
        let text = std::fs::read_to_string(kind).unwrap_or_else(|e| panic!("{kind}: {e}"));
        let ind = if kind.ends_with(".ron") {
            limpq_solver::IndicatorSet::from_ron_str(&text)
        } else {
            limpq_solver::IndicatorSet::from_json_str(&text)
        };
        let ind = ind.unwrap_or_else(|e| panic!("{kind}: {e}"));
        Some(
            limpq_solver::gen::entry_problem(ind, budgets)
                .unwrap_or_else(|e| panic!("{entry}: {e}")),
        )
    }
    #[cfg(not(feature = "serde"))]
    {
        let _ = budgets;
        panic!("{kind}: reading indicator files needs the serde feature")
    }
}
