//! Times the gradient all-reduce of data-parallel runs (`Comm::mean_f32`: gather to rank 0,
//! sum in rank order, broadcast) for the parameter counts of the built-in models, under
//! `mpirun -np N` (the `mpi` feature):
//!
//! ```text
//! cargo build -p limpq-trainer --features mpi --release --example allreduce_time
//! mpirun -np 2 target/release/examples/allreduce_time
//! ```
//!
//! Rank 0 prints, per model, the f32 bytes reduced per step and the median of 5 reduces.

use std::time::Instant;

use limpq_trainer::dist::Comm;
use limpq_trainer::model::{Model, Op};

/// Trainable values of a full-precision model: conv/linear weights and biases, BN γ and β.
/// (A quantized network adds its LSQ step sizes: 2 per variant per layer, a few hundred.)
fn trainable(model: &Model) -> usize {
    let info = model.analyze().expect("built-in model");
    model
        .nodes
        .iter()
        .zip(&info)
        .map(|(n, i)| {
            let c = i.output.c;
            i.params as usize
                + match n.op {
                    Op::Conv2d { bias: true, .. } | Op::Linear { bias: true, .. } => c,
                    Op::BatchNorm => 2 * c,
                    _ => 0,
                }
        })
        .sum()
}

fn main() {
    let (comm, session) = match limpq_trainer::dist::mpi::init() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    for name in ["resnet20", "resnet18", "resnet50"] {
        let model = Model::resolve(name).expect("built-in model");
        let params = trainable(&model);
        let mut data: Vec<f32> = (0..params).map(|i| (i % 97) as f32 * 1e-3).collect();
        let mut times = Vec::new();
        for _ in 0..5 {
            comm.barrier();
            let t = Instant::now();
            comm.mean_f32(&mut data);
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        if comm.rank() == 0 {
            println!(
                "{name}: {params} parameters, {:.1} MB per step, {} ranks: all-reduce {:.1} ms (median of 5)",
                params as f64 * 4.0 / 1e6,
                comm.size(),
                times[2]
            );
        }
    }
    drop(session);
}
