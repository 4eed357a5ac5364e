//! Prints, per benchmark instance, the optimal objective (exact bits), a hash of the policy
//! and the search states, to check that a change to the search leaves every answer as it was:
//! `cargo run --release -p limpq-solver --example fingerprint > before.txt`, then diff.
//! With `--features serde`, arguments are indicator files (RON) solved under the
//! benchmark's budgets (`gen::bench_budgets`) as well, or `FILE@BITOPS,SIZE` entries under
//! theirs (`gen::bench_entry`).

fn hash(s: &limpq_solver::Solution) -> u64 {
    // FNV-1a over the chosen bits of every layer.
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for l in &s.policy.layers {
        for b in [l.weight, l.act] {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

fn line(name: &str, s: &limpq_solver::Solution) {
    println!(
        "{name}: obj {:.12} ({:016x}) policy {:016x} optimal {} nodes {}",
        s.policy.objective,
        s.policy.objective.to_bits(),
        hash(s),
        s.proof.optimal,
        s.proof.nodes
    );
}

fn main() {
    let kinds: Vec<String> = std::env::var("KINDS")
        .map(|k| k.split(',').map(String::from).collect())
        .unwrap_or_else(|_| {
            limpq_solver::gen::BENCH_KINDS
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
    let seeds: u64 = std::env::var("SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    for kind in &kinds {
        for seed in 0..seeds {
            let p = limpq_solver::gen::bench_problem(kind, seed).unwrap();
            let s = p.solve().unwrap();
            line(&format!("{kind} seed {seed}"), &s);
        }
    }
    #[cfg(feature = "serde")]
    for entry in std::env::args().skip(1) {
        let (f, budgets) = limpq_solver::gen::bench_entry(&entry);
        let text = std::fs::read_to_string(f).unwrap();
        let ind = limpq_solver::IndicatorSet::from_ron_str(&text).unwrap();
        let p = limpq_solver::gen::entry_problem(ind, budgets).unwrap();
        line(&entry, &p.solve().unwrap());
    }
    let mut p = limpq_solver::gen::bench_problem("resnet50", 0).unwrap();
    p.options.bitops = None;
    for (i, s) in p.sweep(100).unwrap().iter().enumerate() {
        line(&format!("sweep point {i}"), s);
    }
}
