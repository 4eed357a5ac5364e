//! The C ABI driven from Rust: every way to build a problem, every setter, solve, sweep
//! and evaluate give what the Rust API gives on the same inputs, and every error comes
//! back as its status with the message the Rust error prints (or one naming the argument).

use std::ffi::{c_char, CStr, CString};
use std::ptr;

use limpq_solver::{
    BitOpsBudget, IndicatorSet, LayerBits, Problem, ResourceLayer, ResourceTable, SizeBudget,
    Solution, SolveOptions,
};
use limpq_solver_c::*;
use LimpqStatus::*;

type Failed = (LimpqStatus, String);

fn example_text() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/resnet20.indicators.ron"
    ))
    .expect("the example indicator file")
}

fn example() -> IndicatorSet {
    IndicatorSet::from_ron_str(&example_text()).unwrap()
}

fn last_error() -> String {
    // SAFETY: never NULL; read before any other call on this thread.
    unsafe { CStr::from_ptr(limpq_last_error()) }
        .to_str()
        .unwrap()
        .to_owned()
}

fn status(s: LimpqStatus) -> Result<(), Failed> {
    if s == LIMPQ_OK {
        Ok(())
    } else {
        Err((s, last_error()))
    }
}

/// A problem handle, freed on drop.
struct P(*mut LimpqProblem);

impl Drop for P {
    fn drop(&mut self) {
        // SAFETY: a handle from the library (or NULL), freed once.
        unsafe { limpq_problem_free(self.0) }
    }
}

fn from_text(text: &str, format: u32) -> Result<P, Failed> {
    let mut p = ptr::null_mut();
    // SAFETY: `text` is `len` readable bytes; `p` is a writable pointer.
    let st = unsafe { limpq_problem_from_text(text.as_ptr().cast(), text.len(), format, &mut p) };
    let r = status(st).map(|()| P(p));
    if r.is_err() {
        assert!(p.is_null(), "the out-pointer is NULL after a failure");
    }
    r
}

/// A solution as plain values, to compare the C side with the Rust side exactly.
#[derive(Debug, PartialEq)]
struct Read {
    model: String,
    layers: Vec<(String, u32, u32)>,
    objective: f64,
    bitops: u64,
    fixed_bitops: u64,
    weight_bits_total: u64,
    bitops_budget: Option<u64>,
    usage: Vec<(String, f64, Option<f64>)>,
    proof: Option<(bool, f64, f64, u64)>,
}

fn cstr(p: *const c_char) -> String {
    assert!(!p.is_null());
    // SAFETY: a string borrowed from a live handle.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned()
}

/// Reads a policy through the getters.
///
/// # Safety
/// `pol` is a live policy.
unsafe fn read_policy(pol: *const LimpqPolicy) -> Read {
    let (mut n, mut u, mut f, mut b) = (0usize, 0u64, 0f64, false);
    let mut name = ptr::null();
    let mut r = Read {
        model: String::new(),
        layers: Vec::new(),
        objective: 0.0,
        bitops: 0,
        fixed_bitops: 0,
        weight_bits_total: 0,
        bitops_budget: None,
        usage: Vec::new(),
        proof: None,
    };
    // SAFETY: `pol` is live (the caller's contract); every out-pointer is a local.
    unsafe {
        assert_eq!(limpq_policy_model(pol, &mut name), LIMPQ_OK);
        r.model = cstr(name);
        assert_eq!(limpq_policy_objective(pol, &mut f), LIMPQ_OK);
        r.objective = f;
        assert_eq!(limpq_policy_bitops(pol, &mut u), LIMPQ_OK);
        r.bitops = u;
        assert_eq!(limpq_policy_fixed_bitops(pol, &mut u), LIMPQ_OK);
        r.fixed_bitops = u;
        assert_eq!(limpq_policy_weight_bits_total(pol, &mut u), LIMPQ_OK);
        r.weight_bits_total = u;
        assert_eq!(limpq_policy_bitops_budget(pol, &mut b, &mut u), LIMPQ_OK);
        r.bitops_budget = b.then_some(u);
        assert!(b || u == 0);
        assert_eq!(limpq_policy_layer_count(pol, &mut n), LIMPQ_OK);
        for i in 0..n {
            let mut l = LimpqLayerBits {
                name: ptr::null(),
                weight: 0,
                act: 0,
            };
            assert_eq!(limpq_policy_layer(pol, i, &mut l), LIMPQ_OK);
            r.layers.push((cstr(l.name), l.weight, l.act));
        }
        let mut l = LimpqLayerBits {
            name: ptr::null(),
            weight: 0,
            act: 0,
        };
        assert_eq!(limpq_policy_layer(pol, n, &mut l), LIMPQ_INVALID_ARGUMENT);
        assert_eq!(
            last_error(),
            format!("layer index {n} is out of range (there are {n})")
        );
        assert_eq!(limpq_policy_usage_count(pol, &mut n), LIMPQ_OK);
        for i in 0..n {
            let mut us = LimpqUsage {
                name: ptr::null(),
                used: 0.0,
                has_budget: false,
                budget: 0.0,
            };
            assert_eq!(limpq_policy_usage(pol, i, &mut us), LIMPQ_OK);
            r.usage
                .push((cstr(us.name), us.used, us.has_budget.then_some(us.budget)));
        }
    }
    r
}

/// Reads a solution: its policy and proof.
///
/// # Safety
/// `s` is a live solution.
unsafe fn read_solution(s: *const LimpqSolution) -> Read {
    let mut pol = ptr::null();
    let mut proof = LimpqProof {
        optimal: false,
        lower_bound: 0.0,
        gap: 0.0,
        nodes: 0,
    };
    // SAFETY: `s` is live (the caller's contract); the out-pointers are locals.
    unsafe {
        assert_eq!(limpq_solution_policy(s, &mut pol), LIMPQ_OK);
        assert_eq!(limpq_solution_proof(s, &mut proof), LIMPQ_OK);
        let mut r = read_policy(pol);
        r.proof = Some((proof.optimal, proof.lower_bound, proof.gap, proof.nodes));
        r
    }
}

fn rust_read(s: &Solution) -> Read {
    Read {
        model: s.policy.model.clone(),
        layers: s
            .policy
            .layers
            .iter()
            .map(|l| (l.name.clone(), l.weight, l.act))
            .collect(),
        objective: s.policy.objective,
        bitops: s.policy.bitops,
        fixed_bitops: s.fixed_bitops,
        weight_bits_total: s.policy.weight_bits_total,
        bitops_budget: s.policy.bitops_budget,
        usage: s
            .usage
            .iter()
            .map(|u| (u.name.clone(), u.used, u.budget))
            .collect(),
        proof: Some((
            s.proof.optimal,
            s.proof.lower_bound,
            s.proof.gap,
            s.proof.nodes,
        )),
    }
}

fn solve(p: &P) -> Result<Read, Failed> {
    let mut s = ptr::null_mut();
    // SAFETY: a live problem and a writable out-pointer; the solution is read, then freed.
    unsafe {
        let r = status(limpq_problem_solve(p.0, &mut s)).map(|()| read_solution(s));
        if r.is_err() {
            assert!(s.is_null(), "the out-pointer is NULL after a failure");
        }
        limpq_solution_free(s);
        r
    }
}

fn sweep(p: &P, points: usize) -> Result<Vec<Read>, Failed> {
    let mut sw = ptr::null_mut();
    // SAFETY: a live problem and writable out-pointers; the points are read before the
    // sweep is freed.
    unsafe {
        status(limpq_problem_sweep(p.0, points, &mut sw))?;
        let mut n = 0;
        assert_eq!(limpq_sweep_len(sw, &mut n), LIMPQ_OK);
        let mut out = Vec::new();
        for i in 0..n {
            let mut s = ptr::null();
            assert_eq!(limpq_sweep_point(sw, i, &mut s), LIMPQ_OK);
            out.push(read_solution(s));
        }
        let mut s = ptr::null();
        assert_eq!(limpq_sweep_point(sw, n, &mut s), LIMPQ_INVALID_ARGUMENT);
        assert!(s.is_null());
        limpq_sweep_free(sw);
        Ok(out)
    }
}

fn rust_solve(p: &Problem, opts: &SolveOptions) -> Result<Read, Failed> {
    p.solve_with(opts)
        .map(|s| rust_read(&s))
        .map_err(|e| (status_of(&e), e.to_string()))
}

fn status_of(e: &limpq_solver::Error) -> LimpqStatus {
    match e {
        limpq_solver::Error::InvalidInput { .. } => LIMPQ_INVALID_INPUT,
        limpq_solver::Error::Infeasible { .. } => LIMPQ_INFEASIBLE,
        limpq_solver::Error::Parse { .. } => LIMPQ_PARSE_ERROR,
        _ => LIMPQ_INTERNAL_ERROR,
    }
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

#[test]
fn every_way_to_build_the_example_solves_as_rust_does() {
    let text = example_text();
    let want = rust_solve(
        &Problem::new(example()).bitops(BitOpsBudget::Uniform { weight: 4, act: 4 }),
        &SolveOptions::default(),
    )
    .unwrap();
    assert!(want.proof.unwrap().0);
    let json = example().to_json_string();

    let mut built = vec![
        ("RON", from_text(&text, LIMPQ_FORMAT_RON).unwrap()),
        ("RON, auto", from_text(&text, LIMPQ_FORMAT_AUTO).unwrap()),
        ("JSON", from_text(&json, LIMPQ_FORMAT_JSON).unwrap()),
        ("JSON, auto", from_text(&json, LIMPQ_FORMAT_AUTO).unwrap()),
    ];

    let dir = std::env::temp_dir().join(format!("limpq-solver-c-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, body) in [("ind.ron", &text), ("ind.json", &json)] {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        let path = c(path.to_str().unwrap());
        let mut p = ptr::null_mut();
        // SAFETY: a NUL-terminated path and a writable out-pointer.
        status(unsafe { limpq_problem_from_file(path.as_ptr(), &mut p) }).unwrap();
        built.push((name, P(p)));
    }
    std::fs::remove_dir_all(&dir).unwrap();

    // Plain arrays, from the same indicator set.
    let ind = example();
    let names: Vec<CString> = ind.layers.iter().map(|l| c(&l.name)).collect();
    let layers: Vec<LimpqLayer> = ind
        .layers
        .iter()
        .zip(&names)
        .map(|(l, name)| LimpqLayer {
            name: name.as_ptr(),
            macs: l.macs,
            params: l.params,
            // A fixed layer may give no indicators at all.
            weight_scale: if l.fixed.is_some() {
                ptr::null()
            } else {
                l.weight_scale.as_ptr()
            },
            act_scale: l.act_scale.as_ptr(),
            fixed_weight: l.fixed.map_or(0, |f| f.0),
            fixed_act: l.fixed.map_or(0, |f| f.1),
        })
        .collect();
    let model = c(&ind.model);
    let arrays = LimpqIndicators {
        model: model.as_ptr(),
        weight_bits: ind.weight_bits.as_ptr(),
        n_weight_bits: ind.weight_bits.len(),
        act_bits: ind.act_bits.as_ptr(),
        n_act_bits: ind.act_bits.len(),
        layers: layers.as_ptr(),
        n_layers: layers.len(),
    };
    let mut p = ptr::null_mut();
    // SAFETY: every pointer in `arrays` points to as many elements as its length says,
    // and they all outlive the call.
    status(unsafe { limpq_problem_from_arrays(&arrays, &mut p) }).unwrap();
    built.push(("arrays", P(p)));

    for (how, p) in &built {
        // SAFETY: live problems; a NUL-terminated budget.
        status(unsafe { limpq_problem_set_bitops_text(p.0, c"w4a4".as_ptr()) }).unwrap();
        assert_eq!(solve(p).unwrap(), want, "{how}");
    }
}

/// One configuration, set through the C setters and through the Rust builder.
struct Case {
    name: &'static str,
    c: fn(&P) -> Result<(), Failed>,
    rust: fn(Problem) -> Problem,
    opts: SolveOptions,
}

fn names_of(layers: &[&str]) -> (Vec<CString>, Vec<*const c_char>) {
    let owned: Vec<CString> = layers.iter().map(|s| c(s)).collect();
    let ptrs = owned.iter().map(|s| s.as_ptr()).collect();
    (owned, ptrs)
}

/// A latency table for the example: every searchable layer at every pair; conv1 listed.
fn latency() -> ResourceTable {
    let ind = example();
    let mut layers = Vec::new();
    for (i, l) in ind.layers.iter().enumerate() {
        let mut costs = Vec::new();
        for &w in &ind.weight_bits {
            for &a in &ind.act_bits {
                costs.push((w, a, (l.macs as f64) * f64::from(w + a) * 1e-6 + i as f64));
            }
        }
        if l.fixed.is_some() {
            if l.name == "fc" {
                continue;
            }
            costs = vec![(8, 8, 3.5)];
        }
        layers.push(ResourceLayer {
            name: l.name.clone(),
            costs,
        });
    }
    ResourceTable {
        name: "latency_us".into(),
        layers,
    }
}

const LATENCY_MAX: f64 = 420.0;

#[test]
fn every_setter_does_what_the_rust_builder_does() {
    let node_limit_0 = {
        let mut o = SolveOptions::default();
        o.node_limit = 0;
        o
    };
    let cases = [
        Case {
            name: "alpha and a uniform BitOps budget",
            // SAFETY (all the `c` closures): a live problem; pointers to locals that
            // outlive the call.
            c: |p| unsafe {
                status(limpq_problem_set_alpha(p.0, 0.5))?;
                status(limpq_problem_set_bitops_uniform(p.0, 3, 4))
            },
            rust: |p| {
                p.alpha(0.5)
                    .bitops(BitOpsBudget::Uniform { weight: 3, act: 4 })
            },
            opts: SolveOptions::default(),
        },
        Case {
            name: "absolute BitOps and a size in bytes",
            c: |p| unsafe {
                status(limpq_problem_set_bitops(p.0, 400_000_000))?;
                status(limpq_problem_set_size_bytes(p.0, 120_000))
            },
            rust: |p| {
                p.bitops(BitOpsBudget::Absolute(400_000_000))
                    .size(SizeBudget::Bytes(120_000))
            },
            opts: SolveOptions::default(),
        },
        Case {
            name: "a compression ratio and size text",
            c: |p| unsafe {
                status(limpq_problem_set_size_ratio(p.0, 9.5))?;
                status(limpq_problem_set_bitops_text(p.0, c"5e8".as_ptr()))
            },
            rust: |p| {
                p.size(SizeBudget::CompressionRatio(9.5))
                    .bitops(BitOpsBudget::Absolute(500_000_000))
            },
            opts: SolveOptions::default(),
        },
        Case {
            name: "size text, candidate bits",
            c: |p| unsafe {
                status(limpq_problem_set_size_text(p.0, c"cr:10".as_ptr()))?;
                status(limpq_problem_set_weight_bits(p.0, [2u32, 4, 6].as_ptr(), 3))?;
                status(limpq_problem_set_act_bits(p.0, [6u32, 3].as_ptr(), 2))
            },
            rust: |p| {
                p.size(SizeBudget::CompressionRatio(10.0))
                    .weight_bits(&[2, 4, 6])
                    .act_bits(&[6, 3])
            },
            opts: SolveOptions::default(),
        },
        Case {
            name: "weight-only",
            c: |p| unsafe {
                status(limpq_problem_set_weight_only(p.0, 8))?;
                status(limpq_problem_set_size_text(p.0, c"cr:9".as_ptr()))
            },
            rust: |p| p.weight_only(8).size(SizeBudget::CompressionRatio(9.0)),
            opts: SolveOptions::default(),
        },
        Case {
            name: "pins and ties",
            c: |p| unsafe {
                let (_w, w) = names_of(&["layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv1"]);
                let (_a, a) = names_of(&["layer3.0.conv2", "layer3.1.conv2"]);
                status(limpq_problem_pin(p.0, c"layer2.0.conv1".as_ptr(), 3, 5))?;
                status(limpq_problem_tie_weights(p.0, w.as_ptr(), w.len()))?;
                status(limpq_problem_tie_acts(p.0, a.as_ptr(), a.len()))?;
                status(limpq_problem_set_bitops_text(p.0, c"w4a4".as_ptr()))
            },
            rust: |p| {
                p.pin("layer2.0.conv1", 3, 5)
                    .tie_weights(&["layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv1"])
                    .tie_acts(&["layer3.0.conv2", "layer3.1.conv2"])
                    .bitops(BitOpsBudget::Uniform { weight: 4, act: 4 })
            },
            opts: SolveOptions::default(),
        },
        Case {
            name: "the non-monotone rule off",
            c: |p| unsafe {
                status(limpq_problem_set_non_monotone_rule(p.0, false))?;
                status(limpq_problem_set_bitops_uniform(p.0, 3, 3))
            },
            rust: |p| {
                p.non_monotone_rule(false)
                    .bitops(BitOpsBudget::Uniform { weight: 3, act: 3 })
            },
            opts: SolveOptions::default(),
        },
        Case {
            name: "a resource from arrays",
            c: |p| unsafe {
                let t = latency();
                let names: Vec<CString> = t.layers.iter().map(|l| c(&l.name)).collect();
                let mut costs = Vec::new();
                for (l, name) in t.layers.iter().zip(&names) {
                    for &(w, a, v) in &l.costs {
                        costs.push(LimpqResourceCost {
                            layer: name.as_ptr(),
                            weight: w,
                            act: a,
                            value: v,
                        });
                    }
                }
                let name = c(&t.name);
                status(limpq_problem_add_resource(
                    p.0,
                    name.as_ptr(),
                    costs.as_ptr(),
                    costs.len(),
                    LATENCY_MAX,
                ))?;
                status(limpq_problem_set_bitops_uniform(p.0, 5, 5))
            },
            rust: |p| {
                p.resource(latency(), LATENCY_MAX)
                    .bitops(BitOpsBudget::Uniform { weight: 5, act: 5 })
            },
            opts: SolveOptions::default(),
        },
        Case {
            name: "a resource from JSON text",
            c: |p| unsafe {
                let t = latency().to_json_string();
                status(limpq_problem_add_resource_text(
                    p.0,
                    t.as_ptr().cast(),
                    t.len(),
                    LIMPQ_FORMAT_AUTO,
                    LATENCY_MAX,
                ))?;
                status(limpq_problem_set_bitops_uniform(p.0, 5, 5))
            },
            // The table as the same JSON reader reads it back (serde_json's float parsing
            // need not give back every last bit of what it wrote).
            rust: |p| {
                let t = ResourceTable::from_json_str(&latency().to_json_string()).unwrap();
                p.resource(t, LATENCY_MAX)
                    .bitops(BitOpsBudget::Uniform { weight: 5, act: 5 })
            },
            opts: SolveOptions::default(),
        },
        Case {
            name: "a resource from a JSON file",
            c: |p| unsafe {
                let path = std::env::temp_dir().join(format!(
                    "limpq-solver-c-latency-{}.json",
                    std::process::id()
                ));
                std::fs::write(&path, latency().to_json_string()).unwrap();
                let cpath = c(path.to_str().unwrap());
                let st = limpq_problem_add_resource_file(p.0, cpath.as_ptr(), LATENCY_MAX);
                std::fs::remove_file(&path).unwrap();
                status(st)?;
                status(limpq_problem_set_bitops_uniform(p.0, 5, 5))
            },
            rust: |p| {
                let t = ResourceTable::from_json_str(&latency().to_json_string()).unwrap();
                p.resource(t, LATENCY_MAX)
                    .bitops(BitOpsBudget::Uniform { weight: 5, act: 5 })
            },
            opts: SolveOptions::default(),
        },
        Case {
            name: "a node limit of 0",
            c: |p| unsafe {
                status(limpq_problem_set_node_limit(p.0, 0))?;
                status(limpq_problem_set_bitops(p.0, 450_000_000))?;
                status(limpq_problem_set_size_bytes(p.0, 110_000))
            },
            rust: |p| {
                p.bitops(BitOpsBudget::Absolute(450_000_000))
                    .size(SizeBudget::Bytes(110_000))
            },
            opts: node_limit_0,
        },
    ];
    let mut not_proven = 0;
    for case in &cases {
        let p = from_text(&example_text(), LIMPQ_FORMAT_RON).unwrap();
        (case.c)(&p).unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
        let rust = (case.rust)(Problem::new(example()));
        let want = rust_solve(&rust, &case.opts);
        let got = solve(&p);
        assert_eq!(got, want, "{}", case.name);
        let got = got.unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
        not_proven += usize::from(!got.proof.unwrap().0);
        // The sweep under the same rules.
        let want: Vec<Read> = rust
            .sweep_with(4, &case.opts)
            .unwrap()
            .iter()
            .map(rust_read)
            .collect();
        assert_eq!(sweep(&p, 4).unwrap(), want, "{} (sweep)", case.name);
    }
    assert!(not_proven > 0, "the node limit case was proven anyway");
    // The extra resource is reported after BitOps and size, against its max.
    let p = from_text(&example_text(), LIMPQ_FORMAT_RON).unwrap();
    (cases[7].c)(&p).unwrap();
    let r = solve(&p).unwrap();
    assert_eq!(r.usage[2].0, "latency_us");
    assert_eq!(r.usage[2].2, Some(LATENCY_MAX));
}

#[test]
fn evaluate_prices_a_policy_as_rust_does() {
    let p = from_text(&example_text(), LIMPQ_FORMAT_RON).unwrap();
    // SAFETY: a live problem, a NUL-terminated budget.
    status(unsafe { limpq_problem_set_bitops_text(p.0, c"w3a3".as_ptr()) }).unwrap();
    let rust = Problem::new(example()).bitops(BitOpsBudget::Uniform { weight: 3, act: 3 });
    // Every layer at 4 bits (fixed ones at theirs): over the budget, and layer2.1.conv2's
    // weights at 5 bits break the non-monotone rule.
    let policy: Vec<LayerBits> = example()
        .layers
        .iter()
        .map(|l| {
            let (w, a) = l.fixed.unwrap_or((4, 4));
            let w = if l.name == "layer2.1.conv2" { 5 } else { w };
            LayerBits {
                name: l.name.clone(),
                weight: w,
                act: a,
            }
        })
        .collect();
    let want = rust.evaluate(&policy).unwrap();
    assert!(!want.feasible && want.violations.len() == 2, "{want:?}");
    let names: Vec<CString> = policy.iter().map(|l| c(&l.name)).collect();
    let given: Vec<LimpqLayerBits> = policy
        .iter()
        .zip(&names)
        .map(|(l, n)| LimpqLayerBits {
            name: n.as_ptr(),
            weight: l.weight,
            act: l.act,
        })
        .collect();
    let mut e = ptr::null_mut();
    let (mut feasible, mut n) = (true, 0usize);
    let mut pol = ptr::null();
    // SAFETY: a live problem; `given` and its names outlive the call; local out-pointers;
    // the evaluation is read, then freed.
    unsafe {
        status(limpq_problem_evaluate(
            p.0,
            given.as_ptr(),
            given.len(),
            &mut e,
        ))
        .unwrap();
        assert_eq!(limpq_evaluation_feasible(e, &mut feasible), LIMPQ_OK);
        assert!(!feasible);
        assert_eq!(limpq_evaluation_violation_count(e, &mut n), LIMPQ_OK);
        let mut got = Vec::new();
        for i in 0..n {
            let mut v = ptr::null();
            assert_eq!(limpq_evaluation_violation(e, i, &mut v), LIMPQ_OK);
            got.push(cstr(v));
        }
        assert_eq!(got, want.violations);
        let mut v = ptr::null();
        assert_eq!(
            limpq_evaluation_violation(e, n, &mut v),
            LIMPQ_INVALID_ARGUMENT
        );
        assert_eq!(limpq_evaluation_policy(e, &mut pol), LIMPQ_OK);
        let r = read_policy(pol);
        assert_eq!(r.objective, want.policy.objective);
        assert_eq!(r.bitops, want.policy.bitops);
        assert_eq!(r.bitops_budget, want.policy.bitops_budget);
        assert_eq!(r.fixed_bitops, want.fixed_bitops);
        assert_eq!(r.weight_bits_total, want.policy.weight_bits_total);
        limpq_evaluation_free(e);

        // A policy that misses a layer is an error, as in Rust.
        let want = rust.evaluate(&policy[1..]).unwrap_err();
        let mut e = ptr::null_mut();
        let st = limpq_problem_evaluate(p.0, given[1..].as_ptr(), given.len() - 1, &mut e);
        assert_eq!((st, last_error()), (LIMPQ_INVALID_INPUT, want.to_string()));
        assert!(e.is_null());
    }
}

/// A search cut at its node limit before it found any policy is `LIMPQ_LIMIT_REACHED`
/// with the solver's message, not `LIMPQ_INFEASIBLE`; without the limit the same problem
/// solves. The problem: `tests/fixtures/solver/cut.*.ron`, whose first policy breaks a
/// budget.
#[test]
fn a_limit_reached_before_any_policy_is_its_own_status() {
    let fixture = |name: &str| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(dir.join("../tests/fixtures/solver").join(name)).unwrap()
    };
    let table = fixture("cut.latency.ron");
    let p = from_text(&fixture("cut.indicators.ron"), LIMPQ_FORMAT_RON).unwrap();
    // SAFETY: a live problem; `table` is `len` readable bytes.
    unsafe {
        status(limpq_problem_set_alpha(p.0, 0.5)).unwrap();
        status(limpq_problem_set_bitops(p.0, 87_337)).unwrap();
        let t = &table;
        let st = limpq_problem_add_resource_text(
            p.0,
            t.as_ptr().cast(),
            t.len(),
            LIMPQ_FORMAT_RON,
            28.25,
        );
        status(st).unwrap();
        status(limpq_problem_set_node_limit(p.0, 0)).unwrap();
    }
    let (st, message) = solve(&p).err().unwrap();
    assert_eq!(st, LIMPQ_LIMIT_REACHED);
    assert!(message.contains("node limit of 0 states"), "{message}");
    // SAFETY: a live problem.
    status(unsafe { limpq_problem_set_node_limit(p.0, 20_000_000) }).unwrap();
    let r = solve(&p).unwrap();
    assert_eq!(
        r.layers,
        [("l0".to_string(), 8, 3), ("l1".to_string(), 4, 3)]
    );
}

/// What the CLI refuses of a problem, the C ABI refuses too, with the library's words
/// (these passed before: a sweep of 0 points, a BitOps budget of UINT64_MAX that meant no
/// budget, W33, a size whose bits overflow, an indicator file with NaN until its solve).
#[test]
fn the_c_abi_refuses_what_the_cli_refuses() {
    let p = from_text(&example_text(), LIMPQ_FORMAT_RON).unwrap();
    let refused = |p: &P, says: &str| {
        let e = solve(p).err().unwrap();
        assert_eq!(e.0, LIMPQ_INVALID_INPUT, "{}", e.1);
        assert!(e.1.contains(says), "{}", e.1);
    };
    // SAFETY: a live problem.
    unsafe {
        assert_eq!(limpq_problem_set_bitops(p.0, u64::MAX), LIMPQ_OK);
    }
    refused(&p, "at most 18446744073709551614");
    // SAFETY: a live problem.
    unsafe {
        assert_eq!(limpq_problem_set_bitops_uniform(p.0, 33, 4), LIMPQ_OK);
    }
    refused(&p, "bits must be in 1..=32");
    // SAFETY: a live problem.
    unsafe {
        assert_eq!(
            limpq_problem_set_bitops_text(p.0, c"w3a3".as_ptr()),
            LIMPQ_OK
        );
        assert_eq!(limpq_problem_set_size_bytes(p.0, 1 << 62), LIMPQ_OK);
    }
    refused(&p, "more bits than a 64-bit count holds");
    let p = from_text(&example_text(), LIMPQ_FORMAT_RON).unwrap();
    let e = sweep(&p, 0).err().unwrap();
    assert_eq!(e.0, LIMPQ_INVALID_INPUT, "{}", e.1);
    assert!(e.1.contains("a sweep takes 1 to"), "{}", e.1);
    // An indicator file with a NaN: refused when read, naming the file.
    let dir = std::env::temp_dir().join(format!("limpq-solver-c-nan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nan.ron");
    let text = example_text().replacen("weight_scale: [0.4217", "weight_scale: [NaN", 1);
    assert_ne!(text, example_text());
    std::fs::write(&path, text).unwrap();
    let cpath = c(path.to_str().unwrap());
    let mut q = ptr::null_mut();
    // SAFETY: a NUL-terminated path and a writable out-pointer.
    let st = unsafe { limpq_problem_from_file(cpath.as_ptr(), &mut q) };
    assert_eq!(st, LIMPQ_INVALID_INPUT);
    assert!(q.is_null());
    assert!(
        last_error().starts_with(&format!(
            "in {}: layer `layer1.0.conv1`, field `weight_scale`",
            path.display()
        )),
        "{}",
        last_error()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn errors_come_back_as_status_and_message() {
    let text = example_text();
    // Text that is not UTF-8, an unknown format, text that does not parse.
    assert_eq!(
        from_text("\u{0}", 7).err().unwrap(),
        (
            LIMPQ_INVALID_ARGUMENT,
            "unknown format 7 (LIMPQ_FORMAT_AUTO, _RON or _JSON)".into()
        )
    );
    let mut p = ptr::null_mut();
    // SAFETY: two readable bytes; a writable out-pointer.
    let st = unsafe { limpq_problem_from_text(c"\xff\xfe".as_ptr(), 2, 0, &mut p) };
    assert_eq!(st, LIMPQ_INVALID_ARGUMENT);
    assert!(
        last_error().starts_with("`text` is not UTF-8"),
        "{}",
        last_error()
    );
    let broken = &text[..text.len() / 2];
    let want = IndicatorSet::from_ron_str(broken).unwrap_err().to_string();
    assert_eq!(
        from_text(broken, LIMPQ_FORMAT_RON).err().unwrap(),
        (LIMPQ_PARSE_ERROR, want)
    );
    let want = IndicatorSet::from_json_str("{").unwrap_err().to_string();
    assert_eq!(
        from_text("{", LIMPQ_FORMAT_AUTO).err().unwrap(),
        (LIMPQ_PARSE_ERROR, want)
    );
    // A layer name with a NUL cannot come back out as a C string.
    let nul = text.replace("\"layer1.0.conv1\"", "\"layer1.0\\u{0}conv1\"");
    assert_eq!(
        from_text(&nul, LIMPQ_FORMAT_RON).err().unwrap(),
        (
            LIMPQ_INVALID_INPUT,
            "layer name `layer1.0\\0conv1` holds a NUL character".into()
        )
    );
    // A file that is not there.
    let mut p = ptr::null_mut();
    // SAFETY: a NUL-terminated path; a writable out-pointer.
    let st = unsafe { limpq_problem_from_file(c"/nonexistent/x.ron".as_ptr(), &mut p) };
    assert_eq!(st, LIMPQ_IO_ERROR);
    assert!(
        last_error().starts_with("cannot read /nonexistent/x.ron: "),
        "{}",
        last_error()
    );
    assert!(p.is_null());
    // A file that does not parse: the message names it.
    let path = std::env::temp_dir().join(format!("limpq-solver-c-bad-{}.json", std::process::id()));
    std::fs::write(&path, "{").unwrap();
    let cpath = c(path.to_str().unwrap());
    // SAFETY: as above.
    let st = unsafe { limpq_problem_from_file(cpath.as_ptr(), &mut p) };
    std::fs::remove_file(&path).unwrap();
    assert_eq!(st, LIMPQ_PARSE_ERROR);
    assert!(
        last_error().starts_with(&format!("{}: JSON: ", path.display())),
        "{}",
        last_error()
    );
    assert_eq!(LIMPQ_MAX_FILE_BYTES, limpq_io::files::MAX_TEXT);

    let p = from_text(&text, LIMPQ_FORMAT_RON).unwrap();
    // SAFETY: a live problem; NUL-terminated strings; NULL where a NULL is being tested.
    unsafe {
        // NULL arguments name the argument.
        let mut s = ptr::null_mut();
        assert_eq!(
            limpq_problem_solve(p.0, ptr::null_mut()),
            LIMPQ_NULL_ARGUMENT
        );
        assert_eq!(last_error(), "`out` is NULL");
        assert_eq!(
            limpq_problem_solve(ptr::null(), &mut s),
            LIMPQ_NULL_ARGUMENT
        );
        assert_eq!(last_error(), "`problem` is NULL");
        assert_eq!(
            limpq_problem_set_alpha(ptr::null_mut(), 1.0),
            LIMPQ_NULL_ARGUMENT
        );
        assert_eq!(
            limpq_problem_pin(p.0, ptr::null(), 4, 4),
            LIMPQ_NULL_ARGUMENT
        );
        assert_eq!(last_error(), "`layer` is NULL");
        assert_eq!(
            limpq_problem_set_weight_bits(p.0, ptr::null(), 2),
            LIMPQ_NULL_ARGUMENT
        );
        assert_eq!(last_error(), "`bits` is NULL");
        let mut f = 0.0;
        assert_eq!(
            limpq_policy_objective(ptr::null(), &mut f),
            LIMPQ_NULL_ARGUMENT
        );
        assert_eq!(last_error(), "`policy` is NULL");
        // A misaligned out-pointer is refused, not written.
        let mut buf = [0u64; 2];
        let odd = buf
            .as_mut_ptr()
            .cast::<u8>()
            .wrapping_add(1)
            .cast::<usize>();
        let mut sw = ptr::null_mut();
        assert_eq!(limpq_problem_sweep(p.0, 1, &mut sw), LIMPQ_OK);
        assert_eq!(limpq_sweep_len(sw, odd), LIMPQ_INVALID_ARGUMENT);
        assert_eq!(last_error(), "`out` is not aligned");
        assert_eq!(buf, [0, 0]);
        limpq_sweep_free(sw);

        // Budget texts as the Rust parsers read them.
        let want = BitOpsBudget::parse("w0a4").unwrap_err().0;
        assert_eq!(
            limpq_problem_set_bitops_text(p.0, c"w0a4".as_ptr()),
            LIMPQ_INVALID_ARGUMENT
        );
        assert_eq!(last_error(), want);
        let want = SizeBudget::parse("cr:-1").unwrap_err().0;
        assert_eq!(
            limpq_problem_set_size_text(p.0, c"cr:-1".as_ptr()),
            LIMPQ_INVALID_ARGUMENT
        );
        assert_eq!(last_error(), want);
        // Too many sweep points.
        assert_eq!(
            limpq_problem_sweep(p.0, LIMPQ_MAX_SWEEP_POINTS + 1, &mut sw),
            LIMPQ_INVALID_ARGUMENT
        );
        assert!(sw.is_null());
        assert_eq!(last_error(), "100001 sweep points: at most 100000");
    }

    // Invalid input and infeasibility: the Rust error's status and text.
    type Setter = fn(&P) -> LimpqStatus;
    type Builder = fn(Problem) -> Problem;
    let bad: [(&str, Setter, Builder); 5] = [
        (
            "alpha NaN",
            // SAFETY (all): a live problem; NUL-terminated strings.
            |p| unsafe { limpq_problem_set_alpha(p.0, f64::NAN) },
            |p| p.alpha(f64::NAN),
        ),
        (
            "an unknown pinned layer",
            |p| unsafe { limpq_problem_pin(p.0, c"nope".as_ptr(), 4, 4) },
            |p| p.pin("nope", 4, 4),
        ),
        (
            "a tie with a fixed layer",
            |p| unsafe {
                let (_n, ptrs) = names_of(&["fc", "layer1.0.conv1"]);
                limpq_problem_tie_weights(p.0, ptrs.as_ptr(), 2)
            },
            |p| p.tie_weights(&["fc", "layer1.0.conv1"]),
        ),
        (
            "an infeasible BitOps budget",
            |p| unsafe { limpq_problem_set_bitops(p.0, 1000) },
            |p| p.bitops(BitOpsBudget::Absolute(1000)),
        ),
        (
            "budgets that conflict",
            |p| unsafe {
                match limpq_problem_set_bitops_uniform(p.0, 2, 6) {
                    LIMPQ_OK => limpq_problem_set_size_ratio(p.0, 15.9),
                    st => st,
                }
            },
            |p| {
                p.bitops(BitOpsBudget::Uniform { weight: 2, act: 6 })
                    .size(SizeBudget::CompressionRatio(15.9))
            },
        ),
    ];
    for (name, set, rust) in bad {
        let p = from_text(&text, LIMPQ_FORMAT_RON).unwrap();
        assert_eq!(set(&p), LIMPQ_OK, "{name}: setters check nothing");
        let want = rust_solve(&rust(Problem::new(example())), &SolveOptions::default());
        let want = want
            .err()
            .unwrap_or_else(|| panic!("{name}: Rust solved it"));
        assert_eq!(solve(&p).err().unwrap(), want, "{name}");
        assert_ne!(want.0, LIMPQ_INTERNAL_ERROR, "{name}");
    }

    // Fixed bits from arrays are checked as the file's: (0, 8) is not a fixed layer.
    let ind = example();
    let model = c("m");
    let names: Vec<CString> = ind.layers.iter().map(|l| c(&l.name)).collect();
    let mut layers: Vec<LimpqLayer> = ind
        .layers
        .iter()
        .zip(&names)
        .map(|(l, n)| LimpqLayer {
            name: n.as_ptr(),
            macs: l.macs,
            params: l.params,
            weight_scale: l.weight_scale.as_ptr(),
            act_scale: l.act_scale.as_ptr(),
            fixed_weight: l.fixed.map_or(0, |f| f.0),
            fixed_act: l.fixed.map_or(0, |f| f.1),
        })
        .collect();
    layers[0].fixed_weight = 0;
    let mut arrays = LimpqIndicators {
        model: model.as_ptr(),
        weight_bits: ind.weight_bits.as_ptr(),
        n_weight_bits: ind.weight_bits.len(),
        act_bits: ind.act_bits.as_ptr(),
        n_act_bits: ind.act_bits.len(),
        layers: layers.as_ptr(),
        n_layers: layers.len(),
    };
    let mut p = ptr::null_mut();
    // SAFETY: every pointer of `arrays` is valid for its length and outlives the calls.
    unsafe {
        assert_eq!(limpq_problem_from_arrays(&arrays, &mut p), LIMPQ_OK);
        let p = P(p);
        assert_eq!(
            solve(&p).err().unwrap(),
            (
                LIMPQ_INVALID_INPUT,
                "layer `conv1`, field `fixed`: (0, 8) bits are not in 1..=32".into()
            )
        );
        // A searchable layer without indicators is a NULL argument.
        layers[1].weight_scale = ptr::null();
        arrays.layers = layers.as_ptr();
        let mut q = ptr::null_mut();
        assert_eq!(
            limpq_problem_from_arrays(&arrays, &mut q),
            LIMPQ_NULL_ARGUMENT
        );
        assert_eq!(last_error(), "`layers[1].weight_scale` is NULL");
        assert!(q.is_null());
    }
}

#[test]
fn the_last_error_is_per_thread() {
    let mut n = 0;
    // SAFETY: NULL handles are what is being tested; `n` is writable.
    unsafe {
        assert_eq!(limpq_sweep_len(ptr::null(), &mut n), LIMPQ_NULL_ARGUMENT);
    }
    let other = std::thread::spawn(|| {
        let before = last_error();
        let mut n = 0;
        // SAFETY: as above.
        let st = unsafe { limpq_evaluation_violation_count(ptr::null(), &mut n) };
        (before, st, last_error())
    })
    .join()
    .unwrap();
    assert_eq!(
        other,
        (
            String::new(),
            LIMPQ_NULL_ARGUMENT,
            "`evaluation` is NULL".into()
        )
    );
    assert_eq!(last_error(), "`sweep` is NULL");
    // A call that succeeds leaves the message as it was.
    // SAFETY: as above.
    unsafe { limpq_problem_free(ptr::null_mut()) };
    assert_eq!(last_error(), "`sweep` is NULL");
}

#[test]
fn version_is_the_crate_version() {
    // SAFETY: a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(limpq_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

/// `limpq_policy_text` and `limpq_sweep_text` give the bytes `limpq solve -o` writes
/// (`Policy::to_ron_string` and the like, which `io::documents::write_policy` writes), the
/// same pointer on every call, from any thread; a format they cannot write is refused;
/// `limpq_problem_evaluate_text` prices such a text as its layers.
#[test]
fn policy_and_sweep_texts_are_the_files_the_cli_writes() {
    let p = from_text(&example_text(), LIMPQ_FORMAT_RON).unwrap();
    let rust = Problem::new(example())
        .bitops(BitOpsBudget::parse("w4a4").unwrap())
        .size(SizeBudget::parse("cr:8").unwrap());
    let want = rust.solve().unwrap();
    let want_sweep = rust.sweep(3).unwrap();
    let frontier = limpq_solver::report::frontier(&want.policy.model, &want_sweep);
    // SAFETY: a live problem; NUL-terminated strings; writable out-pointers; the solution
    // and sweep are freed after the last read of text borrowed from them.
    unsafe {
        assert_eq!(
            limpq_problem_set_bitops_text(p.0, c"w4a4".as_ptr()),
            LIMPQ_OK
        );
        assert_eq!(limpq_problem_set_size_text(p.0, c"cr:8".as_ptr()), LIMPQ_OK);
        let (mut s, mut sw) = (ptr::null_mut(), ptr::null_mut());
        assert_eq!(limpq_problem_solve(p.0, &mut s), LIMPQ_OK);
        assert_eq!(limpq_problem_sweep(p.0, 3, &mut sw), LIMPQ_OK);
        let mut pol = ptr::null();
        assert_eq!(limpq_solution_policy(s, &mut pol), LIMPQ_OK);

        let text = |f: u32| {
            let mut t = ptr::null();
            assert_eq!(limpq_policy_text(pol, f, &mut t), LIMPQ_OK);
            t
        };
        let (ron, json) = (text(LIMPQ_FORMAT_RON), text(LIMPQ_FORMAT_JSON));
        assert_eq!(cstr(ron), want.policy.to_ron_string());
        assert_eq!(cstr(json), want.policy.to_json_string());
        assert!(cstr(ron).starts_with("(\n    format_version: 1,"));
        // Made once: the same pointer again, and from other threads at once.
        assert_eq!(text(LIMPQ_FORMAT_RON), ron);
        let shared = pol as usize;
        let from_threads: Vec<usize> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    sc.spawn(move || {
                        let mut t = ptr::null();
                        let pol = shared as *const LimpqPolicy;
                        assert_eq!(limpq_policy_text(pol, LIMPQ_FORMAT_JSON, &mut t), LIMPQ_OK);
                        t as usize
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(from_threads.iter().all(|&t| t == json as usize));

        let mut t = ptr::null();
        assert_eq!(limpq_sweep_text(sw, LIMPQ_FORMAT_RON, &mut t), LIMPQ_OK);
        assert_eq!(cstr(t), frontier.to_ron_string());
        assert_eq!(limpq_sweep_text(sw, LIMPQ_FORMAT_JSON, &mut t), LIMPQ_OK);
        assert_eq!(cstr(t), frontier.to_json_string());

        // Formats it cannot write; NULL arguments.
        let mut t = c"left alone".as_ptr();
        assert_eq!(
            limpq_policy_text(pol, LIMPQ_FORMAT_AUTO, &mut t),
            LIMPQ_INVALID_ARGUMENT
        );
        assert!(t.is_null(), "the out-pointer is NULL after a failure");
        assert_eq!(
            last_error(),
            "LIMPQ_FORMAT_AUTO picks a format when reading text; to write, name \
             LIMPQ_FORMAT_RON or LIMPQ_FORMAT_JSON"
        );
        assert_eq!(limpq_sweep_text(sw, 7, &mut t), LIMPQ_INVALID_ARGUMENT);
        assert_eq!(
            last_error(),
            "unknown format 7 (LIMPQ_FORMAT_RON or LIMPQ_FORMAT_JSON)"
        );
        assert_eq!(
            limpq_policy_text(ptr::null(), LIMPQ_FORMAT_RON, &mut t),
            LIMPQ_NULL_ARGUMENT
        );
        assert_eq!(last_error(), "`policy` is NULL");
        assert_eq!(
            limpq_sweep_text(sw, LIMPQ_FORMAT_RON, ptr::null_mut()),
            LIMPQ_NULL_ARGUMENT
        );
        assert_eq!(last_error(), "`out` is NULL");

        // An evaluation's policy file says it is not proven optimal.
        let mut e = ptr::null_mut();
        let bits: Vec<_> = want
            .policy
            .layers
            .iter()
            .map(|l| (c(&l.name), l.weight, l.act))
            .collect();
        let bits: Vec<LimpqLayerBits> = bits
            .iter()
            .map(|(n, w, a)| LimpqLayerBits {
                name: n.as_ptr(),
                weight: *w,
                act: *a,
            })
            .collect();
        assert_eq!(
            limpq_problem_evaluate(p.0, bits.as_ptr(), bits.len(), &mut e),
            LIMPQ_OK
        );
        let mut priced = ptr::null();
        assert_eq!(limpq_evaluation_policy(e, &mut priced), LIMPQ_OK);
        assert_eq!(
            limpq_policy_text(priced, LIMPQ_FORMAT_RON, &mut t),
            LIMPQ_OK
        );
        let ev_ron = cstr(t);
        let read = limpq_solver::Policy::from_ron_str(&ev_ron).unwrap();
        assert!(!read.optimal);
        assert_eq!(read.layers, want.policy.layers);
        limpq_evaluation_free(e);

        // An evaluation's feasibility and objective; the evaluation is freed.
        let feasible_objective = |e: *mut LimpqEvaluation| {
            let (mut feasible, mut obj, mut priced) = (false, 0.0, ptr::null());
            assert_eq!(limpq_evaluation_feasible(e, &mut feasible), LIMPQ_OK);
            assert_eq!(limpq_evaluation_policy(e, &mut priced), LIMPQ_OK);
            assert_eq!(limpq_policy_objective(priced, &mut obj), LIMPQ_OK);
            limpq_evaluation_free(e);
            (feasible, obj)
        };
        // A policy file's text, priced: the same evaluation as its layers give.
        for (text, format) in [
            (want.policy.to_ron_string(), LIMPQ_FORMAT_RON),
            (want.policy.to_json_string(), LIMPQ_FORMAT_AUTO),
            (ev_ron.clone(), LIMPQ_FORMAT_AUTO),
        ] {
            let mut e = ptr::null_mut();
            assert_eq!(
                limpq_problem_evaluate_text(p.0, text.as_ptr().cast(), text.len(), format, &mut e),
                LIMPQ_OK,
                "{}",
                last_error()
            );
            assert_eq!(feasible_objective(e), (true, want.policy.objective));
        }
        // A policy file, read as `limpq solve --price` reads one: the same evaluation;
        // a file that is not there and one that does not parse are named.
        let dir = std::env::temp_dir().join(format!("limpq-solver-c-price-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in [
            ("policy.ron", want.policy.to_ron_string()),
            ("policy.json", want.policy.to_json_string()),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            let cpath = c(path.to_str().unwrap());
            let mut e = ptr::null_mut();
            assert_eq!(
                limpq_problem_evaluate_file(p.0, cpath.as_ptr(), &mut e),
                LIMPQ_OK,
                "{}",
                last_error()
            );
            assert_eq!(
                feasible_objective(e),
                (true, want.policy.objective),
                "{name}"
            );
        }
        let mut e = ptr::null_mut();
        let missing = c(dir.join("nosuch.ron").to_str().unwrap());
        assert_eq!(
            limpq_problem_evaluate_file(p.0, missing.as_ptr(), &mut e),
            LIMPQ_IO_ERROR
        );
        assert!(
            last_error().starts_with(&format!("cannot read {}", dir.join("nosuch.ron").display())),
            "{}",
            last_error()
        );
        std::fs::write(dir.join("broken.json"), "{\"layers\": [").unwrap();
        let broken = c(dir.join("broken.json").to_str().unwrap());
        assert_eq!(
            limpq_problem_evaluate_file(p.0, broken.as_ptr(), &mut e),
            LIMPQ_PARSE_ERROR
        );
        assert!(
            last_error().starts_with(&format!("{}: JSON: ", dir.join("broken.json").display())),
            "{}",
            last_error()
        );
        assert!(e.is_null());
        assert_eq!(
            limpq_problem_evaluate_file(p.0, ptr::null(), &mut e),
            LIMPQ_NULL_ARGUMENT
        );
        // A policy for another model is refused, as `limpq solve --price` refuses it.
        let other = limpq_solver::Policy {
            model: "other_net".into(),
            ..want.policy.clone()
        };
        std::fs::write(dir.join("other.ron"), other.to_ron_string()).unwrap();
        let other_path = c(dir.join("other.ron").to_str().unwrap());
        assert_eq!(
            limpq_problem_evaluate_file(p.0, other_path.as_ptr(), &mut e),
            LIMPQ_INVALID_INPUT
        );
        assert!(
            last_error().contains("the policy is for model 'other_net'"),
            "{}",
            last_error()
        );
        let text = other.to_json_string();
        assert_eq!(
            limpq_problem_evaluate_text(p.0, text.as_ptr().cast(), text.len(), 0, &mut e),
            LIMPQ_INVALID_INPUT
        );
        assert!(e.is_null());
        std::fs::remove_dir_all(&dir).unwrap();

        // Text that does not parse, and a policy of a layer the problem does not have.
        let mut e = ptr::null_mut();
        let broken = "(layers: [";
        assert_eq!(
            limpq_problem_evaluate_text(p.0, broken.as_ptr().cast(), broken.len(), 0, &mut e),
            LIMPQ_PARSE_ERROR
        );
        assert_eq!(
            last_error(),
            limpq_solver::Policy::from_ron_str(broken)
                .unwrap_err()
                .to_string()
        );
        let mut other = want.policy.clone();
        other.layers[1].name = "nosuch".into();
        let want_err = rust.evaluate(&other.layers).unwrap_err().to_string();
        let other = other.to_json_string();
        assert_eq!(
            limpq_problem_evaluate_text(p.0, other.as_ptr().cast(), other.len(), 2, &mut e),
            LIMPQ_INVALID_INPUT
        );
        assert_eq!(last_error(), want_err);
        assert!(e.is_null());
        assert_eq!(
            limpq_problem_evaluate_text(p.0, ptr::null(), 3, 0, &mut e),
            LIMPQ_NULL_ARGUMENT
        );
        limpq_sweep_free(sw);
        limpq_solution_free(s);
    }
}

/// `limpq_problem_copy` gives an independent problem: a pin set on the copy leaves the
/// original's answer as it was, and the copy outlives the original.
#[test]
fn a_copied_problem_is_independent_of_its_original() {
    let p = from_text(&example_text(), LIMPQ_FORMAT_RON).unwrap();
    let base = Problem::new(example()).bitops(BitOpsBudget::parse("w3a3").unwrap());
    let pinned = base.clone().pin("layer1.0.conv1", 6, 6);
    // SAFETY: live problems; NUL-terminated strings; writable out-pointers.
    unsafe {
        assert_eq!(
            limpq_problem_set_bitops_text(p.0, c"w3a3".as_ptr()),
            LIMPQ_OK
        );
        let mut q = ptr::null_mut();
        assert_eq!(limpq_problem_copy(p.0, &mut q), LIMPQ_OK);
        let q = P(q);
        assert_eq!(
            limpq_problem_pin(q.0, c"layer1.0.conv1".as_ptr(), 6, 6),
            LIMPQ_OK
        );
        let opts = SolveOptions::default();
        assert_eq!(solve(&p).unwrap(), rust_solve(&base, &opts).unwrap());
        drop(p);
        let got = solve(&q).unwrap();
        assert_eq!(got, rust_solve(&pinned, &opts).unwrap());
        assert!(got.layers.contains(&("layer1.0.conv1".into(), 6, 6)));

        let mut r = ptr::null_mut();
        assert_eq!(limpq_problem_copy(ptr::null(), &mut r), LIMPQ_NULL_ARGUMENT);
        assert_eq!(last_error(), "`problem` is NULL");
        assert!(r.is_null());
    }
}
