// conv2d backward data, register-blocked direct kernel for CPU adapters (lavapipe):
// dx[n, ci, iy, ix] = Σ dy[n, co, oy, ox] · w[co, ci', ky, kx] over the output channels co of
// ci's group and the (ky, kx) with oy·s - p + ky = iy, ox·s - p + kx = ix.
// One invocation computes 4 input channels (of one group) × 4 columns of one row, so each dy
// and w load feeds 4 products. The 4 columns are ix = r + s·(m0 + t), t = 0..3, of ONE
// residue class r = ix mod s: for a tap kx either all four receive a product (from 4
// consecutive dy columns) or none does, so a strided conv wastes no lanes on the columns a
// tap skips (with 4 consecutive columns, stride 2 masked half of them). Stride 1 is the
// plain 4-consecutive-columns block. No workgroup memory, no barriers; dy columns off the
// grid are loaded from a clamped index and replaced by 0 with select. 64 invocations per
// workgroup, 2-D grid (flat = wid.x + wid.y · nwg.x); `total` = blocks =
// n·groups · ⌈(c_in/groups)/4⌉ · h · s·⌈⌈w/s⌉/4⌉. Flag bit 0: accumulate into dx.

//#include conv_params.wgsl

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

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
    let s = p.stride;
    // Column blocks per row: s residue classes of ⌈w/s⌉ columns at most, 4 per block.
    let mblocks = ((p.w + s - 1u) / s + 3u) / 4u;
    let wblocks = s * mblocks;
    let cblocks = (cin_g + 3u) / 4u;
    let xb = idx % wblocks;
    var r = idx / wblocks;
    let iy = r % p.h;
    r = r / p.h;
    let cb = r % cblocks;
    r = r / cblocks;
    let g = r % p.groups;
    let nb = r / p.groups;
    let rx = xb / mblocks;
    let m0 = (xb % mblocks) * 4u;

    let cl0 = cb * 4u;
    let nci = min(4u, cin_g - cl0);
    let kk = p.kh * p.kw;
    // Offsets of the 4 input channels' weights within one output channel's block;
    // channels past the group's end repeat the last one.
    let o0 = cl0 * kk;
    let o1 = (cl0 + min(1u, nci - 1u)) * kk;
    let o2 = (cl0 + min(2u, nci - 1u)) * kk;
    let o3 = (cl0 + min(3u, nci - 1u)) * kk;

    let si = i32(s);
    let omax = i32(p.w_out) - 1;
    let lanes = vec4<i32>(i32(m0)) + vec4<i32>(0, 1, 2, 3);

    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var j = 0u; j < cout_g; j++) {
        let co = g * cout_g + j;
        let dy_base = (nb * p.c_out + co) * p.h_out;
        let wb = co * cin_g * kk;
        for (var ky = 0u; ky < p.kh; ky++) {
            // oy · stride = iy + pad - ky must be a non-negative multiple of stride.
            let ty = i32(iy + p.pad) - i32(ky);
            if ty < 0 || ty % si != 0 || u32(ty / si) >= p.h_out {
                continue;
            }
            let dr = (dy_base + u32(ty / si)) * p.w_out;
            let wr = wb + ky * p.kw;
            for (var kx = 0u; kx < p.kw; kx++) {
                // Lane t: ox·s = r + pad - kx + s·(m0 + t); the same divisibility for all.
                // t0 = r + pad - kx may be negative; shifted by s·kw it is not, so `%` and
                // `/` see no negative operand (WGSL truncates there, but GLSL leaves it
                // undefined and llvmpipe's GL computes it unsigned: -1 % 3 == 0).
                let tu = rx + p.pad + s * p.kw - kx;
                if tu % s != 0u {
                    continue;
                }
                let ox = vec4<i32>(i32(tu / s) - i32(p.kw)) + lanes;
                let ok = ox >= vec4<i32>(0) & ox <= vec4<i32>(omax);
                let oc = vec4<u32>(clamp(ox, vec4<i32>(0), vec4<i32>(omax)));
                let dv = select(
                    vec4<f32>(0.0),
                    vec4<f32>(dy[dr + oc.x], dy[dr + oc.y], dy[dr + oc.z], dy[dr + oc.w]),
                    ok,
                );
                let k = wr + kx;
                a0 += wt[k + o0] * dv;
                a1 += wt[k + o1] * dv;
                a2 += wt[k + o2] * dv;
                a3 += wt[k + o3] * dv;
            }
        }
    }
    let ci0 = g * cin_g + cl0;
    store(nb, ci0, iy, rx, m0, a0);
    if nci > 1u {
        store(nb, ci0 + 1u, iy, rx, m0, a1);
    }
    if nci > 2u {
        store(nb, ci0 + 2u, iy, rx, m0, a2);
    }
    if nci > 3u {
        store(nb, ci0 + 3u, iy, rx, m0, a3);
    }
}

//#include conv_store_backward_data.wgsl
