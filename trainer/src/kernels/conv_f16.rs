//! Conv forward with f16 operands and f32 accumulation: im2col into f16
//! (`shaders/im2col_f16.wgsl`), the weight packed by [`PackF16`], then one f16 GEMM per image
//! ([`HalfProduct`]: the f16-storage kernel or tensor cores). Opt-in
//! ([`super::conv::ConvAlgo::F16Gemm`]); the default algorithms stay f32.
//!
//! Per image b: `y[b] (c_out × HW) = W (c_out × K) · col[b] (K × HW)`, K = c_in·kh·kw,
//! HW = h_out·w_out. Supports groups = 1, no bias; other configurations are
//! [`GpuError::Unsupported`] (use an f32 algorithm).
//! The im2col buffer is materialized: n · pad16(K) · pad16(HW) f16 values.
//!
//! Quantized layers ([`Conv2dForwardHalf::quantized`]): the operands are the LSQ integer
//! codes — the input quantized on load by the im2col (`round(clamp(x/s_x, Qn, Qp))`), the
//! fake-quantized weight `q·s_w` packed as `q` — and the product is scaled by `s_x · s_w`
//! afterwards (`shaders/scale_steps.wgsl`). Codes of up to 11 bits unsigned / 12 bits
//! signed are integers of magnitude ≤ 2048, exact in f16, so f16 operands cost no accuracy
//! here: the result equals the f32 conv of the fake-quantized operands up to f32 summation.

use super::conv::QuantX;
use super::gemm_f16::{pad16, HalfKind, HalfProduct, PackF16};
use super::lsq::{STEP_MAX, STEP_MIN};
use super::{
    grid, pipeline, specialized_pipeline, to_u32, uniform, Binding, Dispatch, KernelSpec, Recorder,
    Specialization, Tensor,
};
use crate::gpu::{Gpu, GpuError};
use crate::shapes::Conv2dShape;

static IM2COL: KernelSpec = KernelSpec {
    id: "im2col_f16",
    source: include_str!("../../../shaders/im2col_f16.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadWrite,
        Binding::ReadOnly,
    ],
};
const STEP_RANGE: [(&str, f64); 2] = [("STEP_MIN", STEP_MIN as f64), ("STEP_MAX", STEP_MAX as f64)];
/// `im2col_f16.wgsl` gathering the input's LSQ codes.
static IM2COL_CODES: Specialization = Specialization {
    id: "im2col_f16+qx",
    spec: &IM2COL,
    constants: &[("QUANT_X", 1.0), STEP_RANGE[0], STEP_RANGE[1]],
};
static SCALE: KernelSpec = KernelSpec {
    id: "scale_steps",
    source: include_str!("../../../shaders/scale_steps.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadWrite,
    ],
};
static SCALE_STEPS: Specialization = Specialization {
    id: "scale_steps+range",
    spec: &SCALE,
    constants: &STEP_RANGE,
};

/// Must match `struct Params` in `shaders/scale_steps.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ScaleParams {
    len: u32,
    ix: u32,
    iw: u32,
    _pad0: u32,
}

/// The largest code magnitude f16 holds exactly (2^11).
const EXACT_F16_INT: u32 = 2048;

/// Must match `struct Params` in `shaders/im2col_f16.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Im2colParams {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    h_out: u32,
    w_out: u32,
    k: u32,
    kp: u32,
    hwp: u32,
    q_step: u32,
    q_bits: u32,
    q_flags: u32,
}

/// `y = conv2d(x, w)` with f16-rounded x and w, f32 accumulation. Build once, record often
/// (records the weight pack, the im2col and the product: weights may change between steps).
#[derive(Debug)]
pub struct Conv2dForwardHalf {
    pub shape: Conv2dShape,
    pub kind: HalfKind,
    pack_w: PackF16,
    im2col: Dispatch,
    product: HalfProduct,
    /// Quantized layers: `y *= s_x · s_w` after the product.
    scale: Option<Dispatch>,
    _params: Vec<wgpu::Buffer>,
    _w16: Tensor,
    /// The im2col buffer, unless a shared scratch was given.
    _col16: Option<Tensor>,
}

impl Conv2dForwardHalf {
    pub fn new(
        gpu: &Gpu,
        shape: &Conv2dShape,
        x: &Tensor,
        w: &Tensor,
        y: &Tensor,
        kind: HalfKind,
    ) -> Result<Self, GpuError> {
        Self::with_scratch(gpu, shape, x, w, y, kind, None, None)
    }

    /// 4-byte words of the im2col buffer of `shape` (at least this much for a `scratch`).
    pub fn scratch_len(shape: &Conv2dShape) -> usize {
        let s = shape;
        PackF16::words(s.c_in * s.kh * s.kw, s.h_out() * s.w_out(), s.n)
    }

    /// `y = conv2d(Q_x(x), w_q)` of a quantized layer, exact in f16: `x` the raw input,
    /// quantized on load by `qx`; `wq` the fake-quantized weight (`q·s`) whose quantizer is
    /// `qw` (signed). Codes wider than f16 holds exactly (over 11 bits unsigned, 12 signed)
    /// are [`GpuError::Unsupported`]. With `scratch` (at least [`Self::scratch_len`] words)
    /// the im2col goes there instead of a buffer of its own: ops recorded one after another
    /// can share one, as each is done with it before the next starts.
    #[allow(clippy::too_many_arguments)]
    pub fn quantized(
        gpu: &Gpu,
        shape: &Conv2dShape,
        x: &Tensor,
        wq: &Tensor,
        y: &Tensor,
        kind: HalfKind,
        qx: &QuantX,
        qw: &QuantX,
        scratch: Option<&Tensor>,
    ) -> Result<Self, GpuError> {
        Self::with_scratch(gpu, shape, x, wq, y, kind, Some((qx, qw)), scratch)
    }

    /// Whether codes of this quantizer are integers f16 holds exactly.
    pub fn codes_exact(q: &QuantX) -> bool {
        q.config
            .range()
            .is_ok_and(|(qn, qp)| qn.abs().max(qp) <= EXACT_F16_INT as f32)
    }

    /// [`Self::new`] (`quant` `None`) or [`Self::quantized`] (`quant` the input and weight
    /// quantizers), with the im2col in `scratch` when given.
    #[allow(clippy::too_many_arguments)]
    pub fn with_scratch(
        gpu: &Gpu,
        shape: &Conv2dShape,
        x: &Tensor,
        w: &Tensor,
        y: &Tensor,
        kind: HalfKind,
        quant: Option<(&QuantX, &QuantX)>,
        scratch: Option<&Tensor>,
    ) -> Result<Self, GpuError> {
        let s = shape;
        let op = format!("conv2d_forward_{}", kind.name());
        if let Some((qx, qw)) = quant {
            for (q, what) in [(qx, "input"), (qw, "weight")] {
                q.check(&op, what)?;
                if !Self::codes_exact(q) {
                    return Err(GpuError::Unsupported(format!(
                        "{op}: {what} quantizer at {} bits: its codes are not exact in f16; \
                         use an f32 algorithm",
                        q.config.bits
                    )));
                }
            }
            if !qw.config.signed {
                return Err(GpuError::Shape(format!(
                    "{op}: the weight quantizer must be signed"
                )));
            }
        }
        if s.groups != 1 {
            return Err(GpuError::Unsupported(format!(
                "{op}: groups = {} (only 1); use an f32 algorithm",
                s.groups
            )));
        }
        if s.n == 0 || s.c_in == 0 || s.c_out == 0 || s.kh == 0 || s.kw == 0 || s.stride == 0 {
            return Err(GpuError::Shape(format!(
                "{op}: empty or zero-stride shape {s:?}"
            )));
        }
        if s.h + 2 * s.pad < s.kh || s.w + 2 * s.pad < s.kw {
            return Err(GpuError::Shape(format!(
                "{op}: kernel {}x{} larger than the padded input {}x{}",
                s.kh,
                s.kw,
                s.h + 2 * s.pad,
                s.w + 2 * s.pad
            )));
        }
        for (name, t, want) in [
            ("x", x, s.input_len()),
            ("w", w, s.weight_len()),
            ("y", y, s.output_len()),
        ] {
            if t.len() != want {
                return Err(GpuError::Shape(format!(
                    "{op}: tensor {name} has {} elements, expected {want}",
                    t.len()
                )));
            }
        }
        let k = s.c_in * s.kh * s.kw;
        let hw = s.h_out() * s.w_out();
        let (kp, hwp) = (pad16(k), pad16(hw));
        to_u32(s.n * kp * hwp, "im2col_f16 elements")?;
        let w16 = Tensor::zeros(gpu, PackF16::words(s.c_out, k, 1), "conv w16")?;
        let words = Self::scratch_len(s);
        let mut own = None;
        let col16: &Tensor = match scratch {
            Some(t) if t.len() < words => {
                return Err(GpuError::Shape(format!(
                    "{op}: scratch {} has {} words, the im2col needs {words}",
                    t.label(),
                    t.len()
                )))
            }
            Some(t) => t,
            None => own.insert(Tensor::zeros(gpu, words, "conv im2col f16")?),
        };
        let pack_w = match quant {
            Some((_, qw)) => PackF16::codes(gpu, w, s.c_out, k, qw.steps, qw.config.index, &w16)?,
            None => PackF16::new(gpu, w, s.c_out, k, false, 1, &w16)?,
        };
        let (q_step, q_bits, q_flags) = match quant {
            Some((qx, _)) => (
                to_u32(qx.config.index, "input step index")?,
                qx.config.bits,
                u32::from(qx.config.signed),
            ),
            None => (0, 0, 0),
        };
        let params = Im2colParams {
            n: to_u32(s.n, "n")?,
            c_in: to_u32(s.c_in, "c_in")?,
            h: to_u32(s.h, "h")?,
            w: to_u32(s.w, "w")?,
            kh: to_u32(s.kh, "kh")?,
            kw: to_u32(s.kw, "kw")?,
            stride: to_u32(s.stride, "stride")?,
            pad: to_u32(s.pad, "pad")?,
            h_out: to_u32(s.h_out(), "h_out")?,
            w_out: to_u32(s.w_out(), "w_out")?,
            k: to_u32(k, "im2col rows")?,
            kp: to_u32(kp, "im2col padded rows")?,
            hwp: to_u32(hwp, "im2col padded columns")?,
            q_step,
            q_bits,
            q_flags,
        };
        let buf = uniform(gpu, &params, "im2col_f16 params");
        let (im2col_pipe, steps) = match quant {
            Some((qx, _)) => (specialized_pipeline(gpu, &IM2COL_CODES)?, &qx.steps.buffer),
            // Unquantized, the steps binding is never read: bind x there.
            None => (pipeline(gpu, &IM2COL)?, &x.buffer),
        };
        let im2col = im2col_pipe.dispatch(
            gpu,
            &[&buf, &x.buffer, &col16.buffer, steps],
            grid(gpu, (words as u64).div_ceil(64))?,
        )?;
        let mut params = vec![buf];
        let scale = match quant {
            Some((qx, qw)) => {
                let len = s.output_len();
                let sp = ScaleParams {
                    len: to_u32(len, "scale_steps elements")?,
                    ix: to_u32(qx.config.index, "input step index")?,
                    iw: to_u32(qw.config.index, "weight step index")?,
                    _pad0: 0,
                };
                let sbuf = uniform(gpu, &sp, "scale_steps params");
                let d = specialized_pipeline(gpu, &SCALE_STEPS)?.dispatch(
                    gpu,
                    &[&sbuf, &qx.steps.buffer, &qw.steps.buffer, &y.buffer],
                    grid(gpu, (len as u64).div_ceil(256))?,
                )?;
                params.push(sbuf);
                Some(d)
            }
            None => None,
        };
        let product = HalfProduct::new(
            gpu,
            kind,
            (s.c_out, hw, k),
            (1.0, 0.0),
            s.n,
            true,
            &w16,
            col16,
            y,
        )?;
        Ok(Conv2dForwardHalf {
            shape: *s,
            kind,
            pack_w,
            im2col,
            product,
            scale,
            _params: params,
            _w16: w16,
            _col16: own,
        })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.pack_w.record(rec);
        rec.dispatch(&self.im2col);
        self.product.record(rec);
        if let Some(d) = &self.scale {
            rec.dispatch(d);
        }
    }
}

/// Every pipeline of this module ([`super::pipelines`]): built around any f16 GEMM kind.
pub(super) fn pipelines() -> Vec<super::PipelineEntry> {
    use super::{PipelineEntry, SelectedBy};
    vec![
        PipelineEntry::spec(&IM2COL).by(SelectedBy::AnyHalf),
        PipelineEntry::specialized(&IM2COL_CODES).by(SelectedBy::AnyHalf),
        PipelineEntry::specialized(&SCALE_STEPS).by(SelectedBy::AnyHalf),
    ]
}
