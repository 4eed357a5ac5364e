// Pack f32 matrices into zero-padded row-major f16 matrices (the operands of gemm_f16.wgsl and
// gemm_coop.wgsl), transposing on the way when asked.
//
// dst[b][r][c] = f16(op(src[b])[r][c]) for r < rows, c < cols; 0 in the padding
// (rows..rows_p, cols..cols_p). op(src) = src (stored rows×cols) or srcᵀ (stored cols×rows,
// flag bit 0). The f16 values are written as raw bits, two per u32 word (column 2i in the low
// half, 2i+1 in the high half: little-endian array<f16> order), so cols_p must be even.
//
// Rounding is done here in integer arithmetic, not with a float conversion: round to nearest,
// ties to even, f16 subnormals kept (no flush to zero), |x| ≥ 65520 → ±inf, NaN → quiet NaN.
// WGSL leaves the rounding of f32 → f16 conversions to the implementation; this way the GPU
// rounds exactly as the CPU reference (limpq_trainer::kernels::gemm_f16::f32_to_f16_bits).
// One invocation per output word; dispatch: grid over ceil(batch·rows_p·cols_p/2 / 64).
//
// CODES (a pipeline override, off by default): pack the integer codes of an LSQ-quantized
// operand instead of its values: f16(round(src / s)), s = clamp(steps[p.step], STEP_MIN,
// STEP_MAX) — src being a fake-quantized tensor q·s (lsq_forward.wgsl), src / s is within an
// f32 ulp of the integer q, so this recovers q exactly, and f16 holds integers up to 2048
// exactly (the f16 conv of quantized layers, kernels::conv_f16).

struct Params {
    rows: u32,
    cols: u32,
    rows_p: u32,
    cols_p: u32,
    flags: u32,
    batch: u32,
    // Elements between consecutive matrices of the batch, in src (f32) and dst (f16).
    src_stride: u32,
    dst_stride: u32,
    // CODES: the entry of `steps` that scales src.
    step: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
// Read only with CODES (otherwise any buffer is bound here).
@group(0) @binding(3) var<storage, read> steps: array<f32>;

override CODES: bool = false;
override STEP_MIN: f32 = 1e-5;
override STEP_MAX: f32 = 1.0;

// f32 → f16 bits, round to nearest even.
fn f16_bits(x: f32) -> u32 {
    let u = bitcast<u32>(x);
    let sign = (u >> 16u) & 0x8000u;
    let a = u & 0x7fffffffu;
    if a > 0x7f800000u {
        return sign | 0x7e00u; // NaN
    }
    if a >= 0x477ff000u {
        return sign | 0x7c00u; // ≥ 65520 (and inf): rounds to inf
    }
    if a >= 0x38800000u {
        // Normal in f16: rebias the exponent (127 → 15), round the 13 dropped bits.
        let v = a - 0x38000000u;
        return sign | ((v + 0xfffu + ((v >> 13u) & 1u)) >> 13u);
    }
    if a < 0x33000000u {
        return sign; // below 2^-25: rounds to ±0
    }
    // Subnormal in f16: count units of 2^-24.
    let e = a >> 23u;
    let m = (a & 0x7fffffu) | 0x800000u;
    let shift = 126u - e;
    let q = m >> shift;
    let rem = m & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    var r = q;
    if rem > half || (rem == half && (q & 1u) == 1u) {
        r += 1u;
    }
    return sign | r;
}

fn load(b: u32, r: u32, c: u32) -> f32 {
    if r >= p.rows || c >= p.cols {
        return 0.0;
    }
    var v: f32;
    if (p.flags & 1u) != 0u {
        v = src[b * p.src_stride + c * p.rows + r];
    } else {
        v = src[b * p.src_stride + r * p.cols + c];
    }
    if CODES {
        v = round(v / clamp(steps[p.step], STEP_MIN, STEP_MAX));
    }
    return v;
}

@compute @workgroup_size(64, 1, 1)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let half_cols = p.cols_p >> 1u;
    let per = p.rows_p * half_cols;
    if i >= per * p.batch {
        return;
    }
    let b = i / per;
    let j = i - b * per;
    let r = j / half_cols;
    let c = (j - r * half_cols) * 2u;
    let lo = f16_bits(load(b, r, c));
    let hi = f16_bits(load(b, r, c + 1u));
    dst[(b * p.dst_stride + r * p.cols_p + c) >> 1u] = lo | (hi << 16u);
}
