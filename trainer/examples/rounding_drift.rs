//! How far training carries a rounding-sized difference: two runs of the same model on the
//! same batches, one with a single weight moved by one unit in the last place, and the
//! largest difference of any parameter after each step. A data-parallel run differs from
//! the one-process run by summation order alone (rounding-sized differences every step);
//! this shows how much the training dynamics of a model amplify such differences, apart
//! from anything the data-parallel code does.
//!
//! `cargo run --release -p limpq-trainer --example rounding_drift [-- MODEL STEPS LR [ALGO]]`
//! (default: small_cnn 16 0.05; Fashion-MNIST, 256 training images, batch 32, SGD with
//! Nesterov momentum 0.9, weight decay 5e-4, label smoothing 0.1: the pipeline's
//! pretraining recipe). With ALGO (`direct`, `gemm`, `blocked`, …: `LIMPQ_CONV_ALGO`'s
//! values) run b computes every conv with that kernel family instead of moving a weight:
//! rounding-sized differences in every step, as a different summation order makes them.

use limpq_trainer::data::{Dataset, Split};
use limpq_trainer::engine::{Network, NetworkConfig};
use limpq_trainer::gpu::{Gpu, GpuOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("small_cnn", String::as_str);
    let steps: usize = args.get(1).map_or(Ok(16), |s| s.parse())?;
    let lr: f32 = args.get(2).map_or(Ok(0.05), |s| s.parse())?;
    let model = match limpq_trainer::model::builtin(name) {
        Some(m) => m,
        None => limpq_trainer::model::Model::from_ron_file(std::path::Path::new(name))?,
    };
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let ds = Dataset::load_subset("fashion-mnist", None, Split::Train, Some(256), 55930)?;
    let batch = 32;
    let cfg = NetworkConfig {
        batch,
        seed: 0,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 5e-4,
        label_smoothing: 0.1,
        ..NetworkConfig::default()
    };
    let algo: Option<limpq_trainer::kernels::conv::ConvAlgo> =
        args.get(3).map(|s| s.parse()).transpose()?;
    let mut a = Network::new(&gpu, &model, cfg)?;
    let cfg_b = NetworkConfig {
        conv: limpq_trainer::kernels::conv::ConvPolicy::or_env(algo),
        ..cfg
    };
    let mut b = Network::new(&gpu, &model, cfg_b)?;
    let infos = a.param_infos();
    let first = &infos[0];
    if algo.is_none() {
        let mut w = a.read_params()?.swap_remove(0);
        w[0] = f32::from_bits(w[0].to_bits() + 1);
        b.set_param(&first.name, &w)?;
    }
    let per = ds.image_len();
    let n = ds.labels.len() / batch;
    match algo {
        None => println!(
            "{name}: {}[0] moved by one ulp in run b; lr {lr}, batch {batch}",
            first.name
        ),
        Some(al) => println!("{name}: run b's convs all {al:?}; lr {lr}, batch {batch}"),
    }
    println!("step  largest |a - b| of any parameter (where)   relative to |a|");
    for step in 0..steps {
        let k = step % n;
        let x: Vec<f32> = ds.images[k * batch * per..(k + 1) * batch * per]
            .iter()
            .map(|&p| p as f32 / 255.0)
            .collect();
        let y: Vec<u32> = ds.labels[k * batch..(k + 1) * batch]
            .iter()
            .map(|&l| u32::from(l))
            .collect();
        a.train_step(&x, &y, lr)?;
        b.train_step(&x, &y, lr)?;
        let (pa, pb) = (a.read_params()?, b.read_params()?);
        let mut worst = (0.0f32, 0.0f32, String::new());
        for ((info, va), vb) in infos.iter().zip(&pa).zip(&pb) {
            for (i, (x, y)) in va.iter().zip(vb).enumerate() {
                let d = (x - y).abs();
                if d > worst.0 {
                    worst = (d, x.abs(), format!("{}[{i}]", info.name));
                }
            }
        }
        println!(
            "{:>4}  {:.3e} ({})   {:.1e}",
            step + 1,
            worst.0,
            worst.2,
            worst.0 / worst.1.max(f32::MIN_POSITIVE)
        );
    }
    Ok(())
}
