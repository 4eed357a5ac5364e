// conv2d forward, register-blocked direct kernel for CPU adapters (lavapipe/llvmpipe):
// y[n, co, oy, ox] = bias[co] + Σ x[n, ci, oy·s - p + ky, ox·s - p + kx] · w[co, ci', ky, kx].
// One invocation computes 4 output channels (of one group) × 4 consecutive ox of one row, so
// each x and w load feeds 4 products (llvmpipe executes buffer loads lane by lane; loads, not
// arithmetic, set its pace). No workgroup memory, no barriers. Out-of-range input columns are
// loaded from a clamped index and replaced by 0 with select (no divergent branch per load).
// 64 invocations per workgroup, 2-D grid (flat = wid.x + wid.y · nwg.x); `total` = blocks.
// Flag bit 0: add bias.

//#include conv_params.wgsl

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// Step sizes of x's quantizer (read only when QUANT_X: shaders/include/quant_x.wgsl).
@group(0) @binding(5) var<storage, read> steps: array<f32>;

//#include quant_x.wgsl

@compute @workgroup_size(64, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wid.x + wid.y * nwg.x) * 64u + lid;
    if idx >= p.total {
        return;
    }
    let cin_g = p.c_in / p.groups;
    let cout_g = p.c_out / p.groups;
    let wblocks = (p.w_out + 3u) / 4u;
    let cblocks = (cout_g + 3u) / 4u;
    let oxb = idx % wblocks;
    var r = idx / wblocks;
    let oy = r % p.h_out;
    r = r / p.h_out;
    let cb = r % cblocks;
    r = r / cblocks;
    let g = r % p.groups;
    let nb = r / p.groups;

    let cl0 = cb * 4u;
    let nco = min(4u, cout_g - cl0);
    let co0 = g * cout_g + cl0;
    let kk = p.kh * p.kw;
    let wstride = cin_g * kk;
    // Weight bases of the 4 channels; channels past the group's end repeat the last one.
    let w0 = co0 * wstride;
    let w1 = (co0 + min(1u, nco - 1u)) * wstride;
    let w2 = (co0 + min(2u, nco - 1u)) * wstride;
    let w3 = (co0 + min(3u, nco - 1u)) * wstride;

    let ox0 = oxb * 4u;
    let s = i32(p.stride);
    let ixb = vec4<i32>(i32(ox0) * s - i32(p.pad)) + vec4<i32>(0, s, 2 * s, 3 * s);
    let wmax = i32(p.w) - 1;
    let iy0 = i32(oy * p.stride) - i32(p.pad);

    let lsq = quant_params();
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var c = 0u; c < cin_g; c++) {
        let x_base = (nb * p.c_in + g * cin_g + c) * p.h;
        let wc = c * kk;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = iy0 + i32(ky);
            if iy < 0 || iy >= i32(p.h) {
                continue;
            }
            let xr = (x_base + u32(iy)) * p.w;
            let wr = wc + ky * p.kw;
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = ixb + vec4<i32>(i32(kx));
                let ok = ix >= vec4<i32>(0) & ix <= vec4<i32>(wmax);
                let ic = vec4<u32>(clamp(ix, vec4<i32>(0), vec4<i32>(wmax)));
                let xv = select(
                    vec4<f32>(0.0),
                    quant4(vec4<f32>(x[xr + ic.x], x[xr + ic.y], x[xr + ic.z], x[xr + ic.w]), lsq),
                    ok,
                );
                let k = wr + kx;
                a0 += wt[w0 + k] * xv;
                a1 += wt[w1 + k] * xv;
                a2 += wt[w2 + k] * xv;
                a3 += wt[w3 + k] * xv;
            }
        }
    }
    store(nb, co0, oy, ox0, a0);
    if nco > 1u {
        store(nb, co0 + 1u, oy, ox0, a1);
    }
    if nco > 2u {
        store(nb, co0 + 2u, oy, ox0, a2);
    }
    if nco > 3u {
        store(nb, co0 + 3u, oy, ox0, a3);
    }
}

//#include conv_store_forward.wgsl
