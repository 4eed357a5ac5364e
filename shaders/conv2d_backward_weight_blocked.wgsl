// conv2d backward weight, register-blocked kernel for CPU adapters (lavapipe):
// dw[co, ci', ky, kx] = Σ_{n, oy, ox} dy[n, co, oy, ox] · x[n, ci, oy·s - p + ky, ox·s - p + kx]
// with ci = group(co) · (c_in / groups) + ci'. One invocation owns 4 output channels (of one
// group) × 4 consecutive weight positions q = (ci', ky, kx) of a channel and loops over every
// output pixel itself: each dy and x load feeds 4 products, and there is no workgroup memory
// and no barrier (on llvmpipe a barrier turns every invocation into a coroutine). Input
// pixels off the image are loaded from a clamped index and replaced by 0 with select.
// 64 invocations per workgroup, 2-D grid (flat = wid.x + wid.y · nwg.x); `total` = blocks.
// Flag bit 0: accumulate into dw.

//#include conv_params.wgsl

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

// Step sizes of x's quantizer (read only when QUANT_X: shaders/include/quant_x.wgsl).
@group(0) @binding(4) var<storage, read> steps: array<f32>;

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
    let kk = p.kh * p.kw;
    let q_len = cin_g * kk;
    let qblocks = (q_len + 3u) / 4u;
    let cblocks = (cout_g + 3u) / 4u;
    let qb = idx % qblocks;
    var r = idx / qblocks;
    let cb = r % cblocks;
    let g = r / cblocks;

    let cl0 = cb * 4u;
    let nco = min(4u, cout_g - cl0);
    let co0 = g * cout_g + cl0;
    // Channels / positions past the end repeat the last valid one (computed, not stored).
    let c1 = co0 + min(1u, nco - 1u);
    let c2 = co0 + min(2u, nco - 1u);
    let c3 = co0 + min(3u, nco - 1u);
    let q0 = qb * 4u;
    let nq = min(4u, q_len - q0);
    let q = min(vec4<u32>(q0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(q_len - 1u));
    let ci = vec4<u32>(g * cin_g) + q / vec4<u32>(kk);
    let ky = vec4<i32>((q % vec4<u32>(kk)) / vec4<u32>(p.kw));
    let kx = vec4<i32>(q % vec4<u32>(p.kw));
    let pad = i32(p.pad);
    let hmax = i32(p.h) - 1;
    let wmax = i32(p.w) - 1;
    let plane = p.h_out * p.w_out;

    let lsq = quant_params();
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var nb = 0u; nb < p.n; nb++) {
        let xb = (vec4<u32>(nb * p.c_in) + ci) * vec4<u32>(p.h);
        let d0 = (nb * p.c_out + co0) * plane;
        let d1 = (nb * p.c_out + c1) * plane;
        let d2 = (nb * p.c_out + c2) * plane;
        let d3 = (nb * p.c_out + c3) * plane;
        for (var oy = 0u; oy < p.h_out; oy++) {
            let iy = vec4<i32>(i32(oy * p.stride) - pad) + ky;
            let oky = iy >= vec4<i32>(0) & iy <= vec4<i32>(hmax);
            let xr = (xb + vec4<u32>(clamp(iy, vec4<i32>(0), vec4<i32>(hmax)))) * vec4<u32>(p.w);
            let dr = oy * p.w_out;
            for (var ox = 0u; ox < p.w_out; ox++) {
                let ix = vec4<i32>(i32(ox * p.stride) - pad) + kx;
                let ok = oky & ix >= vec4<i32>(0) & ix <= vec4<i32>(wmax);
                let xi = xr + vec4<u32>(clamp(ix, vec4<i32>(0), vec4<i32>(wmax)));
                let xv = select(
                    vec4<f32>(0.0),
                    quant4(vec4<f32>(x[xi.x], x[xi.y], x[xi.z], x[xi.w]), lsq),
                    ok,
                );
                let o = dr + ox;
                a0 += dy[d0 + o] * xv;
                a1 += dy[d1 + o] * xv;
                a2 += dy[d2 + o] * xv;
                a3 += dy[d3 + o] * xv;
            }
        }
    }
    store(co0 * q_len + q0, nq, a0);
    if nco > 1u {
        store((co0 + 1u) * q_len + q0, nq, a1);
    }
    if nco > 2u {
        store((co0 + 2u) * q_len + q0, nq, a2);
    }
    if nco > 3u {
        store((co0 + 3u) * q_len + q0, nq, a3);
    }
}

fn store(base: u32, n: u32, v: vec4<f32>) {
    let acc = (p.flags & 1u) != 0u;
    for (var i = 0u; i < n; i++) {
        var r = v[i];
        if acc {
            r += dw[base + i];
        }
        dw[base + i] = r;
    }
}
