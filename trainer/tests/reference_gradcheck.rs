//! Whole-network gradient check on the CPU: `reference::net::SmallNet` (conv → BN(train) → ReLU →
//! conv → BN → residual add → ReLU → max/avg pool → global avg pool → linear → softmax CE with
//! label smoothing 0.1), its backward against central finite differences of its loss for every
//! parameter element and every input element.
//!
//! The loss is piecewise smooth: ReLU and max pool have kinks, and a perturbation of one conv
//! weight moves every pre-activation of its channel, so some ±h perturbations cross a kink and
//! their difference quotient is meaningless there. Each element's check therefore also compares
//! the ReLU masks and max-pool argmaxes of the two perturbed forwards; an element whose
//! perturbation changes them is skipped and counted, and the test requires most elements to be
//! checked.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

use limpq_trainer::reference::net::{
    PoolKind, SmallNet, SmallNetActivations, SmallNetConfig, SmallNetParams,
};
use limpq_trainer::reference::rng::SeededRng;
use limpq_trainer::reference::{softmax_cross_entropy, BatchNormConfig};

fn config(pool: PoolKind) -> SmallNetConfig {
    SmallNetConfig {
        n: 3,
        c_in: 2,
        h: 6,
        w: 6,
        channels: 3,
        classes: 4,
        pool,
        label_smoothing: 0.1,
        bn: BatchNormConfig::default(),
    }
}

/// Step of the central differences. Intermediates are f32, so the loss carries ~1e-7 relative
/// noise: up to ~1e-4 in a quotient at h = 1e-3, which is why h is not smaller; larger h crosses
/// more kinks (1e-2 skips ~35% of the elements).
const H: f32 = 3e-3;
/// Each element within `ATOL + RTOL·|numeric|`.
const ATOL: f64 = 1e-4;
const RTOL: f64 = 5e-3;

/// Which piece of the piecewise-smooth loss a forward is on: ReLU masks and max-pool argmaxes.
type Pattern = (Vec<bool>, Vec<bool>, Vec<u32>);

fn kink_pattern(a: &SmallNetActivations) -> Pattern {
    (
        a.bn1.iter().map(|v| *v > 0.0).collect(),
        a.sum.iter().map(|v| *v > 0.0).collect(),
        a.max_argmax.clone(),
    )
}

struct Tally {
    checked: usize,
    skipped: usize,
    worst: f64,
}

fn check(pool: PoolKind, seed: u64) {
    let cfg = config(pool);
    let mut net = SmallNet::new(cfg, seed);
    let mut r = SeededRng::new(seed ^ 0xABCD);
    let x = r.vec_uniform(cfg.n * cfg.c_in * cfg.h * cfg.w, -1.0, 1.0);
    let labels: Vec<u32> = (0..cfg.n).map(|_| r.below(cfg.classes) as u32).collect();
    let before = net.clone();
    let step = net.step(&x, &labels);
    assert!(step.loss.is_finite() && step.loss > 0.0);
    assert_eq!(
        net.params, before.params,
        "step must not change the parameters"
    );
    assert_ne!(
        net.running, before.running,
        "train-mode forward updates the running stats"
    );

    let eval = |p: &SmallNetParams, x: &[f32]| {
        let mut running = before.running.clone();
        let acts = SmallNet::forward(&cfg, p, &mut running, x);
        let loss = softmax_cross_entropy(
            cfg.n,
            cfg.classes,
            &acts.logits,
            &labels,
            cfg.label_smoothing,
        )
        .loss;
        (loss as f64, kink_pattern(&acts))
    };
    let mut tally = Tally {
        checked: 0,
        skipped: 0,
        worst: 0.0,
    };
    let compare = |tally: &mut Tally,
                   what: String,
                   analytic: f32,
                   lo: f32,
                   hi: f32,
                   f: &dyn Fn(f32) -> (f64, Pattern)| {
        let (fp, kp) = f(hi);
        let (fm, km) = f(lo);
        if kp != km {
            tally.skipped += 1;
            return;
        }
        let numeric = (fp - fm) / (hi as f64 - lo as f64);
        let err = (analytic as f64 - numeric).abs() / (ATOL + RTOL * numeric.abs());
        tally.worst = tally.worst.max(err);
        assert!(
            err <= 1.0,
            "{pool:?} seed {seed}: d loss/d {what}: analytic {analytic}, numeric {numeric}"
        );
        tally.checked += 1;
    };
    for (t, name) in SmallNetParams::NAMES.iter().enumerate() {
        let base = before.params.tensors()[t].clone();
        let checked_before = tally.checked;
        for (i, v) in base.iter().enumerate() {
            compare(
                &mut tally,
                format!("{name}[{i}]"),
                step.grads.tensors()[t][i],
                v - H,
                v + H,
                &|val| {
                    let mut p = before.params.clone();
                    p.tensors_mut()[t][i] = val;
                    eval(&p, &x)
                },
            );
        }
        assert!(
            tally.checked > checked_before,
            "{pool:?} seed {seed}: every element of {name} skipped"
        );
    }
    for (i, v) in x.iter().enumerate() {
        compare(
            &mut tally,
            format!("x[{i}]"),
            step.dx[i],
            v - H,
            v + H,
            &|val| {
                let mut xp = x.clone();
                xp[i] = val;
                eval(&before.params, &xp)
            },
        );
    }
    // Gradients must not be trivially zero (a backward returning zeros would match nothing).
    let norm: f64 = step
        .grads
        .tensors()
        .iter()
        .flat_map(|t| t.iter())
        .map(|v| (*v as f64).powi(2))
        .sum();
    assert!(norm > 1e-6, "gradient norm {norm}");
    let total = tally.checked + tally.skipped;
    println!(
        "{pool:?} seed {seed}: {} of {total} elements checked ({} skipped at kinks), worst error/tolerance {:.3}",
        tally.checked, tally.skipped, tally.worst
    );
    assert!(
        tally.skipped * 3 <= total,
        "too many elements skipped at kinks: {} of {total}",
        tally.skipped
    );
}

#[test]
fn small_net_gradients_match_finite_differences_maxpool() {
    check(PoolKind::Max, 1);
    check(PoolKind::Max, 3);
}

#[test]
fn small_net_gradients_match_finite_differences_avgpool() {
    check(PoolKind::Avg, 2);
    check(PoolKind::Avg, 4);
}
