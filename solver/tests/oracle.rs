//! The exact solver against a brute-force oracle, and against microlp, on seeded instances.
mod common;

use common::{check_policy, describe, oracle, oracle_size, random_problem};
use limpq_solver::Error;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn exact_matches_brute_force_on_seeded_instances() {
    let mut solved = 0;
    let mut infeasible = 0;
    for seed in 0..1500u64 {
        let p = random_problem(seed, 5, None);
        if oracle_size(&p) > 20_000 {
            continue;
        }
        let want = oracle(&p);
        let got = p.solve();
        match (want, got) {
            (Some(w), Ok(s)) => {
                assert!(s.proof.optimal, "seed {seed}: not proven optimal");
                assert!(
                    close(w, s.policy.objective),
                    "seed {seed} ({}): oracle {w}, solver {}",
                    describe(&p.indicators),
                    s.policy.objective
                );
                check_policy(&p, &s.policy).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                solved += 1;
            }
            (None, Err(Error::Infeasible { .. })) => infeasible += 1,
            (None, Err(Error::InvalidInput { field, .. })) if field.starts_with("tie") => {
                infeasible += 1
            }
            (w, g) => panic!(
                "seed {seed} ({}): oracle {w:?}, solver {g:?}",
                describe(&p.indicators)
            ),
        }
    }
    assert!(
        solved > 1000 && infeasible > 20,
        "instance mix too one-sided: {solved} solved, {infeasible} infeasible"
    );
}

#[cfg(feature = "microlp")]
#[test]
fn exact_and_microlp_agree_on_seeded_instances() {
    const SETS: &[&[u32]] = &[&[2, 3, 4, 5, 6], &[2, 3, 4, 5, 6, 8], &[2, 4, 8]];
    let mut compared = 0;
    for seed in 0..300u64 {
        let p = random_problem(10_000 + seed, 12, Some(SETS));
        let c = match p.compile() {
            Ok(c) => c,
            Err(Error::InvalidInput { field, .. }) if field.starts_with("tie") => continue,
            Err(e) => panic!("seed {}: {e}", 10_000 + seed),
        };
        let ex = c.solve(&Default::default());
        let ml = c.solve_microlp(None);
        match (ex, ml) {
            (Ok(a), Ok(b)) => {
                assert!(
                    a.proof.optimal && b.proof.optimal,
                    "seed {}: proofs {:?} {:?}",
                    10_000 + seed,
                    a.proof,
                    b.proof
                );
                assert!(
                    close(a.policy.objective, b.policy.objective),
                    "seed {}: exact {} microlp {}",
                    10_000 + seed,
                    a.policy.objective,
                    b.policy.objective
                );
                check_policy(&p, &a.policy)
                    .unwrap_or_else(|e| panic!("seed {} exact: {e}", 10_000 + seed));
                check_policy(&p, &b.policy)
                    .unwrap_or_else(|e| panic!("seed {} microlp: {e}", 10_000 + seed));
                compared += 1;
            }
            (Err(Error::Infeasible { .. }), Err(Error::Infeasible { .. })) => {}
            (a, b) => panic!("seed {}: exact {a:?}\nmicrolp {b:?}", 10_000 + seed),
        }
    }
    assert!(
        compared > 200,
        "only {compared} feasible instances compared"
    );
}
