// Quantize-on-load of a conv's input x, shared by the conv kernels that offer it (each says
// `//#include quant_x.wgsl`; gpu::expand_includes pastes this file there). LSQ fake
// quantization with the formula and op order of lsq_forward.wgsl, so a conv sees bit for bit
// what an LsqQuantize pass would have written: s = clamp(steps[q_step], STEP_MIN, STEP_MAX);
// q_bits bits, flag bit 1: signed (Qn = -2^(b-1), Qp = 2^(b-1) - 1), else unsigned (Qn = 0,
// Qp = 2^b - 1); x_q = round(clamp(x / s, Qn, Qp)) · s. Zero padding stays zero.
// QUANT_X is set per pipeline (conv.rs), so in the plain kernel all of this is dead code.
// The including file provides `p` (with q_step, q_bits, flags) and the `steps` binding.

override QUANT_X: bool = false;
override STEP_MIN: f32 = 1e-5;
override STEP_MAX: f32 = 1.0;

struct Quant {
    s: f32,
    qn: f32,
    qp: f32,
}

fn quant_params() -> Quant {
    if !QUANT_X {
        return Quant(1.0, 0.0, 0.0);
    }
    let s = clamp(steps[p.q_step], STEP_MIN, STEP_MAX);
    let b = p.q_bits;
    if (p.flags & 2u) != 0u {
        return Quant(s, -f32(1u << (b - 1u)), f32((1u << (b - 1u)) - 1u));
    }
    return Quant(s, 0.0, f32((1u << b) - 1u));
}

// One loaded x value, quantized when QUANT_X.
fn quant1(v: f32, q: Quant) -> f32 {
    if QUANT_X {
        return round(clamp(v / q.s, q.qn, q.qp)) * q.s;
    }
    return v;
}

// Four loaded x values, quantized when QUANT_X (lane-wise the formula of quant1).
fn quant4(v: vec4<f32>, q: Quant) -> vec4<f32> {
    if QUANT_X {
        return round(clamp(v / vec4<f32>(q.s), vec4<f32>(q.qn), vec4<f32>(q.qp))) * q.s;
    }
    return v;
}
