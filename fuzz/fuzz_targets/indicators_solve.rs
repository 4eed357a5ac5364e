//! An indicator file (`limpq solve FILE`, the Python and C faces' text input), RON or JSON
//! by its first byte: read, and solved under BitOps and size budgets read from the input's
//! last bytes, with a node limit so that a hard instance ends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use limpq_solver::{BitOpsBudget, IndicatorSet, Problem, SizeBudget, SolveOptions};

/// A node limit, so that a hard instance ends.
fn opts() -> SolveOptions {
    let mut o = SolveOptions::default();
    o.node_limit = 20_000;
    o
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (text, knobs) = data.split_at(data.len() - 2);
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let set = if text.trim_start().starts_with('{') {
        IndicatorSet::from_json_str(text)
    } else {
        IndicatorSet::from_ron_str(text)
    };
    let Ok(set) = set else {
        return;
    };
    let w = 2 + u32::from(knobs[0] % 7);
    let a = 2 + u32::from(knobs[0] / 7 % 7);
    let mut p = Problem::new(set).bitops(BitOpsBudget::Uniform { weight: w, act: a });
    if knobs[1] & 1 == 1 {
        p = p.size(SizeBudget::CompressionRatio(
            1.0 + f64::from(knobs[1]) / 16.0,
        ));
    }
    let Ok(c) = p.compile() else {
        return;
    };
    if let Ok(sol) = c.solve(&opts()) {
        // What the solver returns, the evaluator finds within every budget, at the same
        // objective.
        let e = p
            .evaluate(&sol.policy.layers)
            .expect("the solver's own policy evaluates");
        assert!(e.feasible, "{:?}", e.violations);
        let (x, y) = (e.policy.objective, sol.policy.objective);
        assert!(
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
            "{x} vs {y}"
        );
    }
});
