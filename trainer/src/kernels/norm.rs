//! Batch normalisation over (N, H, W) per channel, PyTorch semantics (`nn.BatchNorm2d`:
//! eps 1e-5, momentum 0.1, biased variance to normalise, unbiased for the running variance).
//!
//! Train-mode forward, three kernels:
//! 1. `bn_stats_partial`: workgroup (chunk, channel) sums `x - K` and `(x - K)²` over
//!    [`CHUNK`] consecutive elements of the channel's `m = n·hw` values, K = the channel's
//!    first element (a shift that keeps the one-pass variance accurate) → partials;
//! 2. `bn_stats_finalize`: one workgroup per channel sums its partials in a fixed tree, writes
//!    `saved_mean`, `saved_invstd` and updates `running_mean` / `running_var`;
//! 3. `bn_apply`: `y = (x - mean) · invstd · gamma + beta`, one thread per element.
//!
//! Eval mode runs only `bn_apply`, with the running statistics. The train-mode backward
//! mirrors it: `bn_backward_partial` (Σdy, Σdy·x̂ per chunk) → `bn_backward_finalize`
//! (dbeta, dgamma) → `bn_backward_apply` (dx). No atomics: every sum has a fixed order.

use super::elementwise::{check_len, Launch, WG};
use super::{to_u32, Binding, KernelSpec, Recorder, Tensor};
use crate::gpu::{Gpu, GpuError};

/// `eps` added to the variance.
pub const BN_EPS: f32 = 1e-5;
/// `running = (1 - momentum) · running + momentum · batch statistic`.
pub const BN_MOMENTUM: f32 = 0.1;
/// Elements of one channel summed by one workgroup of the partial kernels (16 per thread).
pub const CHUNK: usize = 4096;

const UNI: Binding = Binding::Uniform;
const RO: Binding = Binding::ReadOnly;
const RW: Binding = Binding::ReadWrite;

static STATS_PARTIAL: KernelSpec = KernelSpec {
    id: "bn_stats_partial",
    source: include_str!("../../../shaders/bn_stats_partial.wgsl"),
    entry: "main",
    bindings: &[UNI, RO, RW],
};

static STATS_FINALIZE: KernelSpec = KernelSpec {
    id: "bn_stats_finalize",
    source: include_str!("../../../shaders/bn_stats_finalize.wgsl"),
    entry: "main",
    bindings: &[UNI, RO, RO, RW, RW, RW, RW],
};

static APPLY: KernelSpec = KernelSpec {
    id: "bn_apply",
    source: include_str!("../../../shaders/bn_apply.wgsl"),
    entry: "main",
    bindings: &[UNI, RO, RO, RO, RO, RO, RW],
};

static BACKWARD_PARTIAL: KernelSpec = KernelSpec {
    id: "bn_backward_partial",
    source: include_str!("../../../shaders/bn_backward_partial.wgsl"),
    entry: "main",
    bindings: &[UNI, RO, RO, RO, RO, RW],
};

static BACKWARD_FINALIZE: KernelSpec = KernelSpec {
    id: "bn_backward_finalize",
    source: include_str!("../../../shaders/bn_backward_finalize.wgsl"),
    entry: "main",
    bindings: &[UNI, RO, RW, RW],
};

static BACKWARD_APPLY: KernelSpec = KernelSpec {
    id: "bn_backward_apply",
    source: include_str!("../../../shaders/bn_backward_apply.wgsl"),
    entry: "main",
    bindings: &[UNI, RO, RO, RO, RO, RO, RO, RO, RW],
};

/// `x` is `[n, c, hw]` (NCHW with `hw = h·w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BnShape {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

impl BnShape {
    pub fn new(n: usize, c: usize, hw: usize) -> Self {
        BnShape { n, c, hw }
    }
    pub fn len(&self) -> usize {
        self.n * self.c * self.hw
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Values per channel, `n·hw`.
    pub fn per_channel(&self) -> usize {
        self.n * self.hw
    }
}

/// Train: batch statistics, saved for the backward, running statistics updated.
/// Eval: running statistics; nothing written but `y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BnMode {
    Train,
    Eval,
}

/// The per-channel tensors of one batch-norm layer (each `c` elements).
#[derive(Debug, Clone, Copy)]
pub struct BnTensors<'t> {
    pub gamma: &'t Tensor,
    pub beta: &'t Tensor,
    pub running_mean: &'t Tensor,
    pub running_var: &'t Tensor,
    /// Batch mean, written by the train-mode forward, read by the backward.
    pub saved_mean: &'t Tensor,
    /// `1 / sqrt(biased batch var + eps)`, written by the train-mode forward.
    pub saved_invstd: &'t Tensor,
}

/// `struct Params` of every `bn_*.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BnParams {
    n: u32,
    c: u32,
    hw: u32,
    m: u32,
    chunks: u32,
    /// bit 0: `bn_apply` reads running statistics (eval).
    flags: u32,
    eps: f32,
    momentum: f32,
    inv_m: f32,
    /// `m / (m - 1)` (1 when m = 1): biased → unbiased variance.
    unbias: f32,
    total: u32,
    _pad: u32,
}

fn params(s: BnShape, op: &str, flags: u32) -> Result<BnParams, GpuError> {
    if s.n == 0 || s.c == 0 || s.hw == 0 {
        return Err(GpuError::Shape(format!(
            "{op} {s:?}: n, c and hw must be positive"
        )));
    }
    let total =
        s.n.checked_mul(s.c)
            .and_then(|v| v.checked_mul(s.hw))
            .ok_or_else(|| GpuError::Shape(format!("{op} {s:?}: size overflows")))?;
    let m = s.per_channel();
    Ok(BnParams {
        n: to_u32(s.n, "n")?,
        c: to_u32(s.c, "c")?,
        hw: to_u32(s.hw, "hw")?,
        m: to_u32(m, "n·hw")?,
        chunks: to_u32(m.div_ceil(CHUNK), "chunks")?,
        flags,
        eps: BN_EPS,
        momentum: BN_MOMENTUM,
        inv_m: (1.0 / m as f64) as f32,
        unbias: if m > 1 {
            (m as f64 / (m - 1) as f64) as f32
        } else {
            1.0
        },
        total: to_u32(total, &format!("{op} length"))?,
        _pad: 0,
    })
}

/// Partial-sum kernel launch over a (chunks, c) grid of workgroups.
fn partial_launch(
    gpu: &Gpu,
    spec: &'static KernelSpec,
    p: &BnParams,
    buffers: &[&wgpu::Buffer],
) -> Result<Launch, GpuError> {
    let max = gpu.limits.max_compute_workgroups_per_dimension;
    if p.chunks > max || p.c > max {
        return Err(GpuError::Shape(format!(
            "{}: {} chunks × {} channels exceed {max} workgroups per dimension",
            spec.id, p.chunks, p.c
        )));
    }
    let buf = super::uniform(gpu, p, spec.id);
    let mut all = vec![&buf];
    all.extend_from_slice(buffers);
    let dispatch = super::pipeline(gpu, spec)?.dispatch(gpu, &all, [p.chunks, p.c, 1])?;
    Ok(Launch {
        dispatch,
        params: buf,
        empty: false,
    })
}

fn check_channel_tensors(op: &str, s: BnShape, named: &[(&str, &Tensor)]) -> Result<(), GpuError> {
    for (name, t) in named {
        check_len(op, name, t, s.c)?;
    }
    Ok(())
}

/// Batch-norm forward, train or eval mode.
#[derive(Debug)]
pub struct BatchNorm2d {
    pub shape: BnShape,
    pub mode: BnMode,
    launches: Vec<Launch>,
    _partials: Option<Tensor>,
}

impl BatchNorm2d {
    /// `x` → `y` (both `[n, c, hw]`, distinct). Train mode writes `t.saved_mean`,
    /// `t.saved_invstd` and updates `t.running_mean`, `t.running_var`; eval mode only reads
    /// the running statistics.
    pub fn new(
        gpu: &Gpu,
        shape: BnShape,
        x: &Tensor,
        y: &Tensor,
        t: &BnTensors,
        mode: BnMode,
    ) -> Result<BatchNorm2d, GpuError> {
        let op = "batch_norm_forward";
        let eval = mode == BnMode::Eval;
        let p = params(shape, op, u32::from(eval))?;
        check_len(op, "x", x, shape.len())?;
        check_len(op, "y", y, shape.len())?;
        check_channel_tensors(
            op,
            shape,
            &[
                ("gamma", t.gamma),
                ("beta", t.beta),
                ("running_mean", t.running_mean),
                ("running_var", t.running_var),
                ("saved_mean", t.saved_mean),
                ("saved_invstd", t.saved_invstd),
            ],
        )?;
        let mut launches = Vec::new();
        let mut partials = None;
        let (mean, stat) = if eval {
            (t.running_mean, t.running_var)
        } else {
            let part = Tensor::zeros(gpu, 2 * shape.c * p.chunks as usize, "bn partials")?;
            launches.push(partial_launch(
                gpu,
                &STATS_PARTIAL,
                &p,
                &[&x.buffer, &part.buffer],
            )?);
            launches.push(Launch::new(
                gpu,
                &STATS_FINALIZE,
                &p,
                &[
                    &x.buffer,
                    &part.buffer,
                    &t.saved_mean.buffer,
                    &t.saved_invstd.buffer,
                    &t.running_mean.buffer,
                    &t.running_var.buffer,
                ],
                shape.c as u64,
                false,
            )?);
            partials = Some(part);
            (t.saved_mean, t.saved_invstd)
        };
        launches.push(Launch::flat(
            gpu,
            &APPLY,
            &p,
            &[
                &x.buffer,
                &mean.buffer,
                &stat.buffer,
                &t.gamma.buffer,
                &t.beta.buffer,
                &y.buffer,
            ],
            shape.len(),
        )?);
        Ok(BatchNorm2d {
            shape,
            mode,
            launches,
            _partials: partials,
        })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        for l in &self.launches {
            l.record(rec);
        }
    }
}

/// Train-mode batch-norm backward: `(x, dy, gamma, saved_mean, saved_invstd)` →
/// `(dx, dgamma, dbeta)`, all overwritten.
#[derive(Debug)]
pub struct BatchNorm2dBackward {
    pub shape: BnShape,
    launches: [Launch; 3],
    _partials: Tensor,
}

impl BatchNorm2dBackward {
    /// Reads `t.gamma`, `t.saved_mean`, `t.saved_invstd` (as the train-mode forward left
    /// them); `x` is the forward input.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        shape: BnShape,
        x: &Tensor,
        dy: &Tensor,
        dx: &Tensor,
        t: &BnTensors,
        dgamma: &Tensor,
        dbeta: &Tensor,
    ) -> Result<BatchNorm2dBackward, GpuError> {
        let op = "batch_norm_backward";
        let p = params(shape, op, 0)?;
        for (name, tensor) in [("x", x), ("dy", dy), ("dx", dx)] {
            check_len(op, name, tensor, shape.len())?;
        }
        check_channel_tensors(
            op,
            shape,
            &[
                ("gamma", t.gamma),
                ("saved_mean", t.saved_mean),
                ("saved_invstd", t.saved_invstd),
                ("dgamma", dgamma),
                ("dbeta", dbeta),
            ],
        )?;
        let part = Tensor::zeros(gpu, 2 * shape.c * p.chunks as usize, "bn grad partials")?;
        let partial = partial_launch(
            gpu,
            &BACKWARD_PARTIAL,
            &p,
            &[
                &x.buffer,
                &dy.buffer,
                &t.saved_mean.buffer,
                &t.saved_invstd.buffer,
                &part.buffer,
            ],
        )?;
        let finalize = Launch::new(
            gpu,
            &BACKWARD_FINALIZE,
            &p,
            &[&part.buffer, &dgamma.buffer, &dbeta.buffer],
            shape.c as u64,
            false,
        )?;
        let apply = Launch::new(
            gpu,
            &BACKWARD_APPLY,
            &p,
            &[
                &x.buffer,
                &dy.buffer,
                &t.saved_mean.buffer,
                &t.saved_invstd.buffer,
                &t.gamma.buffer,
                &dgamma.buffer,
                &dbeta.buffer,
                &dx.buffer,
            ],
            (shape.len() as u64).div_ceil(WG),
            false,
        )?;
        Ok(BatchNorm2dBackward {
            shape,
            launches: [partial, finalize, apply],
            _partials: part,
        })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        for l in &self.launches {
            l.record(rec);
        }
    }
}

/// Every pipeline of this module ([`super::pipelines`]).
pub(super) fn pipelines() -> Vec<super::PipelineEntry> {
    [
        &STATS_PARTIAL,
        &STATS_FINALIZE,
        &APPLY,
        &BACKWARD_PARTIAL,
        &BACKWARD_FINALIZE,
        &BACKWARD_APPLY,
    ]
    .into_iter()
    .map(super::PipelineEntry::spec)
    .collect()
}
