//! The harness and table of `limpq bench solver` (`limpq_solver::gen::{bench,
//! bench_table}`), built with the solver crate alone (no CLI, no trainer):
//! `cargo run --release -p limpq-solver --features microlp,serde --example bench --
//! [--microlp-budget SECONDS] [--repeats N] [FILE.ron ...]` (files default to
//! `gen::BENCH_FILES` when run from the repository root; each is solved under
//! `gen::bench_budgets`, or under the budgets a `FILE.ron@BITOPS,SIZE` entry names, e.g.
//! `@w3a4,cr:12.2`).
use std::time::Duration;

use limpq_solver::gen::{
    bench, bench_entry, bench_table, entry_name, entry_problem, present_bench_files, BenchOptions,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut o = BenchOptions::default();
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> Result<f64, Box<dyn std::error::Error>> {
            let v = args.next().ok_or_else(|| format!("{what} needs a value"))?;
            Ok(v.parse::<f64>().map_err(|e| format!("{what} {v}: {e}"))?)
        };
        match a.as_str() {
            "--microlp-budget" => {
                o.microlp_budget = Duration::from_secs_f64(num("--microlp-budget")?.max(0.0))
            }
            "--repeats" => o.repeats = (num("--repeats")? as usize).max(1),
            "--instances" => o.instances = (num("--instances")? as u64).max(1),
            _ => files.push(a),
        }
    }
    if files.is_empty() {
        files = present_bench_files();
    }
    for entry in &files {
        let (f, budgets) = bench_entry(entry);
        let text = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
        let ind =
            limpq_solver::IndicatorSet::from_ron_str(&text).map_err(|e| format!("{f}: {e}"))?;
        o.files
            .push((entry_name(entry), entry_problem(ind, budgets)?));
    }
    let rows = bench(&o, |k| eprintln!("running {k} ..."))?;
    print!("{}", bench_table(&rows, &o));
    Ok(())
}
