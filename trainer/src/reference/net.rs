//! A whole small network composed from the reference ops, forward and backward:
//!
//! ```text
//! x ─ conv1 3×3 ─ BN1 (train) ─ ReLU ─ a1 ─ conv2 3×3 ─ BN2 (train) ─ (+ a1) ─ ReLU
//!   ─ pool 2×2/2 (max or avg) ─ global avg pool ─ linear ─ softmax CE (label smoothing)
//! ```
//!
//! Convs have no bias, padding 1, stride 1, `channels` outputs. The GPU engine's whole-network
//! check runs the same graph and compares its loss and gradients with [`SmallNet::step`].

use super::rng::SeededRng;
use super::*;
use crate::shapes::Conv2dShape;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmallNetConfig {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub channels: usize,
    pub classes: usize,
    pub pool: PoolKind,
    pub label_smoothing: f32,
    pub bn: BatchNormConfig,
}

impl SmallNetConfig {
    pub fn conv1(&self) -> Conv2dShape {
        Conv2dShape {
            n: self.n,
            c_in: self.c_in,
            h: self.h,
            w: self.w,
            c_out: self.channels,
            kh: 3,
            kw: 3,
            stride: 1,
            pad: 1,
            groups: 1,
        }
    }
    pub fn conv2(&self) -> Conv2dShape {
        Conv2dShape {
            c_in: self.channels,
            ..self.conv1()
        }
    }
    pub fn feature_dims(&self) -> Nchw {
        Nchw::new(self.n, self.channels, self.h, self.w)
    }
    pub fn pool(&self) -> Pool2d {
        Pool2d {
            k: 2,
            stride: 2,
            pad: 0,
        }
    }
}

/// Trainable tensors (also used for their gradients).
#[derive(Clone, Debug, PartialEq)]
pub struct SmallNetParams {
    pub conv1_w: Vec<f32>,
    pub bn1_gamma: Vec<f32>,
    pub bn1_beta: Vec<f32>,
    pub conv2_w: Vec<f32>,
    pub bn2_gamma: Vec<f32>,
    pub bn2_beta: Vec<f32>,
    pub fc_w: Vec<f32>,
    pub fc_b: Vec<f32>,
}

impl SmallNetParams {
    pub const NAMES: [&'static str; 8] = [
        "conv1_w",
        "bn1_gamma",
        "bn1_beta",
        "conv2_w",
        "bn2_gamma",
        "bn2_beta",
        "fc_w",
        "fc_b",
    ];

    pub fn tensors(&self) -> [&Vec<f32>; 8] {
        [
            &self.conv1_w,
            &self.bn1_gamma,
            &self.bn1_beta,
            &self.conv2_w,
            &self.bn2_gamma,
            &self.bn2_beta,
            &self.fc_w,
            &self.fc_b,
        ]
    }

    pub fn tensors_mut(&mut self) -> [&mut Vec<f32>; 8] {
        [
            &mut self.conv1_w,
            &mut self.bn1_gamma,
            &mut self.bn1_beta,
            &mut self.conv2_w,
            &mut self.bn2_gamma,
            &mut self.bn2_beta,
            &mut self.fc_w,
            &mut self.fc_b,
        ]
    }
}

/// BN running statistics (updated by every train-mode forward).
#[derive(Clone, Debug, PartialEq)]
pub struct SmallNetRunning {
    pub bn1_mean: Vec<f32>,
    pub bn1_var: Vec<f32>,
    pub bn2_mean: Vec<f32>,
    pub bn2_var: Vec<f32>,
}

/// Every intermediate tensor of one forward, in graph order (for comparing layer by layer).
#[derive(Clone, Debug, PartialEq)]
pub struct SmallNetActivations {
    pub conv1: Vec<f32>,
    pub bn1: Vec<f32>,
    pub bn1_saved: BatchNormSaved,
    pub a1: Vec<f32>,
    pub conv2: Vec<f32>,
    pub bn2: Vec<f32>,
    pub bn2_saved: BatchNormSaved,
    pub sum: Vec<f32>,
    pub a2: Vec<f32>,
    pub pooled: Vec<f32>,
    pub max_argmax: Vec<u32>,
    pub gap: Vec<f32>,
    pub logits: Vec<f32>,
}

/// Result of one forward + backward.
#[derive(Clone, Debug, PartialEq)]
pub struct SmallNetStep {
    pub loss: f32,
    pub correct: usize,
    pub acts: SmallNetActivations,
    pub grads: SmallNetParams,
    pub dx: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SmallNet {
    pub cfg: SmallNetConfig,
    pub params: SmallNetParams,
    pub running: SmallNetRunning,
}

impl SmallNet {
    /// Seeded init: conv/linear weights U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's bound),
    /// BN gamma U(0.5, 1.5) and beta U(-0.5, 0.5) (not 1 and 0, so their gradients are exercised
    /// in general position), running stats 0 and 1.
    pub fn new(cfg: SmallNetConfig, seed: u64) -> Self {
        let mut r = SeededRng::new(seed);
        let c = cfg.channels;
        let b1 = 1.0 / ((cfg.c_in * 9) as f32).sqrt();
        let b2 = 1.0 / ((c * 9) as f32).sqrt();
        let bf = 1.0 / (c as f32).sqrt();
        let params = SmallNetParams {
            conv1_w: r.vec_uniform(cfg.conv1().weight_len(), -b1, b1),
            bn1_gamma: r.vec_uniform(c, 0.5, 1.5),
            bn1_beta: r.vec_uniform(c, -0.5, 0.5),
            conv2_w: r.vec_uniform(cfg.conv2().weight_len(), -b2, b2),
            bn2_gamma: r.vec_uniform(c, 0.5, 1.5),
            bn2_beta: r.vec_uniform(c, -0.5, 0.5),
            fc_w: r.vec_uniform(cfg.classes * c, -bf, bf),
            fc_b: r.vec_uniform(cfg.classes, -bf, bf),
        };
        let running = SmallNetRunning {
            bn1_mean: vec![0.0; c],
            bn1_var: vec![1.0; c],
            bn2_mean: vec![0.0; c],
            bn2_var: vec![1.0; c],
        };
        Self {
            cfg,
            params,
            running,
        }
    }

    /// Train-mode forward with the given parameters; updates `running`.
    pub fn forward(
        cfg: &SmallNetConfig,
        p: &SmallNetParams,
        running: &mut SmallNetRunning,
        x: &[f32],
    ) -> SmallNetActivations {
        let fd = cfg.feature_dims();
        let conv1 = conv2d_forward(&cfg.conv1(), x, &p.conv1_w, None);
        let (bn1, bn1_saved) = batch_norm_train_forward(
            &fd,
            &conv1,
            &p.bn1_gamma,
            &p.bn1_beta,
            &mut running.bn1_mean,
            &mut running.bn1_var,
            cfg.bn,
        );
        let a1 = relu_forward(&bn1);
        let conv2 = conv2d_forward(&cfg.conv2(), &a1, &p.conv2_w, None);
        let (bn2, bn2_saved) = batch_norm_train_forward(
            &fd,
            &conv2,
            &p.bn2_gamma,
            &p.bn2_beta,
            &mut running.bn2_mean,
            &mut running.bn2_var,
            cfg.bn,
        );
        let sum = add_forward(&bn2, &a1);
        let a2 = relu_forward(&sum);
        let (pooled, max_argmax) = match cfg.pool {
            PoolKind::Max => max_pool2d_forward(&fd, &cfg.pool(), &a2),
            PoolKind::Avg => (avg_pool2d_forward(&fd, &cfg.pool(), &a2), Vec::new()),
        };
        let gap = global_avg_pool_forward(&cfg.pool().out_dims(&fd), &pooled);
        let logits = linear_forward(
            cfg.n,
            cfg.channels,
            cfg.classes,
            &gap,
            &p.fc_w,
            Some(&p.fc_b),
        );
        SmallNetActivations {
            conv1,
            bn1,
            bn1_saved,
            a1,
            conv2,
            bn2,
            bn2_saved,
            sum,
            a2,
            pooled,
            max_argmax,
            gap,
            logits,
        }
    }

    /// Train-mode loss only, leaving `self` untouched (for finite differences).
    pub fn loss_with(&self, p: &SmallNetParams, x: &[f32], labels: &[u32]) -> f32 {
        let mut running = self.running.clone();
        let acts = Self::forward(&self.cfg, p, &mut running, x);
        softmax_cross_entropy(
            self.cfg.n,
            self.cfg.classes,
            &acts.logits,
            labels,
            self.cfg.label_smoothing,
        )
        .loss
    }

    /// One train-mode forward and backward on `x` `[n, c_in, h, w]`, updating the running
    /// statistics (not the parameters).
    pub fn step(&mut self, x: &[f32], labels: &[u32]) -> SmallNetStep {
        let cfg = self.cfg;
        let p = &self.params;
        let fd = cfg.feature_dims();
        let acts = Self::forward(&cfg, p, &mut self.running, x);
        let ce = softmax_cross_entropy(
            cfg.n,
            cfg.classes,
            &acts.logits,
            labels,
            cfg.label_smoothing,
        );
        let (dgap, fc_w, fc_b) = linear_backward(
            cfg.n,
            cfg.channels,
            cfg.classes,
            &acts.gap,
            &p.fc_w,
            &ce.dlogits,
        );
        let pd = cfg.pool().out_dims(&fd);
        let dpooled = global_avg_pool_backward(&pd, &dgap);
        let da2 = match cfg.pool {
            PoolKind::Max => max_pool2d_backward(&fd, &acts.max_argmax, &dpooled),
            PoolKind::Avg => avg_pool2d_backward(&fd, &cfg.pool(), &dpooled),
        };
        let dsum = relu_backward(&acts.sum, &da2);
        let (dbn2, da1_skip) = add_backward(&dsum);
        let (dconv2, bn2_gamma, bn2_beta) =
            batch_norm_backward(&fd, &acts.conv2, &dbn2, &p.bn2_gamma, &acts.bn2_saved);
        let conv2_w = conv2d_backward_weight(&cfg.conv2(), &acts.a1, &dconv2);
        let da1_main = conv2d_backward_data(&cfg.conv2(), &dconv2, &p.conv2_w);
        let da1 = add_forward(&da1_main, &da1_skip);
        let dbn1 = relu_backward(&acts.bn1, &da1);
        let (dconv1, bn1_gamma, bn1_beta) =
            batch_norm_backward(&fd, &acts.conv1, &dbn1, &p.bn1_gamma, &acts.bn1_saved);
        let conv1_w = conv2d_backward_weight(&cfg.conv1(), x, &dconv1);
        let dx = conv2d_backward_data(&cfg.conv1(), &dconv1, &p.conv1_w);
        SmallNetStep {
            loss: ce.loss,
            correct: ce.correct,
            acts,
            grads: SmallNetParams {
                conv1_w,
                bn1_gamma,
                bn1_beta,
                conv2_w,
                bn2_gamma,
                bn2_beta,
                fc_w,
                fc_b,
            },
            dx,
        }
    }
}
