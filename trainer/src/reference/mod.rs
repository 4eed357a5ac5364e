//! CPU reference implementations of every op, forward and backward: the oracle for the GPU
//! kernels. Tensors are f32, NCHW row-major, plain slices in and `Vec<f32>` out; sums are
//! accumulated in f64. Plain loops, written to be obviously correct rather than fast. Lengths
//! are checked with `assert!`: a wrong length is a bug in the calling test or kernel harness,
//! not user input.
//!
//! Conventions these references fix, which the GPU kernels must follow:
//! - conv weights `[c_out, c_in/groups, kh, kw]`; linear `y = x·Wᵀ + b`, `W` `[out, in]`;
//! - batch norm: biased batch variance to normalise, UNBIASED (`m/(m-1)`) variance into the
//!   running variance, momentum 0.1, eps 1e-5 ([`BatchNormConfig::default`]);
//! - ReLU passes the gradient where `x > 0`; ReLU6 where `0 < x < 6`;
//! - max pool: padding is -inf, ties go to the first element in row-major window order, the
//!   argmax is an index into the whole input tensor; avg pool divides by k² (count_include_pad);
//! - cross-entropy: `(1-ε)·CE + ε·mean_j(-log p_j)`, mean over the batch,
//!   `dlogits = (softmax - target) / n`; accuracy counts the first maximum;
//! - SGD: clip → `d = g + wd·p` → `buf = μ·buf + d` (buffer starts at ZERO, which equals
//!   PyTorch's `buf = d` on the first step) → Nesterov `d + μ·buf` or `buf` → `p -= lr·d`;
//! - LSQ: `v = x / s` (a division), round half to even, range bounds inclusive for the STE
//!   (see [`lsq`]).

pub mod conv;
pub mod elementwise;
pub mod finite_diff;
pub mod gemm;
pub mod linear;
pub mod loss;
pub mod lsq;
pub mod net;
pub mod norm;
pub mod optim;
pub mod pool;

/// The seeded generator lives with the production code; the oracle uses the same one.
pub use crate::rng;

pub use crate::schedule::cosine_lr;
pub use conv::{
    conv2d_backward_bias, conv2d_backward_data, conv2d_backward_weight, conv2d_forward, matmul,
};
pub use elementwise::{
    add_backward, add_forward, relu6_backward, relu6_forward, relu_backward, relu_forward,
};
pub use gemm::gemm_f64;
pub use linear::{linear_backward, linear_forward};
pub use loss::{softmax_cross_entropy, CrossEntropy};
pub use lsq::{
    lsq_clamped_backward, lsq_init_act_scale, lsq_init_weight_scale, lsq_quantize_backward,
    lsq_quantize_forward, lsq_range,
};
pub use norm::{
    batch_norm_backward, batch_norm_eval_backward, batch_norm_eval_forward,
    batch_norm_train_forward, BatchNormConfig, BatchNormSaved,
};
pub use optim::{sgd_step, SgdConfig};
pub use pool::{
    avg_pool2d_backward, avg_pool2d_forward, global_avg_pool_backward, global_avg_pool_forward,
    max_pool2d_backward, max_pool2d_forward, Pool2d,
};

/// Dimensions of an NCHW tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nchw {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Nchw {
    pub fn new(n: usize, c: usize, h: usize, w: usize) -> Self {
        Self { n, c, h, w }
    }

    pub fn len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Indices of channel `c` across the batch, in memory order.
    pub fn channel_indices(&self, c: usize) -> impl Iterator<Item = usize> + '_ {
        let hw = self.h * self.w;
        (0..self.n).flat_map(move |n| {
            let start = (n * self.c + c) * hw;
            start..start + hw
        })
    }

    /// Values of channel `c` across the batch.
    pub fn channel<'a>(&'a self, x: &'a [f32], c: usize) -> impl Iterator<Item = f32> + 'a {
        self.channel_indices(c).map(move |i| x[i])
    }
}
