//! Medians of in-process compile, solve and total times per benchmark kind:
//! `cargo run --release -p limpq-solver --example timing -- [KIND,KIND,...] [SEEDS] [REPEATS]`
//! (default: every kind of `gen::BENCH_KINDS` but the random ones, 5 seeds, 200 repeats;
//! the seeds are interleaved so that load on the machine hits every seed alike; a second
//! line gives each seed's median total).
use std::time::{Duration, Instant};

fn med(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let kinds: Vec<String> = a.get(1).map_or_else(
        || {
            limpq_solver::gen::BENCH_KINDS
                .iter()
                .filter(|k| !k.starts_with("random"))
                .map(|s| s.to_string())
                .collect()
        },
        |s| s.split(',').map(String::from).collect(),
    );
    let seeds: u64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let reps: usize = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(200);
    for kind in &kinds {
        let ps: Vec<_> = (0..seeds)
            .map(|s| limpq_solver::gen::bench_problem(kind, s).expect("known kind"))
            .collect();
        let (mut tc, mut ts, mut tt) = (Vec::new(), Vec::new(), Vec::new());
        let mut nodes = vec![0; ps.len()];
        let mut per: Vec<Vec<Duration>> = vec![Vec::new(); ps.len()];
        for _ in 0..reps {
            for (i, p) in ps.iter().enumerate() {
                let t0 = Instant::now();
                let c = p.compile().expect("compiles");
                let t1 = Instant::now();
                let s = c.solve(&Default::default()).expect("solves");
                let t2 = Instant::now();
                tc.push(t1 - t0);
                ts.push(t2 - t1);
                tt.push(t2 - t0);
                per[i].push(t2 - t0);
                nodes[i] = s.proof.nodes;
                std::hint::black_box(s);
            }
        }
        println!(
            "{kind:<16} compile {:>9.1} µs  solve {:>9.1} µs  total {:>9.1} µs  (medians of {} runs)  states per seed {:?}",
            med(&mut tc).as_secs_f64() * 1e6,
            med(&mut ts).as_secs_f64() * 1e6,
            med(&mut tt).as_secs_f64() * 1e6,
            tt.len(),
            nodes
        );
        let per: Vec<String> = per
            .iter_mut()
            .map(|v| format!("{:.1}", med(v).as_secs_f64() * 1e6))
            .collect();
        println!("{:<16} total per seed (µs): {}", "", per.join(" "));
    }
}
