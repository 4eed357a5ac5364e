//! Deterministic sums (no float atomics; WGSL has none), in two stages:
//!
//! 1. `reduce_partial`: workgroup w sums elements `w·CHUNK .. (w+1)·CHUNK` of `x` (thread t
//!    takes every 256th element from t, then a fixed tree in workgroup memory) → `partials[w]`;
//! 2. `reduce_final`: ONE workgroup sums `partials[0..count]` the same way and writes
//!    `out[index] = scale · sum` (or `+=` when accumulating), leaving the other elements of
//!    `out` untouched.
//!
//! The order of every addition depends only on the length, so results are bit-identical
//! from run to run. `lsq` reuses stage 2 after its own stage 1.

use super::elementwise::Launch;
use super::{to_u32, Binding, KernelSpec, Recorder, Tensor};
use crate::gpu::{Gpu, GpuError};

/// Elements summed by one workgroup of a stage-1 kernel (16 per thread).
pub const CHUNK: usize = 4096;

static PARTIAL: KernelSpec = KernelSpec {
    id: "reduce_partial",
    source: include_str!("../../../shaders/reduce_partial.wgsl"),
    entry: "main",
    bindings: &[Binding::Uniform, Binding::ReadOnly, Binding::ReadWrite],
};

static FINAL: KernelSpec = KernelSpec {
    id: "reduce_final",
    source: include_str!("../../../shaders/reduce_final.wgsl"),
    entry: "main",
    bindings: &[Binding::Uniform, Binding::ReadOnly, Binding::ReadWrite],
};

/// `struct Params` of both reduce shaders.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ReduceParams {
    /// Elements of `x` (stage 1) or partials (stage 2).
    len: u32,
    index: u32,
    scale: f32,
    /// Stage 2: 1 adds to `out[index]` instead of overwriting it.
    accumulate: u32,
}

/// Number of stage-1 workgroups (= partials) for `len` elements; at least 1.
pub fn partial_count(len: usize) -> usize {
    len.div_ceil(CHUNK).max(1)
}

/// Stage 2 over `partials`: `out[index] = scale · Σ partials` (`+=` when `accumulate`).
pub(crate) fn final_launch(
    gpu: &Gpu,
    partials: &Tensor,
    out: &Tensor,
    index: usize,
    scale: f32,
    accumulate: bool,
) -> Result<Launch, GpuError> {
    if index >= out.len() {
        return Err(GpuError::Shape(format!(
            "reduce: output index {index} outside a {}-element tensor",
            out.len()
        )));
    }
    let p = ReduceParams {
        len: to_u32(partials.len(), "reduce partials")?,
        index: to_u32(index, "reduce index")?,
        scale,
        accumulate: u32::from(accumulate),
    };
    Launch::new(gpu, &FINAL, &p, &[&partials.buffer, &out.buffer], 1, false)
}

/// `out[index] = scale · Σ x` (other elements of `out` untouched).
#[derive(Debug)]
pub struct Sum {
    partial: Launch,
    fin: Launch,
    _partials: Tensor,
}

impl Sum {
    pub fn new(
        gpu: &Gpu,
        x: &Tensor,
        out: &Tensor,
        index: usize,
        scale: f32,
    ) -> Result<Sum, GpuError> {
        let count = partial_count(x.len());
        let partials = Tensor::zeros(gpu, count, "reduce partials")?;
        let p = ReduceParams {
            len: to_u32(x.len(), "sum length")?,
            index: 0,
            scale: 1.0,
            accumulate: 0,
        };
        let partial = Launch::new(
            gpu,
            &PARTIAL,
            &p,
            &[&x.buffer, &partials.buffer],
            count as u64,
            false,
        )?;
        let fin = final_launch(gpu, &partials, out, index, scale, false)?;
        Ok(Sum {
            partial,
            fin,
            _partials: partials,
        })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.partial.record(rec);
        self.fin.record(rec);
    }
}

/// Every pipeline of this module ([`super::pipelines`]).
pub(super) fn pipelines() -> Vec<super::PipelineEntry> {
    [&PARTIAL, &FINAL]
        .into_iter()
        .map(super::PipelineEntry::spec)
        .collect()
}
