//! The kernel ops the executor records, behind one object-safe trait.

use crate::gpu::GpuError;
use crate::kernels::conv::{
    Conv2dBackwardBias, Conv2dBackwardData, Conv2dBackwardWeight, Conv2dForward,
};
use crate::kernels::elementwise::{Add, Axpy, Relu, ReluBackward};
use crate::kernels::gemm::Gemm;
use crate::kernels::norm::{BatchNorm2d, BatchNorm2dBackward};
use crate::kernels::Recorder;

/// Anything that appends its dispatches to a [`Recorder`].
pub(crate) trait Record: Send + Sync {
    fn record<'a>(&'a self, rec: &mut Recorder<'a>);
}

macro_rules! impl_record {
    ($($t:ty),* $(,)?) => {
        $(impl Record for $t {
            fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
                <$t>::record(self, rec)
            }
        })*
    };
}

impl_record!(
    Gemm,
    Conv2dForward,
    Conv2dBackwardData,
    Conv2dBackwardWeight,
    Conv2dBackwardBias,
    Relu,
    ReluBackward,
    Add,
    Axpy,
    crate::kernels::loss::SoftmaxCrossEntropy,
    BatchNorm2d,
    BatchNorm2dBackward,
    crate::kernels::pool::MaxPool2d,
    crate::kernels::pool::MaxPool2dBackward,
    crate::kernels::pool::AvgPool2d,
    crate::kernels::pool::AvgPool2dBackward,
    crate::kernels::pool::GlobalAvgPool,
    crate::kernels::pool::GlobalAvgPoolBackward,
    crate::kernels::lsq::LsqQuantize,
    crate::kernels::lsq::LsqBackward,
);

/// One entry of an op list: a kernel, or a buffer copy done by the encoder.
pub(crate) enum Step {
    Op(Box<dyn Record>),
    /// A train-mode BN forward: with synchronised BN the submission ends after its partial
    /// sums, which are combined over the ranks before the rest runs.
    BnTrain(Box<BatchNorm2d>),
    /// A BN backward: the same, for its partial sums of dy and dy·x̂.
    BnBackward(Box<BatchNorm2dBackward>),
    /// Copy tensor `.0` into tensor `.1` (ids into the network's tensor table).
    Copy(usize, usize),
    /// Quantization-aware networks: one op list per bit-width variant of quantized layer
    /// `slot`; the step records the variant the current selection names (see `quant`).
    Pick {
        slot: usize,
        variants: Vec<Vec<Step>>,
    },
}

impl Step {
    pub(crate) fn op(r: impl Record + 'static) -> Step {
        Step::Op(Box::new(r))
    }

    /// Calls `f` on every train-mode BN forward in this entry (every variant of a pick).
    pub(crate) fn each_bn_train(&self, f: &mut dyn FnMut(&BatchNorm2d)) {
        match self {
            Step::BnTrain(op) => f(op),
            Step::Pick { variants, .. } => {
                for s in variants.iter().flatten() {
                    s.each_bn_train(f);
                }
            }
            _ => {}
        }
    }

    /// The op lists of a node's variants as one entry: a [`Step::Pick`] on quantized layer
    /// `slot`; without a slot (one variant, always recorded) the variant's only op itself
    /// when it is a single op, else a `Pick` that falls back to its first variant.
    pub(crate) fn choice(slot: Option<usize>, mut variants: Vec<Vec<Step>>) -> Step {
        match slot {
            None if variants.len() == 1 && variants[0].len() == 1 => variants.remove(0).remove(0),
            _ => Step::Pick {
                slot: slot.unwrap_or(usize::MAX),
                variants,
            },
        }
    }
}

/// Build an op or name the graph node it was for.
pub(crate) fn at<T>(node: &str, r: Result<T, GpuError>) -> Result<T, GpuError> {
    r.map_err(|e| match e {
        GpuError::Shape(m) => GpuError::Shape(format!("node '{node}': {m}")),
        other => other,
    })
}
