//! LSQ fake quantisation (Esser et al. 2020), exactly as docs/METHOD.md and
//! `reference::lsq` define it, with one step size per candidate bit-width held in a `steps`
//! tensor; an op instance is bound to ONE entry `index` (its bit-width), so the passes at
//! several bit-widths can be recorded into one submission.
//!
//! - the step used is `s = clamp(steps[index], 1e-5, 1)`;
//! - forward: `v = x / s` (a division), `y = round_half_even(clamp(v, Qn, Qp)) · s`
//!   (WGSL `round` rounds half to even, as `torch.round` and the reference do);
//! - backward: `dx = dy` where `Qn ≤ v ≤ Qp` (bounds included), else 0 (straight-through
//!   estimator); `dsteps[index] = g · Σ dy·t` with `t = round(v) - v` inside, `Qn` below,
//!   `Qp` above, `g = 1 / sqrt(N · Qp)`, N = elements of `x`, when the stored step lies in
//!   `[1e-5, 1]` (bounds included), else `dsteps[index] = 0`: the clamp is part of the
//!   model, as `torch.clamp(s, 1e-5, 1)` in the reference code, whose gradient is zero
//!   outside the range, so a step that leaves it freezes there (`reference::lsq::
//!   lsq_clamped_backward`). Other entries of `dsteps` are untouched; `dsteps[index]` is
//!   overwritten by [`LsqBackward::new`], added to by [`LsqBackward::new_accumulating`]
//!   (two passes at the same bit-width in one step, e.g. the random-policy pass).
//!
//! The sum is deterministic: `lsq_backward` writes one partial per 4096 elements
//! (strided per thread + fixed tree), then `reduce_final` sums the partials in one workgroup.
//!
//! The forward formula is also applied on load by the conv kernels
//! ([`QuantX`](super::conv::QuantX): forward and backward weight read the raw input and
//! quantize each value exactly as `lsq_forward.wgsl` does), so a quantized conv needs no
//! `LsqQuantize` copy of its input; the backward still runs [`LsqBackward`] on the raw input.

use super::elementwise::{check_len, Launch, WG};
use super::reduce::{final_launch, partial_count};
use super::{to_u32, Binding, KernelSpec, Recorder, Tensor};
use crate::gpu::{Gpu, GpuError};

/// Steps are clamped to `[STEP_MIN, STEP_MAX]` when used; a step outside gets no gradient.
pub const STEP_MIN: f32 = 1e-5;
pub const STEP_MAX: f32 = 1.0;

static FORWARD: KernelSpec = KernelSpec {
    id: "lsq_forward",
    source: include_str!("../../../shaders/lsq_forward.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadWrite,
    ],
};

static BACKWARD: KernelSpec = KernelSpec {
    id: "lsq_backward",
    source: include_str!("../../../shaders/lsq_backward.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadWrite,
        Binding::ReadWrite,
    ],
};

/// Which step an op uses and how it quantises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LsqConfig {
    /// Entry of `steps` / `dsteps` (the candidate bit-width's slot).
    pub index: usize,
    pub bits: u32,
    /// Signed (weights): `Qn = -2^(b-1)`, `Qp = 2^(b-1) - 1`; unsigned (activations):
    /// `Qn = 0`, `Qp = 2^b - 1`.
    pub signed: bool,
}

impl LsqConfig {
    /// `(Qn, Qp)`, or an error when the range is empty or degenerate (`Qp` must be ≥ 1 for
    /// the gradient scale `1/sqrt(N·Qp)`): bits must be 2..=16 signed, 1..=16 unsigned.
    pub fn range(&self) -> Result<(f32, f32), GpuError> {
        let min_bits = if self.signed { 2 } else { 1 };
        if !(min_bits..=16).contains(&self.bits) {
            return Err(GpuError::Shape(format!(
                "lsq: {} bits {} outside {min_bits}..=16",
                if self.signed { "signed" } else { "unsigned" },
                self.bits
            )));
        }
        let b = self.bits;
        Ok(if self.signed {
            (-((1u32 << (b - 1)) as f32), ((1u32 << (b - 1)) - 1) as f32)
        } else {
            (0.0, ((1u32 << b) - 1) as f32)
        })
    }
}

/// `struct Params` of both LSQ shaders.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LsqParams {
    len: u32,
    index: u32,
    qn: f32,
    qp: f32,
    step_min: f32,
    step_max: f32,
    _pad0: u32,
    _pad1: u32,
}

fn lsq_params(
    op: &str,
    x: &Tensor,
    steps: &Tensor,
    cfg: &LsqConfig,
) -> Result<LsqParams, GpuError> {
    let (qn, qp) = cfg.range()?;
    if cfg.index >= steps.len() {
        return Err(GpuError::Shape(format!(
            "{op}: step index {} outside a {}-element step tensor",
            cfg.index,
            steps.len()
        )));
    }
    Ok(LsqParams {
        len: to_u32(x.len(), &format!("{op} length"))?,
        index: to_u32(cfg.index, "step index")?,
        qn,
        qp,
        step_min: STEP_MIN,
        step_max: STEP_MAX,
        _pad0: 0,
        _pad1: 0,
    })
}

/// LSQ forward: `y = round(clamp(x / s, Qn, Qp)) · s`, `s = clamp(steps[index], 1e-5, 1)`.
#[derive(Debug)]
pub struct LsqQuantize {
    pub config: LsqConfig,
    launch: Launch,
}

impl LsqQuantize {
    pub fn new(
        gpu: &Gpu,
        x: &Tensor,
        y: &Tensor,
        steps: &Tensor,
        config: LsqConfig,
    ) -> Result<LsqQuantize, GpuError> {
        let op = "lsq_quantize";
        check_len(op, "y", y, x.len())?;
        let p = lsq_params(op, x, steps, &config)?;
        let launch = Launch::flat(
            gpu,
            &FORWARD,
            &p,
            &[&x.buffer, &steps.buffer, &y.buffer],
            x.len(),
        )?;
        Ok(LsqQuantize { config, launch })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.launch.record(rec);
    }
}

/// LSQ backward: `dx` (straight-through, overwritten) and `dsteps[index]` (the step-size
/// gradient, zero for a stored step outside `[STEP_MIN, STEP_MAX]`; overwritten, other
/// entries untouched).
#[derive(Debug)]
pub struct LsqBackward {
    pub config: LsqConfig,
    partial: Launch,
    fin: Launch,
    _partials: Tensor,
}

impl LsqBackward {
    /// `x` is the forward input, `dy` the upstream gradient; `dsteps` has `steps.len()`
    /// elements. Overwrites `dx` and `dsteps[index]`. An empty `x` writes
    /// `dsteps[index] = 0` and nothing else.
    pub fn new(
        gpu: &Gpu,
        x: &Tensor,
        dy: &Tensor,
        dx: &Tensor,
        steps: &Tensor,
        dsteps: &Tensor,
        config: LsqConfig,
    ) -> Result<LsqBackward, GpuError> {
        Self::build(gpu, x, dy, dx, steps, dsteps, config, false, 1)
    }

    /// As [`LsqBackward::new`], but ADDS the step gradient to `dsteps[index]` (`dx` is still
    /// overwritten). `x` is one of `copies` equal parts of the tensor the gradient scale is
    /// meant for (one data-parallel rank's part of the global batch; 1: all of it):
    /// `g = 1/sqrt(copies·N·Qp)`, N the elements of `x`.
    #[allow(clippy::too_many_arguments)]
    pub fn new_accumulating(
        gpu: &Gpu,
        x: &Tensor,
        dy: &Tensor,
        dx: &Tensor,
        steps: &Tensor,
        dsteps: &Tensor,
        config: LsqConfig,
        copies: usize,
    ) -> Result<LsqBackward, GpuError> {
        Self::build(gpu, x, dy, dx, steps, dsteps, config, true, copies)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        gpu: &Gpu,
        x: &Tensor,
        dy: &Tensor,
        dx: &Tensor,
        steps: &Tensor,
        dsteps: &Tensor,
        config: LsqConfig,
        accumulate: bool,
        copies: usize,
    ) -> Result<LsqBackward, GpuError> {
        let op = "lsq_backward";
        check_len(op, "dy", dy, x.len())?;
        check_len(op, "dx", dx, x.len())?;
        check_len(op, "dsteps", dsteps, steps.len())?;
        let p = lsq_params(op, x, steps, &config)?;
        let count = partial_count(x.len());
        let partials = Tensor::zeros(gpu, count, "lsq partials")?;
        let partial = Launch::new(
            gpu,
            &BACKWARD,
            &p,
            &[
                &x.buffer,
                &dy.buffer,
                &steps.buffer,
                &dx.buffer,
                &partials.buffer,
            ],
            count as u64,
            false,
        )?;
        debug_assert_eq!(super::reduce::CHUNK as u64 % WG, 0);
        // g = 1 / sqrt(N · Qp), computed in f64 like the reference; N counts every part.
        let g = if x.is_empty() {
            0.0
        } else {
            let n = x.len() as f64 * copies.max(1) as f64;
            (1.0 / (n * p.qp as f64).sqrt()) as f32
        };
        let fin = final_launch(gpu, &partials, dsteps, config.index, g, accumulate)?;
        Ok(LsqBackward {
            config,
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
    [&FORWARD, &BACKWARD]
        .into_iter()
        .map(super::PipelineEntry::spec)
        .collect()
}
