//! CPU reference implementations of every op, forward and backward: the oracle for the GPU
//! kernels. Tensors are f32, NCHW row-major, plain slices in and `Vec<f32>` out; sums are
//! accumulated in f64. Plain loops, written to be obviously correct rather than fast.

pub mod conv;
pub mod finite_diff;
pub mod rng;

pub use conv::{
    conv2d_backward_bias, conv2d_backward_data, conv2d_backward_weight, conv2d_forward, matmul,
};
