//! conv2d kernels: forward, backward data, backward weight and backward bias. NCHW, weight
//! `[c_out, c_in / groups, kh, kw]`; stride, padding and groups (depthwise included) as in
//! [`Conv2dShape`]. Forward and backward data come as a 64×64-tiled implicit GEMM
//! (`conv2d_forward_gemm.wgsl`, `conv2d_backward_data_gemm.wgsl`) and as a direct kernel
//! (`conv2d_forward.wgsl`, `conv2d_backward_data.wgsl`) for depthwise / few channels; see
//! [`ConvAlgo`]. Backward weight and bias reduce one weight / channel per workgroup.
//!
//! Forward and backward weight can quantize their input on load ([`QuantX`]): the LSQ fake
//! quantization of `x` is applied to every value the kernel reads, so no quantized copy of
//! `x` is written (the `*+qx` pipelines: the same shaders with `override QUANT_X = true`).
//!
//! Each op checks its tensor lengths against the shape, writes its params uniform once and
//! builds its [`Dispatch`] once; `record` appends it to a [`Recorder`].

use std::sync::Arc;

use super::lsq::{LsqConfig, STEP_MAX, STEP_MIN};
use super::{
    grid, pipeline, specialized_pipeline, to_u32, uniform, Binding, Dispatch, KernelSpec, Pipeline,
    Recorder, Specialization, Tensor,
};
use crate::gpu::{DeviceCaps, Gpu, GpuError};
use crate::shapes::Conv2dShape;

static FORWARD: KernelSpec = KernelSpec {
    id: "conv2d_forward",
    source: include_str!("../../../shaders/conv2d_forward.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadWrite,
        // steps (read only when the input is quantized on load)
        Binding::ReadOnly,
    ],
};

static FORWARD_GEMM: KernelSpec = KernelSpec {
    id: "conv2d_forward_gemm",
    source: include_str!("../../../shaders/conv2d_forward_gemm.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadWrite,
        // steps (read only when the input is quantized on load)
        Binding::ReadOnly,
    ],
};

static BACKWARD_DATA_GEMM: KernelSpec = KernelSpec {
    id: "conv2d_backward_data_gemm",
    source: include_str!("../../../shaders/conv2d_backward_data_gemm.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadWrite,
    ],
};

static BACKWARD_DATA: KernelSpec = KernelSpec {
    id: "conv2d_backward_data",
    source: include_str!("../../../shaders/conv2d_backward_data.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadWrite,
    ],
};

static BACKWARD_WEIGHT: KernelSpec = KernelSpec {
    id: "conv2d_backward_weight",
    source: include_str!("../../../shaders/conv2d_backward_weight.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadWrite,
        // steps (read only when the input is quantized on load)
        Binding::ReadOnly,
    ],
};

static FORWARD_BLOCKED: KernelSpec = KernelSpec {
    id: "conv2d_forward_blocked",
    source: include_str!("../../../shaders/conv2d_forward_blocked.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadWrite,
        // steps (read only when the input is quantized on load)
        Binding::ReadOnly,
    ],
};

static BACKWARD_DATA_BLOCKED: KernelSpec = KernelSpec {
    id: "conv2d_backward_data_blocked",
    source: include_str!("../../../shaders/conv2d_backward_data_blocked.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadWrite,
    ],
};

static FORWARD_BCAST: KernelSpec = KernelSpec {
    id: "conv2d_forward_bcast",
    source: include_str!("../../../shaders/conv2d_forward_bcast.wgsl"),
    entry: "main",
    bindings: FORWARD_BLOCKED.bindings,
};

static BACKWARD_DATA_BCAST: KernelSpec = KernelSpec {
    id: "conv2d_backward_data_bcast",
    source: include_str!("../../../shaders/conv2d_backward_data_bcast.wgsl"),
    entry: "main",
    bindings: BACKWARD_DATA_BLOCKED.bindings,
};

static BACKWARD_WEIGHT_BCAST: KernelSpec = KernelSpec {
    id: "conv2d_backward_weight_bcast",
    source: include_str!("../../../shaders/conv2d_backward_weight_bcast.wgsl"),
    entry: "main",
    bindings: BACKWARD_WEIGHT_BLOCKED.bindings,
};

static BACKWARD_WEIGHT_BLOCKED: KernelSpec = KernelSpec {
    id: "conv2d_backward_weight_blocked",
    source: include_str!("../../../shaders/conv2d_backward_weight_blocked.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadWrite,
        // steps (read only when the input is quantized on load)
        Binding::ReadOnly,
    ],
};

/// `shaders/gemm.wgsl` under its own id: the batched GEMM of [`ConvAlgo::Pointwise`], with
/// the weight shared by every image (A stride 0), which [`super::gemm::Gemm`] does not offer.
static POINTWISE_GEMM: KernelSpec = KernelSpec {
    id: "conv2d_pointwise_gemm",
    source: include_str!("../../../shaders/gemm.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadWrite,
    ],
};

static BACKWARD_BIAS: KernelSpec = KernelSpec {
    id: "conv2d_backward_bias",
    source: include_str!("../../../shaders/conv2d_backward_bias.wgsl"),
    entry: "main",
    bindings: &[Binding::Uniform, Binding::ReadOnly, Binding::ReadWrite],
};

/// Constants of the quantize-on-load pipelines (`override`s of the conv shaders).
const QX: &[(&str, f64)] = &[
    ("QUANT_X", 1.0),
    ("STEP_MIN", STEP_MIN as f64),
    ("STEP_MAX", STEP_MAX as f64),
];

static FORWARD_QX: Specialization = Specialization {
    id: "conv2d_forward+qx",
    spec: &FORWARD,
    constants: QX,
};
static FORWARD_GEMM_QX: Specialization = Specialization {
    id: "conv2d_forward_gemm+qx",
    spec: &FORWARD_GEMM,
    constants: QX,
};
static FORWARD_BLOCKED_QX: Specialization = Specialization {
    id: "conv2d_forward_blocked+qx",
    spec: &FORWARD_BLOCKED,
    constants: QX,
};
static FORWARD_BCAST_QX: Specialization = Specialization {
    id: "conv2d_forward_bcast+qx",
    spec: &FORWARD_BCAST,
    constants: QX,
};
static BACKWARD_WEIGHT_BCAST_QX: Specialization = Specialization {
    id: "conv2d_backward_weight_bcast+qx",
    spec: &BACKWARD_WEIGHT_BCAST,
    constants: QX,
};
static BACKWARD_WEIGHT_QX: Specialization = Specialization {
    id: "conv2d_backward_weight+qx",
    spec: &BACKWARD_WEIGHT,
    constants: QX,
};
static BACKWARD_WEIGHT_BLOCKED_QX: Specialization = Specialization {
    id: "conv2d_backward_weight_blocked+qx",
    spec: &BACKWARD_WEIGHT_BLOCKED,
    constants: QX,
};

/// Quantize-on-load of a conv's input `x` (forward and backward weight): every value of `x`
/// the kernel reads is replaced by `round(clamp(x / s, Qn, Qp)) · s` with
/// `s = clamp(steps[config.index], 1e-5, 1)` and `(Qn, Qp)` of `config` — the formula and
/// op order of [`LsqQuantize`](super::lsq::LsqQuantize), so the conv sees bit for bit what it
/// would read from an `LsqQuantize` output. Zero padding stays zero (it quantizes to 0).
#[derive(Debug, Clone, Copy)]
pub struct QuantX<'a> {
    pub steps: &'a Tensor,
    pub config: LsqConfig,
}

impl QuantX<'_> {
    /// Its bit-width is valid and its step index inside the step tensor; `what` names the
    /// quantized operand ("input", "weight") in the error.
    pub(super) fn check(&self, op: &str, what: &str) -> Result<(), GpuError> {
        self.config
            .range()
            .map_err(|e| GpuError::Shape(format!("{op}: {what} quantizer: {e}")))?;
        if self.config.index >= self.steps.len() {
            return Err(GpuError::Shape(format!(
                "{op}: {what} step index {} outside a {}-element step tensor",
                self.config.index,
                self.steps.len()
            )));
        }
        Ok(())
    }

    /// `p` with the quantizer's step index, bits and sign (flag bit 1) filled in.
    fn apply(&self, op: &str, p: ConvParams) -> Result<ConvParams, GpuError> {
        self.check(op, "input")?;
        Ok(ConvParams {
            flags: p.flags | if self.config.signed { 2 } else { 0 },
            q_step: to_u32(self.config.index, "step index")?,
            q_bits: self.config.bits,
            ..p
        })
    }
}

/// The plain pipeline of `spec`, or its quantize-on-load specialization `qx`.
fn conv_pipeline(
    gpu: &Gpu,
    spec: &'static KernelSpec,
    qx: &'static Specialization,
    quant: bool,
) -> Result<Arc<Pipeline>, GpuError> {
    if quant {
        specialized_pipeline(gpu, qx)
    } else {
        pipeline(gpu, spec)
    }
}

/// Invocations per workgroup of the element-wise conv kernels.
const WG: u64 = 256;
/// Output tile edge of the implicit-GEMM kernels.
const TILE: usize = 64;
/// Invocations per workgroup of the register-blocked (`*_blocked.wgsl`) kernels.
const WG_BLOCKED: u64 = 64;

/// How a convolution is computed. All give the same result up to f32 rounding; the tests run
/// every one on every shape. For backward weight, `Blocked` / `Broadcast` select their own
/// kernels and `Direct` / `ImplicitGemm` the one-workgroup-per-weight reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvAlgo {
    /// The built-in per-shape rule (a network's [`ConvRule`] may force another algorithm
    /// in its place: `LIMPQ_CONV_ALGO`, `--conv-algo`). On a software (CPU) adapter such as
    /// lavapipe: `Broadcast` where it has subgroups of 8 ([`Gpu::subgroup8`]), else
    /// `Blocked` (see there). Elsewhere:
    /// implicit GEMM when the GEMM's row count (output channels per group for forward, input
    /// channels per group for backward data) is at least 32 and its grid fits, else direct;
    /// backward weight takes the per-weight reduction.
    #[default]
    Auto,
    /// One invocation per output element: best for depthwise and tiny channel counts.
    Direct,
    /// 64×64-tiled implicit GEMM (`conv2d_*_gemm.wgsl`), im2col gathered on the fly.
    ImplicitGemm,
    /// Register-blocked direct kernels (`conv2d_*_blocked.wgsl`): each invocation computes
    /// 4 channels × 4 outputs, with no workgroup memory and no barriers, 64 invocations per
    /// workgroup. Made for llvmpipe, which runs a workgroup's invocations as a loop, executes
    /// each buffer load lane by lane, and turns barriers into per-invocation coroutine
    /// switches; see docs/ENGINE.md "Software adapter".
    Blocked,
    /// Subgroup-broadcast direct kernels (`conv2d_*_bcast.wgsl`) for CPU adapters with
    /// subgroups of exactly 8 ([`Gpu::subgroup8`]; elsewhere `GpuError::Unsupported`): the
    /// invocations of a subgroup share their 8 channels, each loads one of the 8 weights
    /// (backward weight: a quarter of the 32 inputs) and a subgroup broadcast hands it to
    /// the others — 32 products per 5 loads against `Blocked`'s 16 per 8.
    Broadcast,
    /// Forward only, opt-in (never chosen by the built-in rule): f16 operands, f32
    /// accumulation — im2col into f16 and the f16 / tensor-core GEMM (`kernels::conv_f16`,
    /// the best `HalfKind` of the device). Groups 1, no bias, no input quantization: asked
    /// for by name on another conv, `GpuError::Unsupported`. As the whole-network override
    /// (`LIMPQ_CONV_ALGO=f16gemm`) it applies to every forward conv it supports, and every
    /// other conv op (backward ones, grouped, biased or input-quantized forward convs) gets
    /// `Auto`'s pick; backward ops given it by name resolve it as `Auto` too.
    F16Gemm,
    /// Opt-in (never chosen by `Auto`, not an override value), 1×1 stride-1 pad-0 groups-1
    /// convs only: the conv is a plain GEMM per image on NCHW data, run as one batched
    /// `gemm.wgsl` dispatch with the weight shared by all images. Forward
    /// `y[n] = W · x[n]` (no bias, no input quantization), backward data
    /// `dx[n] (+)= Wᵀ · dy[n]`. Backward weight, other shapes, bias or quantization:
    /// `GpuError::Unsupported`.
    Pointwise,
}

impl ConvAlgo {
    /// The values [`ConvAlgo::from_str`](std::str::FromStr) accepts for a whole-network
    /// override (`LIMPQ_CONV_ALGO`, `--conv-algo`).
    pub const OVERRIDE_VALUES: &'static str = "auto, direct, gemm, blocked, broadcast, f16gemm";

    /// The short name (`auto`, `direct`, `gemm`, `blocked`, `broadcast`, `f16gemm`), as
    /// parsed.
    pub fn name(self) -> &'static str {
        match self {
            ConvAlgo::Auto => "auto",
            ConvAlgo::Direct => "direct",
            ConvAlgo::ImplicitGemm => "gemm",
            ConvAlgo::Blocked => "blocked",
            ConvAlgo::Broadcast => "broadcast",
            ConvAlgo::F16Gemm => "f16gemm",
            ConvAlgo::Pointwise => "pointwise",
        }
    }
}

impl std::fmt::Display for ConvAlgo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ConvAlgo {
    type Err = String;

    /// `auto`, `direct`, `gemm` (or `implicit-gemm`), `blocked`, `broadcast`, `f16gemm` (or
    /// `f16-gemm`);
    /// case-insensitive, trimmed. `pointwise` is refused: it is opt-in per op and covers only
    /// 1×1 shapes, not a whole-network choice.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ConvAlgo::Auto),
            "direct" => Ok(ConvAlgo::Direct),
            "gemm" | "implicit-gemm" | "implicit_gemm" => Ok(ConvAlgo::ImplicitGemm),
            "blocked" => Ok(ConvAlgo::Blocked),
            "broadcast" => Ok(ConvAlgo::Broadcast),
            "f16gemm" | "f16-gemm" | "f16_gemm" => Ok(ConvAlgo::F16Gemm),
            other => Err(format!(
                "unknown conv algorithm {other:?} (allowed: {})",
                Self::OVERRIDE_VALUES
            )),
        }
    }
}

/// Environment variable of the whole-network conv override ([`ConvPolicy::FromEnv`]).
pub const CONV_ALGO_ENV: &str = "LIMPQ_CONV_ALGO";

/// What `ConvAlgo::Auto` should mean for every conv of a network, as asked for: a
/// whole-network override for comparisons (`LIMPQ_CONV_ALGO`, `--conv-algo`), or the
/// built-in per-shape rule. Carried by the engine's configuration and turned into a
/// [`ConvRule`] against the device when a network is built ([`ConvPolicy::rule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvPolicy {
    /// Whatever `LIMPQ_CONV_ALGO` says when the rule is made (unset or empty: `Auto`).
    #[default]
    FromEnv,
    /// This algorithm (`Auto`: the built-in per-shape rule), whatever the environment says.
    Force(ConvAlgo),
}

impl ConvPolicy {
    /// `Force(algo)` for a given value (a command-line flag), else [`ConvPolicy::FromEnv`].
    pub fn or_env(algo: Option<ConvAlgo>) -> Self {
        algo.map_or(ConvPolicy::FromEnv, ConvPolicy::Force)
    }

    /// The algorithm asked for: the forced one, else `LIMPQ_CONV_ALGO` (unset or empty =
    /// `Auto`). A value that does not parse, or `pointwise` (opt-in per op, not a
    /// whole-network choice), is a [`GpuError::InvalidOption`] naming it.
    pub fn algo(self) -> Result<ConvAlgo, GpuError> {
        let algo = match self {
            ConvPolicy::Force(a) => a,
            ConvPolicy::FromEnv => match std::env::var(CONV_ALGO_ENV) {
                Ok(v) if !v.trim().is_empty() => v.parse().map_err(|e: String| {
                    GpuError::InvalidOption(format!("{CONV_ALGO_ENV}={v:?}: {e}"))
                })?,
                Err(std::env::VarError::NotUnicode(v)) => {
                    return Err(GpuError::InvalidOption(format!(
                        "{CONV_ALGO_ENV}={v:?}: not text; give an algorithm name"
                    )))
                }
                _ => ConvAlgo::Auto,
            },
        };
        if algo == ConvAlgo::Pointwise {
            return Err(GpuError::InvalidOption(format!(
                "conv algorithm override {algo}: opt-in per op, not a whole-network choice \
                 (allowed: {})",
                ConvAlgo::OVERRIDE_VALUES
            )));
        }
        Ok(algo)
    }

    /// The policy on `gpu`: `f16gemm` needs [`Gpu::shader_f16`] and `broadcast`
    /// [`Gpu::subgroup8`]; without them (or for a value [`ConvPolicy::algo`] refuses) a
    /// [`GpuError::InvalidOption`] naming the override, the adapter and what it lacks.
    pub fn rule(self, gpu: &Gpu) -> Result<ConvRule, GpuError> {
        let auto = self.algo()?;
        let caps = gpu.caps();
        if auto == ConvAlgo::F16Gemm && !auto.allowed(&caps) {
            return Err(GpuError::InvalidOption(format!(
                "conv algorithm override f16gemm ({CONV_ALGO_ENV}): adapter {} was not given \
                 SHADER_F16 (not offered, or LIMPQ_NO_F16 set)",
                gpu.summary.name
            )));
        }
        if auto == ConvAlgo::Broadcast && !auto.allowed(&caps) {
            return Err(GpuError::InvalidOption(format!(
                "conv algorithm override broadcast ({CONV_ALGO_ENV}): adapter {} is not a CPU \
                 adapter with subgroups of exactly 8 given SUBGROUP (or LIMPQ_NO_SUBGROUP is \
                 set); use blocked",
                gpu.summary.name
            )));
        }
        Ok(ConvRule { auto })
    }
}

/// A [`ConvPolicy`] checked against one device: what `Auto` means for the convs one network
/// builds, and the constructors that apply it. The ops' own `Auto` is always the built-in
/// rule; an explicit algorithm given to an op is never overridden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvRule {
    auto: ConvAlgo,
}

impl ConvRule {
    /// No override: every op takes the built-in per-shape rule.
    pub const BUILT_IN: ConvRule = ConvRule {
        auto: ConvAlgo::Auto,
    };

    /// The override (`Auto`: none, the built-in rule).
    pub fn auto(self) -> ConvAlgo {
        self.auto
    }

    /// What an f32 conv op gets for `Auto`: the forced algorithm, or `Auto` (the built-in
    /// rule) when none is forced or the override is `f16gemm` (whose f16 path covers some
    /// forward convs only; the others take the built-in rule).
    pub fn f32_algo(self) -> ConvAlgo {
        match self.auto {
            ConvAlgo::F16Gemm => ConvAlgo::Auto,
            a => a,
        }
    }

    /// The f16 GEMM kind a forward conv uses under the whole-network f16 override
    /// (`f16gemm`): the device's best, or `None` when the override is off or the device has
    /// no f16 GEMM.
    pub fn f16_kind(self, gpu: &Gpu) -> Option<super::gemm_f16::HalfKind> {
        super::gemm_f16::HalfKind::best(gpu).filter(|_| self.auto == ConvAlgo::F16Gemm)
    }

    /// The algorithm a forward conv of shape `s` takes under this rule: `F16Gemm` when the
    /// f16 override covers it (groups 1, no bias, no input quantization, an im2col that
    /// fits the adapter's buffers), else [`ConvRule::f32_algo`].
    pub fn forward_algo(self, gpu: &Gpu, s: &Conv2dShape, bias: bool, quantized: bool) -> ConvAlgo {
        let im2col_fits = || Tensor::fits(gpu, super::conv_f16::Conv2dForwardHalf::scratch_len(s));
        if s.groups == 1 && !bias && !quantized && self.f16_kind(gpu).is_some() && im2col_fits() {
            ConvAlgo::F16Gemm
        } else {
            self.f32_algo()
        }
    }

    /// [`Conv2dForward::new`] under this rule.
    pub fn forward(
        self,
        gpu: &Gpu,
        shape: &Conv2dShape,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
    ) -> Result<Conv2dForward, GpuError> {
        self.forward_quant(gpu, shape, x, w, bias, y, None)
    }

    /// [`Conv2dForward::with_input_quant`] with `Auto` under this rule.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_quant(
        self,
        gpu: &Gpu,
        shape: &Conv2dShape,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
        quant: Option<QuantX>,
    ) -> Result<Conv2dForward, GpuError> {
        let algo = self.forward_algo(gpu, shape, bias.is_some(), quant.is_some());
        Conv2dForward::with_input_quant(gpu, shape, x, w, bias, y, algo, quant)
    }

    /// [`Conv2dBackwardData::new`] under this rule.
    pub fn backward_data(
        self,
        gpu: &Gpu,
        shape: &Conv2dShape,
        dy: &Tensor,
        w: &Tensor,
        dx: &Tensor,
        accumulate: bool,
    ) -> Result<Conv2dBackwardData, GpuError> {
        Conv2dBackwardData::with_algo(gpu, shape, dy, w, dx, accumulate, self.f32_algo())
    }

    /// [`Conv2dBackwardWeight::with_input_quant`] with `Auto` under this rule.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_weight(
        self,
        gpu: &Gpu,
        shape: &Conv2dShape,
        x: &Tensor,
        dy: &Tensor,
        dw: &Tensor,
        accumulate: bool,
        quant: Option<QuantX>,
    ) -> Result<Conv2dBackwardWeight, GpuError> {
        let algo = self.f32_algo();
        Conv2dBackwardWeight::with_input_quant(gpu, shape, x, dy, dw, accumulate, algo, quant)
    }

    /// A forward conv (no bias) under the whole-network f16 override, its im2col in the
    /// shared `scratch` (at least `Conv2dForwardHalf::scratch_len(shape)` words; ops recorded
    /// one after another can share one). With `codes` — the input quantizer applied on load
    /// and the quantizer of the fake-quantized weight `w` — a quantized layer's conv on f16
    /// operands holding the LSQ integer codes, exact: equal to
    /// [`Conv2dForward::with_input_quant`]'s result up to f32 summation
    /// ([`super::conv_f16::Conv2dForwardHalf::quantized`]); without, `x` and `w` rounded to
    /// f16. `Ok(None)` when the override is off, the device has no f16 GEMM, or the shape or
    /// bit-widths do not suit it: then build the f32 conv.
    #[allow(clippy::too_many_arguments)]
    pub fn f16_forward(
        self,
        gpu: &Gpu,
        shape: &Conv2dShape,
        x: &Tensor,
        w: &Tensor,
        y: &Tensor,
        codes: Option<(&QuantX, &QuantX)>,
        scratch: &Tensor,
    ) -> Result<Option<Conv2dForward>, GpuError> {
        use super::conv_f16::Conv2dForwardHalf;
        let Some(kind) = self.f16_kind(gpu) else {
            return Ok(None);
        };
        let exact = codes.is_none_or(|(qx, qw)| {
            Conv2dForwardHalf::codes_exact(qx) && Conv2dForwardHalf::codes_exact(qw)
        });
        if shape.groups != 1 || !exact {
            return Ok(None);
        }
        let half =
            Conv2dForwardHalf::with_scratch(gpu, shape, x, w, y, kind, codes, Some(scratch))?;
        Ok(Some(Conv2dForward {
            shape: *shape,
            algo: ConvAlgo::F16Gemm,
            quant: codes.map(|(qx, _)| qx.config),
            built: None,
            half: Some(half),
        }))
    }
}

impl ConvAlgo {
    /// Whether a device with `caps` can run this algorithm's kernels: `Broadcast` needs
    /// subgroups of 8 ([`DeviceCaps::subgroup8`]), `F16Gemm` f16 storage; the others run
    /// everywhere.
    pub fn allowed(self, caps: &DeviceCaps) -> bool {
        match self {
            ConvAlgo::Broadcast => caps.subgroup8,
            ConvAlgo::F16Gemm => caps.shader_f16,
            _ => true,
        }
    }

    /// What `Auto` may resolve to on a device with `caps`: the CPU kernel on a software
    /// adapter (`Broadcast` with subgroups of 8, else `Blocked`), else implicit GEMM or
    /// direct by shape.
    pub fn auto_choices(caps: &DeviceCaps) -> &'static [ConvAlgo] {
        if caps.cpu {
            if caps.subgroup8 {
                &[ConvAlgo::Broadcast]
            } else {
                &[ConvAlgo::Blocked]
            }
        } else {
            &[ConvAlgo::ImplicitGemm, ConvAlgo::Direct]
        }
    }
}

/// Whether `Auto` should mean a CPU kernel (`Broadcast` or `Blocked`) on this adapter (a CPU
/// / software adapter).
fn software(gpu: &Gpu) -> bool {
    gpu.caps().cpu
}

/// The CPU adapters' kernel: `Broadcast` where subgroups of 8 were given, else `Blocked`.
fn cpu_algo(gpu: &Gpu) -> ConvAlgo {
    ConvAlgo::auto_choices(&gpu.caps())[0]
}

/// `Broadcast` asked for on a device without subgroups of 8: the error.
fn check_broadcast(gpu: &Gpu, op: &str) -> Result<(), GpuError> {
    if ConvAlgo::Broadcast.allowed(&gpu.caps()) {
        return Ok(());
    }
    Err(GpuError::Unsupported(format!(
        "{op} (ConvAlgo::Broadcast): needs a CPU adapter with subgroups of exactly 8 and the \
         SUBGROUP feature ({} has not; LIMPQ_NO_SUBGROUP turns it off); use blocked",
        gpu.summary.name
    )))
}

/// Workgroups of a broadcast kernel: `blocks` invocations of 64 over x (and y), `layers`
/// independent channel / residue blocks over z.
fn bcast_groups(gpu: &Gpu, blocks: usize, layers: usize) -> Result<[u32; 3], GpuError> {
    let mut wg = blocked_groups(gpu, blocks)?;
    let max = gpu.limits.max_compute_workgroups_per_dimension;
    wg[2] = to_u32(layers.max(1), "broadcast kernel channel blocks")?;
    if wg[2] > max {
        return Err(GpuError::Shape(format!(
            "{} channel blocks exceed the {max} workgroups of a grid dimension",
            wg[2]
        )));
    }
    Ok(wg)
}

/// Workgroups of a blocked kernel with `blocks` invocations.
fn blocked_groups(gpu: &Gpu, blocks: usize) -> Result<[u32; 3], GpuError> {
    grid(gpu, (blocks as u64).div_ceil(WG_BLOCKED))
}

/// Invocations of a blocked kernel: `rows` · ⌈chans / 4⌉ · ⌈cols / 4⌉ · `outer`.
fn blocked_count(outer: usize, chans: usize, rows: usize, cols: usize) -> usize {
    outer * chans.div_ceil(4) * rows * cols.div_ceil(4)
}

/// Workgroups of an implicit GEMM with `rows` GEMM rows per group over `cols` columns.
fn gemm_groups(s: &Conv2dShape, rows: usize, cols: usize) -> Result<[u32; 3], GpuError> {
    Ok([
        to_u32(cols.div_ceil(TILE).max(1), "implicit GEMM column tiles")?,
        to_u32(rows.div_ceil(TILE).max(1), "implicit GEMM row tiles")?,
        to_u32(s.groups, "groups")?,
    ])
}

/// Resolve `Auto` for a GEMM with `rows` rows per group and the given grid; on a CPU
/// adapter the broadcast kernel unless its `bcast_layers` channel blocks pass a grid
/// dimension (a depthwise conv of 70000 channels), then the blocked one.
fn pick(
    gpu: &Gpu,
    algo: ConvAlgo,
    rows: usize,
    groups: Result<[u32; 3], GpuError>,
    bcast_layers: usize,
) -> ConvAlgo {
    let max = gpu.limits.max_compute_workgroups_per_dimension;
    match algo {
        ConvAlgo::Auto | ConvAlgo::F16Gemm if software(gpu) => match cpu_algo(gpu) {
            ConvAlgo::Broadcast if bcast_layers > max as usize => ConvAlgo::Blocked,
            a => a,
        },
        ConvAlgo::Auto | ConvAlgo::F16Gemm => match groups {
            Ok(g) if rows >= 32 && g.iter().all(|&d| d <= max) => ConvAlgo::ImplicitGemm,
            _ => ConvAlgo::Direct,
        },
        other => other,
    }
}

/// Must match `struct Params` in `shaders/gemm.wgsl` ([`ConvAlgo::Pointwise`]).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PointwiseParams {
    m: u32,
    n: u32,
    k: u32,
    /// Bit 0: A stored transposed.
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

/// `Unsupported` unless `s` is a 1×1, stride-1, pad-0, groups-1 conv.
fn pointwise_shape(s: &Conv2dShape, op: &str) -> Result<(), GpuError> {
    if (s.kh, s.kw, s.stride, s.pad, s.groups) == (1, 1, 1, 0, 1) {
        Ok(())
    } else {
        Err(GpuError::Unsupported(format!(
            "{op} (ConvAlgo::Pointwise): needs a 1×1 kernel, stride 1, pad 0, groups 1; got \
             {}×{}, stride {}, pad {}, groups {}",
            s.kh, s.kw, s.stride, s.pad, s.groups
        )))
    }
}

/// One batched GEMM over the `s.n` images: `out[n] (m×hw) = beta·out[n] + op(W) · inp[n]`
/// with `inp[n]` `k×hw` and W shared (stride 0); `trans_w`: W is stored `k×m`.
#[allow(clippy::too_many_arguments)]
fn pointwise_built(
    gpu: &Gpu,
    s: &Conv2dShape,
    m: usize,
    k: usize,
    trans_w: bool,
    w: &Tensor,
    inp: &Tensor,
    out: &Tensor,
    accumulate: bool,
) -> Result<Built, GpuError> {
    let hw = s.h * s.w;
    let p = PointwiseParams {
        m: to_u32(m, "pointwise m")?,
        n: to_u32(hw, "pointwise n")?,
        k: to_u32(k, "pointwise k")?,
        flags: u32::from(trans_w),
        alpha: 1.0,
        beta: if accumulate { 1.0 } else { 0.0 },
        batch: to_u32(s.n, "pointwise batch")?,
        _pad0: 0,
        stride_a: 0,
        stride_b: to_u32(k * hw, "pointwise input stride")?,
        stride_c: to_u32(m * hw, "pointwise output stride")?,
        _pad1: 0,
    };
    let groups = [
        to_u32(hw.div_ceil(TILE).max(1), "pointwise column tiles")?,
        to_u32(m.div_ceil(TILE).max(1), "pointwise row tiles")?,
        to_u32(s.n.max(1), "pointwise batch")?,
    ];
    let max = gpu.limits.max_compute_workgroups_per_dimension;
    if groups.iter().any(|&g| g > max) {
        return Err(GpuError::Shape(format!(
            "ConvAlgo::Pointwise {s:?}: grid {groups:?} exceeds {max} workgroups per dimension"
        )));
    }
    let pipe = pipeline(gpu, &POINTWISE_GEMM)?;
    let buf = uniform(gpu, &p, pipe.id);
    let dispatch = pipe.dispatch(gpu, &[&buf, &w.buffer, &inp.buffer, &out.buffer], groups)?;
    Ok(Built {
        dispatch,
        _params: buf,
        empty: s.n == 0 || m == 0 || hw == 0,
    })
}

/// Must match `struct Params` of `shaders/include/conv_params.wgsl` (every conv2d_*.wgsl
/// includes it).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ConvParams {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    groups: u32,
    h_out: u32,
    w_out: u32,
    /// Bit 0: bias (forward) / accumulate (backward); bit 1: the input quantizer is signed.
    flags: u32,
    total: u32,
    /// Quantize-on-load ([`QuantX`]): step index and bits; unused otherwise.
    q_step: u32,
    q_bits: u32,
}

/// Reject shapes the kernels cannot run (they would divide by zero or index out of bounds).
fn validate(s: &Conv2dShape, op: &str) -> Result<(), GpuError> {
    let bad = |why: String| Err(GpuError::Shape(format!("{op} {s:?}: {why}")));
    if s.groups == 0 || s.stride == 0 || s.kh == 0 || s.kw == 0 {
        return bad("groups, stride, kh and kw must be positive".into());
    }
    if s.c_in % s.groups != 0 || s.c_out % s.groups != 0 || s.c_in == 0 || s.c_out == 0 {
        return bad(format!(
            "c_in {} and c_out {} must be positive multiples of groups {}",
            s.c_in, s.c_out, s.groups
        ));
    }
    if s.h + 2 * s.pad < s.kh || s.w + 2 * s.pad < s.kw {
        return bad("kernel larger than the padded input".into());
    }
    for (what, v) in [
        ("input length", s.input_len()),
        ("output length", s.output_len()),
        ("weight length", s.weight_len()),
    ] {
        to_u32(v, &format!("{op} {what}"))?;
    }
    Ok(())
}

fn params(s: &Conv2dShape, flags: u32, total: usize, op: &str) -> Result<ConvParams, GpuError> {
    validate(s, op)?;
    Ok(ConvParams {
        n: to_u32(s.n, "n")?,
        c_in: to_u32(s.c_in, "c_in")?,
        h: to_u32(s.h, "h")?,
        w: to_u32(s.w, "w")?,
        c_out: to_u32(s.c_out, "c_out")?,
        kh: to_u32(s.kh, "kh")?,
        kw: to_u32(s.kw, "kw")?,
        stride: to_u32(s.stride, "stride")?,
        pad: to_u32(s.pad, "pad")?,
        groups: to_u32(s.groups, "groups")?,
        h_out: to_u32(s.h_out(), "h_out")?,
        w_out: to_u32(s.w_out(), "w_out")?,
        flags,
        total: to_u32(total, "total")?,
        q_step: 0,
        q_bits: 0,
    })
}

fn check_len(op: &str, name: &str, t: &Tensor, want: usize) -> Result<(), GpuError> {
    if t.len() == want {
        Ok(())
    } else {
        Err(GpuError::Shape(format!(
            "{op}: tensor {name} has {} elements, expected {want}",
            t.len()
        )))
    }
}

/// A built conv op: its dispatch and the uniform it reads. Nothing to record when the
/// output is empty.
#[derive(Debug)]
struct Built {
    dispatch: Dispatch,
    _params: wgpu::Buffer,
    empty: bool,
}

impl Built {
    fn new(
        gpu: &Gpu,
        spec: &'static KernelSpec,
        p: ConvParams,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Result<Built, GpuError> {
        Self::on(gpu, pipeline(gpu, spec)?.as_ref(), p, buffers, workgroups)
    }

    /// As [`Built::new`] on an already chosen pipeline.
    fn on(
        gpu: &Gpu,
        pipe: &Pipeline,
        p: ConvParams,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Result<Built, GpuError> {
        let buf = uniform(gpu, &p, pipe.id);
        let mut all = vec![&buf];
        all.extend_from_slice(buffers);
        let dispatch = pipe.dispatch(gpu, &all, workgroups)?;
        Ok(Built {
            dispatch,
            _params: buf,
            empty: p.total == 0,
        })
    }

    fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        if !self.empty {
            rec.dispatch(&self.dispatch);
        }
    }
}

/// `y = conv2d(x, w) + bias`, or `conv2d(quantize(x), w) + bias` with [`QuantX`].
#[derive(Debug)]
pub struct Conv2dForward {
    pub shape: Conv2dShape,
    /// The algorithm chosen (never `Auto`).
    pub algo: ConvAlgo,
    /// The input quantizer, when `x` is quantized on load.
    pub quant: Option<LsqConfig>,
    built: Option<Built>,
    half: Option<super::conv_f16::Conv2dForwardHalf>,
}

impl Conv2dForward {
    /// `x`: input, `w`: weight, `bias`: `c_out` values or `None`, `y`: output (overwritten).
    pub fn new(
        gpu: &Gpu,
        shape: &Conv2dShape,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
    ) -> Result<Self, GpuError> {
        Self::with_algo(gpu, shape, x, w, bias, y, ConvAlgo::Auto)
    }

    /// As [`Conv2dForward::new`] with a chosen algorithm.
    pub fn with_algo(
        gpu: &Gpu,
        shape: &Conv2dShape,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
        algo: ConvAlgo,
    ) -> Result<Self, GpuError> {
        Self::with_input_quant(gpu, shape, x, w, bias, y, algo, None)
    }

    /// As [`Conv2dForward::with_algo`]; with `quant`, `x` is fake-quantized on load.
    #[allow(clippy::too_many_arguments)]
    pub fn with_input_quant(
        gpu: &Gpu,
        shape: &Conv2dShape,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
        algo: ConvAlgo,
        quant: Option<QuantX>,
    ) -> Result<Self, GpuError> {
        let op = "conv2d_forward";
        let s = shape;
        let mut p = params(s, u32::from(bias.is_some()), s.output_len(), op)?;
        if let Some(q) = &quant {
            p = q.apply(op, p)?;
        }
        let quantized = quant.is_some();
        check_len(op, "x", x, s.input_len())?;
        check_len(op, "w", w, s.weight_len())?;
        check_len(op, "y", y, s.output_len())?;
        if let Some(b) = bias {
            check_len(op, "bias", b, s.c_out)?;
        }
        // Without bias the binding still needs a buffer; the kernel never reads it.
        let bias_buf = bias.map_or(&w.buffer, |b| &b.buffer);
        // Unquantized, the steps binding is never read: bind x there.
        let steps_buf = quant.map_or(&x.buffer, |q| &q.steps.buffer);
        let buffers = [&x.buffer, &w.buffer, bias_buf, &y.buffer, steps_buf];
        if algo == ConvAlgo::F16Gemm {
            let algo = ConvAlgo::F16Gemm;
            let no = |m: &str| GpuError::Unsupported(format!("{op} (ConvAlgo::F16Gemm): {m}"));
            if bias.is_some() || quantized {
                return Err(no("bias or input quantization; use an f32 algorithm"));
            }
            let kind = super::gemm_f16::HalfKind::best(gpu)
                .ok_or_else(|| no(&super::gemm_f16::HalfKind::F16.missing(gpu)))?;
            let half = super::conv_f16::Conv2dForwardHalf::new(gpu, s, x, w, y, kind)?;
            return Ok(Conv2dForward {
                shape: *s,
                algo,
                quant: None,
                built: None,
                half: Some(half),
            });
        }
        let rows = s.c_out / s.groups;
        let gemm = gemm_groups(s, rows, s.n * s.h_out() * s.w_out());
        let algo = pick(gpu, algo, rows, gemm.clone(), s.groups * rows.div_ceil(8));
        let built = match algo {
            ConvAlgo::Pointwise => {
                pointwise_shape(s, op)?;
                if bias.is_some() || quantized {
                    return Err(GpuError::Unsupported(format!(
                        "{op} (ConvAlgo::Pointwise): bias or input quantization; use another \
                         algorithm"
                    )));
                }
                pointwise_built(gpu, s, s.c_out, s.c_in, false, w, x, y, false)?
            }
            ConvAlgo::ImplicitGemm => {
                let pipe = conv_pipeline(gpu, &FORWARD_GEMM, &FORWARD_GEMM_QX, quantized)?;
                Built::on(gpu, &pipe, p, &buffers, gemm?)?
            }
            ConvAlgo::Blocked => {
                let blocks = blocked_count(s.n * s.groups, rows, s.h_out(), s.w_out());
                let p = ConvParams {
                    total: to_u32(blocks, "conv2d_forward blocks")?,
                    ..p
                };
                let pipe = conv_pipeline(gpu, &FORWARD_BLOCKED, &FORWARD_BLOCKED_QX, quantized)?;
                Built::on(gpu, &pipe, p, &buffers, blocked_groups(gpu, blocks)?)?
            }
            ConvAlgo::Broadcast => {
                check_broadcast(gpu, op)?;
                // Spatial blocks of 4 columns over x/y, blocks of 8 output channels over z.
                let blocks = s.n * s.h_out() * s.w_out().div_ceil(4);
                let p = ConvParams {
                    total: to_u32(blocks, "conv2d_forward blocks")?,
                    ..p
                };
                let wg = bcast_groups(gpu, blocks, s.groups * rows.div_ceil(8))?;
                let pipe = conv_pipeline(gpu, &FORWARD_BCAST, &FORWARD_BCAST_QX, quantized)?;
                Built::on(gpu, &pipe, p, &buffers, wg)?
            }
            _ => {
                let wg = grid(gpu, (s.output_len() as u64).div_ceil(WG))?;
                let pipe = conv_pipeline(gpu, &FORWARD, &FORWARD_QX, quantized)?;
                Built::on(gpu, &pipe, p, &buffers, wg)?
            }
        };
        Ok(Conv2dForward {
            shape: *s,
            algo,
            quant: quant.map(|q| q.config),
            built: Some(built),
            half: None,
        })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        if let Some(b) = &self.built {
            b.record(rec);
        }
        if let Some(h) = &self.half {
            h.record(rec);
        }
    }
}

/// `dx (+)= conv2d_backward_data(dy, w)`.
#[derive(Debug)]
pub struct Conv2dBackwardData {
    pub shape: Conv2dShape,
    /// The algorithm chosen (never `Auto`).
    pub algo: ConvAlgo,
    built: Built,
}

impl Conv2dBackwardData {
    /// `accumulate`: add into `dx` instead of overwriting it.
    pub fn new(
        gpu: &Gpu,
        shape: &Conv2dShape,
        dy: &Tensor,
        w: &Tensor,
        dx: &Tensor,
        accumulate: bool,
    ) -> Result<Self, GpuError> {
        Self::with_algo(gpu, shape, dy, w, dx, accumulate, ConvAlgo::Auto)
    }

    /// As [`Conv2dBackwardData::new`] with a chosen algorithm.
    pub fn with_algo(
        gpu: &Gpu,
        shape: &Conv2dShape,
        dy: &Tensor,
        w: &Tensor,
        dx: &Tensor,
        accumulate: bool,
        algo: ConvAlgo,
    ) -> Result<Self, GpuError> {
        let op = "conv2d_backward_data";
        let s = shape;
        let p = params(s, u32::from(accumulate), s.input_len(), op)?;
        check_len(op, "dy", dy, s.output_len())?;
        check_len(op, "w", w, s.weight_len())?;
        check_len(op, "dx", dx, s.input_len())?;
        let buffers = [&dy.buffer, &w.buffer, &dx.buffer];
        let rows = s.c_in / s.groups;
        let gemm = gemm_groups(s, rows, s.n * s.h * s.w);
        let bcast_layers = s.groups * rows.div_ceil(8) * s.stride * s.stride;
        let algo = pick(gpu, algo, rows, gemm.clone(), bcast_layers);
        let built = match algo {
            ConvAlgo::Pointwise => {
                pointwise_shape(s, op)?;
                pointwise_built(gpu, s, s.c_in, s.c_out, true, w, dy, dx, accumulate)?
            }
            ConvAlgo::ImplicitGemm => Built::new(gpu, &BACKWARD_DATA_GEMM, p, &buffers, gemm?)?,
            ConvAlgo::Blocked => {
                // Blocks of 4 columns of one residue class mod the stride (see the shader).
                let cols = s.stride * s.w.div_ceil(s.stride).div_ceil(4) * 4;
                let blocks = blocked_count(s.n * s.groups, rows, s.h, cols);
                let p = ConvParams {
                    total: to_u32(blocks, "conv2d_backward_data blocks")?,
                    ..p
                };
                let wg = blocked_groups(gpu, blocks)?;
                Built::new(gpu, &BACKWARD_DATA_BLOCKED, p, &buffers, wg)?
            }
            ConvAlgo::Broadcast => {
                check_broadcast(gpu, op)?;
                // Per residue class (ry, rx) mod the stride: ⌈h/s⌉ rows of ⌈⌈w/s⌉/4⌉ column
                // blocks per image over x/y; (channel block of 8, ry, rx) over z.
                let st = s.stride;
                let blocks = s.n * s.h.div_ceil(st) * s.w.div_ceil(st).div_ceil(4);
                let p = ConvParams {
                    total: to_u32(blocks, "conv2d_backward_data blocks")?,
                    ..p
                };
                let wg = bcast_groups(gpu, blocks, s.groups * rows.div_ceil(8) * st * st)?;
                Built::new(gpu, &BACKWARD_DATA_BCAST, p, &buffers, wg)?
            }
            _ => {
                let wg = grid(gpu, (s.input_len() as u64).div_ceil(WG))?;
                Built::new(gpu, &BACKWARD_DATA, p, &buffers, wg)?
            }
        };
        Ok(Conv2dBackwardData {
            shape: *s,
            algo,
            built,
        })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.built.record(rec);
    }
}

/// `dw (+)= conv2d_backward_weight(x, dy)`: one workgroup per weight element, or (on CPU
/// adapters, [`ConvAlgo::Blocked`]) one invocation per 4 × 4 block of weights.
#[derive(Debug)]
pub struct Conv2dBackwardWeight {
    pub shape: Conv2dShape,
    /// `Blocked`, or `Direct` for the per-weight reduction (never `Auto`).
    pub algo: ConvAlgo,
    /// The input quantizer, when `x` is quantized on load.
    pub quant: Option<LsqConfig>,
    built: Built,
}

impl Conv2dBackwardWeight {
    /// `accumulate`: add into `dw` instead of overwriting it.
    pub fn new(
        gpu: &Gpu,
        shape: &Conv2dShape,
        x: &Tensor,
        dy: &Tensor,
        dw: &Tensor,
        accumulate: bool,
    ) -> Result<Self, GpuError> {
        Self::with_algo(gpu, shape, x, dy, dw, accumulate, ConvAlgo::Auto)
    }

    /// As [`Conv2dBackwardWeight::new`] with a chosen kernel: `Blocked`, or any other
    /// non-`Auto` value for the per-weight reduction.
    pub fn with_algo(
        gpu: &Gpu,
        shape: &Conv2dShape,
        x: &Tensor,
        dy: &Tensor,
        dw: &Tensor,
        accumulate: bool,
        algo: ConvAlgo,
    ) -> Result<Self, GpuError> {
        Self::with_input_quant(gpu, shape, x, dy, dw, accumulate, algo, None)
    }

    /// As [`Conv2dBackwardWeight::with_algo`]; with `quant`, the forward input `x` is
    /// fake-quantized on load (the gradient of the weight of a conv that read `quantize(x)`).
    #[allow(clippy::too_many_arguments)]
    pub fn with_input_quant(
        gpu: &Gpu,
        shape: &Conv2dShape,
        x: &Tensor,
        dy: &Tensor,
        dw: &Tensor,
        accumulate: bool,
        algo: ConvAlgo,
        quant: Option<QuantX>,
    ) -> Result<Self, GpuError> {
        let op = "conv2d_backward_weight";
        let s = shape;
        let mut p = params(s, u32::from(accumulate), s.weight_len(), op)?;
        if let Some(q) = &quant {
            p = q.apply(op, p)?;
        }
        let quantized = quant.is_some();
        check_len(op, "x", x, s.input_len())?;
        check_len(op, "dy", dy, s.output_len())?;
        check_len(op, "dw", dw, s.weight_len())?;
        // Unquantized, the steps binding is never read: bind x there.
        let steps_buf = quant.map_or(&x.buffer, |q| &q.steps.buffer);
        let buffers = [&x.buffer, &dy.buffer, &dw.buffer, steps_buf];
        let algo = match algo {
            ConvAlgo::Pointwise => {
                return Err(GpuError::Unsupported(format!(
                    "{op} (ConvAlgo::Pointwise): no pointwise backward-weight kernel; use \
                     direct or blocked"
                )))
            }
            ConvAlgo::Auto | ConvAlgo::F16Gemm if software(gpu) => cpu_algo(gpu),
            ConvAlgo::Blocked => ConvAlgo::Blocked,
            ConvAlgo::Broadcast => ConvAlgo::Broadcast,
            _ => ConvAlgo::Direct,
        };
        let built = if algo == ConvAlgo::Broadcast {
            check_broadcast(gpu, op)?;
            // One workgroup (one subgroup of 8) per 8 output channels × 32 weight positions.
            let cout_g = s.c_out / s.groups;
            let q = (s.c_in / s.groups) * s.kh * s.kw;
            let blocks = s.groups * cout_g.div_ceil(8) * q.div_ceil(32);
            let p = ConvParams {
                total: to_u32(blocks, "conv2d_backward_weight blocks")?,
                ..p
            };
            let wg = grid(gpu, blocks as u64)?;
            let pipe = conv_pipeline(
                gpu,
                &BACKWARD_WEIGHT_BCAST,
                &BACKWARD_WEIGHT_BCAST_QX,
                quantized,
            )?;
            Built::on(gpu, &pipe, p, &buffers, wg)?
        } else if algo == ConvAlgo::Blocked {
            let q = (s.c_in / s.groups) * s.kh * s.kw;
            let blocks = blocked_count(s.groups, s.c_out / s.groups, 1, q);
            let p = ConvParams {
                total: to_u32(blocks, "conv2d_backward_weight blocks")?,
                ..p
            };
            let wg = blocked_groups(gpu, blocks)?;
            let pipe = conv_pipeline(
                gpu,
                &BACKWARD_WEIGHT_BLOCKED,
                &BACKWARD_WEIGHT_BLOCKED_QX,
                quantized,
            )?;
            Built::on(gpu, &pipe, p, &buffers, wg)?
        } else {
            let wg = grid(gpu, s.weight_len() as u64)?;
            let pipe = conv_pipeline(gpu, &BACKWARD_WEIGHT, &BACKWARD_WEIGHT_QX, quantized)?;
            Built::on(gpu, &pipe, p, &buffers, wg)?
        };
        Ok(Conv2dBackwardWeight {
            shape: *s,
            algo,
            quant: quant.map(|q| q.config),
            built,
        })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.built.record(rec);
    }
}

/// `db (+)= Σ_{n, y, x} dy`; one workgroup per output channel.
#[derive(Debug)]
pub struct Conv2dBackwardBias {
    pub shape: Conv2dShape,
    built: Built,
}

impl Conv2dBackwardBias {
    /// `accumulate`: add into `db` instead of overwriting it.
    pub fn new(
        gpu: &Gpu,
        shape: &Conv2dShape,
        dy: &Tensor,
        db: &Tensor,
        accumulate: bool,
    ) -> Result<Self, GpuError> {
        let op = "conv2d_backward_bias";
        let s = shape;
        let p = params(s, u32::from(accumulate), s.c_out, op)?;
        check_len(op, "dy", dy, s.output_len())?;
        check_len(op, "db", db, s.c_out)?;
        let built = Built::new(
            gpu,
            &BACKWARD_BIAS,
            p,
            &[&dy.buffer, &db.buffer],
            grid(gpu, s.c_out as u64)?,
        )?;
        Ok(Conv2dBackwardBias { shape: *s, built })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.built.record(rec);
    }
}

/// Every pipeline of this module ([`super::pipelines`]), with the algorithms that build it.
pub(super) fn pipelines() -> Vec<super::PipelineEntry> {
    use super::{Needs, PipelineEntry as E, SelectedBy::Conv};
    use ConvAlgo as A;
    // `Auto` resolves to one of the named algorithms; every one may also be asked for by
    // name, so each pipeline is listed under the algorithms whose kernels include it.
    const DIRECT: &[ConvAlgo] = &[A::Direct];
    const GEMM: &[ConvAlgo] = &[A::ImplicitGemm];
    // Backward weight of `Direct` and `ImplicitGemm`: the per-weight reduction.
    const REDUCTION: &[ConvAlgo] = &[A::Direct, A::ImplicitGemm];
    const BLOCKED: &[ConvAlgo] = &[A::Blocked];
    const BCAST: &[ConvAlgo] = &[A::Broadcast];
    const POINTWISE: &[ConvAlgo] = &[A::Pointwise];
    let sg8 = Needs {
        subgroup8: true,
        ..Needs::NONE
    };
    vec![
        E::spec(&FORWARD).by(Conv(DIRECT)),
        E::specialized(&FORWARD_QX).by(Conv(DIRECT)),
        E::spec(&BACKWARD_DATA).by(Conv(DIRECT)),
        E::spec(&FORWARD_GEMM).by(Conv(GEMM)),
        E::specialized(&FORWARD_GEMM_QX).by(Conv(GEMM)),
        E::spec(&BACKWARD_DATA_GEMM).by(Conv(GEMM)),
        E::spec(&BACKWARD_WEIGHT).by(Conv(REDUCTION)),
        E::specialized(&BACKWARD_WEIGHT_QX).by(Conv(REDUCTION)),
        E::spec(&FORWARD_BLOCKED).by(Conv(BLOCKED)),
        E::specialized(&FORWARD_BLOCKED_QX).by(Conv(BLOCKED)),
        E::spec(&BACKWARD_DATA_BLOCKED).by(Conv(BLOCKED)),
        E::spec(&BACKWARD_WEIGHT_BLOCKED).by(Conv(BLOCKED)),
        E::specialized(&BACKWARD_WEIGHT_BLOCKED_QX).by(Conv(BLOCKED)),
        E::spec(&FORWARD_BCAST).by(Conv(BCAST)).needs(sg8),
        E::specialized(&FORWARD_BCAST_QX).by(Conv(BCAST)).needs(sg8),
        E::spec(&BACKWARD_DATA_BCAST).by(Conv(BCAST)).needs(sg8),
        E::spec(&BACKWARD_WEIGHT_BCAST).by(Conv(BCAST)).needs(sg8),
        E::specialized(&BACKWARD_WEIGHT_BCAST_QX)
            .by(Conv(BCAST))
            .needs(sg8),
        E::spec(&POINTWISE_GEMM).by(Conv(POINTWISE)),
        E::spec(&BACKWARD_BIAS),
    ]
}
