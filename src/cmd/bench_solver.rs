//! `limpq bench solver` (also `limpq bench-solver`): the exact solver and microlp on the
//! same seeded instances; the harness and its table are `limpq_solver::gen::{bench,
//! bench_table}`.

use std::time::Duration;

use super::num;

use limpq_solver::gen::{
    bench, bench_entry, bench_table, entry_name, entry_problem, present_bench_files, BenchOptions,
};

/// Time the exact solver against the microlp backend on the same instances.
///
/// Instances: ResNet-18 and ResNet-50 shapes at 224×224 (bits {2..6} for W and A: 25
/// choices per layer; stem and classifier fixed at 8 bits), random 200- and 1000-layer
/// models with bits {2,3,4,5,6,8} (36 choices); budgets: BitOps of uniform W4A4 and a
/// weight size of 3.5 (25 choices) or 4.5 (36) bits per weight on average, fixed layers
/// included. The `-real` kinds have indicators shaped like those of real LIMPQ runs
/// (`limpq_solver::gen::real_like_indicators`): harder than the synthetic ones. Then every
/// `--indicators` file (default: the shipped example and the files our own runs wrote under
/// docs/results, when run from the repository) under the same budgets, and a Pareto sweep over BitOps budgets on ResNet-50.
/// Times: compile (validation, tie handling, dominance removal), solve, and both together.
/// Build with --release.
#[derive(clap::Args)]
pub struct Args {
    /// Seeded instances per kind.
    #[arg(long, default_value_t = 5, value_parser = num::count)]
    pub instances: usize,
    /// Timed exact solves per instance.
    #[arg(long, default_value_t = 20, value_parser = num::count)]
    /// (an instance whose first solve takes over 100 ms is timed once)
    pub repeats: usize,
    /// Time limit of one microlp solve, seconds.
    #[arg(long, value_name = "S", default_value = "10", value_parser = num::positive_seconds, allow_negative_numbers = true)]
    pub microlp_limit: Duration,
    /// Total seconds microlp may spend per kind; instances after that are skipped.
    #[arg(long, value_name = "S", default_value = "30", value_parser = num::seconds, allow_negative_numbers = true)]
    pub microlp_budget: Duration,
    /// Points of the ResNet-50 sweep.
    #[arg(long, default_value_t = 100, value_parser = num::count)]
    pub sweep_points: usize,
    /// Indicator files (RON or JSON) to time as well, under BitOps W4A4 and 3.5 bits per
    /// weight on average (4.5 with 6 or more weight bit-widths), or under the budgets
    /// `FILE@BITOPS,SIZE` names, spelled as for `limpq solve` (e.g. `FILE@w3a4,cr:12.2`).
    /// Repeatable. Default: the shipped example, the indicator files our own runs wrote
    /// under docs/results and the method's authors' ResNet-50 file, those that exist (run
    /// from the repository root).
    #[arg(long = "indicators", value_name = "FILE[@BITOPS,SIZE]")]
    pub indicators: Vec<String>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: debug build; run `cargo run --release -- bench solver` for real figures"
        );
    }
    let mut o = BenchOptions::default();
    o.instances = a.instances as u64;
    o.repeats = a.repeats;
    o.microlp_limit = a.microlp_limit;
    o.microlp_budget = a.microlp_budget;
    o.sweep_points = a.sweep_points;
    let mut files = a.indicators.clone();
    if files.is_empty() {
        files = present_bench_files();
    }
    for entry in &files {
        let (f, budgets) = bench_entry(entry);
        let ind = limpq_io::documents::read_indicators(std::path::Path::new(f))?;
        let problem = entry_problem(ind, budgets).map_err(|e| anyhow::anyhow!("{entry}: {e}"))?;
        o.files.push((entry_name(entry), problem));
    }
    let rows = bench(&o, |k| eprintln!("running {k} ..."))?;
    super::out::print(&bench_table(&rows, &o))
}
