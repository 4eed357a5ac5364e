//! Times reading one indicator file as RON and as JSON (the same set, written back by
//! `to_json_string`), beside compiling and solving it under the bench's budgets:
//! `cargo run --release -p limpq-solver --features serde --example read_time -- FILE [N]`
//! (medians of N rounds, default 200).
use std::time::Instant;

use limpq_solver::IndicatorSet;

fn median_us(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let Some(path) = a.get(1) else {
        eprintln!("usage: read_time FILE.ron [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: usize = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(200).max(1);
    let ron = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let set = IndicatorSet::from_ron_str(&ron).unwrap_or_else(|e| panic!("{path}: {e}"));
    let json = set.to_json_string();
    let (mut tr, mut tj, mut ts) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let from_ron = IndicatorSet::from_ron_str(&ron).expect("read once already");
        tr.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        let from_json = IndicatorSet::from_json_str(&json).expect("written by to_json_string");
        tj.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(
            from_ron, from_json,
            "the two formats read back different sets"
        );
        let t = Instant::now();
        let sol = limpq_solver::gen::bench_budgets(from_json).solve();
        ts.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(sol.ok());
    }
    println!(
        "{path}: {} bytes as RON, {} as JSON; read RON {:.1} µs, read JSON {:.1} µs, \
         compile + solve {:.1} µs (medians of {rounds})",
        ron.len(),
        json.len(),
        median_us(tr),
        median_us(tj),
        median_us(ts)
    );
}
