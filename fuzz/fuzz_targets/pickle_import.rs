//! A pickle as `limpq import-limpq` reads it: parsed (plain data only), checked as the
//! reference code's indicator dict, joined with a layer table made from its own layer
//! names, and the resulting indicator set solved.
#![no_main]

use libfuzzer_sys::fuzz_target;
use limpq_io::import_limpq::{convert, Indicators, TableRow};
use limpq_solver::{BitOpsBudget, Problem, SolveOptions};

/// A node limit, so that a hard instance ends.
fn opts() -> SolveOptions {
    let mut o = SolveOptions::default();
    o.node_limit = 20_000;
    o
}

fuzz_target!(|data: &[u8]| {
    let Ok((value, _)) = limpq_io::pickle::parse(data) else {
        return;
    };
    let Ok(ind) = Indicators::from_value(&value) else {
        return;
    };
    let rows: Vec<TableRow> = ind
        .layer_names
        .iter()
        .enumerate()
        .map(|(i, n)| TableRow {
            name: n.clone(),
            macs: 1000 * (i as u64 + 1),
            params: 100 * (i as u64 + 1),
            fixed: None,
        })
        .collect();
    for fix_missing in [false, true] {
        if let Ok(set) = convert(&ind, &rows, "fuzz", fix_missing) {
            let p = Problem::new(set).bitops(BitOpsBudget::Uniform { weight: 4, act: 4 });
            if let Ok(c) = p.compile() {
                let _ = c.solve(&opts());
            }
        }
    }
});
