//! Times the exact solver on the benchmark instances (no microlp): `cargo run --release -p limpq-solver --example quick_bench`.
use std::time::Instant;

fn main() {
    for kind in ["resnet18", "resnet50", "random200", "random1000"] {
        for seed in 0..2 {
            let mut p = limpq_solver::gen::bench_problem(kind, seed).unwrap();
            if std::env::var("ONE").is_ok() {
                p.options.size = None;
            }
            let t = Instant::now();
            let c = p.compile().unwrap();
            let tc = t.elapsed();
            let mut o = limpq_solver::SolveOptions::default();
            o.node_limit = 2_000_000;
            let s = c.solve(&o).unwrap();
            let dt = t.elapsed();
            println!("{kind} seed {seed}: compile {tc:?} total {dt:?} optimal {} nodes {} obj {:.6} choices {:?}", s.proof.optimal, s.proof.nodes, s.policy.objective, c.choices());
        }
    }
    let mut p = limpq_solver::gen::bench_problem("resnet50", 0).unwrap();
    p.options.bitops = None;
    let t = Instant::now();
    let pts = p.sweep(100).unwrap();
    println!(
        "sweep: {:?}, all optimal {}, max nodes {}",
        t.elapsed(),
        pts.iter().all(|s| s.proof.optimal),
        pts.iter().map(|s| s.proof.nodes).max().unwrap()
    );
}
