// conv2d backward weight: dw[co, ci', ky, kx] = Σ_{n, oy, ox} dy[n, co, oy, ox] · x[n, ci, oy·s - p + ky, ox·s - p + kx]
// with ci = group(co) · (c_in / groups) + ci'. One workgroup per weight element: its 256
// invocations stride over the n · h_out output rows and reduce in workgroup memory.
// 2-D grid, flat workgroup = wid.x + wid.y · nwg.x. Flag bit 0: accumulate into dw.

//#include conv_params.wgsl

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

// Step sizes of x's quantizer (read only when QUANT_X: shaders/include/quant_x.wgsl).
@group(0) @binding(4) var<storage, read> steps: array<f32>;

//#include quant_x.wgsl

// x[i], quantized when QUANT_X.
fn load_x(i: u32, q: Quant) -> f32 {
    return quant1(x[i], q);
}

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Uniform across the workgroup, so the early return keeps barriers in uniform control flow.
    let widx = wid.x + wid.y * nwg.x;
    if widx >= p.total {
        return;
    }
    let cin_g = p.c_in / p.groups;
    let cout_g = p.c_out / p.groups;
    let kx = widx % p.kw;
    let ky = (widx / p.kw) % p.kh;
    let cl = (widx / (p.kw * p.kh)) % cin_g;
    let co = widx / (p.kw * p.kh * cin_g);
    let ci = (co / cout_g) * cin_g + cl;

    // Invocations stride over output rows (n, oy); within a row, the ox whose input column
    // ix = ox·stride + kx - pad lies inside [0, w) form one range, so the inner loop has no
    // divisions and no bounds checks.
    let rows = p.n * p.h_out;
    let s = i32(p.stride);
    let lo = max(i32(p.pad) - i32(kx), 0);
    let ox_lo = u32((lo + s - 1) / s);
    let hi = i32(p.w + p.pad) - i32(kx);
    let ox_hi = min(p.w_out, u32((max(hi, 0) + s - 1) / s));
    let lsq = quant_params();
    var acc = 0.0;
    for (var row = lid; row < rows; row += 256u) {
        let nb = row / p.h_out;
        let oy = row % p.h_out;
        let iy = i32(oy * p.stride + ky) - i32(p.pad);
        if iy < 0 || iy >= i32(p.h) {
            continue;
        }
        let dy_row = ((nb * p.c_out + co) * p.h_out + oy) * p.w_out;
        // May wrap below zero when kx < pad; ox · stride brings it back (u32 wraps in WGSL).
        let x_row = ((nb * p.c_in + ci) * p.h + u32(iy)) * p.w + kx - p.pad;
        for (var ox = ox_lo; ox < ox_hi; ox++) {
            acc += dy[dy_row + ox] * load_x(x_row + ox * p.stride, lsq);
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if lid < s {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        var r = partial[0];
        if (p.flags & 1u) != 0u {
            r += dw[widx];
        }
        dw[widx] = r;
    }
}
