//! SGD over one parameter tensor (`shaders/sgd.wgsl`), `torch.optim.SGD` semantics with
//! dampening 0, exactly as `reference::sgd_step`: per element
//! ```text
//! g = clamp(g, -clip, clip)        (if clip)
//! d = g + weight_decay · p
//! buf = momentum · buf + d         (if momentum ≠ 0)
//! d = nesterov ? d + momentum · buf : buf
//! p -= lr · d
//! ```
//! The momentum buffer must start zeroed (which equals PyTorch's `buf = d` on the first step).
//! The learning rate changes per step: [`Sgd::set_lr`] rewrites the params uniform, which
//! lands before the next submission.

use super::elementwise::{check_len, Launch};
use super::{to_u32, write_uniform, Binding, KernelSpec, Recorder, Tensor};
use crate::gpu::{Gpu, GpuError};

static SGD: KernelSpec = KernelSpec {
    id: "sgd",
    source: include_str!("../../../shaders/sgd.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadWrite,
        Binding::ReadWrite,
    ],
};

/// Fixed hyper-parameters of one parameter tensor's SGD (the lr is set per step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
    /// Clip each gradient element to `±clip` before weight decay; `None` = no clipping.
    pub clip: Option<f32>,
}

/// `struct Params` of `shaders/sgd.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SgdParams {
    len: u32,
    /// bit 0: momentum ≠ 0, bit 1: nesterov, bit 2: clip.
    flags: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    clip: f32,
    _pad0: u32,
    _pad1: u32,
}

/// One SGD step of `param` from `grad`, with its own `momentum_buf` (same length, zeroed at
/// the start of training). Built once; [`Sgd::set_lr`] before each submission that changes it.
#[derive(Debug)]
pub struct Sgd {
    pub config: SgdConfig,
    launch: Launch,
    params: SgdParams,
}

impl Sgd {
    /// The learning rate starts at 0: call [`Sgd::set_lr`] before the first step.
    pub fn new(
        gpu: &Gpu,
        param: &Tensor,
        grad: &Tensor,
        momentum_buf: &Tensor,
        config: SgdConfig,
    ) -> Result<Sgd, GpuError> {
        let op = "sgd";
        check_len(op, "grad", grad, param.len())?;
        check_len(op, "momentum_buf", momentum_buf, param.len())?;
        let finite = |v: f32, what: &str| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(GpuError::Shape(format!(
                    "{op}: {what} {v} must be finite and non-negative"
                )))
            }
        };
        finite(config.momentum, "momentum")?;
        finite(config.weight_decay, "weight_decay")?;
        if let Some(c) = config.clip {
            finite(c, "clip")?;
        }
        let params = SgdParams {
            len: to_u32(param.len(), "sgd length")?,
            flags: u32::from(config.momentum != 0.0)
                | (u32::from(config.nesterov) << 1)
                | (u32::from(config.clip.is_some()) << 2),
            lr: 0.0,
            momentum: config.momentum,
            weight_decay: config.weight_decay,
            clip: config.clip.unwrap_or(0.0),
            _pad0: 0,
            _pad1: 0,
        };
        let launch = Launch::flat(
            gpu,
            &SGD,
            &params,
            &[&grad.buffer, &param.buffer, &momentum_buf.buffer],
            param.len(),
        )?;
        Ok(Sgd {
            config,
            launch,
            params,
        })
    }

    /// Use `lr` from the next submission on.
    pub fn set_lr(&mut self, gpu: &Gpu, lr: f32) {
        self.params.lr = lr;
        write_uniform(gpu, &self.launch.params, &self.params);
    }

    /// The learning rate the next submission uses.
    pub fn lr(&self) -> f32 {
        self.params.lr
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.launch.record(rec);
    }
}

/// Every pipeline of this module ([`super::pipelines`]).
pub(super) fn pipelines() -> Vec<super::PipelineEntry> {
    vec![super::PipelineEntry::spec(&SGD)]
}
