//! Element-wise kernels: ReLU / ReLU6 forward and backward, residual add, `y += alpha·x`
//! (gradient accumulation) and fill. One thread per element, 256 per workgroup, over a
//! [`grid`] so any length fits the per-dimension workgroup limit.
//!
//! Inputs and outputs must be distinct tensors (wgpu forbids binding one buffer both
//! read-only and read-write in a dispatch); `Axpy` updates `y` in place by design.
//!
//! Also holds the small helpers the other kernel modules share (`Launch`, `check_len`).

use super::{
    grid, pipeline, to_u32, uniform, write_uniform, Binding, Dispatch, KernelSpec, Recorder, Tensor,
};
use crate::gpu::{Gpu, GpuError};

/// Invocations per workgroup of the flat kernels (matches `@workgroup_size(256)`).
pub(crate) const WG: u64 = 256;

/// An error unless `t` holds exactly `want` elements.
pub(crate) fn check_len(op: &str, name: &str, t: &Tensor, want: usize) -> Result<(), GpuError> {
    if t.len() == want {
        Ok(())
    } else {
        Err(GpuError::Shape(format!(
            "{op}: tensor {name} has {} elements, expected {want}",
            t.len()
        )))
    }
}

/// One kernel launch bound to its params uniform: built once, recorded every step.
/// Nothing is recorded when `empty` (no work).
#[derive(Debug)]
pub(crate) struct Launch {
    pub dispatch: Dispatch,
    pub params: wgpu::Buffer,
    pub empty: bool,
}

impl Launch {
    /// `params` goes to binding 0, `buffers` to bindings 1, 2, ...; `groups` workgroups
    /// laid out by [`grid`].
    pub fn new<T: bytemuck::Pod>(
        gpu: &Gpu,
        spec: &'static KernelSpec,
        params: &T,
        buffers: &[&wgpu::Buffer],
        groups: u64,
        empty: bool,
    ) -> Result<Launch, GpuError> {
        let buf = uniform(gpu, params, spec.id);
        let mut all = vec![&buf];
        all.extend_from_slice(buffers);
        let dispatch = pipeline(gpu, spec)?.dispatch(gpu, &all, grid(gpu, groups)?)?;
        Ok(Launch {
            dispatch,
            params: buf,
            empty,
        })
    }

    /// One thread per element of a `len`-element job.
    pub fn flat<T: bytemuck::Pod>(
        gpu: &Gpu,
        spec: &'static KernelSpec,
        params: &T,
        buffers: &[&wgpu::Buffer],
        len: usize,
    ) -> Result<Launch, GpuError> {
        Self::new(
            gpu,
            spec,
            params,
            buffers,
            (len as u64).div_ceil(WG),
            len == 0,
        )
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        if !self.empty {
            rec.dispatch(&self.dispatch);
        }
    }
}

/// Params of every kernel in this module (`struct Params` in their shaders).
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FlatParams {
    len: u32,
    /// bit 0: `value` is the ReLU cap.
    flags: u32,
    /// ReLU cap, Axpy alpha, or Fill value.
    value: f32,
    _pad: u32,
}

fn flat_params(len: usize, op: &str, flags: u32, value: f32) -> Result<FlatParams, GpuError> {
    Ok(FlatParams {
        len: to_u32(len, &format!("{op} length"))?,
        flags,
        value,
        _pad: 0,
    })
}

const RO: Binding = Binding::ReadOnly;
const RW: Binding = Binding::ReadWrite;
const UNI: Binding = Binding::Uniform;

static RELU_FORWARD: KernelSpec = KernelSpec {
    id: "relu_forward",
    source: include_str!("../../../shaders/relu_forward.wgsl"),
    entry: "main",
    bindings: &[UNI, RO, RW],
};

static RELU_BACKWARD: KernelSpec = KernelSpec {
    id: "relu_backward",
    source: include_str!("../../../shaders/relu_backward.wgsl"),
    entry: "main",
    bindings: &[UNI, RO, RO, RW],
};

static ADD: KernelSpec = KernelSpec {
    id: "add",
    source: include_str!("../../../shaders/add.wgsl"),
    entry: "main",
    bindings: &[UNI, RO, RO, RW],
};

static AXPY: KernelSpec = KernelSpec {
    id: "axpy",
    source: include_str!("../../../shaders/axpy.wgsl"),
    entry: "main",
    bindings: &[UNI, RO, RW],
};

static FILL: KernelSpec = KernelSpec {
    id: "fill",
    source: include_str!("../../../shaders/fill.wgsl"),
    entry: "main",
    bindings: &[UNI, RW],
};

fn cap_flags(op: &str, cap: Option<f32>) -> Result<(u32, f32), GpuError> {
    match cap {
        None => Ok((0, 0.0)),
        Some(c) if c.is_finite() && c > 0.0 => Ok((1, c)),
        Some(c) => Err(GpuError::Shape(format!(
            "{op}: cap {c} must be finite and positive"
        ))),
    }
}

/// `y = clamp(x, 0, cap)` (`cap: None` = plain ReLU, `Some(6.0)` = ReLU6).
#[derive(Debug)]
pub struct Relu {
    launch: Launch,
}

impl Relu {
    pub fn new(gpu: &Gpu, x: &Tensor, y: &Tensor, cap: Option<f32>) -> Result<Relu, GpuError> {
        let op = "relu_forward";
        check_len(op, "y", y, x.len())?;
        let (flags, c) = cap_flags(op, cap)?;
        let p = flat_params(x.len(), op, flags, c)?;
        let launch = Launch::flat(gpu, &RELU_FORWARD, &p, &[&x.buffer, &y.buffer], x.len())?;
        Ok(Relu { launch })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.launch.record(rec);
    }
}

/// `dx = dy` where `0 < x < cap` (x = the forward INPUT), else 0. Overwrites `dx`.
#[derive(Debug)]
pub struct ReluBackward {
    launch: Launch,
}

impl ReluBackward {
    pub fn new(
        gpu: &Gpu,
        x: &Tensor,
        dy: &Tensor,
        dx: &Tensor,
        cap: Option<f32>,
    ) -> Result<ReluBackward, GpuError> {
        let op = "relu_backward";
        check_len(op, "dy", dy, x.len())?;
        check_len(op, "dx", dx, x.len())?;
        let (flags, c) = cap_flags(op, cap)?;
        let p = flat_params(x.len(), op, flags, c)?;
        let launch = Launch::flat(
            gpu,
            &RELU_BACKWARD,
            &p,
            &[&x.buffer, &dy.buffer, &dx.buffer],
            x.len(),
        )?;
        Ok(ReluBackward { launch })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.launch.record(rec);
    }
}

/// `y = a + b` (the residual add; its backward passes `dy` to both inputs unchanged).
#[derive(Debug)]
pub struct Add {
    launch: Launch,
}

impl Add {
    pub fn new(gpu: &Gpu, a: &Tensor, b: &Tensor, y: &Tensor) -> Result<Add, GpuError> {
        let op = "add";
        check_len(op, "b", b, a.len())?;
        check_len(op, "y", y, a.len())?;
        let p = flat_params(a.len(), op, 0, 0.0)?;
        let launch = Launch::flat(gpu, &ADD, &p, &[&a.buffer, &b.buffer, &y.buffer], a.len())?;
        Ok(Add { launch })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.launch.record(rec);
    }
}

/// `y += alpha · x` in place (gradient accumulation). `alpha` can be changed with
/// [`Axpy::set_alpha`] before a submission.
#[derive(Debug)]
pub struct Axpy {
    launch: Launch,
    params: FlatParams,
}

impl Axpy {
    pub fn new(gpu: &Gpu, x: &Tensor, y: &Tensor, alpha: f32) -> Result<Axpy, GpuError> {
        let op = "axpy";
        check_len(op, "y", y, x.len())?;
        let params = flat_params(x.len(), op, 0, alpha)?;
        let launch = Launch::flat(gpu, &AXPY, &params, &[&x.buffer, &y.buffer], x.len())?;
        Ok(Axpy { launch, params })
    }

    /// Use `alpha` from the next submission on.
    pub fn set_alpha(&mut self, gpu: &Gpu, alpha: f32) {
        self.params.value = alpha;
        write_uniform(gpu, &self.launch.params, &self.params);
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.launch.record(rec);
    }
}

/// `y[i] = value` for every element.
#[derive(Debug)]
pub struct Fill {
    launch: Launch,
}

impl Fill {
    pub fn new(gpu: &Gpu, y: &Tensor, value: f32) -> Result<Fill, GpuError> {
        let p = flat_params(y.len(), "fill", 0, value)?;
        let launch = Launch::flat(gpu, &FILL, &p, &[&y.buffer], y.len())?;
        Ok(Fill { launch })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.launch.record(rec);
    }
}

/// Every pipeline of this module ([`super::pipelines`]).
pub(super) fn pipelines() -> Vec<super::PipelineEntry> {
    [&RELU_FORWARD, &RELU_BACKWARD, &ADD, &AXPY, &FILL]
        .into_iter()
        .map(super::PipelineEntry::spec)
        .collect()
}
