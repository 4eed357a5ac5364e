//! Batch normalisation over (N, H, W) per channel, PyTorch semantics.

use super::Nchw;

/// What the train-mode forward saves for the backward: per-channel batch mean and
/// `1 / sqrt(biased_var + eps)`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormSaved {
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
}

/// Running-statistics bookkeeping, as `torch.nn.BatchNorm2d` defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    /// `running = (1 - momentum) · running + momentum · batch_stat`.
    pub momentum: f32,
    pub eps: f32,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self {
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

fn check(d: &Nchw, x: &[f32], gamma: &[f32], beta: &[f32]) {
    assert_eq!(x.len(), d.len(), "batch_norm: x length");
    assert_eq!(gamma.len(), d.c, "batch_norm: gamma length");
    assert_eq!(beta.len(), d.c, "batch_norm: beta length");
}

/// Train mode: normalise with the batch mean and the biased batch variance; update the running
/// mean, and the running variance with the UNBIASED batch variance (`· m / (m - 1)`, m = N·H·W;
/// when m = 1 the biased one, 0, is used: PyTorch refuses that case). Returns `y` and what the
/// backward needs.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_forward(
    d: &Nchw,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    cfg: BatchNormConfig,
) -> (Vec<f32>, BatchNormSaved) {
    check(d, x, gamma, beta);
    assert_eq!(running_mean.len(), d.c, "batch_norm: running_mean length");
    assert_eq!(running_var.len(), d.c, "batch_norm: running_var length");
    let m = (d.n * d.h * d.w) as f64;
    let mut saved = BatchNormSaved {
        mean: vec![0.0; d.c],
        inv_std: vec![0.0; d.c],
    };
    let mut y = vec![0.0f32; d.len()];
    for c in 0..d.c {
        let (mut sum, mut sq) = (0.0f64, 0.0f64);
        for v in d.channel(x, c) {
            sum += v as f64;
        }
        let mean = sum / m;
        for v in d.channel(x, c) {
            sq += (v as f64 - mean).powi(2);
        }
        let var = sq / m;
        let inv_std = 1.0 / (var + cfg.eps as f64).sqrt();
        for i in d.channel_indices(c) {
            y[i] = ((x[i] as f64 - mean) * inv_std * gamma[c] as f64 + beta[c] as f64) as f32;
        }
        let unbiased = if m > 1.0 { sq / (m - 1.0) } else { var };
        let mo = cfg.momentum as f64;
        running_mean[c] = ((1.0 - mo) * running_mean[c] as f64 + mo * mean) as f32;
        running_var[c] = ((1.0 - mo) * running_var[c] as f64 + mo * unbiased) as f32;
        saved.mean[c] = mean as f32;
        saved.inv_std[c] = inv_std as f32;
    }
    (y, saved)
}

/// Eval mode: `y = (x - running_mean) / sqrt(running_var + eps) · gamma + beta`.
pub fn batch_norm_eval_forward(
    d: &Nchw,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
) -> Vec<f32> {
    check(d, x, gamma, beta);
    let mut y = vec![0.0f32; d.len()];
    for c in 0..d.c {
        let inv_std = 1.0 / (running_var[c] as f64 + eps as f64).sqrt();
        for i in d.channel_indices(c) {
            y[i] = ((x[i] as f64 - running_mean[c] as f64) * inv_std * gamma[c] as f64
                + beta[c] as f64) as f32;
        }
    }
    y
}

/// Train-mode backward (batch statistics depend on x). With `x̂ = (x - mean)·inv_std` and
/// m = N·H·W: `dbeta = Σ dy`, `dgamma = Σ dy·x̂`,
/// `dx = gamma·inv_std/m · (m·dy - dbeta - x̂·dgamma)`. Returns `(dx, dgamma, dbeta)`.
pub fn batch_norm_backward(
    d: &Nchw,
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    saved: &BatchNormSaved,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), d.len(), "batch_norm_backward: x length");
    assert_eq!(dy.len(), d.len(), "batch_norm_backward: dy length");
    assert_eq!(gamma.len(), d.c, "batch_norm_backward: gamma length");
    let m = (d.n * d.h * d.w) as f64;
    let mut dx = vec![0.0f32; d.len()];
    let mut dgamma = vec![0.0f32; d.c];
    let mut dbeta = vec![0.0f32; d.c];
    for c in 0..d.c {
        let (mean, inv_std) = (saved.mean[c] as f64, saved.inv_std[c] as f64);
        let (mut sdy, mut sdyx) = (0.0f64, 0.0f64);
        for i in d.channel_indices(c) {
            sdy += dy[i] as f64;
            sdyx += dy[i] as f64 * (x[i] as f64 - mean) * inv_std;
        }
        let k = gamma[c] as f64 * inv_std / m;
        for i in d.channel_indices(c) {
            let xhat = (x[i] as f64 - mean) * inv_std;
            dx[i] = (k * (m * dy[i] as f64 - sdy - xhat * sdyx)) as f32;
        }
        dgamma[c] = sdyx as f32;
        dbeta[c] = sdy as f32;
    }
    (dx, dgamma, dbeta)
}

/// Eval-mode backward (running statistics are constants): `dx = dy·gamma/sqrt(running_var+eps)`,
/// `dgamma = Σ dy·x̂`, `dbeta = Σ dy`. Returns `(dx, dgamma, dbeta)`.
pub fn batch_norm_eval_backward(
    d: &Nchw,
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), d.len(), "batch_norm_eval_backward: x length");
    assert_eq!(dy.len(), d.len(), "batch_norm_eval_backward: dy length");
    let mut dx = vec![0.0f32; d.len()];
    let mut dgamma = vec![0.0f32; d.c];
    let mut dbeta = vec![0.0f32; d.c];
    for c in 0..d.c {
        let inv_std = 1.0 / (running_var[c] as f64 + eps as f64).sqrt();
        let (mut sdy, mut sdyx) = (0.0f64, 0.0f64);
        for i in d.channel_indices(c) {
            sdy += dy[i] as f64;
            sdyx += dy[i] as f64 * (x[i] as f64 - running_mean[c] as f64) * inv_std;
            dx[i] = (dy[i] as f64 * gamma[c] as f64 * inv_std) as f32;
        }
        dgamma[c] = sdyx as f32;
        dbeta[c] = sdy as f32;
    }
    (dx, dgamma, dbeta)
}
