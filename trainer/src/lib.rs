//! GPU trainer for limpq: WGSL compute kernels through wgpu, model descriptions, data
//! loading, and (later) LSQ joint indicator training.

pub mod bench;
pub mod checkpoint;
pub mod daemon;
pub mod data;
pub mod dist;
pub mod engine;
pub mod gpu;
pub mod interrupt;
pub mod kernels;
pub mod method;
pub mod model;
pub mod pipeline;
pub mod reference;
pub mod rng;
pub mod schedule;
pub mod shapes;
pub mod train;
