//! Hostile input: the library never panics on what a caller or a file hands it. Every
//! number a file or a builder call can carry is drawn from its whole range's edges
//! (0, 1, the type's maximum, NaN, ±∞, negative, subnormal, huge), names collide or
//! are missing, bit lists repeat or are empty; then the problem is compiled (by the solve),
//! swept and evaluated. Each may fail with an error; none may panic, and an answer
//! that comes back must meet its own budgets.
//!
//! Tests build with overflow checks, so an arithmetic overflow is a panic here (in a
//! release build it would be a silently wrong answer).
mod common;

use common::check_policy;
use limpq_solver::gen::Rng;
use limpq_solver::{
    BitOpsBudget, IndicatorSet, Layer, LayerBits, Problem, ResourceLayer, ResourceTable,
    SizeBudget, SolveOptions,
};
use proptest::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

fn pick<T: Copy>(rng: &mut Rng, xs: &[T]) -> T {
    xs[rng.range(0, xs.len() as u64 - 1) as usize]
}

const U64S: &[u64] = &[
    0,
    1,
    2,
    3,
    7,
    1000,
    1 << 20,
    1 << 32,
    1 << 40,
    1 << 62,
    u64::MAX / 64,
    u64::MAX / 2,
    u64::MAX - 1,
    u64::MAX,
];
const U32S: &[u32] = &[
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    8,
    16,
    31,
    32,
    33,
    64,
    1 << 16,
    u32::MAX,
];
const F64S: &[f64] = &[
    0.0,
    -0.0,
    1.0,
    0.5,
    0.1,
    0.01,
    1e-300,
    5e-324,
    -1.0,
    -1e-9,
    1e300,
    f64::MAX,
    f64::MIN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
    f64::EPSILON,
];

/// A value that is usually ordinary and sometimes from the edges.
fn u64v(rng: &mut Rng, hostile: f64, lo: u64, hi: u64) -> u64 {
    if rng.uniform() < hostile {
        pick(rng, U64S)
    } else {
        rng.range(lo, hi)
    }
}
fn u32v(rng: &mut Rng, hostile: f64, ordinary: &[u32]) -> u32 {
    if rng.uniform() < hostile {
        pick(rng, U32S)
    } else {
        pick(rng, ordinary)
    }
}
fn f64v(rng: &mut Rng, hostile: f64, lo: f64, hi: f64) -> f64 {
    if rng.uniform() < hostile {
        pick(rng, F64S)
    } else {
        lo + (hi - lo) * rng.uniform()
    }
}

fn bits(rng: &mut Rng, h: f64) -> Vec<u32> {
    let n = if rng.uniform() < h {
        rng.range(0, 6)
    } else {
        rng.range(1, 4)
    };
    let mut v: Vec<u32> = (0..n).map(|_| u32v(rng, h, &[2, 3, 4, 5, 6, 8])).collect();
    if rng.uniform() > h {
        v.sort_unstable();
        v.dedup();
    }
    v
}

/// A restriction of the file's bit list: some of them, or (hostile) any list.
fn candidates(rng: &mut Rng, h: f64, file: &[u32]) -> Vec<u32> {
    if rng.uniform() < h || file.is_empty() {
        return bits(rng, h);
    }
    let keep: Vec<u32> = file
        .iter()
        .copied()
        .filter(|_| rng.uniform() < 0.7)
        .collect();
    if keep.is_empty() {
        file[..1].to_vec()
    } else {
        keep
    }
}

fn scales(rng: &mut Rng, h: f64, n: usize) -> Vec<f64> {
    let n = if rng.uniform() < h / 4.0 {
        rng.range(0, n as u64 + 1) as usize
    } else {
        n
    };
    let mut s: Vec<f64> = (0..n).map(|_| f64v(rng, h, 0.001, 1.0)).collect();
    if rng.uniform() > h {
        s.sort_by(|a, b| b.partial_cmp(a).unwrap_or(core::cmp::Ordering::Equal));
    }
    s
}

fn indicator_set(rng: &mut Rng, h: f64) -> IndicatorSet {
    let weight_bits = bits(rng, h);
    let act_bits = bits(rng, h);
    let lo = if rng.uniform() < h { 0 } else { 1 };
    let n = rng.range(lo, 7) as usize;
    let mut layers = Vec::new();
    for i in 0..n {
        let name = if rng.uniform() < h / 4.0 {
            pick(rng, &["", "l0", "l1"]).to_string()
        } else {
            format!("l{i}")
        };
        let fixed = if rng.uniform() < 0.15 {
            Some((u32v(rng, h, &[8]), u32v(rng, h, &[8])))
        } else {
            None
        };
        let (ws, as_) = if fixed.is_some() && rng.uniform() > h {
            (vec![], vec![])
        } else {
            (
                scales(rng, h, weight_bits.len()),
                scales(rng, h, act_bits.len()),
            )
        };
        layers.push(Layer {
            name,
            macs: u64v(rng, h, 1, 1 << 24),
            params: u64v(rng, h, 1, 1 << 20),
            weight_scale: ws,
            act_scale: as_,
            fixed,
        });
    }
    IndicatorSet {
        model: "hostile".into(),
        weight_bits,
        act_bits,
        layers,
        meta: vec![],
    }
}

/// A searchable layer's name, or (hostile) any layer's or none's.
/// The middle of a bit list (1 for an empty one).
fn middle(bits: &[u32]) -> u32 {
    let mut b = bits.to_vec();
    b.sort_unstable();
    b.get(b.len() / 2).copied().unwrap_or(1)
}

fn layer_name(rng: &mut Rng, h: f64, ind: &IndicatorSet) -> String {
    let hostile = rng.uniform() < h;
    let names: Vec<&str> = ind
        .layers
        .iter()
        .filter(|l| hostile || l.fixed.is_none())
        .map(|l| l.name.as_str())
        .collect();
    if names.is_empty() || (hostile && rng.uniform() < 0.3) {
        "nowhere".into()
    } else {
        names[rng.range(0, names.len() as u64 - 1) as usize].into()
    }
}

fn problem(rng: &mut Rng, h: f64) -> Problem {
    let ind = indicator_set(rng, h);
    let mut p = Problem::new(ind.clone()).alpha(f64v(rng, h, 0.5, 3.0));
    match rng.range(0, 3) {
        0 => {}
        1 => {
            // Ordinary: near every layer at the file's middle bits; hostile: any number.
            let (weight, act) = (middle(&ind.weight_bits), middle(&ind.act_bits));
            let mid = BitOpsBudget::Uniform { weight, act }.bitops(&ind) as f64;
            let b = (mid * (0.8 + 0.6 * rng.uniform())) as u64;
            p = p.bitops(BitOpsBudget::Absolute(u64v(rng, h, b, b)))
        }
        _ => {
            p = p.bitops(BitOpsBudget::Uniform {
                weight: u32v(rng, h, &[3, 4, 5]),
                act: u32v(rng, h, &[3, 4, 5]),
            })
        }
    }
    match rng.range(0, 3) {
        0 => {}
        1 => {
            // Ordinary: near the file's middle weight bits; hostile: any number.
            let params = ind
                .layers
                .iter()
                .fold(0u64, |s, l| s.saturating_add(l.params));
            let mid = params as f64 * f64::from(middle(&ind.weight_bits)) / 8.0;
            let b = (mid * (0.8 + 0.6 * rng.uniform())) as u64;
            p = p.size(SizeBudget::Bytes(u64v(rng, h, b, b)))
        }
        _ => p = p.size(SizeBudget::CompressionRatio(f64v(rng, h, 4.0, 12.0))),
    }
    let weight_only = (rng.uniform() < 0.2).then(|| u32v(rng, h, &[8]));
    if rng.uniform() < 0.3 {
        let acts: Vec<u32> = weight_only.map_or(ind.act_bits.clone(), |a| vec![a]);
        let mut layers = Vec::new();
        for l in &ind.layers {
            if rng.uniform() < h / 2.0 {
                continue;
            }
            let mut pairs: Vec<(u32, u32)> = ind
                .weight_bits
                .iter()
                .flat_map(|&w| acts.iter().map(move |&a| (w, a)))
                .chain(l.fixed)
                .collect();
            if rng.uniform() > h {
                pairs.sort_unstable();
                pairs.dedup();
            }
            let costs = pairs
                .into_iter()
                .map(|(w, a)| (w, a, f64v(rng, h, 0.0, 10.0)))
                .collect();
            layers.push(ResourceLayer {
                name: l.name.clone(),
                costs,
            });
        }
        p = p.resource(
            ResourceTable {
                name: "lat".into(),
                layers,
            },
            f64v(rng, h, 1.0, 60.0),
        );
    }
    if let Some(a) = weight_only {
        p = p.weight_only(a);
    }
    if rng.uniform() < 0.2 {
        let (w, a) = (u32v(rng, h, &[2, 4]), u32v(rng, h, &[2, 4]));
        p = p.pin(&layer_name(rng, h, &ind), w, a);
    }
    if rng.uniform() < 0.2 {
        let g = [layer_name(rng, h, &ind), layer_name(rng, h, &ind)];
        p = p.tie_weights(&g);
    }
    if rng.uniform() < 0.2 {
        let g = [layer_name(rng, h, &ind), layer_name(rng, h, &ind)];
        p = p.tie_acts(&g);
    }
    if rng.uniform() < 0.2 {
        p = p.weight_bits(&candidates(rng, h, &ind.weight_bits));
    }
    if rng.uniform() < 0.2 {
        p = p.act_bits(&candidates(rng, h, &ind.act_bits));
    }
    if rng.uniform() < 0.2 {
        p = p.non_monotone_rule(true);
    }
    p
}

/// Compiles, solves, sweeps and evaluates `p`; errors are fine, panics are not.
fn exercise(p: &Problem, rng: &mut Rng) -> Result<(), String> {
    let mut opts = SolveOptions::default();
    opts.node_limit = 20_000;
    let solved = p.solve_with(&opts);
    if let Ok(s) = &solved {
        // An answer meets its own budgets, whatever the input was (proven or not).
        check_policy(p, &s.policy)?;
    }
    let _ = p.sweep_with(rng.range(0, 4) as usize, &opts);
    let mut guess = Vec::new();
    for l in &p.indicators.layers {
        if rng.uniform() < 0.05 {
            continue;
        }
        let (weight, act) = (u32v(rng, 0.2, &[2, 4, 8]), u32v(rng, 0.2, &[2, 4, 8]));
        guess.push(LayerBits {
            name: l.name.clone(),
            weight,
            act,
        });
    }
    let _ = p.evaluate(&guess);
    if let Ok(s) = solved {
        let _ = p.evaluate(&s.policy.layers);
    }
    Ok(())
}

fn run(seed: u64, h: f64) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed);
    let p = problem(&mut rng, h);
    let shown = format!("{p:?}");
    match catch_unwind(AssertUnwindSafe(|| exercise(&p, &mut rng))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(TestCaseError::fail(format!("seed {seed}: {e}\n{shown}"))),
        Err(e) => {
            let why = e
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| e.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(TestCaseError::fail(format!(
                "seed {seed}: panicked ({why}) on\n{shown}"
            )))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// Mostly ordinary input with a few values from the edges: reaches deep into a solve.
    #[test]
    fn a_few_hostile_values_never_panic(seed in any::<u64>()) {
        run(seed, 0.02)?;
    }

    /// Input full of edge values: exercises validation.
    #[test]
    fn many_hostile_values_never_panic(seed in any::<u64>()) {
        run(seed, 0.3)?;
    }
}

/// An integral budget is met to the unit however large it is: a policy one BitOp over a
/// budget of 4e14 is refused (a tolerance relative to the budget once let it through),
/// and one exactly at it is taken.
#[test]
fn large_integral_budgets_are_met_exactly() {
    let layer = |name: &str, macs: u64, weight_scale: Vec<f64>| Layer {
        name: name.into(),
        macs,
        params: 10,
        weight_scale,
        act_scale: vec![0.0],
        fixed: None,
    };
    let ind = IndicatorSet {
        model: "big".into(),
        weight_bits: vec![2, 4],
        act_bits: vec![1],
        layers: vec![
            layer("a", 100_000_000_000_000, vec![0.5, 0.1]),
            layer("b", 1, vec![0.3, 0.2]),
        ],
        meta: vec![],
    };
    // a at 4 bits (4e14 BitOps) leaves room for b at 2 bits (2) but not at 4 (4).
    for (budget, b_bits) in [(400_000_000_000_003, 2), (400_000_000_000_004, 4)] {
        let p = Problem::new(ind.clone()).bitops(BitOpsBudget::Absolute(budget));
        let s = p.solve().unwrap();
        let bits: Vec<u32> = s.policy.layers.iter().map(|l| l.weight).collect();
        assert_eq!(bits, [4, b_bits], "budget {budget}");
        assert!(s.policy.bitops <= budget);
        let e = p.evaluate(&s.policy.layers).unwrap();
        assert!(e.feasible, "{:?}", e.violations);
        // The same policy one BitOp over: `evaluate` says so.
        let over = Problem::new(ind.clone()).bitops(BitOpsBudget::Absolute(s.policy.bitops - 1));
        let e = over.evaluate(&s.policy.layers).unwrap();
        assert!(!e.feasible, "one BitOp over a budget of {budget} passed");
    }
}

/// Numbers the solver cannot carry are refused with an error that names the layer and
/// the field: BitOps or weight bits that can reach 2^53 (where sums stop being exact),
/// and indicators or resource values whose sums leave the finite numbers.
#[test]
fn numbers_past_exact_or_finite_sums_are_refused() {
    let layer = |name: &str, macs: u64, params: u64, ws: f64| Layer {
        name: name.into(),
        macs,
        params,
        weight_scale: vec![ws, ws / 2.0],
        act_scale: vec![0.1],
        fixed: None,
    };
    let set = |layers| IndicatorSet {
        model: "m".into(),
        weight_bits: vec![2, 4],
        act_bits: vec![8],
        layers,
        meta: vec![],
    };
    let names = |e: limpq_solver::Error, layer: &str, field: &str| {
        let s = e.to_string();
        assert!(
            s.contains(&format!("`{layer}`")) && s.contains(field),
            "{s}"
        );
    };
    // 2^48 MACs × 4 × 8 bits = 2^53.
    let big = set(vec![
        layer("a", 1000, 10, 0.5),
        layer("b", 1 << 48, 10, 0.5),
    ]);
    let p = Problem::new(big.clone()).bitops(BitOpsBudget::Absolute(6_000_000_000_000_000));
    names(p.solve().unwrap_err(), "b", "macs");
    names(p.sweep(3).unwrap_err(), "b", "macs");
    // 32 BitOps less fits, and without a BitOps budget the MACs are not summed at all.
    let fits = set(vec![
        layer("a", 1000, 10, 0.5),
        layer("b", (1 << 48) - 1001, 10, 0.5),
    ]);
    let r = Problem::new(fits)
        .bitops(BitOpsBudget::Absolute(6_000_000_000_000_000))
        .solve();
    assert!(r.is_ok(), "{r:?}");
    assert!(Problem::new(big)
        .size(SizeBudget::Bytes(10))
        .solve()
        .is_ok());
    // 2^51 weights × 4 bits = 2^53.
    let heavy = set(vec![layer("a", 10, 1 << 51, 0.5), layer("b", 10, 10, 0.5)]);
    names(
        Problem::new(heavy)
            .size(SizeBudget::Bytes(1 << 40))
            .solve()
            .unwrap_err(),
        "a",
        "params",
    );
    // α · weight_scale past f64::MAX.
    let steep = set(vec![layer("a", 10, 10, 0.5), layer("b", 10, 10, f64::MAX)]);
    let p = Problem::new(steep)
        .alpha(2.0)
        .bitops(BitOpsBudget::Absolute(500));
    names(p.solve().unwrap_err(), "b", "weight_scale");
    // Resource values that are finite one by one but not together.
    let ind = set(vec![layer("a", 10, 10, 0.5), layer("b", 10, 10, 0.5)]);
    let table = ResourceTable {
        name: "lat".into(),
        layers: ["a", "b"]
            .iter()
            .map(|&n| ResourceLayer {
                name: n.into(),
                costs: vec![(2, 8, 1.0), (4, 8, f64::MAX)],
            })
            .collect(),
    };
    let p = Problem::new(ind).resource(table, 1.5);
    names(p.solve().unwrap_err(), "a", "resource `lat`");
}

/// Tokens other than numbers a mutated file gets: the version field, and the
/// punctuation that holds a file together.
#[cfg(feature = "serde")]
const TOKENS: &[&str] = &[
    "-",
    "\"\"",
    "\"",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "Some((0, 0))",
    "None",
    "null",
    "format_version: 2,",
    "\"format_version\": 4294967297,",
    "\u{0}",
    "é",
    "\\u0000",
];

/// Numbers past every type's range, and special floats.
#[cfg(feature = "serde")]
const NUMBERS: &[&str] = &[
    "-1",
    "0",
    "1e400",
    "-1e400",
    "NaN",
    "inf",
    "1.7976931348623157e308",
    "5e-324",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "33",
    "1e15",
    "-0.0",
    "-inf",
    "99999999999999999999999",
];

/// `text` with 1 to 4 random edits: mostly a number put in place of another (the file
/// still parses, and its values reach the solver), else a token put in place of a span,
/// in front of a character, or a span cut out.
#[cfg(feature = "serde")]
fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut t: Vec<char> = text.chars().collect();
    for _ in 0..rng.range(1, 4) {
        let at = rng.range(0, t.len() as u64) as usize;
        let kind = rng.range(0, 5);
        if kind < 3 {
            // The first number at or after `at`.
            let num = |c: &char| c.is_ascii_digit() || ".-+e".contains(*c);
            let Some(b) = (at..t.len()).find(|&i| t[i].is_ascii_digit()) else {
                continue;
            };
            let b = (0..b).rev().take_while(|&i| num(&t[i])).last().unwrap_or(b);
            let e = (b..t.len()).find(|&i| !num(&t[i])).unwrap_or(t.len());
            t.splice(b..e, pick(rng, NUMBERS).chars());
            continue;
        }
        let len = (rng.range(0, 12) as usize).min(t.len() - at);
        let from = if rng.uniform() < 0.5 { NUMBERS } else { TOKENS };
        let tok: Vec<char> = pick(rng, from).chars().collect();
        match kind {
            3 if rng.uniform() < 0.5 => drop(t.splice(at..at + len, tok)),
            3 => drop(t.splice(at..at, tok)),
            _ => drop(t.drain(at..at + len)),
        }
    }
    t.into_iter().collect()
}

/// Reads `text` as every format, and solves and evaluates what reads as an indicator set.
#[cfg(feature = "serde")]
fn read_all(text: &str) {
    use limpq_solver::{Frontier, Policy};
    for json in [false, true] {
        let read = |t| {
            if json {
                IndicatorSet::from_json_str(t)
            } else {
                IndicatorSet::from_ron_str(t)
            }
        };
        if let Ok(ind) = read(text) {
            let p = Problem::new(ind)
                .bitops(BitOpsBudget::Uniform { weight: 4, act: 4 })
                .size(SizeBudget::CompressionRatio(8.0));
            let mut opts = SolveOptions::default();
            opts.node_limit = 20_000;
            if let Ok(s) = p.solve_with(&opts) {
                let _ = p.evaluate(&s.policy.layers);
            }
        }
        let _ = (Policy::from_ron_str(text), Policy::from_json_str(text));
        let _ = (
            ResourceTable::from_ron_str(text),
            ResourceTable::from_json_str(text),
        );
        let _ = (Frontier::from_ron_str(text), Frontier::from_json_str(text));
    }
}

#[cfg(feature = "serde")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// The shipped indicator file (RON and JSON) and a solved policy, a few edits away
    /// from valid: every reader and the solver answer with an error or a result.
    #[test]
    fn mutated_files_never_panic(seed in any::<u64>()) {
        static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let texts = TEXTS.get_or_init(|| {
            let ron = include_str!("../../examples/resnet20.indicators.ron");
            let ind = IndicatorSet::from_ron_str(ron).expect("the shipped example reads");
            let p = Problem::new(ind.clone()).bitops(BitOpsBudget::Uniform { weight: 4, act: 4 });
            let policy = p.solve().expect("the shipped example solves").policy;
            vec![ron.into(), ind.to_json_string(), policy.to_ron_string(), policy.to_json_string()]
        });
        let mut rng = Rng(seed);
        let base = &texts[rng.range(0, texts.len() as u64 - 1) as usize];
        let text = mutate(base, &mut rng);
        if catch_unwind(AssertUnwindSafe(|| read_all(&text))).is_err() {
            return Err(TestCaseError::fail(format!("seed {seed}: panicked on\n{text}")));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    /// Budget strings as a command line, job or pipeline file gives them: any text, and
    /// text near the spellings (`w4a4`, numbers with `_` and exponents, `cr:X`), is read
    /// or refused, never a panic; what reads prints back as itself.
    #[test]
    fn budget_strings_never_panic(
        any_text in "\\PC{0,12}",
        near in "[wWaA]?[0-9_.eE+-]{0,24}[aA]?[0-9]{0,3}",
        ratio in "(cr:)?[0-9.eE+-]{0,12}",
    ) {
        for s in [&any_text, &near, &ratio] {
            if let Ok(b) = BitOpsBudget::parse(s) {
                prop_assert_eq!(BitOpsBudget::parse(&b.to_string()).ok(), Some(b), "{}", s);
            }
            if let Ok(z) = SizeBudget::parse(s) {
                prop_assert_eq!(SizeBudget::parse(&z.to_string()).ok(), Some(z), "{}", s);
            }
        }
    }
}

/// A tie component of 200,000 layers, weights and acts tied in turn along a chain (one
/// component of 100,000 tie classes of each kind, one joint choice), compiles and solves
/// within a deadline. Its classes are found by one lookup per layer; they were found by a
/// walk of the component's classes, which grew with the square of the classes (0.12 s for
/// 20,000 layers, ~11 s for 200,000, in a release build).
#[test]
fn a_large_tie_component_compiles_within_a_deadline() {
    let n = 200_000;
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let shapes = limpq_solver::gen::random_shapes(n, &mut rng);
    let ind = limpq_solver::gen::indicators("chain", &shapes, &[4], &[4], 0.0, &mut rng);
    let mut p = Problem::new(ind);
    for i in 0..n - 1 {
        let pair = [format!("l{i}"), format!("l{}", i + 1)];
        p = if i % 2 == 0 {
            p.tie_weights(&pair)
        } else {
            p.tie_acts(&pair)
        };
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(p.solve().map(|s| s.proof.optimal));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(10)) {
        Ok(r) => assert_eq!(r.ok(), Some(true), "the one joint choice is optimal"),
        Err(e) => panic!("no answer within 10 s ({e:?})"),
    }
}

/// A sweep's point count is the caller's number: one past `MAX_SWEEP_POINTS`, or
/// `usize::MAX`, is an error naming the limit. The count went straight to a
/// `Vec::with_capacity`, which panics ("capacity overflow") or aborts the process
/// (allocation failure) before the first point is solved.
#[test]
fn sweeps_of_too_many_points_are_refused() {
    use limpq_solver::{Error, MAX_SWEEP_POINTS};
    let p = limpq_solver::gen::bench_problem("resnet18", 0).expect("a bench kind");
    // 0 too: every face refused it but the C ABI, which passed it to an empty frontier.
    for points in [0, MAX_SWEEP_POINTS + 1, usize::MAX / 2, usize::MAX] {
        let e = catch_unwind(AssertUnwindSafe(|| p.sweep(points)))
            .unwrap_or_else(|_| panic!("sweep({points}) panicked"))
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidInput { field, .. } if field == "points"),
            "{e:?}"
        );
        assert!(
            e.to_string().contains(&format!(
                "a sweep takes 1 to {MAX_SWEEP_POINTS} points, not {points}"
            )),
            "{e}"
        );
    }
    assert_eq!(p.sweep(1).unwrap().len(), 1);
}

/// RON text nested past the reader's limit is refused in words for the person who gave the
/// file, at its position: the `ron` crate's own message advised its programmer to raise an
/// option and add a stack-growing crate. Shallower nesting still reads.
#[cfg(feature = "serde")]
#[test]
fn ron_nested_past_the_limit_is_refused_in_plain_words() {
    use limpq_solver::format::versioned::ron_from_str;
    use limpq_solver::{Frontier, Policy};
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let set = |depth: usize| {
        format!(
            "(model: \"m\", weight_bits: [4], act_bits: [4], layers: [(name: \"a\", macs: 1, \
             params: 1, weight_scale: [0.1], act_scale: [0.1])], extra: {})",
            nested(depth)
        )
    };
    let shallow = IndicatorSet::from_ron_str(&set(8));
    assert!(shallow.is_ok(), "{shallow:?}");
    let deep = 200;
    let errors = [
        IndicatorSet::from_ron_str(&set(deep))
            .unwrap_err()
            .to_string(),
        Policy::from_ron_str(&format!("(model: \"m\", extra: {})", nested(deep)))
            .unwrap_err()
            .to_string(),
        Frontier::from_ron_str(&format!("(model: \"m\", extra: {})", nested(deep)))
            .unwrap_err()
            .to_string(),
        ResourceTable::from_ron_str(&format!("(name: \"t\", extra: {})", nested(deep)))
            .unwrap_err()
            .to_string(),
        ron_from_str::<serde::de::IgnoredAny>(&nested(deep))
            .unwrap_err()
            .to_string(),
    ];
    for e in errors {
        assert!(
            e.contains("nested too deeply: brackets or parentheses inside each other"),
            "{e}"
        );
        assert!(
            !e.contains("serde_stacker") && !e.contains("recursion_limit"),
            "{e}"
        );
        assert!(e.contains("1:"), "the position is kept: {e}");
    }
}
