//! Per-kernel time of one training step (forward, backward, SGD) on the chosen adapter.
//!
//! ```sh
//! cargo run --release -p limpq-trainer --example kernel_profile            # small_cnn, batch 64
//! cargo run --release -p limpq-trainer --example kernel_profile -- resnet20 64 1
//! ```
//!
//! Arguments: model (default `small_cnn`), batch (64), profiled steps (2). First the whole
//! step is timed as training runs it (one submission per step; mean of the profiled-step
//! count after one warm-up); then every dispatch of the same steps is submitted alone and
//! waited for (`kernels::profile`), and the table lists kernel id, grid, launches per step,
//! ms per step and share, largest first. The per-dispatch times include a submit and a wait
//! each, so they add up to a little more than the step. On a shared machine compare shares,
//! not absolute figures.

use std::time::Instant;

use limpq_trainer::engine::{Network, NetworkConfig};
use limpq_trainer::gpu::{Gpu, GpuOptions};
use limpq_trainer::kernels::profile;
use limpq_trainer::model::Model;
use limpq_trainer::reference::rng::SeededRng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("small_cnn", String::as_str);
    let batch: usize = args.get(1).map_or(Ok(64), |s| s.parse())?;
    let steps: u32 = args.get(2).map_or(Ok(2), |s| s.parse())?;
    let steps = steps.max(1);

    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let model = Model::resolve(name)?;
    let mut net = Network::new(
        &gpu,
        &model,
        NetworkConfig {
            batch,
            ..NetworkConfig::default()
        },
    )?;
    let (c, h, w) = model.input;
    let mut r = SeededRng::new(1);
    let x = r.vec_uniform(batch * c * h * w, -1.0, 1.0);
    let y: Vec<u32> = (0..batch).map(|i| (i % 10) as u32).collect();

    // Warm-up (pipeline compilation, first-touch of buffers).
    net.train_step(&x, &y, 0.01)?;
    let t = Instant::now();
    for _ in 0..steps {
        net.train_step(&x, &y, 0.01)?;
    }
    let step = t.elapsed().as_secs_f64() / f64::from(steps);
    println!(
        "{name} batch {batch} on {} ({:?}): train step {:.1} ms = {:.1} images/s, {} dispatches",
        gpu.summary.name,
        gpu.adapter.get_info().device_type,
        step * 1e3,
        batch as f64 / step,
        net.train_dispatches()
    );

    profile::start();
    for _ in 0..steps {
        net.train_step(&x, &y, 0.01)?;
    }
    let table = profile::stop();
    let total: f64 = table.iter().map(|e| e.total.as_secs_f64()).sum();
    println!(
        "dispatches timed one by one: {:.1} ms per step\n{:<28} {:>18} {:>5} {:>9} {:>6}",
        total * 1e3 / f64::from(steps),
        "kernel",
        "grid",
        "n",
        "ms/step",
        "share"
    );
    let mut by_id: Vec<(&str, f64)> = Vec::new();
    for e in &table {
        let ms = e.total.as_secs_f64() * 1e3 / f64::from(steps);
        println!(
            "{:<28} {:>18} {:>5} {:>9.2} {:>5.1}%",
            e.id,
            format!("{:?}", e.workgroups),
            e.count / steps,
            ms,
            100.0 * e.total.as_secs_f64() / total
        );
        match by_id.iter_mut().find(|(id, _)| *id == e.id) {
            Some(slot) => slot.1 += ms,
            None => by_id.push((e.id, ms)),
        }
    }
    by_id.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("\nby kernel:");
    for (id, ms) in by_id {
        println!(
            "{id:<28} {ms:>9.2} ms/step {:>5.1}%",
            100.0 * ms / (total * 1e3 / f64::from(steps))
        );
    }
    Ok(())
}
