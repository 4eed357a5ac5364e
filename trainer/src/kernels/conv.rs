//! conv2d kernels (placeholder until the kernels land).
