//! Pooling kernels, PyTorch semantics (floor output sizes, square window `k`, `stride`, zero
//! `pad ≤ k/2` on every side):
//!
//! - max pooling: padding counts as -inf; forward also writes, per output, the flat index of
//!   its maximum in `x` (first in row-major window order on ties); the backward gathers, for
//!   each input, the `dy` of every window whose argmax it is (no scatter, no atomics);
//! - average pooling with `count_include_pad = true` (every window divides by k²);
//! - global average pooling `[n, c, h·w]` → `[n, c]` and its backward.
//!
//! Forward: one thread per output; backward: one thread per input, so outputs are written
//! exactly once and overlapping windows sum in a fixed order. Backward ops overwrite `dx`.

use super::elementwise::{check_len, Launch};
use super::{to_u32, Binding, KernelSpec, Recorder, Tensor};
use crate::gpu::{Gpu, GpuError};

const UNI: Binding = Binding::Uniform;
const RO: Binding = Binding::ReadOnly;
const RW: Binding = Binding::ReadWrite;

static MAX_FORWARD: KernelSpec = KernelSpec {
    id: "maxpool_forward",
    source: include_str!("../../../shaders/maxpool_forward.wgsl"),
    entry: "main",
    bindings: &[UNI, RO, RW, RW],
};

static MAX_BACKWARD: KernelSpec = KernelSpec {
    id: "maxpool_backward",
    source: include_str!("../../../shaders/maxpool_backward.wgsl"),
    entry: "main",
    bindings: &[UNI, RO, RO, RW],
};

static AVG_FORWARD: KernelSpec = KernelSpec {
    id: "avgpool_forward",
    source: include_str!("../../../shaders/avgpool_forward.wgsl"),
    entry: "main",
    bindings: &[UNI, RO, RW],
};

static AVG_BACKWARD: KernelSpec = KernelSpec {
    id: "avgpool_backward",
    source: include_str!("../../../shaders/avgpool_backward.wgsl"),
    entry: "main",
    bindings: &[UNI, RO, RW],
};

static GAP_FORWARD: KernelSpec = KernelSpec {
    id: "global_avgpool_forward",
    source: include_str!("../../../shaders/global_avgpool_forward.wgsl"),
    entry: "main",
    bindings: &[UNI, RO, RW],
};

static GAP_BACKWARD: KernelSpec = KernelSpec {
    id: "global_avgpool_backward",
    source: include_str!("../../../shaders/global_avgpool_backward.wgsl"),
    entry: "main",
    bindings: &[UNI, RO, RW],
};

/// Input `[n, c, h, w]`, square window `k`, `stride`, zero padding `pad` on every side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl PoolShape {
    pub fn new(
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Self {
        PoolShape {
            n,
            c,
            h,
            w,
            k,
            stride,
            pad,
        }
    }

    /// Output height `(h + 2·pad - k) / stride + 1` (0 when the window does not fit).
    pub fn h_out(&self) -> usize {
        (self.h + 2 * self.pad)
            .checked_sub(self.k)
            .map_or(0, |v| v / self.stride.max(1) + 1)
    }
    pub fn w_out(&self) -> usize {
        (self.w + 2 * self.pad)
            .checked_sub(self.k)
            .map_or(0, |v| v / self.stride.max(1) + 1)
    }
    pub fn input_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    pub fn output_len(&self) -> usize {
        self.n * self.c * self.h_out() * self.w_out()
    }

    fn validate(&self, op: &str) -> Result<(), GpuError> {
        let bad = |why: &str| Err(GpuError::Shape(format!("{op} {self:?}: {why}")));
        if self.k == 0 || self.stride == 0 {
            return bad("k and stride must be positive");
        }
        if self.pad > self.k / 2 {
            return bad("pad must be at most k / 2");
        }
        if self.h + 2 * self.pad < self.k || self.w + 2 * self.pad < self.k {
            return bad("window larger than the padded input");
        }
        to_u32(self.input_len(), &format!("{op} input length"))?;
        Ok(())
    }
}

/// `struct Params` of the windowed pooling shaders.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PoolParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    k: u32,
    stride: u32,
    pad: u32,
    h_out: u32,
    w_out: u32,
    total: u32,
    inv_area: f32,
    _pad: u32,
}

fn pool_params(s: &PoolShape, op: &str, total: usize) -> Result<PoolParams, GpuError> {
    s.validate(op)?;
    Ok(PoolParams {
        n: to_u32(s.n, "n")?,
        c: to_u32(s.c, "c")?,
        h: to_u32(s.h, "h")?,
        w: to_u32(s.w, "w")?,
        k: to_u32(s.k, "k")?,
        stride: to_u32(s.stride, "stride")?,
        pad: to_u32(s.pad, "pad")?,
        h_out: to_u32(s.h_out(), "h_out")?,
        w_out: to_u32(s.w_out(), "w_out")?,
        total: to_u32(total, "total")?,
        inv_area: (1.0 / (s.k * s.k) as f64) as f32,
        _pad: 0,
    })
}

macro_rules! record_impl {
    ($t:ty) => {
        impl $t {
            pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
                self.launch.record(rec);
            }
        }
    };
}

/// Max pooling: `x` → `y` and `argmax` (u32, one per output: flat index into `x`).
#[derive(Debug)]
pub struct MaxPool2d {
    pub shape: PoolShape,
    launch: Launch,
}

impl MaxPool2d {
    pub fn new(
        gpu: &Gpu,
        shape: PoolShape,
        x: &Tensor,
        y: &Tensor,
        argmax: &Tensor,
    ) -> Result<MaxPool2d, GpuError> {
        let op = "max_pool2d";
        let p = pool_params(&shape, op, shape.output_len())?;
        check_len(op, "x", x, shape.input_len())?;
        check_len(op, "y", y, shape.output_len())?;
        check_len(op, "argmax", argmax, shape.output_len())?;
        let launch = Launch::flat(
            gpu,
            &MAX_FORWARD,
            &p,
            &[&x.buffer, &y.buffer, &argmax.buffer],
            shape.output_len(),
        )?;
        Ok(MaxPool2d { shape, launch })
    }
}
record_impl!(MaxPool2d);

/// Max-pooling backward: `dx[i]` = sum of `dy` over the windows whose argmax is `i`.
#[derive(Debug)]
pub struct MaxPool2dBackward {
    pub shape: PoolShape,
    launch: Launch,
}

impl MaxPool2dBackward {
    pub fn new(
        gpu: &Gpu,
        shape: PoolShape,
        argmax: &Tensor,
        dy: &Tensor,
        dx: &Tensor,
    ) -> Result<MaxPool2dBackward, GpuError> {
        let op = "max_pool2d_backward";
        let p = pool_params(&shape, op, shape.input_len())?;
        check_len(op, "argmax", argmax, shape.output_len())?;
        check_len(op, "dy", dy, shape.output_len())?;
        check_len(op, "dx", dx, shape.input_len())?;
        let launch = Launch::flat(
            gpu,
            &MAX_BACKWARD,
            &p,
            &[&argmax.buffer, &dy.buffer, &dx.buffer],
            shape.input_len(),
        )?;
        Ok(MaxPool2dBackward { shape, launch })
    }
}
record_impl!(MaxPool2dBackward);

/// Average pooling (`count_include_pad = true`).
#[derive(Debug)]
pub struct AvgPool2d {
    pub shape: PoolShape,
    launch: Launch,
}

impl AvgPool2d {
    pub fn new(gpu: &Gpu, shape: PoolShape, x: &Tensor, y: &Tensor) -> Result<AvgPool2d, GpuError> {
        let op = "avg_pool2d";
        let p = pool_params(&shape, op, shape.output_len())?;
        check_len(op, "x", x, shape.input_len())?;
        check_len(op, "y", y, shape.output_len())?;
        let launch = Launch::flat(
            gpu,
            &AVG_FORWARD,
            &p,
            &[&x.buffer, &y.buffer],
            shape.output_len(),
        )?;
        Ok(AvgPool2d { shape, launch })
    }
}
record_impl!(AvgPool2d);

/// Average-pooling backward: every input receives `dy / k²` from each window containing it.
#[derive(Debug)]
pub struct AvgPool2dBackward {
    pub shape: PoolShape,
    launch: Launch,
}

impl AvgPool2dBackward {
    pub fn new(
        gpu: &Gpu,
        shape: PoolShape,
        dy: &Tensor,
        dx: &Tensor,
    ) -> Result<AvgPool2dBackward, GpuError> {
        let op = "avg_pool2d_backward";
        let p = pool_params(&shape, op, shape.input_len())?;
        check_len(op, "dy", dy, shape.output_len())?;
        check_len(op, "dx", dx, shape.input_len())?;
        let launch = Launch::flat(
            gpu,
            &AVG_BACKWARD,
            &p,
            &[&dy.buffer, &dx.buffer],
            shape.input_len(),
        )?;
        Ok(AvgPool2dBackward { shape, launch })
    }
}
record_impl!(AvgPool2dBackward);

/// `struct Params` of the global average pooling shaders.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GapParams {
    planes: u32,
    hw: u32,
    total: u32,
    inv_hw: f32,
}

fn gap_params(op: &str, n: usize, c: usize, hw: usize) -> Result<GapParams, GpuError> {
    if hw == 0 {
        return Err(GpuError::Shape(format!("{op}: hw must be positive")));
    }
    Ok(GapParams {
        planes: to_u32(n * c, &format!("{op} planes"))?,
        hw: to_u32(hw, "hw")?,
        total: to_u32(n * c * hw, &format!("{op} input length"))?,
        inv_hw: (1.0 / hw as f64) as f32,
    })
}

/// Global average pooling: `x` `[n, c, hw]` → `y` `[n, c]`, the mean of each plane.
#[derive(Debug)]
pub struct GlobalAvgPool {
    launch: Launch,
}

impl GlobalAvgPool {
    pub fn new(
        gpu: &Gpu,
        n: usize,
        c: usize,
        hw: usize,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<GlobalAvgPool, GpuError> {
        let op = "global_avg_pool";
        let p = gap_params(op, n, c, hw)?;
        check_len(op, "x", x, n * c * hw)?;
        check_len(op, "y", y, n * c)?;
        let launch = Launch::flat(gpu, &GAP_FORWARD, &p, &[&x.buffer, &y.buffer], n * c)?;
        Ok(GlobalAvgPool { launch })
    }
}
record_impl!(GlobalAvgPool);

/// Global average pooling backward: `dx[n, c, :] = dy[n, c] / hw`.
#[derive(Debug)]
pub struct GlobalAvgPoolBackward {
    launch: Launch,
}

impl GlobalAvgPoolBackward {
    pub fn new(
        gpu: &Gpu,
        n: usize,
        c: usize,
        hw: usize,
        dy: &Tensor,
        dx: &Tensor,
    ) -> Result<GlobalAvgPoolBackward, GpuError> {
        let op = "global_avg_pool_backward";
        let p = gap_params(op, n, c, hw)?;
        check_len(op, "dy", dy, n * c)?;
        check_len(op, "dx", dx, n * c * hw)?;
        let launch = Launch::flat(
            gpu,
            &GAP_BACKWARD,
            &p,
            &[&dy.buffer, &dx.buffer],
            n * c * hw,
        )?;
        Ok(GlobalAvgPoolBackward { launch })
    }
}
record_impl!(GlobalAvgPoolBackward);

/// Every pipeline of this module ([`super::pipelines`]).
pub(super) fn pipelines() -> Vec<super::PipelineEntry> {
    [
        &MAX_FORWARD,
        &MAX_BACKWARD,
        &AVG_FORWARD,
        &AVG_BACKWARD,
        &GAP_FORWARD,
        &GAP_BACKWARD,
    ]
    .into_iter()
    .map(super::PipelineEntry::spec)
    .collect()
}
