//! Tiled GEMM (`shaders/gemm.wgsl`): `C = alpha · op(A) · op(B) + beta · C`, batched.

use super::{pipeline, to_u32, uniform, Binding, Dispatch, KernelSpec, Recorder, Tensor};
use crate::gpu::{Gpu, GpuError};

static GEMM: KernelSpec = KernelSpec {
    id: "gemm",
    source: include_str!("../../../shaders/gemm.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadWrite,
    ],
};

/// Output tile edge of the kernel.
const TILE: usize = 64;

/// Shape of one GEMM: op(A) is `m×k`, op(B) is `k×n`, C is `m×n`, all row-major.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A is stored `k×m` (use its transpose).
    pub trans_a: bool,
    /// B is stored `n×k` (use its transpose).
    pub trans_b: bool,
    pub alpha: f32,
    /// 0 overwrites C (without reading it); 1 accumulates into it.
    pub beta: f32,
    /// Number of independent products; matrices of a batch are contiguous.
    pub batch: usize,
}

impl GemmShape {
    /// `C = A · B` for one `m×k` by `k×n` product.
    pub fn new(m: usize, k: usize, n: usize) -> Self {
        GemmShape {
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            alpha: 1.0,
            beta: 0.0,
            batch: 1,
        }
    }
    pub fn trans_a(mut self, t: bool) -> Self {
        self.trans_a = t;
        self
    }
    pub fn trans_b(mut self, t: bool) -> Self {
        self.trans_b = t;
        self
    }
    /// Accumulate into C (`beta = 1`) instead of overwriting it.
    pub fn accumulate(mut self, acc: bool) -> Self {
        self.beta = if acc { 1.0 } else { 0.0 };
        self
    }
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GemmParams {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    alpha: f32,
    beta: f32,
    batch: u32,
    _pad0: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    _pad1: u32,
}

/// One GEMM bound to its tensors: build once, [`Gemm::record`] every step.
#[derive(Debug)]
pub struct Gemm {
    pub shape: GemmShape,
    dispatch: Dispatch,
    _params: wgpu::Buffer,
}

impl Gemm {
    /// Check the tensor lengths against `shape` and bind `a`, `b`, `c`.
    pub fn new(
        gpu: &Gpu,
        shape: GemmShape,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
    ) -> Result<Gemm, GpuError> {
        let s = shape;
        for (name, t, per) in [
            ("a", a, s.m * s.k),
            ("b", b, s.k * s.n),
            ("c", c, s.m * s.n),
        ] {
            let want = per * s.batch;
            if t.len() != want {
                return Err(GpuError::Shape(format!(
                    "gemm {}x{}x{} batch {}: tensor {name} has {} elements, expected {want}",
                    s.m,
                    s.k,
                    s.n,
                    s.batch,
                    t.len()
                )));
            }
        }
        let params = GemmParams {
            m: to_u32(s.m, "gemm m")?,
            n: to_u32(s.n, "gemm n")?,
            k: to_u32(s.k, "gemm k")?,
            flags: u32::from(s.trans_a) | (u32::from(s.trans_b) << 1),
            alpha: s.alpha,
            beta: s.beta,
            batch: to_u32(s.batch, "gemm batch")?,
            _pad0: 0,
            stride_a: to_u32(s.m * s.k, "gemm a stride")?,
            stride_b: to_u32(s.k * s.n, "gemm b stride")?,
            stride_c: to_u32(s.m * s.n, "gemm c stride")?,
            _pad1: 0,
        };
        to_u32(s.m * s.k * s.batch, "gemm a length")?;
        to_u32(s.k * s.n * s.batch, "gemm b length")?;
        to_u32(s.m * s.n * s.batch, "gemm c length")?;
        let groups = [
            to_u32(s.n.div_ceil(TILE).max(1), "gemm column tiles")?,
            to_u32(s.m.div_ceil(TILE).max(1), "gemm row tiles")?,
            to_u32(s.batch.max(1), "gemm batch")?,
        ];
        let buf = uniform(gpu, &params, "gemm params");
        let p = pipeline(gpu, &GEMM)?;
        let dispatch = p.dispatch(gpu, &[&buf, &a.buffer, &b.buffer, &c.buffer], groups)?;
        Ok(Gemm {
            shape,
            dispatch,
            _params: buf,
        })
    }

    /// Append this GEMM to `rec`.
    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        if self.shape.batch > 0 && self.shape.m > 0 && self.shape.n > 0 {
            rec.dispatch(&self.dispatch);
        }
    }
}

/// Every pipeline of this module ([`super::pipelines`]).
pub(super) fn pipelines() -> Vec<super::PipelineEntry> {
    vec![super::PipelineEntry::spec(&GEMM)]
}
