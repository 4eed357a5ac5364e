//! A request to the WebAssembly face (`limpq_solver_wasm::handle`, natively: the same
//! code the module runs), which takes every option the solver has (budgets, bit lists,
//! pins, ties, resource tables, a sweep, a policy to price) from one JSON document. The
//! answer must be a JSON document that says `ok` or names a known kind of error; a
//! solution it returns (each point of a sweep, under that point's BitOps budget), priced
//! through the same face, must meet every budget at the same objective. Node limits and sweep lengths are capped so that each input ends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use limpq_solver_wasm::handle;
use serde_json::{json, Value};

const NODE_LIMIT: u64 = 20_000;
const SWEEP_POINTS: u64 = 4;
const ERROR_KINDS: &[&str] = &[
    "request",
    "invalid_input",
    "infeasible",
    "limit_reached",
    "parse",
    "backend",
];

/// The answer as JSON: `ok` true, or false with an error of a known kind and a message.
fn answer(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).expect("the answer is JSON");
    match v["ok"].as_bool() {
        Some(true) => {}
        Some(false) => {
            let kind = v["error"]["kind"].as_str().expect("an error has a kind");
            assert!(ERROR_KINDS.contains(&kind), "{text}");
            let message = v["error"]["message"]
                .as_str()
                .expect("an error has a message");
            assert!(!message.is_empty(), "{text}");
        }
        None => panic!("no `ok` in {text}"),
    }
    v
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(Value::Object(mut req)) = serde_json::from_str::<Value>(text) else {
        // Not a JSON object: answered with a request error all the same.
        assert_eq!(answer(&handle(text))["ok"], false);
        return;
    };
    match req.get("node_limit") {
        None => {
            req.insert("node_limit".into(), json!(NODE_LIMIT));
        }
        Some(n) if n.as_u64().is_some_and(|n| n > NODE_LIMIT) => {
            req.insert("node_limit".into(), json!(NODE_LIMIT));
        }
        Some(_) => {}
    }
    if req
        .get("sweep")
        .and_then(Value::as_u64)
        .is_some_and(|n| n > SWEEP_POINTS)
    {
        req.insert("sweep".into(), json!(SWEEP_POINTS));
    }
    let v = answer(&handle(&Value::Object(req.clone()).to_string()));
    req.remove("sweep");
    if let Some(sol) = v.get("solution") {
        priced_alike(req, sol);
    } else if let Some(points) = v["sweep"].as_array() {
        // Each point under its own BitOps budget.
        for sol in points {
            let mut r = req.clone();
            r.insert("bitops".into(), sol["policy"]["bitops_budget"].clone());
            priced_alike(r, sol);
        }
    }
});

/// `sol`, priced through the same face under request `req`, meets every budget at the
/// same objective.
fn priced_alike(mut req: serde_json::Map<String, Value>, sol: &Value) {
    req.insert("evaluate".into(), sol["policy"]["layers"].clone());
    let e = answer(&handle(&Value::Object(req).to_string()));
    assert_eq!(e["ok"], true, "the face's own policy prices: {e}");
    let ev = &e["evaluation"];
    assert_eq!(ev["feasible"], true, "{ev}");
    let (x, y) = (
        ev["policy"]["objective"].as_f64().expect("an objective"),
        sol["policy"]["objective"].as_f64().expect("an objective"),
    );
    assert!(
        (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        "{x} vs {y}"
    );
}
