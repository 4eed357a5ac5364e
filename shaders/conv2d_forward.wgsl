// conv2d forward: y[n, co, oy, ox] = bias[co] + Σ x[n, ci, oy·s - p + ky, ox·s - p + kx] · w[co, ci', ky, kx]
// over the input channels ci of co's group. NCHW, weight [c_out, c_in / groups, kh, kw].
// One invocation per output element (direct convolution), 256 per workgroup, 2-D grid:
// flat workgroup = wid.x + wid.y · nwg.x. Flag bit 0: add bias.

//#include conv_params.wgsl

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// Step sizes of x's quantizer (read only when QUANT_X: shaders/include/quant_x.wgsl).
@group(0) @binding(5) var<storage, read> steps: array<f32>;

//#include quant_x.wgsl

// x[i], quantized when QUANT_X.
fn load_x(i: u32, q: Quant) -> f32 {
    return quant1(x[i], q);
}

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + lid;
    if idx >= p.total {
        return;
    }
    let ox = idx % p.w_out;
    let oy = (idx / p.w_out) % p.h_out;
    let co = (idx / (p.w_out * p.h_out)) % p.c_out;
    let nb = idx / (p.w_out * p.h_out * p.c_out);
    let cin_g = p.c_in / p.groups;
    let cout_g = p.c_out / p.groups;
    let g = co / cout_g;

    let lsq = quant_params();
    var acc = 0.0;
    if (p.flags & 1u) != 0u {
        acc = bias[co];
    }
    let iy0 = i32(oy * p.stride) - i32(p.pad);
    let ix0 = i32(ox * p.stride) - i32(p.pad);
    for (var c = 0u; c < cin_g; c++) {
        let x_base = (nb * p.c_in + g * cin_g + c) * p.h;
        let w_base = (co * cin_g + c) * p.kh;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = iy0 + i32(ky);
            if iy < 0 || iy >= i32(p.h) {
                continue;
            }
            let x_row = (x_base + u32(iy)) * p.w;
            let w_row = (w_base + ky) * p.kw;
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = ix0 + i32(kx);
                if ix < 0 || ix >= i32(p.w) {
                    continue;
                }
                acc += load_x(x_row + u32(ix), lsq) * wt[w_row + kx];
            }
        }
    }
    y[idx] = acc;
}
