//! SGD with momentum, Nesterov and weight decay, `torch.optim.SGD` semantics (dampening 0).

/// Hyper-parameters of one SGD step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
    /// Clip every gradient element to `±clip` before anything else (PyTorch's
    /// `clip_grad_value_` before `step()`); `None` = no clipping.
    pub clip: Option<f32>,
}

/// One step, per element:
/// ```text
/// g = clamp(g, -clip, clip)        (if clip)
/// d = g + weight_decay · p
/// buf = momentum · buf + d         (if momentum ≠ 0)
/// d = nesterov ? d + momentum · buf : buf
/// p -= lr · d
/// ```
/// PyTorch sets `buf = d` on the first step; with dampening 0 that equals the formula above
/// with `buf` starting at ZERO, which is what callers (and the GPU kernel) must do: allocate the
/// momentum buffer zeroed and apply the same formula on every step.
pub fn sgd_step(cfg: &SgdConfig, params: &mut [f32], grads: &[f32], momentum_buf: &mut [f32]) {
    assert_eq!(
        params.len(),
        grads.len(),
        "sgd_step: params and grads lengths differ"
    );
    assert_eq!(
        params.len(),
        momentum_buf.len(),
        "sgd_step: params and momentum buffer lengths differ"
    );
    for ((p, g), buf) in params.iter_mut().zip(grads).zip(momentum_buf.iter_mut()) {
        let mut g = *g;
        if let Some(c) = cfg.clip {
            g = g.clamp(-c, c);
        }
        let mut d = g + cfg.weight_decay * *p;
        if cfg.momentum != 0.0 {
            *buf = cfg.momentum * *buf + d;
            d = if cfg.nesterov {
                d + cfg.momentum * *buf
            } else {
                *buf
            };
        }
        *p -= cfg.lr * d;
    }
}
