// im2col into f16 for the f16 / tensor-core conv forward (kernels::conv_f16): for each image
// b, the K×HW matrix col[b][kk][p] = x[b, ci, oy·stride + ky − pad, ox·stride + kx − pad]
// (0 off the image) with kk = (ci·kh + ky)·kw + kx, p = oy·w_out + ox, K = c_in·kh·kw, rounded
// to f16 and zero-padded to K_p × HW_p (multiples of 16): the B operand of gemm_f16.wgsl /
// gemm_coop.wgsl, whose A is the weight (c_out × K, packed by f16_pack.wgsl) and whose C is
// the image's c_out × HW block of y. Groups = 1.
//
// Rounding as f16_pack.wgsl (round to nearest even in integer arithmetic, subnormals kept),
// written as raw bits two per u32 word (pixels p, p+1 in the low, high half).
// One invocation per word; dispatch: grid over ceil(n·K_p·HW_p/2 / 64).
//
// QUANT_X (a pipeline override, off by default): gather the LSQ integer codes of x instead of
// x — round(clamp(x / s, Qn, Qp)), the quantizer of lsq_forward.wgsl without the final · s
// (s = clamp(steps[q_step], STEP_MIN, STEP_MAX); q_bits bits, q_flags bit 0: signed, Qn =
// -2^(b-1), Qp = 2^(b-1) - 1, else Qn = 0, Qp = 2^b - 1). Integers up to 2048 are exact in
// f16, so with codes on both operands the f16 GEMM is exact up to f32 summation; the
// product is scaled by s_x · s_w afterwards (scale_steps.wgsl).

struct Params {
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

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> col: array<u32>;
// Read only with QUANT_X (otherwise any buffer is bound here).
@group(0) @binding(3) var<storage, read> steps: array<f32>;

override QUANT_X: bool = false;
override STEP_MIN: f32 = 1e-5;
override STEP_MAX: f32 = 1.0;

// f32 → f16 bits, round to nearest even (the same function as in f16_pack.wgsl).
fn f16_bits(v: f32) -> u32 {
    let u = bitcast<u32>(v);
    let sign = (u >> 16u) & 0x8000u;
    let a = u & 0x7fffffffu;
    if a > 0x7f800000u {
        return sign | 0x7e00u;
    }
    if a >= 0x477ff000u {
        return sign | 0x7c00u;
    }
    if a >= 0x38800000u {
        let t = a - 0x38000000u;
        return sign | ((t + 0xfffu + ((t >> 13u) & 1u)) >> 13u);
    }
    if a < 0x33000000u {
        return sign;
    }
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

// col[b][kk][pix] as f32 (0 in the padding and off the image).
fn gather(b: u32, kk: u32, pix: u32) -> f32 {
    if kk >= p.k || pix >= p.h_out * p.w_out {
        return 0.0;
    }
    let taps = p.kh * p.kw;
    let ci = kk / taps;
    let r = kk - ci * taps;
    let ky = r / p.kw;
    let kx = r - ky * p.kw;
    let oy = pix / p.w_out;
    let ox = pix - oy * p.w_out;
    let iy = i32(oy * p.stride + ky) - i32(p.pad);
    let ix = i32(ox * p.stride + kx) - i32(p.pad);
    if iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w) {
        return 0.0;
    }
    let v = x[((b * p.c_in + ci) * p.h + u32(iy)) * p.w + u32(ix)];
    if QUANT_X {
        let s = clamp(steps[p.q_step], STEP_MIN, STEP_MAX);
        let bits = p.q_bits;
        var qn = 0.0;
        var qp = f32((1u << bits) - 1u);
        if (p.q_flags & 1u) != 0u {
            qn = -f32(1u << (bits - 1u));
            qp = f32((1u << (bits - 1u)) - 1u);
        }
        return round(clamp(v / s, qn, qp));
    }
    return v;
}

@compute @workgroup_size(64, 1, 1)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let half_cols = p.hwp >> 1u;
    let per = p.kp * half_cols;
    if i >= per * p.n {
        return;
    }
    let b = i / per;
    let j = i - b * per;
    let kk = j / half_cols;
    let pix = (j - kk * half_cols) * 2u;
    let lo = f16_bits(gather(b, kk, pix));
    let hi = f16_bits(gather(b, kk, pix + 1u));
    col[i] = lo | (hi << 16u);
}
