//! Conv forward with f16 operands and f32 accumulation: im2col into f16
//! (`shaders/im2col_f16.wgsl`), the weight packed by [`PackF16`], then one f16 GEMM per image
//! ([`HalfProduct`]: the f16-storage kernel or tensor cores). Opt-in
//! ([`super::conv::ConvAlgo::F16Gemm`]); the default algorithms stay f32.
//!
//! Per image b: `y[b] (c_out × HW) = W (c_out × K) · col[b] (K × HW)`, K = c_in·kh·kw,
//! HW = h_out·w_out. Supports groups = 1, no bias, no fused input quantization; other
//! configurations are [`GpuError::Unsupported`] (use an f32 algorithm).
//! The im2col buffer is materialized: n · pad16(K) · pad16(HW) f16 values.

use super::gemm_f16::{pad16, HalfKind, HalfProduct, PackF16};
use super::{grid, pipeline, to_u32, uniform, Binding, Dispatch, KernelSpec, Recorder, Tensor};
use crate::gpu::{Gpu, GpuError};
use crate::shapes::Conv2dShape;

static IM2COL: KernelSpec = KernelSpec {
    id: "im2col_f16",
    source: include_str!("../../../shaders/im2col_f16.wgsl"),
    entry: "main",
    bindings: &[Binding::Uniform, Binding::ReadOnly, Binding::ReadWrite],
};

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
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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
    _params: wgpu::Buffer,
    _w16: Tensor,
    _col16: Tensor,
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
        let s = shape;
        let op = format!("conv2d_forward_{}", kind.name());
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
        let col16 = Tensor::zeros(gpu, PackF16::words(k, hw, s.n), "conv im2col f16")?;
        let pack_w = PackF16::new(gpu, w, s.c_out, k, false, 1, &w16)?;
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
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        };
        let buf = uniform(gpu, &params, "im2col_f16 params");
        let words = PackF16::words(k, hw, s.n);
        let im2col = pipeline(gpu, &IM2COL)?.dispatch(
            gpu,
            &[&buf, &x.buffer, &col16.buffer],
            grid(gpu, (words as u64).div_ceil(64))?,
        )?;
        let product = HalfProduct::new(
            gpu,
            kind,
            (s.c_out, hw, k),
            (1.0, 0.0),
            s.n,
            true,
            &w16,
            &col16,
            y,
        )?;
        Ok(Conv2dForwardHalf {
            shape: *s,
            kind,
            pack_w,
            im2col,
            product,
            _params: buf,
            _w16: w16,
            _col16: col16,
        })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.pack_w.record(rec);
        rec.dispatch(&self.im2col);
        self.product.record(rec);
    }
}
