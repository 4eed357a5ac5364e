//! The exact solver against a brute-force oracle, and against microlp, on seeded instances.
mod common;

use common::{check_policy, describe, oracle, oracle_size, random_problem};
use limpq_solver::{Error, SolveOptions};

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

/// Options that skip the first exact pass: every instance goes through the threshold
/// probes (which otherwise only run on instances too big for the first pass), with the
/// group order and the partner bound otherwise used only on large searches.
fn probes_only(node_limit: u64) -> SolveOptions {
    let mut o = SolveOptions::default();
    o.first_pass_states = 0;
    o.node_limit = node_limit;
    // Coarse-first group order on every search, not only on large ones.
    o.coarse_first_min_groups = 0;
    // The forward half's states bound every backward stage, not only the large ones.
    o.partner_min_states = 0;
    // The surrogate bound of the rest bounds every forward stage, not only the large ones.
    o.surrogate_min_candidates = 0;
    // And the backward half's surrogate every backward stage.
    o.surrogate_back_min_candidates = 0;
    o
}

#[test]
fn threshold_probes_match_brute_force_on_seeded_instances() {
    let mut solved = 0;
    for seed in 0..1500u64 {
        let p = random_problem(seed, 5, None);
        if oracle_size(&p) > 20_000 {
            continue;
        }
        let Ok(c) = p.compile() else { continue };
        let want = oracle(&p);
        match (want, c.solve(&probes_only(20_000_000))) {
            (Some(w), Ok(s)) => {
                assert!(s.proof.optimal, "seed {seed}: not proven optimal");
                assert!(
                    close(w, s.policy.objective),
                    "seed {seed} ({}): oracle {w}, probes {}",
                    describe(&p.indicators),
                    s.policy.objective
                );
                check_policy(&p, &s.policy).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                solved += 1;
            }
            (None, Err(Error::Infeasible { .. })) => {}
            (w, g) => panic!(
                "seed {seed} ({}): oracle {w:?}, probes {g:?}",
                describe(&p.indicators)
            ),
        }
    }
    assert!(solved > 1000, "only {solved} instances solved");
}

/// With a tiny state budget the search stops early: the policy is still feasible, the
/// lower bound (raised by every finished probe) never exceeds the true optimum, a claimed
/// proof is right, and a search cut before any policy says so rather than "infeasible"
/// (`properties.rs` has an instance where it is cut so).
#[test]
fn lower_bounds_of_interrupted_searches_are_valid() {
    let mut interrupted = 0;
    for seed in 0..1500u64 {
        let p = random_problem(seed, 5, None);
        if oracle_size(&p) > 20_000 {
            continue;
        }
        let Some(w) = oracle(&p) else { continue };
        let Ok(c) = p.compile() else { continue };
        for limit in [0u64, 1, 3, 10, 30] {
            let s = match c.solve(&probes_only(limit)) {
                Ok(s) => s,
                // Cut before any policy: nothing is claimed (never "infeasible", which the
                // oracle's policy would refute).
                Err(Error::LimitReached { .. }) => {
                    interrupted += 1;
                    continue;
                }
                Err(e) => panic!("seed {seed} limit {limit}: {e}"),
            };
            let lbv = s.proof.lower_bound;
            assert!(
                lbv <= w + 1e-9 * (1.0 + w.abs()),
                "seed {seed} limit {limit}: lower bound {lbv} above the optimum {w}"
            );
            assert!(
                s.policy.objective >= w - 1e-9 * (1.0 + w.abs()),
                "seed {seed} limit {limit}: objective {} below the optimum {w}",
                s.policy.objective
            );
            if s.proof.optimal {
                assert!(close(w, s.policy.objective), "seed {seed} limit {limit}");
            } else {
                interrupted += 1;
            }
            check_policy(&p, &s.policy)
                .unwrap_or_else(|e| panic!("seed {seed} limit {limit}: {e}"));
        }
    }
    assert!(
        interrupted > 100,
        "only {interrupted} searches were interrupted"
    );
}

#[cfg(feature = "microlp")]
#[test]
fn threshold_probes_and_microlp_agree_on_seeded_instances() {
    const SETS: &[&[u32]] = &[&[2, 3, 4, 5, 6], &[2, 3, 4, 5, 6, 8], &[2, 4, 8]];
    let mut compared = 0;
    for seed in 0..300u64 {
        let p = random_problem(20_000 + seed, 12, Some(SETS));
        let Ok(c) = p.compile() else { continue };
        match (c.solve(&probes_only(20_000_000)), c.solve_microlp(None)) {
            (Ok(a), Ok(b)) => {
                assert!(a.proof.optimal && b.proof.optimal, "seed {}", 20_000 + seed);
                assert!(
                    close(a.policy.objective, b.policy.objective),
                    "seed {}: probes {} microlp {}",
                    20_000 + seed,
                    a.policy.objective,
                    b.policy.objective
                );
                check_policy(&p, &a.policy)
                    .unwrap_or_else(|e| panic!("seed {}: {e}", 20_000 + seed));
                compared += 1;
            }
            (Err(Error::Infeasible { .. }), Err(Error::Infeasible { .. })) => {}
            (a, b) => panic!("seed {}: probes {a:?}\nmicrolp {b:?}", 20_000 + seed),
        }
    }
    assert!(
        compared > 200,
        "only {compared} feasible instances compared"
    );
}

/// 200-layer instances (two binding budgets) are too big for the oracles: every search
/// configuration (first pass or probes only, layer or coarse-first order) must prove the
/// same optimum, and the policies must pass the independent feasibility check.
#[test]
fn search_configurations_agree_on_200_layer_instances() {
    for seed in 0..4u64 {
        let p = limpq_solver::gen::bench_problem("random200", seed).expect("known kind");
        let c = p.compile().unwrap();
        let mut objs = Vec::new();
        // (first-pass states, coarse-first from, first pass up to this many groups):
        // the default, probes only in either order, an uncut first pass, and the first
        // pass of 20k states that searches this size skip by default.
        for (first, order_min, first_max) in [
            (20_000, 64, 64),
            (0, 0, 64),
            (0, usize::MAX, 64),
            (u64::MAX, 64, usize::MAX),
            (20_000, 64, usize::MAX),
        ] {
            let mut o = SolveOptions::default();
            o.first_pass_states = first;
            o.cold_first_pass_states = first;
            o.coarse_first_min_groups = order_min;
            o.first_pass_max_groups = first_max;
            // The configurations with a first pass on searches this size run it at any
            // number of combinations too.
            if first_max == usize::MAX {
                o.first_pass_max_combinations = u64::MAX;
            }
            // The uncut first pass runs without the surrogate bound, the others with it
            // as by default or at every stage.
            o.surrogate_min_candidates = match (first, order_min) {
                (u64::MAX, _) => usize::MAX,
                (0, 0) => 0,
                _ => o.surrogate_min_candidates,
            };
            let s = c.solve(&o).unwrap();
            assert!(
                s.proof.optimal,
                "seed {seed} ({first}, {order_min}): not proven"
            );
            check_policy(&p, &s.policy).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            objs.push(s.policy.objective);
        }
        for &o in &objs[1..] {
            assert!(close(objs[0], o), "seed {seed}: objectives {objs:?}");
        }
    }
}

/// A cold first pass over more combinations than `first_pass_max_combinations` is skipped
/// (the real-like ResNet-50's are, at the default), and the answer is the same either way.
#[test]
fn a_first_pass_over_too_many_combinations_is_skipped_with_the_same_answer() {
    for seed in 0..3u64 {
        let p = limpq_solver::gen::bench_problem("resnet50-real", seed).expect("known kind");
        let c = p.compile().unwrap();
        let skipped = c.solve(&SolveOptions::default()).unwrap();
        let mut o = SolveOptions::default();
        o.first_pass_max_combinations = u64::MAX;
        let ran = c.solve(&o).unwrap();
        assert!(skipped.proof.optimal && ran.proof.optimal, "seed {seed}");
        check_policy(&p, &skipped.policy).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(
            close(skipped.policy.objective, ran.policy.objective),
            "seed {seed}: {} against {}",
            skipped.policy.objective,
            ran.policy.objective
        );
        // The first pass ran out of its states in one search and was not run in the
        // other: they differ by at least those states.
        assert_ne!(skipped.proof.nodes, ran.proof.nodes, "seed {seed}");
    }
}

/// Every point of a sweep (whose first passes are steered by the previous point's gap)
/// matches the brute-force optimum at its budget, and passes the feasibility check.
#[test]
fn sweep_points_match_brute_force_on_seeded_instances() {
    let mut points = 0;
    for seed in 0..400u64 {
        let mut p = random_problem(30_000 + seed, 5, None);
        if oracle_size(&p) > 5_000 {
            continue;
        }
        p.options.bitops = None;
        let Ok(pts) = p.sweep(12) else { continue };
        for s in &pts {
            let b = s
                .policy
                .bitops_budget
                .expect("sweep points carry their budget");
            let q = p.clone().bitops(limpq_solver::BitOpsBudget::Absolute(b));
            let w = oracle(&q).unwrap_or_else(|| panic!("seed {seed}: budget {b} infeasible"));
            assert!(s.proof.optimal, "seed {seed} budget {b}: not proven");
            check_policy(&q, &s.policy).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert!(
                close(w, s.policy.objective),
                "seed {seed} budget {b}: oracle {w}, sweep {} ({})",
                s.policy.objective,
                describe(&p.indicators)
            );
            points += 1;
        }
    }
    assert!(points > 2000, "only {points} sweep points checked");
}

/// The 100-point ResNet-50 sweep of the benchmark against independent single solves
/// (probes only, coarse-first order: a different path through the search) at every
/// fifth budget.
#[test]
fn resnet50_sweep_matches_independent_single_solves() {
    let mut p = limpq_solver::gen::bench_problem("resnet50", 0).expect("known kind");
    p.options.bitops = None;
    let pts = p.sweep(100).unwrap();
    assert_eq!(pts.len(), 100);
    for s in pts.iter().step_by(5) {
        let b = s.policy.bitops_budget.expect("budget");
        let q = p.clone().bitops(limpq_solver::BitOpsBudget::Absolute(b));
        let single = q
            .compile()
            .unwrap()
            .solve(&probes_only(20_000_000))
            .unwrap();
        assert!(s.proof.optimal && single.proof.optimal, "budget {b}");
        assert!(
            close(single.policy.objective, s.policy.objective),
            "budget {b}: sweep {} single {}",
            s.policy.objective,
            single.policy.objective
        );
        check_policy(&q, &s.policy).unwrap_or_else(|e| panic!("budget {b}: {e}"));
    }
}

/// `Compiled::ilp` (the model handed to other solvers) enumerated directly has the brute-force
/// optimum of the problem, and is infeasible exactly when the problem is.
#[test]
fn ilp_enumerated_matches_brute_force() {
    let mut solved = 0;
    for seed in 0..400u64 {
        let p = random_problem(seed, 4, None);
        if oracle_size(&p) > 5_000 {
            continue;
        }
        let Ok(c) = p.compile() else { continue };
        let ilp = c.ilp();
        let (g, m) = (ilp.groups.len(), ilp.rows.len());
        assert_eq!(ilp.start.len(), g + 1);
        assert_eq!(ilp.cost.len(), *ilp.start.last().unwrap_or(&0));
        assert_eq!(ilp.bits.len(), ilp.cost.len());
        assert_eq!(ilp.coef.len(), ilp.cost.len() * m);
        assert_eq!(ilp.capacity.len(), m);
        let mut pick: Vec<usize> = ilp.start[..g].to_vec();
        let mut best: Option<f64> = None;
        loop {
            let fits = (0..m).all(|k| {
                let used: f64 = pick.iter().map(|&c| ilp.coef[c * m + k]).sum();
                let cap = ilp.capacity[k];
                used <= cap + 1e-9 + cap.abs() * 1e-12
            });
            if fits {
                let v: f64 = pick.iter().map(|&c| ilp.cost[c]).sum();
                if best.is_none_or(|b| v < b) {
                    best = Some(v);
                }
            }
            let mut d = 0;
            while d < g {
                pick[d] += 1;
                if pick[d] < ilp.start[d + 1] {
                    break;
                }
                pick[d] = ilp.start[d];
                d += 1;
            }
            if d == g {
                break;
            }
        }
        match (best, oracle(&p)) {
            (Some(a), Some(b)) => {
                assert!(close(a, b), "seed {seed}: ILP {a}, oracle {b}");
                solved += 1;
            }
            (None, None) => {}
            (a, b) => panic!("seed {seed}: ILP {a:?}, oracle {b:?}"),
        }
    }
    assert!(solved > 100, "only {solved} instances compared");
}
