//! Batch normalisation over (N, H, W) per channel, PyTorch semantics (`nn.BatchNorm2d`:
//! eps 1e-5, momentum 0.1, biased variance to normalise, unbiased for the running variance).
//!
//! Train-mode forward, three kernels:
//! 1. `bn_stats_partial`: workgroup (chunk, channel) takes [`CHUNK`] consecutive elements
//!    of the channel's `m = n·hw` values and writes their mean and their sum of squared
//!    deviations from it (M2), in two passes over them → partials;
//! 2. `bn_stats_finalize`: one workgroup per channel merges its chunks (Chan's update) in
//!    fixed trees, writes `saved_mean`, `saved_invstd` and updates `running_mean` /
//!    `running_var`;
//! 3. `bn_apply`: `y = (x - mean) · invstd · gamma + beta`, one thread per element.
//!
//! Eval mode runs only `bn_apply`, with the running statistics. The train-mode backward
//! mirrors it: `bn_backward_partial` (Σdy, Σdy·x̂ per chunk) → `bn_backward_finalize`
//! (dbeta, dgamma) → `bn_backward_apply` (dx). No atomics: every sum has a fixed order.
//!
//! Synchronised BN (data-parallel runs) ends a submission after each partial kernel: the
//! host reads the partials back, combines them over the ranks and writes them back before
//! the finalize kernel runs ([`BatchNorm2d::partials`], [`BatchNorm2d::set_ranks`],
//! [`combine_stats`]).

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
    bindings: &[UNI, RO, RW, RW, RW, RW],
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
    partials: Option<Tensor>,
    params: BnParams,
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
            let part = Tensor::zeros(gpu, stats_partials_len(shape), "bn partials")?;
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
            partials,
            params: p,
        })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        for l in &self.launches {
            l.record(rec);
        }
    }

    /// Train mode: the statistics' partial sums (`bn_stats_partial`), the first part of
    /// [`BatchNorm2d::record`]; eval mode records nothing.
    pub fn record_partial<'a>(&'a self, rec: &mut Recorder<'a>) {
        if self.mode == BnMode::Train {
            self.launches[0].record(rec);
        }
    }

    /// The rest of [`BatchNorm2d::record`] after [`BatchNorm2d::record_partial`].
    pub fn record_rest<'a>(&'a self, rec: &mut Recorder<'a>) {
        let skip = usize::from(self.mode == BnMode::Train);
        for l in &self.launches[skip..] {
            l.record(rec);
        }
    }

    /// Train mode: the partial sums the finalize kernel reads (layout in
    /// [`combine_stats`]); `None` in eval mode.
    pub fn partials(&self) -> Option<&Tensor> {
        self.partials.as_ref()
    }

    /// Train mode: makes the finalize kernel count `ranks` times this op's `n·hw` values
    /// (the variance's divisor and the running variance's `m/(m-1)`), for partials that
    /// [`combine_stats`] replaced by every rank's: each chunk then holds the mean of all
    /// values (the mean of equal chunk means is that mean, whatever the count) and its
    /// count times `ranks` times their variance. `ranks` 1 restores the one-process op.
    pub fn set_ranks(&self, gpu: &Gpu, ranks: usize) {
        if self.mode != BnMode::Train {
            return;
        }
        let m = self.shape.per_channel() as f64 * ranks.max(1) as f64;
        let mut p = self.params;
        p.inv_m = (1.0 / m) as f32;
        p.unbias = if m > 1.0 { (m / (m - 1.0)) as f32 } else { 1.0 };
        gpu.queue
            .write_buffer(&self.launches[1].params, 0, bytemuck::bytes_of(&p));
    }
}

/// Length of a train-mode forward's partials: a (mean, M2) pair per chunk and channel.
pub fn stats_partials_len(shape: BnShape) -> usize {
    let chunks = shape.per_channel().div_ceil(CHUNK);
    2 * shape.c * chunks
}

/// Values in chunk `k` of a channel of `m`.
fn chunk_len(m: usize, k: usize) -> usize {
    CHUNK.min(m - k * CHUNK)
}

/// Synchronised BN, forward: replaces this rank's `partials` (of a train-mode forward of
/// `shape`, laid out `[(ch·chunks + chunk)·2 + {0: mean, 1: M2}]`) by partials from which a
/// finalize kernel counting `ranks·n·hw` values ([`BatchNorm2d::set_ranks`]) computes the
/// statistics of all ranks' values together: every chunk gets the mean of all values and
/// M2 = ranks · its count · their variance.
///
/// `gather` must turn a `ranks × 3c` table in which only this rank's row is filled into
/// the whole table, every rank's row (a sum over the ranks, as [`crate::dist::Comm::sum_f64`]
/// gives). The chunks, then the ranks' rows, are combined in order in f64 (Chan's pairwise
/// update of mean and squared deviations), so every rank computes the same statistics.
pub fn combine_stats(
    shape: BnShape,
    rank: usize,
    ranks: usize,
    partials: &mut [f32],
    gather: &mut dyn FnMut(&mut [f64]),
) {
    let c = shape.c;
    let m = shape.per_channel();
    let chunks = m.div_ceil(CHUNK);
    if partials.len() != stats_partials_len(shape) || rank >= ranks {
        return;
    }
    // Merges (count, mean, M2) into the running triple.
    fn merge(acc: &mut (f64, f64, f64), n: f64, mean: f64, m2: f64) {
        let total = acc.0 + n;
        if total == 0.0 {
            return;
        }
        let delta = mean - acc.1;
        acc.1 += delta * n / total;
        acc.2 += m2 + delta * delta * acc.0 * n / total;
        acc.0 = total;
    }
    let mut table = vec![0.0f64; ranks * 3 * c];
    for ch in 0..c {
        let mut acc = (0.0, 0.0, 0.0);
        for k in 0..chunks {
            let o = (ch * chunks + k) * 2;
            let n = chunk_len(m, k) as f64;
            merge(&mut acc, n, partials[o] as f64, partials[o + 1] as f64);
        }
        let row = &mut table[(rank * c + ch) * 3..][..3];
        row.copy_from_slice(&[acc.0, acc.1, acc.2]);
    }
    gather(&mut table);
    for ch in 0..c {
        let mut acc = (0.0, 0.0, 0.0);
        for r in 0..ranks {
            let row = &table[(r * c + ch) * 3..][..3];
            merge(&mut acc, row[0], row[1], row[2]);
        }
        let var = if acc.0 > 0.0 {
            (acc.2 / acc.0).max(0.0)
        } else {
            0.0
        };
        for k in 0..chunks {
            let o = (ch * chunks + k) * 2;
            partials[o] = acc.1 as f32;
            partials[o + 1] = (ranks as f64 * chunk_len(m, k) as f64 * var) as f32;
        }
    }
}

/// Train-mode batch-norm backward: `(x, dy, gamma, saved_mean, saved_invstd)` →
/// `(dx, dgamma, dbeta)`, all overwritten.
#[derive(Debug)]
pub struct BatchNorm2dBackward {
    pub shape: BnShape,
    launches: [Launch; 3],
    partials: Tensor,
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
            partials: part,
        })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        for l in &self.launches {
            l.record(rec);
        }
    }

    /// The partial sums of Σdy and Σdy·x̂ (`bn_backward_partial`), the first part of
    /// [`BatchNorm2dBackward::record`].
    pub fn record_partial<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.launches[0].record(rec);
    }

    /// The rest of [`BatchNorm2dBackward::record`].
    pub fn record_rest<'a>(&'a self, rec: &mut Recorder<'a>) {
        for l in &self.launches[1..] {
            l.record(rec);
        }
    }

    /// The partial sums the finalize kernel adds up. Synchronised BN replaces them by their
    /// mean over the ranks (every rank's loss is its own part's mean, so the mean of the
    /// ranks' sums is the whole batch's sum for the batch's mean loss): dγ and dβ are then
    /// the mean over ranks that the gradient all-reduce keeps, and dx, whose kernel divides
    /// by this rank's `n·hw`, gets the whole batch's Σdy/M and Σdy·x̂/M.
    pub fn partials(&self) -> &Tensor {
        &self.partials
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The partials `bn_stats_partial` writes for `x` (`[n, c, hw]`): each chunk's mean
    /// and M2, in f64 then rounded.
    fn partials(x: &[f32], s: BnShape) -> Vec<f32> {
        let m = s.per_channel();
        let chunks = m.div_ceil(CHUNK);
        let mut p = vec![0.0f32; stats_partials_len(s)];
        for ch in 0..s.c {
            for k in 0..chunks {
                let v: Vec<f64> = (k * CHUNK..k * CHUNK + chunk_len(m, k))
                    .map(|i| x[(i / s.hw * s.c + ch) * s.hw + i % s.hw] as f64)
                    .collect();
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                let m2 = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>();
                p[(ch * chunks + k) * 2] = mean as f32;
                p[(ch * chunks + k) * 2 + 1] = m2 as f32;
            }
        }
        p
    }

    #[test]
    fn combined_partials_give_the_whole_batch_statistics() {
        // Two ranks of 3 images, 2 channels of 1500 values (chunks: 2 per rank), values
        // with a large offset and different per-rank means.
        let s = BnShape::new(3, 2, 1500);
        let x: Vec<Vec<f32>> = (0..2)
            .map(|r| {
                (0..s.len())
                    .map(|i| 100.0 + r as f32 * 0.7 + ((i * 7919 + r * 31) % 1000) as f32 / 300.0)
                    .collect()
            })
            .collect();
        let mut rows = vec![0.0f64; 2 * 3 * s.c];
        let mut parts: Vec<Vec<f32>> = x.iter().map(|x| partials(x, s)).collect();
        for (r, p) in parts.iter().enumerate() {
            let mut q = p.clone();
            combine_stats(s, r, 2, &mut q, &mut |t| {
                for (a, b) in rows.iter_mut().zip(t.iter()) {
                    *a += *b;
                }
            });
        }
        let chunks = s.per_channel().div_ceil(CHUNK);
        let m = 2.0 * s.per_channel() as f64;
        for (r, p) in parts.iter_mut().enumerate() {
            combine_stats(s, r, 2, p, &mut |t| t.copy_from_slice(&rows));
            for ch in 0..s.c {
                let all: Vec<f64> = x
                    .iter()
                    .flat_map(|x| {
                        (0..s.per_channel())
                            .map(move |i| x[(i / s.hw * s.c + ch) * s.hw + i % s.hw] as f64)
                    })
                    .collect();
                let mean = all.iter().sum::<f64>() / m;
                let var = all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m;
                // What the finalize kernel computes from the partials (Chan's merge of
                // the chunks, the variance over every rank's values).
                let per = s.per_channel();
                let at = |k: usize, j: usize| p[(ch * chunks + k) * 2 + j] as f64;
                let n = |k: usize| chunk_len(per, k) as f64;
                let got_mean = at(0, 0)
                    + (0..chunks)
                        .map(|k| n(k) * (at(k, 0) - at(0, 0)))
                        .sum::<f64>()
                        / per as f64;
                let got_var = (0..chunks)
                    .map(|k| at(k, 1) + n(k) * (at(k, 0) - got_mean).powi(2))
                    .sum::<f64>()
                    / m;
                assert!(
                    (got_mean - mean).abs() < 1e-5,
                    "rank {r} ch {ch}: mean {got_mean} vs {mean}"
                );
                assert!(
                    (got_var - var).abs() < 1e-5 * var,
                    "rank {r} ch {ch}: var {got_var} vs {var}"
                );
            }
        }
    }
}
