//! GEMM with f16 operands and f32 accumulation: `C = alpha · op(A) · op(B) + beta · C`.
//!
//! Two steps, each its own kernel:
//! 1. [`PackF16`] (`shaders/f16_pack.wgsl`) rounds an f32 operand to f16 (round to nearest
//!    even, exactly as [`f32_to_f16_bits`]), takes its transpose if asked, and writes it
//!    row-major with rows and columns zero-padded to multiples of 16;
//! 2. the product on the padded f16 operands, one of [`HalfKind`]:
//!    - [`HalfKind::F16`] (`shaders/gemm_f16.wgsl`): f16 storage, f32 arithmetic, the f32
//!      kernel's 64×64 tiling; needs `SHADER_F16` ([`Gpu::shader_f16`]);
//!    - [`HalfKind::Coop`] (`shaders/gemm_coop.wgsl`): tensor cores through wgpu's
//!      cooperative-matrix extension, 16×16×16 f16·f16→f32 tiles; needs [`Gpu::coop_f16`].
//!
//! An f16·f16 product is exact in f32, so against the f32 GEMM the only extra error is the
//! rounding of each operand to f16 (relative 2⁻¹¹ per element) plus the f32 summation order.
//! Callers check [`HalfKind::available`] (or take [`HalfKind::best`]) and keep the f32
//! [`super::gemm::Gemm`] as the fallback; building an unavailable kind is
//! [`GpuError::Unsupported`].

use super::gemm::GemmShape;
use super::lsq::{STEP_MAX, STEP_MIN};
use super::{
    grid, pipeline, specialized_pipeline, to_u32, uniform, Binding, Dispatch, KernelSpec, Recorder,
    Specialization, Tensor,
};
use crate::gpu::{DeviceCaps, Gpu, GpuError};

static PACK: KernelSpec = KernelSpec {
    id: "f16_pack",
    source: include_str!("../../../shaders/f16_pack.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadWrite,
        Binding::ReadOnly,
    ],
};
/// `f16_pack.wgsl` packing the integer codes `round(src / s)` of a fake-quantized operand.
static PACK_CODES: Specialization = Specialization {
    id: "f16_pack+codes",
    spec: &PACK,
    constants: &[
        ("CODES", 1.0),
        ("STEP_MIN", STEP_MIN as f64),
        ("STEP_MAX", STEP_MAX as f64),
    ],
};

static GEMM_F16: KernelSpec = KernelSpec {
    id: "gemm_f16",
    source: include_str!("../../../shaders/gemm_f16.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadWrite,
    ],
};

static GEMM_COOP: KernelSpec = KernelSpec {
    id: "gemm_coop",
    source: include_str!("../../../shaders/gemm_coop.wgsl"),
    entry: "main",
    bindings: &[
        Binding::Uniform,
        Binding::ReadOnly,
        Binding::ReadOnly,
        Binding::ReadWrite,
    ],
};

/// The tensor-core kernel's variants, one pipeline each: its override constants
/// (`SUBGROUPS`, `PREFETCH`; see `shaders/gemm_coop.wgsl`), every one set explicitly.
static GEMM_COOP_PLAIN: Specialization = Specialization {
    id: "gemm_coop",
    spec: &GEMM_COOP,
    constants: &[("SUBGROUPS", 1.0), ("PREFETCH", 0.0)],
};
static GEMM_COOP_PREFETCH: Specialization = Specialization {
    id: "gemm_coop+prefetch",
    spec: &GEMM_COOP,
    constants: &[("SUBGROUPS", 1.0), ("PREFETCH", 1.0)],
};
static GEMM_COOP_WG4: Specialization = Specialization {
    id: "gemm_coop+wg4",
    spec: &GEMM_COOP,
    constants: &[("SUBGROUPS", 4.0), ("PREFETCH", 0.0)],
};
static GEMM_COOP_WG4_PREFETCH: Specialization = Specialization {
    id: "gemm_coop+wg4+prefetch",
    spec: &GEMM_COOP,
    constants: &[("SUBGROUPS", 4.0), ("PREFETCH", 1.0)],
};

/// The WGSL source of the tensor-core kernel, every variant (for tests that validate it
/// without a device; [`HalfKind::coop_constants`] gives each variant's constants).
pub const COOP_SOURCE: &str = include_str!("../../../shaders/gemm_coop.wgsl");
/// The WGSL source of the f16-storage kernel.
pub const F16_SOURCE: &str = include_str!("../../../shaders/gemm_f16.wgsl");
/// The WGSL source of the f32 → f16 packing kernel.
pub const PACK_SOURCE: &str = include_str!("../../../shaders/f16_pack.wgsl");

/// Output block edge of the product kernels (twice that for the 4-subgroup coop variants).
const BLOCK: usize = 64;

/// f32 → IEEE binary16 bits, round to nearest, ties to even; subnormals kept, overflow to
/// ±inf (|x| ≥ 65520), NaN to a quiet NaN. The GPU packing kernel rounds the same way.
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    let sign = ((u >> 16) & 0x8000) as u16;
    let a = u & 0x7fff_ffff;
    if a > 0x7f80_0000 {
        return sign | 0x7e00;
    }
    if a >= 0x477f_f000 {
        return sign | 0x7c00;
    }
    if a >= 0x3880_0000 {
        let v = a - 0x3800_0000;
        return sign | ((v + 0xfff + ((v >> 13) & 1)) >> 13) as u16;
    }
    if a < 0x3300_0000 {
        return sign;
    }
    let e = a >> 23;
    let m = (a & 0x7f_ffff) | 0x80_0000;
    let shift = 126 - e;
    let q = m >> shift;
    let rem = m & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    let r = if rem > half || (rem == half && q & 1 == 1) {
        q + 1
    } else {
        q
    };
    sign | r as u16
}

/// IEEE binary16 bits → f32 (exact).
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let e = (h >> 10) & 0x1f;
    let m = f32::from(h & 0x3ff);
    match e {
        0 => sign * m * (2.0f32).powi(-24),
        31 if m == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => sign * (1.0 + m / 1024.0) * (2.0f32).powi(i32::from(e) - 15),
    }
}

/// `x` rounded to the nearest f16 (ties to even), as an f32.
pub fn round_f16(x: f32) -> f32 {
    f16_bits_to_f32(f32_to_f16_bits(x))
}

/// `x` rounded up to a multiple of 16 (at least 16).
pub fn pad16(x: usize) -> usize {
    x.max(1).div_ceil(16) * 16
}

/// Which product kernel runs on the f16 operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HalfKind {
    /// f16 storage, f32 multiply-adds (`gemm_f16.wgsl`).
    F16,
    /// Tensor cores: cooperative-matrix 16×16×16 f16·f16→f32 (`gemm_coop.wgsl`, one
    /// subgroup per workgroup).
    Coop,
    /// The same with the K loop software-pipelined (`gemm_coop.wgsl` with `PREFETCH`): the
    /// next step's tiles are loaded before this step's multiply-adds. Same results as
    /// `Coop`; which is faster is for `limpq bench gemm` on the GPU to say.
    CoopPrefetch,
    /// Four subgroups of 32 per workgroup on a 128×128 block (`gemm_coop.wgsl` with
    /// `SUBGROUPS = 4`), so that tile loads shared by two subgroups can hit L1.
    CoopWg4,
    /// `CoopWg4` with the K loop of `CoopPrefetch` (both constants set).
    CoopWg4Prefetch,
}

impl HalfKind {
    /// Every kind.
    pub const ALL: [HalfKind; 5] = [
        HalfKind::F16,
        HalfKind::Coop,
        HalfKind::CoopPrefetch,
        HalfKind::CoopWg4,
        HalfKind::CoopWg4Prefetch,
    ];

    /// Whether `gpu`'s device was created with what this kind needs.
    pub fn available(self, gpu: &Gpu) -> bool {
        self.allowed(&gpu.caps())
    }

    /// Whether a device with `caps` has what this kind needs.
    pub fn allowed(self, caps: &DeviceCaps) -> bool {
        match self {
            HalfKind::F16 => caps.shader_f16,
            HalfKind::Coop
            | HalfKind::CoopPrefetch
            | HalfKind::CoopWg4
            | HalfKind::CoopWg4Prefetch => caps.coop_f16 && caps.subgroup32,
        }
    }

    /// The product pipeline this kind builds (the packing kernels come with every kind).
    pub fn pipeline_id(self) -> &'static str {
        self.coop_specialization().map_or(GEMM_F16.id, |sp| sp.id)
    }

    /// The override constants of `gemm_coop.wgsl` this kind's pipeline is built with
    /// (`None` for [`HalfKind::F16`], another shader).
    pub fn coop_constants(self) -> Option<&'static [(&'static str, f64)]> {
        self.coop_specialization().map(|sp| sp.constants)
    }

    fn coop_specialization(self) -> Option<&'static Specialization> {
        match self {
            HalfKind::F16 => None,
            HalfKind::Coop => Some(&GEMM_COOP_PLAIN),
            HalfKind::CoopPrefetch => Some(&GEMM_COOP_PREFETCH),
            HalfKind::CoopWg4 => Some(&GEMM_COOP_WG4),
            HalfKind::CoopWg4Prefetch => Some(&GEMM_COOP_WG4_PREFETCH),
        }
    }

    /// Tensor cores where available, else the f16-storage kernel, else `None` (use f32).
    pub fn best(gpu: &Gpu) -> Option<HalfKind> {
        Self::best_for(&gpu.caps())
    }

    /// [`HalfKind::best`] for a device with `caps`.
    pub fn best_for(caps: &DeviceCaps) -> Option<HalfKind> {
        [HalfKind::Coop, HalfKind::F16]
            .into_iter()
            .find(|k| k.allowed(caps))
    }

    pub fn name(self) -> &'static str {
        match self {
            HalfKind::F16 => "f16",
            HalfKind::Coop => "coop",
            HalfKind::CoopPrefetch => "coop-prefetch",
            HalfKind::CoopWg4 => "coop-wg4",
            HalfKind::CoopWg4Prefetch => "coop-wg4-prefetch",
        }
    }

    /// Why this kind cannot run on `gpu`, for errors and skip messages.
    pub fn missing(self, gpu: &Gpu) -> String {
        match self {
            HalfKind::F16 => format!(
                "adapter {} was not given SHADER_F16 (not offered, or LIMPQ_NO_F16 set)",
                gpu.summary.name
            ),
            _ if gpu.coop_f16 => format!(
                "adapter {} was not given SUBGROUP with subgroups of exactly 32",
                gpu.summary.name
            ),
            HalfKind::Coop
            | HalfKind::CoopPrefetch
            | HalfKind::CoopWg4
            | HalfKind::CoopWg4Prefetch => format!(
                "adapter {} has no usable cooperative matrix (needs \
                 EXPERIMENTAL_COOPERATIVE_MATRIX with 16×16×16 f16·f16→f32 tiles, SHADER_F16, \
                 SUBGROUP and subgroups of exactly 32; LIMPQ_NO_COOP unset)",
                gpu.summary.name
            ),
        }
    }

    fn require(self, gpu: &Gpu, op: &str) -> Result<(), GpuError> {
        if self.available(gpu) {
            Ok(())
        } else {
            Err(GpuError::Unsupported(format!(
                "{op} ({}): {}",
                self.name(),
                self.missing(gpu)
            )))
        }
    }
}

/// Must match `struct Params` in `shaders/f16_pack.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PackParams {
    rows: u32,
    cols: u32,
    rows_p: u32,
    cols_p: u32,
    flags: u32,
    batch: u32,
    src_stride: u32,
    dst_stride: u32,
    step: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

/// An f32 operand rounded to f16 into a zero-padded row-major matrix: build once, record
/// every step. `dst` holds two f16 per 4-byte element ([`PackF16::words`]).
#[derive(Debug)]
pub struct PackF16 {
    pub rows: usize,
    pub cols: usize,
    pub rows_p: usize,
    pub cols_p: usize,
    pub batch: usize,
    dispatch: Dispatch,
    _params: wgpu::Buffer,
}

impl PackF16 {
    /// 4-byte elements of a packed `batch × pad16(rows) × pad16(cols)` f16 matrix.
    pub fn words(rows: usize, cols: usize, batch: usize) -> usize {
        batch * pad16(rows) * pad16(cols) / 2
    }

    /// `dst[b] = f16(op(src[b]))`, `op(src)` being `rows×cols`: `src[b]` itself (stored
    /// `rows×cols`) or, with `trans`, the transpose of `src[b]` (stored `cols×rows`).
    pub fn new(
        gpu: &Gpu,
        src: &Tensor,
        rows: usize,
        cols: usize,
        trans: bool,
        batch: usize,
        dst: &Tensor,
    ) -> Result<PackF16, GpuError> {
        Self::build(gpu, src, rows, cols, trans, batch, dst, None)
    }

    /// One `rows×cols` matrix `src` that is fake-quantized with step `steps[index]`
    /// (`q·s`, as `LsqQuantize` writes it), packed as its integer codes `q` (exact in f16
    /// for |q| ≤ 2048).
    pub fn codes(
        gpu: &Gpu,
        src: &Tensor,
        rows: usize,
        cols: usize,
        steps: &Tensor,
        index: usize,
        dst: &Tensor,
    ) -> Result<PackF16, GpuError> {
        if index >= steps.len() {
            return Err(GpuError::Shape(format!(
                "f16_pack codes: step index {index} outside a {}-element step tensor",
                steps.len()
            )));
        }
        Self::build(gpu, src, rows, cols, false, 1, dst, Some((steps, index)))
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        gpu: &Gpu,
        src: &Tensor,
        rows: usize,
        cols: usize,
        trans: bool,
        batch: usize,
        dst: &Tensor,
        codes: Option<(&Tensor, usize)>,
    ) -> Result<PackF16, GpuError> {
        // Plain u32 writes: runs on any device, with or without SHADER_F16.
        let op = "f16_pack";
        let (rows_p, cols_p) = (pad16(rows), pad16(cols));
        if src.len() != rows * cols * batch {
            return Err(GpuError::Shape(format!(
                "{op} {rows}x{cols} batch {batch}: source {} has {} elements, expected {}",
                src.label(),
                src.len(),
                rows * cols * batch
            )));
        }
        let words = Self::words(rows, cols, batch);
        if dst.len() != words {
            return Err(GpuError::Shape(format!(
                "{op} {rows}x{cols} batch {batch}: destination {} has {} words, expected \
                 {words} ({rows_p}x{cols_p} f16 per matrix)",
                dst.label(),
                dst.len()
            )));
        }
        to_u32(batch * rows_p * cols_p, "f16_pack padded elements")?;
        let params = PackParams {
            rows: to_u32(rows, "f16_pack rows")?,
            cols: to_u32(cols, "f16_pack cols")?,
            rows_p: to_u32(rows_p, "f16_pack padded rows")?,
            cols_p: to_u32(cols_p, "f16_pack padded cols")?,
            flags: u32::from(trans),
            batch: to_u32(batch, "f16_pack batch")?,
            src_stride: to_u32(rows * cols, "f16_pack source stride")?,
            dst_stride: to_u32(rows_p * cols_p, "f16_pack destination stride")?,
            step: to_u32(codes.map_or(0, |c| c.1), "f16_pack step index")?,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        };
        let buf = uniform(gpu, &params, "f16_pack params");
        let p = match codes {
            Some(_) => specialized_pipeline(gpu, &PACK_CODES)?,
            None => pipeline(gpu, &PACK)?,
        };
        let groups = grid(gpu, (words as u64).div_ceil(64))?;
        // Without codes the steps binding is never read: bind the source there.
        let steps = codes.map_or(&src.buffer, |c| &c.0.buffer);
        let dispatch = p.dispatch(gpu, &[&buf, &src.buffer, &dst.buffer, steps], groups)?;
        Ok(PackF16 {
            rows,
            cols,
            rows_p,
            cols_p,
            batch,
            dispatch,
            _params: buf,
        })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        if self.batch > 0 {
            rec.dispatch(&self.dispatch);
        }
    }
}

/// Must match `struct Params` in `shaders/gemm_f16.wgsl` and `shaders/gemm_coop.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct HalfParams {
    m: u32,
    n: u32,
    mp: u32,
    np: u32,
    kp: u32,
    batch: u32,
    alpha: f32,
    beta: f32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    _pad: u32,
}

/// The product on already packed operands: `c = alpha · a16 · b16 + beta · c` with `a16`
/// `batch × pad16(m) × pad16(k)` and `b16` `batch × pad16(k) × pad16(n)` packed f16 (as
/// [`PackF16`] writes them), `c` `batch × m × n` f32. `shared_a`: one `a16` for the whole
/// batch (convolution weights).
#[derive(Debug)]
pub struct HalfProduct {
    pub kind: HalfKind,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    dispatch: Dispatch,
    _params: wgpu::Buffer,
}

impl HalfProduct {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        kind: HalfKind,
        (m, n, k): (usize, usize, usize),
        (alpha, beta): (f32, f32),
        batch: usize,
        shared_a: bool,
        a16: &Tensor,
        b16: &Tensor,
        c: &Tensor,
    ) -> Result<HalfProduct, GpuError> {
        let op = format!("gemm_{} {m}x{k}x{n} batch {batch}", kind.name());
        kind.require(gpu, &op)?;
        let (mp, np, kp) = (pad16(m), pad16(n), pad16(k));
        let a_batch = if shared_a { 1 } else { batch };
        for (name, t, want) in [
            ("a16", a16, PackF16::words(m, k, a_batch)),
            ("b16", b16, PackF16::words(k, n, batch)),
            ("c", c, m * n * batch),
        ] {
            // b16 may be longer: a scratch several convs share (conv_f16), read from 0.
            if t.len() < want || (name != "b16" && t.len() != want) {
                return Err(GpuError::Shape(format!(
                    "{op}: tensor {name} ({}) has {} elements, expected {want}",
                    t.label(),
                    t.len()
                )));
            }
        }
        to_u32(mp * kp * a_batch, "gemm_f16 a16 elements")?;
        to_u32(kp * np * batch, "gemm_f16 b16 elements")?;
        to_u32(m * n * batch, "gemm_f16 c elements")?;
        let params = HalfParams {
            m: to_u32(m, "gemm_f16 m")?,
            n: to_u32(n, "gemm_f16 n")?,
            mp: to_u32(mp, "gemm_f16 padded m")?,
            np: to_u32(np, "gemm_f16 padded n")?,
            kp: to_u32(kp, "gemm_f16 padded k")?,
            batch: to_u32(batch, "gemm_f16 batch")?,
            alpha,
            beta,
            stride_a: if shared_a {
                0
            } else {
                to_u32(mp * kp, "gemm_f16 a stride")?
            },
            stride_b: to_u32(kp * np, "gemm_f16 b stride")?,
            stride_c: to_u32(m * n, "gemm_f16 c stride")?,
            _pad: 0,
        };
        let block = if matches!(kind, HalfKind::CoopWg4 | HalfKind::CoopWg4Prefetch) {
            2 * BLOCK
        } else {
            BLOCK
        };
        let groups = [
            to_u32(np.div_ceil(block), "gemm_f16 column blocks")?,
            to_u32(mp.div_ceil(block), "gemm_f16 row blocks")?,
            to_u32(batch.max(1), "gemm_f16 batch")?,
        ];
        let buf = uniform(gpu, &params, "gemm_f16 params");
        let p = match kind.coop_specialization() {
            Some(sp) => specialized_pipeline(gpu, sp)?,
            None => pipeline(gpu, &GEMM_F16)?,
        };
        let dispatch = p.dispatch(gpu, &[&buf, &a16.buffer, &b16.buffer, &c.buffer], groups)?;
        Ok(HalfProduct {
            kind,
            m,
            n,
            k,
            batch,
            dispatch,
            _params: buf,
        })
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        if self.batch > 0 && self.m > 0 && self.n > 0 {
            rec.dispatch(&self.dispatch);
        }
    }
}

/// A whole f16-operand GEMM on f32 tensors, as [`super::gemm::Gemm`] takes them: packs
/// `op(A)` and `op(B)` into scratch f16 tensors it owns, then runs the product.
#[derive(Debug)]
pub struct GemmF16 {
    pub shape: GemmShape,
    pub kind: HalfKind,
    pack_a: PackF16,
    pack_b: PackF16,
    product: HalfProduct,
    _a16: Tensor,
    _b16: Tensor,
}

impl GemmF16 {
    /// Check the tensor lengths against `shape` (as [`super::gemm::Gemm::new`]) and build
    /// the two packs and the product of `kind`.
    pub fn new(
        gpu: &Gpu,
        shape: GemmShape,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
        kind: HalfKind,
    ) -> Result<GemmF16, GpuError> {
        let s = shape;
        for (name, t, per) in [
            ("a", a, s.m * s.k),
            ("b", b, s.k * s.n),
            ("c", c, s.m * s.n),
        ] {
            let want = per * s.batch;
            if t.len() != want {
                return Err(GpuError::Shape(format!(
                    "gemm_{} {}x{}x{} batch {}: tensor {name} has {} elements, expected {want}",
                    kind.name(),
                    s.m,
                    s.k,
                    s.n,
                    s.batch,
                    t.len()
                )));
            }
        }
        kind.require(gpu, "gemm")?;
        let a16 = Tensor::zeros(gpu, PackF16::words(s.m, s.k, s.batch), "gemm a16")?;
        let b16 = Tensor::zeros(gpu, PackF16::words(s.k, s.n, s.batch), "gemm b16")?;
        let pack_a = PackF16::new(gpu, a, s.m, s.k, s.trans_a, s.batch, &a16)?;
        let pack_b = PackF16::new(gpu, b, s.k, s.n, s.trans_b, s.batch, &b16)?;
        let product = HalfProduct::new(
            gpu,
            kind,
            (s.m, s.n, s.k),
            (s.alpha, s.beta),
            s.batch,
            false,
            &a16,
            &b16,
            c,
        )?;
        Ok(GemmF16 {
            shape,
            kind,
            pack_a,
            pack_b,
            product,
            _a16: a16,
            _b16: b16,
        })
    }

    /// Append both packs and the product to `rec`.
    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.record_pack(rec);
        self.record_product(rec);
    }

    /// Append only the packs (f32 → f16 of both operands).
    pub fn record_pack<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.pack_a.record(rec);
        self.pack_b.record(rec);
    }

    /// Append only the product on the packed operands (as they were last packed).
    pub fn record_product<'a>(&'a self, rec: &mut Recorder<'a>) {
        self.product.record(rec);
    }
}

/// Every pipeline of this module ([`super::pipelines`]): the packing kernels around every
/// kind, and each kind's product kernel with the features it needs.
pub(super) fn pipelines() -> Vec<super::PipelineEntry> {
    use super::{Needs, PipelineEntry, SelectedBy};
    let mut out = vec![
        PipelineEntry::spec(&PACK).by(SelectedBy::AnyHalf),
        PipelineEntry::specialized(&PACK_CODES).by(SelectedBy::AnyHalf),
    ];
    for kind in HalfKind::ALL {
        let entry = match kind.coop_specialization() {
            None => PipelineEntry::spec(&GEMM_F16).needs(Needs {
                f16: true,
                ..Needs::NONE
            }),
            Some(sp) => PipelineEntry::specialized(sp).needs(Needs {
                f16: true,
                coop: true,
                ..Needs::NONE
            }),
        };
        out.push(entry.by(SelectedBy::Half(kind)));
    }
    out
}
