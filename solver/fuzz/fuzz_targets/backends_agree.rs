//! Builds a small problem from fuzz bytes and checks that the exact solver and microlp
//! agree on feasibility and on the optimal objective. Run: `cargo fuzz run backends_agree`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use limpq_solver::{BitOpsBudget, Error, IndicatorSet, Layer, Problem, SizeBudget};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let bits = [2u32, 3, 4];
    let n = 1 + (data[0] % 6) as usize;
    let mut it = data[1..].iter().copied().cycle();
    let mut next = || it.next().unwrap_or(1) as u64 + 1;
    let layers: Vec<Layer> = (0..n)
        .map(|i| Layer {
            name: format!("l{i}"),
            macs: next() * 7,
            params: next(),
            weight_scale: bits.iter().map(|_| next() as f64 / 256.0).collect(),
            act_scale: bits.iter().map(|_| next() as f64 / 256.0).collect(),
            fixed: None,
        })
        .collect();
    let macs: u64 = layers.iter().map(|l| l.macs).sum();
    let params: u64 = layers.iter().map(|l| l.params).sum();
    let ind = IndicatorSet { model: "fuzz".into(), weight_bits: bits.to_vec(), act_bits: bits.to_vec(), layers, meta: vec![] };
    let mut p = Problem::new(ind).bitops(BitOpsBudget::Absolute(macs * (4 + next() % 12)));
    if data[0] & 0x80 != 0 {
        p = p.size(SizeBudget::Bytes(params * (2 + next() % 3) / 8 + 1));
    }
    if data[0] & 0x40 != 0 {
        p = p.non_monotone_rule(false);
    }
    let Ok(c) = p.compile() else { return };
    match (c.solve(&Default::default()), c.solve_microlp(None)) {
        (Ok(a), Ok(b)) => {
            assert!((a.policy.objective - b.policy.objective).abs() <= 1e-7 * (1.0 + a.policy.objective.abs()), "exact {} microlp {}", a.policy.objective, b.policy.objective);
        }
        (Err(Error::Infeasible { .. }), Err(Error::Infeasible { .. })) => {}
        (a, b) => panic!("exact {a:?} microlp {b:?}"),
    }
});
