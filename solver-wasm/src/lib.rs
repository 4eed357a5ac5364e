//! `limpq-solver` for `wasm32-unknown-unknown`: a JSON request in, a JSON answer out.
//!
//! The module imports nothing and exports its `memory` and three functions:
//!
//! - `limpq_wasm_alloc(len) -> ptr`: `len` bytes for the request;
//! - `limpq_wasm_solve(ptr, len) -> out`: reads the UTF-8 JSON request at `ptr`, answers
//!   at `out`: a 4-byte little-endian length `n`, then `n` bytes of UTF-8 JSON;
//! - `limpq_wasm_free(ptr, len)`: gives back the request (`len`) and the answer (`n + 4`).
//!
//! The request and answer are described at [`handle`]; `docs/SOLVER.md` ("From
//! WebAssembly") has a complete Node.js caller, which `tests/node.rs` runs.

use limpq_solver::format::versioned::Versioned;
use limpq_solver::{
    BitOpsBudget, Error, IndicatorSet, LayerBits, Policy, Problem, ResourceTable, SizeBudget,
    Solution, SolveOptions, Usage, MAX_SWEEP_POINTS,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// One request. `indicators` is an indicator set's JSON form (`docs/FORMATS.md`), or
/// `indicators_ron` its RON text; the rest mirror `limpq solve`'s flags.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default)]
    indicators: Option<Value>,
    #[serde(default)]
    indicators_ron: Option<String>,
    /// `"wXaY"` or a number of BitOps.
    #[serde(default)]
    bitops: Option<BitOpsBudget>,
    /// `"cr:X"` or a number of bytes.
    #[serde(default)]
    size: Option<SizeBudget>,
    #[serde(default)]
    alpha: Option<f64>,
    #[serde(default)]
    weight_bits: Option<Vec<u32>>,
    #[serde(default)]
    act_bits: Option<Vec<u32>>,
    /// Activation bits of every searchable layer: search weights only.
    #[serde(default)]
    weight_only: Option<u32>,
    /// `[layer, weight bits, act bits]` each.
    #[serde(default)]
    pins: Vec<(String, u32, u32)>,
    #[serde(default)]
    tie_weights: Vec<Vec<String>>,
    #[serde(default)]
    tie_acts: Vec<Vec<String>>,
    #[serde(default = "yes")]
    non_monotone_rule: bool,
    /// `{"table": <resource table JSON>, "max": X}` each.
    #[serde(default)]
    resources: Vec<ResourceRequest>,
    #[serde(default)]
    node_limit: Option<u64>,
    /// Points of a Pareto sweep over BitOps (instead of one solve).
    #[serde(default)]
    sweep: Option<usize>,
    /// A policy to price (instead of solving): `[{"name", "weight", "act"}, ...]`.
    #[serde(default)]
    evaluate: Option<Vec<LayerBits>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceRequest {
    table: Value,
    max: f64,
}

fn yes() -> bool {
    true
}

/// Answers one JSON request with one JSON document.
///
/// - solve (default): `{"ok": true, "solution": S}`, S = `{"policy": <the policy file's
///   JSON, `format_version` included, as limpq solve -o writes it>, "usage": [{"name", "used", "budget"}], "fixed_bitops",
///   "proof": {"optimal", "lower_bound", "gap", "nodes"}}`;
/// - `"sweep": N`: `{"ok": true, "sweep": [S, ...]}`;
/// - `"evaluate": [...]`: `{"ok": true, "evaluation": {"policy", "usage", "fixed_bitops",
///   "feasible", "violations"}}`;
/// - any failure: `{"ok": false, "error": {"kind", "message", ...}}`, `kind` one of
///   `"request"` (the request itself), `"invalid_input"` (with `layer`, `field`,
///   `reason`), `"infeasible"` (with `binding`, `floors`), `"limit_reached"` (with
///   `limit`), `"parse"`, `"backend"`; the message is the solver's.
pub fn handle(request: &str) -> String {
    let answer = match run(request) {
        Ok(v) => v,
        Err(e) => json!({ "ok": false, "error": e }),
    };
    answer.to_string()
}

fn request_error(message: impl std::fmt::Display) -> Value {
    json!({ "kind": "request", "message": message.to_string() })
}

fn solver_error(e: Error) -> Value {
    let message = e.to_string();
    match e {
        Error::InvalidInput {
            layer,
            field,
            reason,
        } => json!({
            "kind": "invalid_input", "message": message, "layer": layer, "field": field,
            "reason": reason,
        }),
        Error::Infeasible { binding, floors } => json!({
            "kind": "infeasible", "message": message, "binding": binding,
            "floors": floors.iter().map(|f| json!({
                "name": f.name, "budget": f.budget, "smallest": f.smallest,
            })).collect::<Vec<_>>(),
        }),
        Error::LimitReached { limit } => json!({
            "kind": "limit_reached", "message": message, "limit": limit,
        }),
        Error::Parse { .. } => json!({ "kind": "parse", "message": message }),
        _ => json!({ "kind": "backend", "message": message }),
    }
}

fn run(request: &str) -> Result<Value, Value> {
    let r: Request = serde_json::from_str(request).map_err(request_error)?;
    let ind = match (&r.indicators, &r.indicators_ron) {
        (Some(v), None) => IndicatorSet::from_json_str(&v.to_string()),
        (None, Some(text)) => IndicatorSet::from_ron_str(text),
        _ => {
            return Err(request_error(
                "give one of `indicators` and `indicators_ron`",
            ))
        }
    }
    .map_err(solver_error)?;
    let mut p = Problem::new(ind).non_monotone_rule(r.non_monotone_rule);
    if let Some(a) = r.alpha {
        p = p.alpha(a);
    }
    if let Some(b) = r.bitops {
        p = p.bitops(b);
    }
    if let Some(s) = r.size {
        p = p.size(s);
    }
    if let Some(b) = &r.weight_bits {
        p = p.weight_bits(b);
    }
    if let Some(b) = &r.act_bits {
        p = p.act_bits(b);
    }
    if let Some(a) = r.weight_only {
        p = p.weight_only(a);
    }
    for (layer, w, a) in &r.pins {
        p = p.pin(layer, *w, *a);
    }
    for t in &r.tie_weights {
        p = p.tie_weights(t);
    }
    for t in &r.tie_acts {
        p = p.tie_acts(t);
    }
    for res in &r.resources {
        let table = ResourceTable::from_json_str(&res.table.to_string()).map_err(solver_error)?;
        p = p.resource(table, res.max);
    }
    let mut opts = SolveOptions::default();
    if let Some(n) = r.node_limit {
        opts.node_limit = n;
    }
    match (r.sweep, &r.evaluate) {
        (Some(_), Some(_)) => Err(request_error("give at most one of `sweep` and `evaluate`")),
        (Some(n), None) => {
            // As `limpq solve --sweep` refuses `--bitops`: the budget would be ignored.
            if r.bitops.is_some() {
                return Err(request_error(
                    "a `sweep` picks its own BitOps budgets: leave out `bitops`",
                ));
            }
            if n == 0 || n > MAX_SWEEP_POINTS {
                return Err(request_error(format!(
                    "a sweep takes 1 to {MAX_SWEEP_POINTS} points, not {n}"
                )));
            }
            let sols = p
                .compile_for_sweep()
                .and_then(|c| c.sweep(n, &opts))
                .map_err(solver_error)?;
            Ok(json!({ "ok": true, "sweep": sols.iter().map(solution).collect::<Vec<_>>() }))
        }
        (None, Some(layers)) => {
            let e = p.evaluate(layers).map_err(solver_error)?;
            Ok(json!({ "ok": true, "evaluation": {
                "policy": policy_file(&e.policy), "usage": usage(&e.usage),
                "fixed_bitops": e.fixed_bitops,
                "feasible": e.feasible, "violations": e.violations,
            }}))
        }
        (None, None) => {
            let s = p
                .compile()
                .and_then(|c| c.solve(&opts))
                .map_err(solver_error)?;
            Ok(json!({ "ok": true, "solution": solution(&s) }))
        }
    }
}

fn usage(u: &[Usage]) -> Value {
    u.iter()
        .map(|u| json!({ "name": u.name, "used": u.used, "budget": u.budget }))
        .collect()
}

/// A policy as the policy file's JSON, `format_version` first (as `limpq solve -o`
/// writes it, but on one line): saved as it is, limpq's commands read it.
fn policy_file(p: &Policy) -> Value {
    json!(Versioned(p, Policy::FORMAT_VERSION))
}

fn solution(s: &Solution) -> Value {
    json!({
        "policy": policy_file(&s.policy),
        "usage": usage(&s.usage),
        "fixed_bitops": s.fixed_bitops,
        "proof": {
            "optimal": s.proof.optimal, "lower_bound": s.proof.lower_bound,
            "gap": s.proof.gap, "nodes": s.proof.nodes,
        },
    })
}

/// `len` bytes for the caller to write a request into (a dangling, non-null pointer for 0).
#[no_mangle]
pub extern "C" fn limpq_wasm_alloc(len: usize) -> *mut u8 {
    into_raw(vec![0u8; len].into_boxed_slice())
}

/// A boxed slice handed over to the caller (exactly its length allocated).
fn into_raw(b: Box<[u8]>) -> *mut u8 {
    Box::into_raw(b).cast::<u8>()
}

/// Gives back a block from [`limpq_wasm_alloc`] or [`limpq_wasm_solve`].
///
/// # Safety
///
/// `ptr` and `len` must be exactly a request block (`len` as allocated) or an answer
/// (`len` = its length prefix + 4), not freed before.
#[no_mangle]
pub unsafe extern "C" fn limpq_wasm_free(ptr: *mut u8, len: usize) {
    // SAFETY: per the contract, `ptr` is a `Box<[u8]>` of length `len` from `into_raw`.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
}

/// Answers the request of `len` bytes at `ptr` (see [`handle`]); returns the answer: a
/// 4-byte little-endian length, then that many bytes of JSON. The request stays the
/// caller's to free.
///
/// # Safety
///
/// `ptr` must point to `len` readable bytes (for `len` > 0).
#[no_mangle]
pub unsafe extern "C" fn limpq_wasm_solve(ptr: *const u8, len: usize) -> *mut u8 {
    let bytes: &[u8] = if len == 0 {
        &[]
    } else {
        // SAFETY: per the contract, `ptr` points to `len` readable bytes.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    };
    let answer = match std::str::from_utf8(bytes) {
        Ok(text) => handle(text),
        Err(e) => {
            json!({ "ok": false, "error": request_error(format!("the request is not UTF-8: {e}")) })
                .to_string()
        }
    };
    let mut out = Vec::with_capacity(answer.len() + 4);
    out.extend_from_slice(&(answer.len() as u32).to_le_bytes());
    out.extend_from_slice(answer.as_bytes());
    // `limpq_wasm_free(out, n + 4)` takes back exactly this box.
    into_raw(out.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = include_str!("../../tests/fixtures/solver/tiny.indicators.ron");

    /// serde_json reads floats to within an ulp (no `float_roundtrip`): the objective is
    /// compared to 1e-12, everything else exactly.
    pub(crate) fn assert_same_policy(got: &Value, want: &limpq_solver::Policy) {
        let mut w = serde_json::to_value(Versioned(want, Policy::FORMAT_VERSION)).unwrap();
        assert_eq!(got["format_version"], Policy::FORMAT_VERSION);
        // Saved as it is, it is a policy file.
        let read = Policy::from_json_str(&got.to_string()).unwrap();
        assert_eq!(read.layers, want.layers);
        assert_eq!(read.optimal, want.optimal);
        let (go, wo) = (got["objective"].as_f64().unwrap(), want.objective);
        assert!(
            (go - wo).abs() <= 1e-12 * wo.abs().max(1.0),
            "objective {go} vs {wo}"
        );
        w["objective"] = got["objective"].clone();
        assert_eq!(got, &w);
    }

    fn ask(req: Value) -> Value {
        serde_json::from_str(&handle(&req.to_string())).unwrap()
    }

    /// The exported functions, called natively as a wasm host would call them.
    #[test]
    fn the_raw_interface_round_trips() {
        let req = json!({ "indicators_ron": TINY, "bitops": "w3a3" }).to_string();
        let ptr = limpq_wasm_alloc(req.len());
        // SAFETY: `ptr` has `req.len()` bytes; the answer is read within its length prefix.
        let answer = unsafe {
            std::ptr::copy_nonoverlapping(req.as_ptr(), ptr, req.len());
            let out = limpq_wasm_solve(ptr, req.len());
            limpq_wasm_free(ptr, req.len());
            let n = u32::from_le_bytes(std::slice::from_raw_parts(out, 4).try_into().unwrap());
            let text = std::str::from_utf8(std::slice::from_raw_parts(out.add(4), n as usize))
                .unwrap()
                .to_string();
            limpq_wasm_free(out, n as usize + 4);
            text
        };
        assert_eq!(answer, handle(&req));
        let native = Problem::new(IndicatorSet::from_ron_str(TINY).unwrap())
            .bitops(BitOpsBudget::Uniform { weight: 3, act: 3 })
            .solve()
            .unwrap();
        let v: Value = serde_json::from_str(&answer).unwrap();
        assert_same_policy(&v["solution"]["policy"], &native.policy);
        // Not UTF-8, and empty.
        // SAFETY: two readable bytes; then zero bytes.
        let (bad, empty) = unsafe {
            let b = [0xff_u8, 0xfe];
            (
                limpq_wasm_solve(b.as_ptr(), 2),
                limpq_wasm_solve(std::ptr::null(), 0),
            )
        };
        for out in [bad, empty] {
            // SAFETY: answers from limpq_wasm_solve, freed once with their length.
            unsafe {
                let n = u32::from_le_bytes(std::slice::from_raw_parts(out, 4).try_into().unwrap());
                let v: Value =
                    serde_json::from_slice(std::slice::from_raw_parts(out.add(4), n as usize))
                        .unwrap();
                assert_eq!(v["error"]["kind"], "request", "{v}");
                limpq_wasm_free(out, n as usize + 4);
            }
        }
    }

    #[test]
    fn errors_carry_the_solvers_messages() {
        let v = ask(json!({ "indicators_ron": TINY, "bitops": 1 }));
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"]["kind"], "infeasible");
        assert!(v["error"]["binding"]
            .as_str()
            .unwrap()
            .contains("BitOps budget 1"));
        assert_eq!(v["error"]["floors"][0]["name"], "BitOps");
        let v = ask(json!({ "indicators_ron": TINY, "bitops": "w3a3", "pins": [["nope", 4, 4]] }));
        assert_eq!(v["error"]["kind"], "invalid_input");
        assert_eq!(v["error"]["layer"], "nope");
        assert_eq!(v["error"]["reason"], "no such layer in the indicator set");
        // A sweep picks its own budgets: a `bitops` beside it was ignored.
        let v = ask(json!({ "indicators_ron": TINY, "bitops": 1, "sweep": 2 }));
        assert_eq!(v["error"]["kind"], "request", "{v}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("leave out `bitops`"));
        let v = ask(json!({ "indicators_ron": TINY, "bitops": "w3" }));
        assert_eq!(v["error"]["kind"], "request");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("BitOps budget `w3`"));
        let v = ask(json!({ "indicators_ron": "IndicatorSet(", "bitops": "w3a3" }));
        assert_eq!(v["error"]["kind"], "parse");
        let v = ask(json!({ "indicators_ron": TINY, "bitop": "w3a3" }));
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field"));
        let v = ask(json!({ "bitops": "w3a3" }));
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("indicators"));
    }

    /// The node limit running out before any policy was found is `limit_reached`, not
    /// `infeasible` (`tests/fixtures/solver/cut.*.ron`: the first policy breaks a budget).
    #[test]
    fn a_limit_reached_before_any_policy_is_its_own_kind() {
        let table = limpq_solver::ResourceTable::from_ron_str(include_str!(
            "../../tests/fixtures/solver/cut.latency.ron"
        ))
        .unwrap();
        let table: Value = serde_json::from_str(&table.to_json_string()).unwrap();
        let req = |limit: u64| {
            json!({
                "indicators_ron": include_str!("../../tests/fixtures/solver/cut.indicators.ron"),
                "alpha": 0.5, "bitops": 87337, "node_limit": limit,
                "resources": [{ "table": table, "max": 28.25 }],
            })
        };
        let v = ask(req(0));
        assert_eq!(v["error"]["kind"], "limit_reached", "{v}");
        assert_eq!(v["error"]["limit"], "node limit of 0 states");
        let v = ask(req(20_000_000));
        assert_eq!(v["solution"]["proof"]["optimal"], true, "{v}");
    }

    #[test]
    fn sweep_and_evaluate_are_the_solvers() {
        let ind = IndicatorSet::from_ron_str(TINY).unwrap();
        let v = ask(json!({ "indicators_ron": TINY, "sweep": 3, "size": "cr:9" }));
        let native = Problem::new(ind.clone())
            .size(SizeBudget::CompressionRatio(9.0))
            .sweep(3)
            .unwrap();
        let points = v["sweep"].as_array().unwrap();
        assert_eq!(points.len(), 3);
        for (p, s) in points.iter().zip(&native) {
            assert_same_policy(&p["policy"], &s.policy);
        }
        let layers = &native[0].policy.layers;
        let v = ask(json!({ "indicators_ron": TINY, "bitops": "w2a2", "evaluate": layers }));
        let e = Problem::new(ind)
            .bitops(BitOpsBudget::Uniform { weight: 2, act: 2 })
            .evaluate(layers)
            .unwrap();
        assert_eq!(v["evaluation"]["feasible"], e.feasible);
        assert_same_policy(&v["evaluation"]["policy"], &e.policy);
    }
}
