//! The GPU runtime: everything a kernel needs to run, and nothing about which kernel runs.
//!
//! The pieces, from the bottom up (see docs/ENGINE.md for the walk-through):
//!
//! - [`device`]: adapter choice and device creation ([`Gpu`], [`GpuOptions`], [`GpuError`]),
//!   the optional features asked for (f16, subgroups, cooperative matrices) and error
//!   capture. [`Gpu`] holds the pipeline cache.
//! - [`kernel`]: [`KernelSpec`], a `static` describing one entry point of one
//!   `shaders/NAME.wgsl` file (loaded with `include_str!`) and its bindings, in binding order
//!   (all in group 0); [`Specialization`] (a spec with WGSL pipeline-overridable constants
//!   set); [`expand_includes`], the `//#include` expansion every source goes through.
//! - [`pipeline`](mod@pipeline): builds the compute pipeline for a spec with an EXPLICIT bind
//!   group layout made from the spec's bindings, once per process; later calls hit the cache
//!   in [`Gpu`]. [`Dispatch`]: pipeline + bind group + workgroup counts, built once per op of
//!   a static graph ([`Pipeline::dispatch`]). [`uniform`]: a uniform buffer from a
//!   `bytemuck::Pod` params struct.
//! - [`tensor`]: [`Tensor`], a storage buffer of `len` 4-byte elements (f32 or u32),
//!   allocated once; upload with [`Tensor::from_f32`] / [`Tensor::write_f32`], read back with
//!   [`Tensor::read_f32`] (a blocking one-off) or through a [`Recorder`].
//! - [`recorder`]: [`Recorder`] records many dispatches (and copies/clears/readbacks) into ONE
//!   command encoder and submits them in one submission; reads back only what was asked for.
//! - [`profile`]: per-kernel wall times, off unless asked for.
//!
//! Workgroup counts are limited per dimension (`max_compute_workgroups_per_dimension`,
//! 65535 on most adapters): [`grid`] splits a 1-D count into a 2-D grid, and the shader
//! recovers the flat index as `wid.x + wid.y * nwg.x` (`@builtin(num_workgroups) nwg`),
//! returning early past the end.
//!
//! This room imports nothing from the rest of the trainer: the kernels are built on it,
//! never the other way round.

pub mod device;
pub mod kernel;
pub mod pipeline;
pub mod profile;
pub mod recorder;
pub mod tensor;

pub use device::{
    list_adapters, pick_adapter, quiet_headless_probing, rank_adapter, rank_adapter_index,
    set_rank_adapter, AdapterList, AdapterPick, AdapterSummary, DeviceCaps, Gpu, GpuError,
    GpuOptions, Which, ADAPTER_ENV,
};
pub use kernel::{expand_includes, Binding, KernelSpec, Specialization};
pub use pipeline::{
    grid, pipeline, specialized_pipeline, to_u32, uniform, write_uniform, Dispatch, Pipeline,
};
pub use recorder::{Pending, Readbacks, Recorder};
pub use tensor::Tensor;
