//! The kernel tests again, on wgpu's GL backend (OpenGL / GLES through EGL; Mesa llvmpipe
//! on a headless machine), with the same CPU references and tolerances: each file below is
//! the Vulkan test file itself, whose `common` helpers see this binary's name and open a GL
//! device (`common::gpu_options`), one test at a time (`common::gpu_or_skip`). Without a GL
//! adapter every test skips, as the Vulkan ones do without Vulkan.
//!
//! Left out, with the reason: `kernels_gemm_f16.rs` and `kernels_conv_f16.rs` (f16 storage:
//! wgpu's GL backend never offers `SHADER_F16`, so those kernels are never built there;
//! `tests/shaders_backends.rs` checks the selection), and the broadcast conv kernels inside
//! the included files (they need subgroups, which GL lacks: `common::conv_algos` leaves
//! them out and says so).
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]
// Each included file declares `mod common;` and so gets its own copy of the helpers: its own
// GL device and its own one-test-at-a-time lock, as when it runs alone.
#![allow(clippy::duplicate_mod)]

#[path = "kernels_ops.rs"]
mod ops;

#[path = "kernels_gemm_conv.rs"]
mod gemm_conv;

#[path = "kernels_lsq.rs"]
mod lsq;

#[path = "kernels_conv_quant.rs"]
mod conv_quant;

#[path = "kernels_conv_algo.rs"]
mod conv_algo;
