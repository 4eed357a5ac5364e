// conv2d backward weight, subgroup-broadcast kernel for CPU adapters with subgroups of exactly
// 8 (lavapipe on x86-64; read conv2d_forward_bcast.wgsl first for why):
// dw[co, ci', ky, kx] = Σ_{n, oy, ox} dy[n, co, oy, ox] · x[n, ci, oy·s - p + ky, ox·s - p + kx]
// with ci = group(co) · (c_in / groups) + ci'. A workgroup is one subgroup of 8 invocations and
// owns 8 output channels (lane j: channel j of the block) × 32 consecutive weight positions
// q = (ci', ky, kx) of a channel, and loops over every output pixel itself: per pixel each
// lane loads ITS channel's dy value and the x values of 4 of the 32 positions (lane j:
// positions 4j..4j+3), and the 32 x values reach every lane by 8 broadcasts — 32 products
// per 5 loads (the register-blocked kernel: 16 per 8). No workgroup memory, no barrier.
// Input pixels off the image are loaded from a clamped index and replaced by 0 with select;
// channels and positions past the end are computed clamped and not stored.
// 2-D grid of workgroups (block = wid.x + wid.y · nwg.x < `total` = groups ·
// ⌈(c_out/groups)/8⌉ · ⌈(c_in/groups)·kh·kw/32⌉). Flag bit 0: accumulate into dw.

//#include conv_params.wgsl

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

// Step sizes of x's quantizer (read only when QUANT_X: shaders/include/quant_x.wgsl).
@group(0) @binding(4) var<storage, read> steps: array<f32>;

//#include quant_x.wgsl

@compute @workgroup_size(8, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) sid: u32,
) {
    // The whole workgroup (one subgroup) returns together.
    let blk = wid.x + wid.y * nwg.x;
    if blk >= p.total {
        return;
    }
    let cin_g = p.c_in / p.groups;
    let cout_g = p.c_out / p.groups;
    let kk = p.kh * p.kw;
    let q_len = cin_g * kk;
    let qblocks = (q_len + 31u) / 32u;
    let cblocks = (cout_g + 7u) / 8u;
    let qb = blk % qblocks;
    let r = blk / qblocks;
    let cb = r % cblocks;
    let g = r / cblocks;

    let cl0 = cb * 8u;
    let nco = min(8u, cout_g - cl0);
    let co0 = g * cout_g + cl0;
    // This lane's output channel (past the group's end, the last one: computed, not stored).
    let co = co0 + min(sid, nco - 1u);
    let q0 = qb * 32u;
    // The 4 positions whose x values this lane loads for all 8 lanes.
    let q = min(vec4<u32>(q0 + 4u * sid) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(q_len - 1u));
    let ci = vec4<u32>(g * cin_g) + q / vec4<u32>(kk);
    let ky = vec4<i32>((q % vec4<u32>(kk)) / vec4<u32>(p.kw));
    let kx = vec4<i32>(q % vec4<u32>(p.kw));
    let pad = i32(p.pad);
    let hmax = i32(p.h) - 1;
    let wmax = i32(p.w) - 1;
    let plane = p.h_out * p.w_out;

    let lsq = quant_params();
    // a_m: positions q0 + 4m .. q0 + 4m + 3 of this lane's channel.
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    for (var nb = 0u; nb < p.n; nb++) {
        let xb = (vec4<u32>(nb * p.c_in) + ci) * vec4<u32>(p.h);
        let d = (nb * p.c_out + co) * plane;
        for (var oy = 0u; oy < p.h_out; oy++) {
            let iy = vec4<i32>(i32(oy * p.stride) - pad) + ky;
            let oky = iy >= vec4<i32>(0) & iy <= vec4<i32>(hmax);
            let xr = (xb + vec4<u32>(clamp(iy, vec4<i32>(0), vec4<i32>(hmax)))) * vec4<u32>(p.w);
            let dr = d + oy * p.w_out;
            for (var ox = 0u; ox < p.w_out; ox++) {
                let ix = vec4<i32>(i32(ox * p.stride) - pad) + kx;
                let ok = oky & ix >= vec4<i32>(0) & ix <= vec4<i32>(wmax);
                let xi = xr + vec4<u32>(clamp(ix, vec4<i32>(0), vec4<i32>(wmax)));
                let xv = select(
                    vec4<f32>(0.0),
                    quant4(vec4<f32>(x[xi.x], x[xi.y], x[xi.z], x[xi.w]), lsq),
                    ok,
                );
                let dv = dy[dr + ox];
                a0 += dv * subgroupBroadcast(xv, 0u);
                a1 += dv * subgroupBroadcast(xv, 1u);
                a2 += dv * subgroupBroadcast(xv, 2u);
                a3 += dv * subgroupBroadcast(xv, 3u);
                a4 += dv * subgroupBroadcast(xv, 4u);
                a5 += dv * subgroupBroadcast(xv, 5u);
                a6 += dv * subgroupBroadcast(xv, 6u);
                a7 += dv * subgroupBroadcast(xv, 7u);
            }
        }
    }
    if sid >= nco {
        return;
    }
    let base = co * q_len;
    store(base, q0, q_len, a0);
    store(base, q0 + 4u, q_len, a1);
    store(base, q0 + 8u, q_len, a2);
    store(base, q0 + 12u, q_len, a3);
    store(base, q0 + 16u, q_len, a4);
    store(base, q0 + 20u, q_len, a5);
    store(base, q0 + 24u, q_len, a6);
    store(base, q0 + 28u, q_len, a7);
}

// Positions q .. q + 3 of the channel at `base`, those below q_len.
fn store(base: u32, q: u32, q_len: u32, v: vec4<f32>) {
    let acc = (p.flags & 1u) != 0u;
    for (var i = 0u; i < 4u; i++) {
        if q + i >= q_len {
            break;
        }
        var r = v[i];
        if acc {
            r += dw[base + q + i];
        }
        dw[base + q + i] = r;
    }
}
