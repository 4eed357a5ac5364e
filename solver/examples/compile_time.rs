//! Times `Problem::compile` of one benchmark kind:
//! `cargo run --release -p limpq-solver --example compile_time -- KIND REPEATS`.
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let kind = a.get(1).map_or("random1000", |s| s.as_str());
    let reps: usize = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let p = limpq_solver::gen::bench_problem(kind, 0).expect("known kind");
    let mut ts = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let c = p.compile().expect("compiles");
        ts.push(t.elapsed());
        std::hint::black_box(c);
    }
    ts.sort();
    println!(
        "{kind}: compile median {:?} min {:?}",
        ts[ts.len() / 2],
        ts[0]
    );
}
