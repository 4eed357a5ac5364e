//! Softmax cross-entropy with label smoothing (PyTorch's `F.cross_entropy(logits, y,
//! label_smoothing = eps)`, mean reduction), in two kernels:
//!
//! 1. `softmax_xent_rows`: one thread per row: log-sum-exp, the row's loss, whether its
//!    argmax (first maximum on ties) is the label, and `dlogits = (softmax - target) / n`;
//!    per-row loss and hit go to a scratch tensor.
//! 2. `softmax_xent_reduce`: one workgroup sums the rows in a fixed order (strided per
//!    thread, then a tree in workgroup memory): mean loss and the number of hits.
//!
//! A label `>= classes` cannot be reported from a kernel: its row's loss is NaN, so the mean
//! loss is NaN and training stops on it.

use super::elementwise::{check_len, Launch};
use super::{to_u32, Binding, KernelSpec, Recorder, Tensor};
use crate::gpu::{Gpu, GpuError};

static ROWS: KernelSpec = KernelSpec {
    id: "softmax_xent_rows",
    source: include_str!("../../../shaders/softmax_xent_rows.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadWrite,
        Binding::ReadWrite,
    ],
};

static REDUCE: KernelSpec = KernelSpec {
    id: "softmax_xent_reduce",
    source: include_str!("../../../shaders/softmax_xent_reduce.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadWrite,
        Binding::ReadWrite,
    ],
};

/// `struct Params` of both shaders.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LossParams {
    n: u32,
    classes: u32,
    eps: f32,
    inv_n: f32,
}

/// Loss, gradient and accuracy count of one batch of `[n, classes]` logits.
#[derive(Debug)]
pub struct SoftmaxCrossEntropy {
    pub n: usize,
    pub classes: usize,
    rows: Launch,
    reduce: Launch,
    _scratch: Tensor,
}

impl SoftmaxCrossEntropy {
    /// `logits` `[n, classes]` f32, `labels` `[n]` u32; outputs (overwritten): `dlogits`
    /// `[n, classes]` = d(mean loss)/d(logits), `loss` (1 element) = mean loss, `correct`
    /// (1 element) = number of rows whose argmax equals the label, as f32. `eps` is the label
    /// smoothing in [0, 1].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        n: usize,
        classes: usize,
        logits: &Tensor,
        labels: &Tensor,
        dlogits: &Tensor,
        loss: &Tensor,
        correct: &Tensor,
        eps: f32,
    ) -> Result<SoftmaxCrossEntropy, GpuError> {
        let op = "softmax_cross_entropy";
        if n == 0 || classes == 0 {
            return Err(GpuError::Shape(format!(
                "{op}: n = {n} and classes = {classes} must be positive"
            )));
        }
        if !(0.0..=1.0).contains(&eps) {
            return Err(GpuError::Shape(format!(
                "{op}: label smoothing {eps} is outside [0, 1]"
            )));
        }
        let total = n
            .checked_mul(classes)
            .ok_or_else(|| GpuError::Shape(format!("{op}: n × classes overflows")))?;
        check_len(op, "logits", logits, total)?;
        check_len(op, "labels", labels, n)?;
        check_len(op, "dlogits", dlogits, total)?;
        check_len(op, "loss", loss, 1)?;
        check_len(op, "correct", correct, 1)?;
        to_u32(total, &format!("{op} logits length"))?;
        let params = LossParams {
            n: to_u32(n, "n")?,
            classes: to_u32(classes, "classes")?,
            eps,
            inv_n: 1.0 / n as f32,
        };
        let scratch = Tensor::zeros(gpu, 2 * n, "softmax_xent rows")?;
        let rows = Launch::flat(
            gpu,
            &ROWS,
            &params,
            &[
                &logits.buffer,
                &labels.buffer,
                &dlogits.buffer,
                &scratch.buffer,
            ],
            n,
        )?;
        let reduce = Launch::new(
            gpu,
            &REDUCE,
            &params,
            &[&scratch.buffer, &loss.buffer, &correct.buffer],
            1,
            false,
        )?;
        Ok(SoftmaxCrossEntropy {
            n,
            classes,
            rows,
            reduce,
            _scratch: scratch,
        })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.rows.record(rec);
        self.reduce.record(rec);
    }
}

/// Every pipeline of this module ([`super::pipelines`]).
pub(super) fn pipelines() -> Vec<super::PipelineEntry> {
    [&ROWS, &REDUCE]
        .into_iter()
        .map(super::PipelineEntry::spec)
        .collect()
}
