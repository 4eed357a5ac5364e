//! `Problem::evaluate` against the solver's own accounting (solved policies) and against the
//! independent checker in `common` (random policies), on seeded instances.
mod common;

use common::{check, objective, random_problem};
use limpq_solver::gen::Rng;
use limpq_solver::{BitOpsBudget, Error, LayerBits, Problem, SizeBudget};

fn bits_of(p: &Problem, layers: &[LayerBits]) -> Vec<(u32, u32)> {
    p.indicators
        .layers
        .iter()
        .map(|l| {
            let b = layers.iter().find(|b| b.name == l.name).unwrap();
            (b.weight, b.act)
        })
        .collect()
}

#[test]
fn a_solved_policy_evaluates_to_the_solvers_own_figures() {
    let mut solved = 0;
    for seed in 0..400u64 {
        let p = random_problem(seed, 8, None);
        let Ok(sol) = p.solve() else { continue };
        solved += 1;
        // Reversed order: evaluate matches layers by name.
        let mut layers = sol.policy.layers.clone();
        layers.reverse();
        let e = p
            .evaluate(&layers)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(e.feasible, "seed {seed}: {:?}", e.violations);
        let mut want = sol.policy.clone();
        want.optimal = false;
        assert_eq!(e.policy, want, "seed {seed}");
        assert_eq!(e.usage, sol.usage, "seed {seed}");
        assert_eq!(e.fixed_bitops, sol.fixed_bitops, "seed {seed}");
    }
    assert!(
        solved > 100,
        "only {solved} of 400 seeded problems were feasible"
    );
}

#[test]
fn random_policies_agree_with_the_independent_checker() {
    let (mut feasible, mut infeasible) = (0, 0);
    for seed in 0..400u64 {
        let p = random_problem(seed, 6, None);
        if p.compile().is_err() {
            continue;
        }
        let ind = &p.indicators;
        let mut rng = Rng(seed ^ 0x5eed);
        for _ in 0..20 {
            let bits: Vec<(u32, u32)> = ind
                .layers
                .iter()
                .map(|l| match l.fixed {
                    Some(f) => f,
                    None => {
                        let pick =
                            |v: &[u32], r: &mut Rng| v[r.range(0, v.len() as u64 - 1) as usize];
                        let w = pick(&ind.weight_bits, &mut rng);
                        let a = match p.options.weight_only {
                            Some(a) if rng.uniform() < 0.8 => a,
                            _ => pick(&ind.act_bits, &mut rng),
                        };
                        (w, a)
                    }
                })
                .collect();
            let layers: Vec<LayerBits> = ind
                .layers
                .iter()
                .zip(&bits)
                .map(|(l, &(w, a))| LayerBits {
                    name: l.name.clone(),
                    weight: w,
                    act: a,
                })
                .collect();
            let e = match p.evaluate(&layers) {
                Ok(e) => e,
                // Weight-only bits outside the file's act list have no indicator; that is
                // only an error when the act term counts.
                Err(err) => panic!("seed {seed}: {err} for {bits:?}"),
            };
            let truth = check(&p, &bits);
            assert_eq!(
                e.feasible,
                truth.is_ok(),
                "seed {seed} {bits:?}: evaluate says {:?}, the checker {truth:?}",
                e.violations
            );
            let obj = objective(&p, &bits);
            assert!(
                (e.policy.objective - obj).abs() <= 1e-9 * (1.0 + obj.abs()),
                "seed {seed}: objective {} vs {obj}",
                e.policy.objective
            );
            let bitops: u64 = ind
                .layers
                .iter()
                .zip(&bits)
                .filter(|(l, _)| l.fixed.is_none())
                .map(|(l, &(w, a))| l.macs * u64::from(w * a))
                .sum();
            assert_eq!(e.policy.bitops, bitops, "seed {seed}");
            assert_eq!(bits_of(&p, &e.policy.layers), bits, "seed {seed}");
            if e.feasible {
                feasible += 1;
            } else {
                infeasible += 1;
            }
        }
    }
    assert!(
        feasible > 50 && infeasible > 50,
        "{feasible} feasible, {infeasible} not"
    );
}

fn toy() -> Problem {
    let layer = |name: &str, macs: u64, ws: Vec<f64>, as_: Vec<f64>| limpq_solver::Layer {
        name: name.into(),
        macs,
        params: macs / 10,
        weight_scale: ws,
        act_scale: as_,
        fixed: None,
    };
    let mut stem = layer("stem", 100, vec![], vec![]);
    stem.fixed = Some((8, 8));
    Problem::new(limpq_solver::IndicatorSet {
        model: "toy".into(),
        weight_bits: vec![2, 4, 8],
        act_bits: vec![2, 4, 8],
        layers: vec![
            stem,
            layer("a", 1000, vec![0.3, 0.1, 0.01], vec![0.5, 0.2, 0.05]),
            layer("b", 4000, vec![0.2, 0.08, 0.02], vec![0.6, 0.3, 0.1]),
        ],
        meta: vec![],
    })
}

fn lb(name: &str, weight: u32, act: u32) -> LayerBits {
    LayerBits {
        name: name.into(),
        weight,
        act,
    }
}

#[test]
fn violations_say_what_is_wrong() {
    let p = toy()
        .bitops(BitOpsBudget::Uniform { weight: 4, act: 4 })
        .size(SizeBudget::Bytes(1000))
        .pin("a", 4, 4);
    let e = p
        .evaluate(&[lb("stem", 4, 8), lb("a", 8, 8), lb("b", 8, 8)])
        .unwrap();
    assert!(!e.feasible);
    let all = e.violations.join("\n");
    assert!(all.contains("`stem` is fixed at W8A8"), "{all}");
    assert!(all.contains("`a` at W8A8"), "{all}");
    assert!(
        all.contains("BitOps 320000 is over its budget 80000"),
        "{all}"
    );
    // size: 10·4 + 100·8 + 400·8 = 4040 bits ≤ 8000: no size violation.
    assert!(!all.contains("size"), "{all}");
    assert_eq!(e.violations.len(), 3, "{all}");
    // Objective: a at its pin (0.2 + 2·0.1 is what the pin would cost; the policy's own
    // bits are priced), b at W8A8.
    let want = (0.05 + 2.0 * 0.01) + (0.1 + 2.0 * 0.02);
    assert!((e.policy.objective - want).abs() < 1e-12);
}

#[test]
fn malformed_policies_are_errors_naming_the_layer() {
    let p = toy();
    let msg = |r: Result<_, Error>| {
        r.map(|_: limpq_solver::Evaluation| ())
            .unwrap_err()
            .to_string()
    };
    let m = msg(p.evaluate(&[lb("stem", 8, 8), lb("a", 4, 4)]));
    assert!(m.contains("`b`") && m.contains("missing"), "{m}");
    let m = msg(p.evaluate(&[
        lb("stem", 8, 8),
        lb("a", 4, 4),
        lb("b", 4, 4),
        lb("a", 2, 2),
    ]));
    assert!(m.contains("`a`") && m.contains("twice"), "{m}");
    let m = msg(p.evaluate(&[lb("stem", 8, 8), lb("a", 4, 4), lb("zz", 4, 4)]));
    assert!(m.contains("`zz`"), "{m}");
    let m = msg(p.evaluate(&[lb("stem", 8, 8), lb("a", 3, 4), lb("b", 4, 4)]));
    assert!(m.contains("`a`") && m.contains("3 bits"), "{m}");
}

#[test]
fn budgets_parse_print_and_round_trip() {
    for (text, want) in [
        ("w4a4", BitOpsBudget::Uniform { weight: 4, act: 4 }),
        ("W2A3", BitOpsBudget::Uniform { weight: 2, act: 3 }),
        ("1_500_000", BitOpsBudget::Absolute(1_500_000)),
        ("1.5e6", BitOpsBudget::Absolute(1_500_000)),
    ] {
        let b: BitOpsBudget = text.parse().unwrap();
        assert_eq!(b, want, "{text}");
        assert_eq!(b.to_string().parse::<BitOpsBudget>().unwrap(), b);
    }
    for bad in ["w4x4", "w0a4", "w33a4", "0", "-5", "1.5", "wa", ""] {
        let e = bad.parse::<BitOpsBudget>().unwrap_err().to_string();
        assert!(e.contains(&format!("`{bad}`")), "{bad}: {e}");
    }
    for (text, want) in [
        ("cr:8", SizeBudget::CompressionRatio(8.0)),
        ("cr:2.5", SizeBudget::CompressionRatio(2.5)),
        ("4_096", SizeBudget::Bytes(4096)),
    ] {
        let s: SizeBudget = text.parse().unwrap();
        assert_eq!(s, want, "{text}");
        assert_eq!(s.to_string().parse::<SizeBudget>().unwrap(), s);
    }
    // Far from 1 a ratio prints with an exponent, and reads back the same.
    for (text, r) in [
        ("cr:1e-20", 1e-20),
        ("cr:2.5e20", 2.5e20),
        ("cr:0.0001", 1e-4),
    ] {
        let s = SizeBudget::CompressionRatio(r);
        assert_eq!(s.to_string(), text);
        assert_eq!(text.parse::<SizeBudget>().unwrap(), s);
    }
    for bad in ["cr:0", "cr:-1", "cr:x", "1.5", "cr:inf"] {
        assert!(bad.parse::<SizeBudget>().is_err(), "{bad}");
    }
    // Past what a 64-bit count holds: said so, with the largest value that is read.
    let most = (u64::MAX - 1).to_string();
    assert_eq!(
        most.parse::<BitOpsBudget>().unwrap(),
        BitOpsBudget::Absolute(u64::MAX - 1)
    );
    for big in [
        u64::MAX.to_string().as_str(),
        "99999999999999999999999999",
        "1e30",
    ] {
        let e = big.parse::<BitOpsBudget>().unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "more BitOps than a 64-bit count holds (at most {most})"
            )),
            "{big}: {e}"
        );
    }
    for other in ["inf", "NaN", "1e400"] {
        let e = other.parse::<BitOpsBudget>().unwrap_err().to_string();
        assert!(
            e.contains("positive whole number of BitOps"),
            "{other}: {e}"
        );
    }
    let most = u64::MAX / 8;
    assert_eq!(
        most.to_string().parse::<SizeBudget>().unwrap(),
        SizeBudget::Bytes(most)
    );
    for big in [(most + 1).to_string().as_str(), "99999999999999999999999"] {
        let e = big.parse::<SizeBudget>().unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "more bits than a 64-bit count holds (at most {most} bytes)"
            )),
            "{big}: {e}"
        );
    }
}

#[test]
fn a_compression_ratio_past_a_64_bit_count_is_refused() {
    // 510 weights × 32 bits / 1e-15 is ~1.6e19 bits, under u64::MAX (~1.8e19); / 1e-16 is past:
    // `as u64` saturated it to "no budget". Refused, naming the ratio.
    for (r, refused) in [(1e-15, false), (1e-16, true), (1e-300, true)] {
        let got = toy()
            .bitops(BitOpsBudget::Uniform { weight: 4, act: 4 })
            .size(SizeBudget::CompressionRatio(r))
            .compile();
        match got {
            Err(e) if refused => {
                let e = e.to_string();
                assert!(
                    e.contains(&format!("compression ratio {r:e} gives more bits")),
                    "{e}"
                );
            }
            Ok(_) if !refused => {}
            Err(e) => panic!("cr:{r} refused: {e}"),
            Ok(_) => panic!("cr:{r} taken"),
        }
    }
}

#[cfg(feature = "serde")]
#[test]
fn budgets_serialise_as_their_text() {
    use limpq_solver::format::versioned::ron_from_str;
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Doc {
        bitops: BitOpsBudget,
        size: Option<SizeBudget>,
    }
    let d = Doc {
        bitops: BitOpsBudget::Uniform { weight: 2, act: 3 },
        size: Some(SizeBudget::CompressionRatio(8.0)),
    };
    let r = ron::to_string(&d).unwrap();
    assert_eq!(r, r#"(bitops:"w2a3",size:Some("cr:8"))"#);
    assert_eq!(ron_from_str::<Doc>(&r).unwrap(), d);
    let j = serde_json::to_string(&d).unwrap();
    assert_eq!(j, r#"{"bitops":"w2a3","size":"cr:8"}"#);
    assert_eq!(serde_json::from_str::<Doc>(&j).unwrap(), d);
    // A bare number reads as an absolute budget.
    let n: Doc = serde_json::from_str(r#"{"bitops": 123456, "size": 4096}"#).unwrap();
    assert_eq!(n.bitops, BitOpsBudget::Absolute(123456));
    assert_eq!(n.size, Some(SizeBudget::Bytes(4096)));
    let abs = Doc {
        bitops: BitOpsBudget::Absolute(1_500_000),
        size: Some(SizeBudget::Bytes(4096)),
    };
    let j = serde_json::to_string(&abs).unwrap();
    assert_eq!(j, r#"{"bitops":1500000,"size":4096}"#);
    assert_eq!(serde_json::from_str::<Doc>(&j).unwrap(), abs);
    assert_eq!(
        ron_from_str::<Doc>(&ron::to_string(&abs).unwrap()).unwrap(),
        abs
    );
    let e = serde_json::from_str::<Doc>(r#"{"bitops": "w9x9"}"#).unwrap_err();
    assert!(e.to_string().contains("w9x9"), "{e}");
}
