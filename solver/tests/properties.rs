//! Property tests and error cases of the solver's public API.
mod common;

use common::{check_policy, random_problem};
use limpq_solver::{
    BitOpsBudget, Error, IndicatorSet, Layer, Problem, ResourceLayer, ResourceTable, SizeBudget,
};
use proptest::prelude::*;

fn layer(name: &str, macs: u64, ws: Vec<f64>, as_: Vec<f64>) -> Layer {
    Layer {
        name: name.into(),
        macs,
        params: macs / 4 + 1,
        weight_scale: ws,
        act_scale: as_,
        fixed: None,
    }
}

fn toy() -> IndicatorSet {
    IndicatorSet {
        model: "toy".into(),
        weight_bits: vec![2, 4, 8],
        act_bits: vec![2, 4, 8],
        layers: vec![
            layer("a", 100, vec![0.3, 0.1, 0.01], vec![0.5, 0.2, 0.05]),
            layer("b", 400, vec![0.2, 0.08, 0.02], vec![0.6, 0.3, 0.1]),
            Layer {
                fixed: Some((8, 8)),
                weight_scale: vec![],
                act_scale: vec![],
                ..layer("fc", 10, vec![], vec![])
            },
        ],
        meta: vec![],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every solution meets every rule and budget, and its reported figures are right.
    #[test]
    fn solutions_are_feasible_and_reported_correctly(seed in 0u64..1_000_000) {
        let p = random_problem(seed, 10, None);
        if let Ok(s) = p.solve() {
            prop_assert!(s.proof.optimal, "seed {}", seed);
            prop_assert!(s.proof.gap == 0.0);
            if let Err(e) = check_policy(&p, &s.policy) {
                return Err(TestCaseError::fail(format!("seed {seed}: {e}")));
            }
        }
    }

    /// A larger BitOps budget never makes the optimum worse.
    #[test]
    fn objective_does_not_rise_with_the_budget(seed in 0u64..1_000_000, extra in 0u64..100_000) {
        let p = random_problem(seed, 10, None);
        let Some(BitOpsBudget::Absolute(b)) = p.options.bitops else { return Ok(()) };
        let (Ok(a), Ok(c)) = (p.solve(), p.clone().bitops(BitOpsBudget::Absolute(b + extra)).solve()) else { return Ok(()) };
        prop_assert!(c.policy.objective <= a.policy.objective + 1e-9, "seed {}: {} then {}", seed, a.policy.objective, c.policy.objective);
    }

    /// The sweep's points are optimal for their budgets and ordered.
    #[test]
    fn sweep_points_match_single_solves(seed in 0u64..1_000_000) {
        let p = random_problem(seed, 6, None);
        let Ok(pts) = p.sweep(4) else { return Ok(()) };
        for w in pts.windows(2) {
            prop_assert!(w[0].policy.bitops_budget <= w[1].policy.bitops_budget);
            prop_assert!(w[1].policy.objective <= w[0].policy.objective + 1e-9);
        }
        for s in &pts {
            let b = s.policy.bitops_budget.unwrap();
            let single = p.clone().bitops(BitOpsBudget::Absolute(b)).solve().unwrap();
            prop_assert!((single.policy.objective - s.policy.objective).abs() < 1e-9, "seed {}", seed);
        }
    }
}

fn err(p: Problem) -> Error {
    p.solve().expect_err("should fail")
}

fn names(e: &Error, layer: Option<&str>, field: &str) -> bool {
    matches!(e, Error::InvalidInput { layer: l, field: f, .. } if l.as_deref() == layer && f.contains(field))
}

/// What the library refuses of a problem's settings, for every face alike (the CLI's
/// parsers refused these, C and Python passed them: a BitOps budget of u64::MAX meant no
/// budget, a size in bytes past u64::MAX / 8 saturated, W33 was taken, act_bits beside
/// weight_only was ignored, a resource named "size" replaced the size row in Python's
/// usage); and the α of a file of measured sensitivity, which the CLI took as 1 and the
/// other faces as 2.
#[test]
fn every_face_gets_the_same_problem() {
    let field_of = |p: Problem| match p.solve() {
        Err(Error::InvalidInput { field, reason, .. }) => (field, reason),
        other => panic!("{other:?}"),
    };
    let (f, r) = field_of(Problem::new(toy()).bitops(BitOpsBudget::Absolute(u64::MAX)));
    assert_eq!(f, "bitops");
    assert!(r.contains("at most 18446744073709551614"), "{r}");
    let max = Problem::new(toy()).bitops(BitOpsBudget::Absolute(u64::MAX - 1));
    assert_eq!(
        max.solve().unwrap().policy.bitops_budget,
        Some(u64::MAX - 1)
    );
    let (f, r) = field_of(Problem::new(toy()).bitops(BitOpsBudget::Uniform { weight: 33, act: 4 }));
    assert_eq!(
        (f.as_str(), r.as_str()),
        ("bitops", "uniform budget W33A4: bits must be in 1..=32")
    );
    let (f, r) = field_of(Problem::new(toy()).size(SizeBudget::Bytes(u64::MAX / 8 + 1)));
    assert_eq!(f, "size");
    assert!(
        r.contains(&format!("at most {} bytes", u64::MAX / 8)),
        "{r}"
    );
    assert!(Problem::new(toy())
        .size(SizeBudget::Bytes(u64::MAX / 8))
        .solve()
        .is_ok());
    let (f, _) = field_of(Problem::new(toy()).weight_only(8).act_bits(&[4]));
    assert_eq!(f, "act_bits");
    let table = |name: &str| ResourceTable {
        name: name.into(),
        layers: ["a", "b"]
            .iter()
            .map(|l| ResourceLayer {
                name: (*l).into(),
                costs: vec![
                    (2, 2, 1.0),
                    (2, 4, 1.0),
                    (2, 8, 1.0),
                    (4, 2, 1.0),
                    (4, 4, 1.0),
                    (4, 8, 1.0),
                    (8, 2, 1.0),
                    (8, 4, 1.0),
                    (8, 8, 1.0),
                ],
            })
            .collect(),
    };
    for names in [&["size"][..], &["BitOps"], &["lat", "lat"]] {
        let mut p = Problem::new(toy()).bitops(BitOpsBudget::Absolute(1 << 20));
        for n in names {
            p = p.resource(table(n), 10.0);
        }
        let (f, r) = field_of(p);
        assert!(
            f.starts_with("resource `") && r.contains("the name is taken"),
            "{names:?}: {f}: {r}"
        );
    }
    let mut p = Problem::new(toy()).bitops(BitOpsBudget::Absolute(1 << 20));
    for n in ["lat", "energy"] {
        p = p.resource(table(n), 10.0);
    }
    assert!(p.solve().is_ok());
    // Measured sensitivity: α = 1 from the file, as the CLI has it; learned: 2.
    let mut sens = toy();
    sens.meta.push(("source".into(), "sensitivity".into()));
    assert_eq!(Problem::new(sens).options.alpha, 1.0);
    assert_eq!(Problem::new(toy()).options.alpha, 2.0);
}

/// `IndicatorSet::check` refuses what a solve refuses of the set, with the same error.
#[test]
fn checking_a_set_alone_refuses_what_a_solve_refuses() {
    assert_eq!(toy().check(), Ok(()));
    let broken: Vec<fn(&mut IndicatorSet)> = vec![
        |i| i.layers[1].act_scale.truncate(2),
        |i| i.layers[0].weight_scale[1] = f64::NAN,
        |i| i.layers[0].weight_scale[2] = -1.0,
        |i| i.layers[1].act_scale[0] = f64::INFINITY,
        |i| i.layers[1].name = "a".into(),
        |i| i.layers[2].fixed = Some((0, 8)),
        |i| i.weight_bits = vec![],
        |i| i.act_bits = vec![2, 2, 8],
        |i| i.weight_bits[0] = 33,
    ];
    for (k, f) in broken.into_iter().enumerate() {
        let mut i = toy();
        f(&mut i);
        let alone = i.check().expect_err("check should refuse");
        let solved = err(Problem::new(i).bitops(BitOpsBudget::Absolute(1 << 20)));
        assert_eq!(alone, solved, "case {k}");
    }
}

#[test]
fn invalid_input_names_layer_and_field() {
    let mut i = toy();
    i.layers[1].act_scale.pop();
    assert!(names(
        &err(Problem::new(i).bitops(BitOpsBudget::Absolute(1 << 20))),
        Some("b"),
        "act_scale"
    ));
    let mut i = toy();
    i.layers[0].weight_scale[1] = f64::NAN;
    assert!(names(&err(Problem::new(i)), Some("a"), "weight_scale"));
    let mut i = toy();
    i.layers[0].act_scale[0] = -1.0;
    assert!(names(&err(Problem::new(i)), Some("a"), "act_scale"));
    let mut i = toy();
    i.layers[1].name = "a".into();
    assert!(names(&err(Problem::new(i)), Some("a"), "name"));
    assert!(names(
        &err(Problem::new(toy()).pin("zz", 4, 4)),
        Some("zz"),
        "pinned"
    ));
    assert!(names(
        &err(Problem::new(toy()).pin("fc", 4, 4)),
        Some("fc"),
        "pinned"
    ));
    assert!(names(
        &err(Problem::new(toy()).tie_acts(&["a", "q"])),
        Some("q"),
        "tie_act"
    ));
    assert!(names(
        &err(Problem::new(toy()).weight_bits(&[3])),
        None,
        "weight_bits"
    ));
    assert!(names(
        &err(Problem::new(toy()).alpha(f64::NAN)),
        None,
        "alpha"
    ));
    assert!(names(
        &err(Problem::new(toy()).size(SizeBudget::CompressionRatio(0.0))),
        None,
        "size"
    ));
    let mut i = toy();
    i.weight_bits = vec![2, 2, 8];
    assert!(names(&err(Problem::new(i)), None, "weight_bits"));
    // Display names them too.
    let mut i = toy();
    i.layers[1].act_scale.pop();
    let s = err(Problem::new(i)).to_string();
    assert!(s.contains("`b`") && s.contains("act_scale"), "{s}");
}

#[test]
fn infeasible_names_binding_budget_and_floors() {
    // All-lowest BitOps: 2·2·(100 + 400) = 2000.
    let e = err(Problem::new(toy()).bitops(BitOpsBudget::Absolute(1999)));
    let Error::Infeasible { binding, floors } = &e else {
        panic!("{e:?}")
    };
    assert!(binding.contains("BitOps"), "{binding}");
    assert_eq!(floors[0].smallest, 2000.0);
    assert!(e.to_string().contains("2000"));
    assert!(
        Problem::new(toy())
            .bitops(BitOpsBudget::Absolute(2000))
            .solve()
            .unwrap()
            .proof
            .optimal
    );
    // Size: fixed fc (3 params at 8 bits) counts: smallest = 2·(26 + 101) + 8·3 = 278 bits.
    let e = err(Problem::new(toy()).size(SizeBudget::Bytes(34)));
    let Error::Infeasible { binding, floors } = &e else {
        panic!("{e:?}")
    };
    assert!(binding.contains("size"), "{binding}");
    assert_eq!(floors[0].smallest, 278.0);
    // The size budget is given in bytes and counted in bits: the message says which.
    assert_eq!(
        binding,
        "the size budget 272 bits (34 bytes) is below the smallest achievable 278 bits \
         (34.75 bytes)"
    );
    assert_eq!((floors[0].unit, floors[0].budget), ("bits", 272.0));
    assert!(
        e.to_string()
            .ends_with("values: size 278 bits (budget 272 bits)"),
        "{e}"
    );
    let e = err(Problem::new(toy()).bitops(BitOpsBudget::Absolute(1999)));
    assert!(
        e.to_string()
            .ends_with("below the smallest achievable 2000; smallest achievable values: BitOps 2000 (budget 1999)"),
        "{e}"
    );
}

#[test]
fn non_monotone_rule_forbids_the_lower_bit() {
    let mut i = toy();
    // a's weight indicator at 2 bits is below that at 4: 2 bits forbidden for a's weights.
    i.layers[0].weight_scale = vec![0.05, 0.1, 0.01];
    let tight = BitOpsBudget::Absolute(2 * 2 * 400 + 4 * 2 * 100);
    let s = Problem::new(i.clone()).bitops(tight).solve().unwrap();
    assert_eq!(s.policy.layers[0].weight, 4);
    let s = Problem::new(i)
        .bitops(tight)
        .non_monotone_rule(false)
        .solve()
        .unwrap();
    assert_eq!(s.policy.layers[0].weight, 2);
}

/// `solve_with` and `sweep_with` are `solve` and `sweep` under the options given: the
/// defaults give the same answers, and a state budget of 0 stops searches that the default
/// budget proves.
#[test]
fn solve_with_and_sweep_with_take_their_options() {
    use limpq_solver::SolveOptions;
    let defaults = SolveOptions::default();
    let mut none = SolveOptions::default();
    none.node_limit = 0;
    let (mut stopped, mut stopped_points) = (0, 0);
    for seed in 0..40 {
        let p = random_problem(seed, 12, None);
        match (p.solve(), p.solve_with(&defaults)) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "seed {seed}"),
            (Err(a), Err(b)) => assert_eq!(a, b, "seed {seed}"),
            (a, b) => panic!("seed {seed}: {a:?} vs {b:?}"),
        }
        if let Ok(s) = p.solve_with(&none) {
            check_policy(&p, &s.policy).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            stopped += usize::from(!s.proof.optimal);
        }
        match (p.sweep(3), p.sweep_with(3, &defaults)) {
            (Ok(a), Ok(b)) => {
                assert!(a.iter().all(|s| s.proof.optimal), "seed {seed}");
                assert_eq!(a, b, "seed {seed}");
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "seed {seed}"),
            (a, b) => panic!("seed {seed}: {a:?} vs {b:?}"),
        }
        if let Ok(pts) = p.sweep_with(3, &none) {
            stopped_points += pts.iter().filter(|s| !s.proof.optimal).count();
        }
    }
    assert!(stopped > 0, "no solve was stopped by a node limit of 0");
    assert!(
        stopped_points > 0,
        "no sweep point was stopped by a node limit of 0"
    );
}

/// `sweep_reporting` is `sweep_with`, and says once per point, in order, how many points
/// are solved; a sweep that fails reports only the points solved before it failed.
#[test]
fn a_sweep_reports_each_point_as_it_is_solved() {
    use limpq_solver::SolveOptions;
    let opts = SolveOptions::default();
    let (mut swept, mut failed) = (0, 0);
    for seed in 0..40 {
        let p = random_problem(seed, 12, None);
        for points in [1, 5] {
            let mut seen = Vec::new();
            let got = p.sweep_reporting(points, &opts, &mut |k| seen.push(k));
            match (got, p.sweep_with(points, &opts)) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "seed {seed}");
                    assert_eq!(seen, (1..=points).collect::<Vec<_>>(), "seed {seed}");
                    swept += 1;
                }
                (Err(a), Err(b)) => {
                    assert_eq!(a, b, "seed {seed}");
                    assert!(seen.len() < points, "seed {seed}: {seen:?}");
                    assert!(seen.iter().copied().eq(1..=seen.len()), "seed {seed}");
                    failed += 1;
                }
                (a, b) => panic!("seed {seed}: {a:?} vs {b:?}"),
            }
        }
    }
    assert!(
        swept > 20,
        "only {swept} sweeps succeeded ({failed} failed)"
    );
}

/// Two layers and a latency table on which the first policy (the Lagrangian relaxation's,
/// repaired) breaks a budget; `tests/fixtures/solver/cut.*.ron` hold the same problem for
/// the command-line, C and Python tests.
fn cut_before_any_policy() -> Problem {
    use limpq_solver::{ResourceLayer, ResourceTable};
    let layer = |name: &str, macs, params, ws: [f64; 2], as_: [f64; 3]| Layer {
        name: name.into(),
        macs,
        params,
        weight_scale: ws.to_vec(),
        act_scale: as_.to_vec(),
        fixed: None,
    };
    let ind = IndicatorSet {
        model: "cut".into(),
        weight_bits: vec![4, 8],
        act_bits: vec![2, 3, 4],
        layers: vec![
            layer(
                "l0",
                1850,
                7,
                [0.0007085180124761525, 0.011166321292039254],
                [1.1223583352659983, 0.7049699672320613, 0.6116357389945698],
            ),
            layer(
                "l1",
                3563,
                235,
                [0.011227833273283774, 0.0008004802577482053],
                [1.4845434236496378, 1.836737660644505, 0.8660887604780626],
            ),
        ],
        meta: vec![],
    };
    let costs = |v: [f64; 6]| {
        let wa = [(4, 2), (4, 3), (4, 4), (8, 2), (8, 3), (8, 4)];
        wa.iter().zip(v).map(|(&(w, a), x)| (w, a, x)).collect()
    };
    let table = ResourceTable {
        name: "latency".into(),
        layers: vec![
            ResourceLayer {
                name: "l0".into(),
                costs: costs([8.0, 5.75, 19.75, 23.25, 2.5, 10.0]),
            },
            ResourceLayer {
                name: "l1".into(),
                costs: costs([7.0, 7.5, 6.5, 2.75, 11.5, 20.25]),
            },
        ],
    };
    Problem::new(ind)
        .alpha(0.5)
        .bitops(BitOpsBudget::Absolute(87337))
        .resource(table, 28.25)
}

/// A search cut at its node limit before it found any policy proves nothing, so it is not
/// reported as infeasible: the error names the limit, and the same search without it finds
/// the optimum (W8A3, W4A3).
#[test]
fn a_search_cut_before_any_policy_reports_its_limit_not_infeasibility() {
    let c = cut_before_any_policy().compile().unwrap();
    let mut o = limpq_solver::SolveOptions::default();
    o.node_limit = 0;
    match c.solve(&o) {
        Err(Error::LimitReached { limit }) => assert_eq!(limit, "node limit of 0 states"),
        other => panic!("expected LimitReached, got {other:?}"),
    }
    let e = c.solve(&o).unwrap_err().to_string();
    assert!(e.contains("none is proven to exist or not"), "{e}");
    let s = c.solve(&Default::default()).unwrap();
    assert!(s.proof.optimal);
    let bits: Vec<(u32, u32)> = s.policy.layers.iter().map(|l| (l.weight, l.act)).collect();
    assert_eq!(bits, [(8, 3), (4, 3)]);
    check_policy(&cut_before_any_policy(), &s.policy).unwrap();
}
