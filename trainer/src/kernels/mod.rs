//! GPU kernels: one op struct per kernel, one WGSL file per kernel under `shaders/`.
//!
//! The runtime the ops are built on — [`KernelSpec`], the pipeline cache, [`Tensor`],
//! [`Recorder`], [`Dispatch`], [`grid`] — lives in [`crate::gpu`]; it is re-exported here
//! so an op file names everything it uses through `super::`.
//!
//! Adding a kernel: write `shaders/NAME.wgsl`; declare a `static SPEC: KernelSpec`; a small
//! op struct whose `new` checks tensor lengths, writes the params uniform and builds its
//! [`Dispatch`], and whose `record` hands that to a [`Recorder`]. See `gemm.rs`.

pub mod conv;
pub mod conv_f16;
pub mod elementwise;
pub mod gemm;
pub mod gemm_f16;
pub mod loss;
pub mod lsq;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;

pub use crate::gpu::{
    expand_includes, grid, pipeline, profile, specialized_pipeline, to_u32, uniform, write_uniform,
    Binding, Dispatch, KernelSpec, Pipeline, Readbacks, Recorder, Specialization, Tensor,
};
