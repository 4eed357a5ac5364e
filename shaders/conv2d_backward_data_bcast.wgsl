// conv2d backward data, subgroup-broadcast kernel for CPU adapters with subgroups of exactly 8
// (lavapipe on x86-64; read conv2d_forward_bcast.wgsl first for why):
// dx[n, ci, iy, ix] = Σ dy[n, co, oy, ox] · w[co, ci', ky, kx] over the output channels co of
// ci's group and the (ky, kx) with oy·s - p + ky = iy, ox·s - p + kx = ix.
// Every invocation of a workgroup works on the same 8 input channels and the same residue
// class (ry, rx) of (iy, ix) mod s: workgroup_id.z = ((group · ⌈(c_in/groups)/8⌉ + channel
// block) · s + ry) · s + rx. So which taps (ky, kx) reach the workgroup's pixels depends on
// the workgroup alone (uniform control flow), and a strided conv wastes no lanes on taps that
// skip them. An invocation computes the 8 channels at 4 columns ix = rx + s·(m0 + t),
// t = 0..3, of one row iy = ry + s·my: per tap it loads its 4 dy values and ONE weight
// (lane j: input channel j of the block), and the 8 weights reach every lane by broadcast.
// Under stride 1 the next tap's 4 dy columns are the first 3 and one more to the left, so a
// row of kw taps loads 4 + (kw - 1) dy values, not 4·kw.
// dy off the grid is loaded from a clamped index and replaced by 0 with select; invocations
// past the end, or on a row iy ≥ h, compute a clamped block and skip the store.
// 64 invocations per workgroup; wid.x + wid.y · nwg.x indexes the blocks of one residue class
// (n · ⌈h/s⌉ · ⌈⌈w/s⌉/4⌉ = `total`). Flag bit 0: accumulate into dx.

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
    @builtin(subgroup_invocation_id) sid: u32,
) {
    let flat = (wid.x + wid.y * nwg.x) * 64u + lid;
    // A subgroup wholly past the end has nothing to store: it leaves as one (uniformly).
    if subgroupMin(flat) >= p.total {
        return;
    }
    let live = flat < p.total;
    let idx = min(flat, p.total - 1u);
    let cin_g = p.c_in / p.groups;
    let cout_g = p.c_out / p.groups;
    let s = p.stride;
    let cblocks = (cin_g + 7u) / 8u;
    let rx = wid.z % s;
    var z = wid.z / s;
    let ry = z % s;
    z = z / s;
    let cb = z % cblocks;
    let g = z / cblocks;
    // Rows iy = ry + s·my (my < ⌈h/s⌉), column blocks of 4 within the residue class.
    let mh = (p.h + s - 1u) / s;
    let mblocks = ((p.w + s - 1u) / s + 3u) / 4u;
    let m0 = (idx % mblocks) * 4u;
    let r = idx / mblocks;
    let my = r % mh;
    let nb = r / mh;
    let iy = ry + s * my;

    let cl0 = cb * 8u;
    let nci = min(8u, cin_g - cl0);
    let kk = p.kh * p.kw;
    // This lane's weight offset within an output channel's block: input channel `sid` of the
    // block (past the group's end, the last one).
    let ol = (cl0 + min(sid, nci - 1u)) * kk;

    let si = i32(s);
    let omax = i32(p.w_out) - 1;
    let hmax = i32(p.h_out) - 1;
    let lanes = vec4<i32>(i32(m0)) + vec4<i32>(0, 1, 2, 3);
    let unit = s == 1u;

    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    for (var j = 0u; j < cout_g; j++) {
        let co = g * cout_g + j;
        let dy_base = (nb * p.c_out + co) * p.h_out;
        let wb = co * cin_g * kk + ol;
        for (var ky = 0u; ky < p.kh; ky++) {
            // oy · s = iy + pad - ky = (ry + pad - ky) + s · my: a tap of this residue class
            // when ry + pad - ky is a multiple of s (the same for the whole workgroup).
            let ty = i32(ry + p.pad) - i32(ky);
            if ty % si != 0 {
                continue;
            }
            let oy = ty / si + i32(my);
            let row_ok = oy >= 0 && oy <= hmax;
            let dr = (dy_base + u32(clamp(oy, 0, hmax))) * p.w_out;
            let wr = wb + ky * p.kw;
            var dv = vec4<f32>(0.0);
            for (var kx = 0u; kx < p.kw; kx++) {
                let t0 = i32(rx + p.pad) - i32(kx);
                if t0 % si != 0 {
                    continue;
                }
                let ox = vec4<i32>(t0 / si) + lanes;
                if unit && kx > 0u {
                    // Stride 1: the 4 dy columns move one to the left; load only the new one.
                    let o = ox.x;
                    let v = dy[dr + u32(clamp(o, 0, omax))];
                    dv = vec4<f32>(select(0.0, v, row_ok && o >= 0 && o <= omax), dv.xyz);
                } else {
                    let ok = ox >= vec4<i32>(0) & ox <= vec4<i32>(omax) & vec4<bool>(row_ok);
                    let oc = vec4<u32>(clamp(ox, vec4<i32>(0), vec4<i32>(omax)));
                    let v = vec4<f32>(dy[dr + oc.x], dy[dr + oc.y], dy[dr + oc.z], dy[dr + oc.w]);
                    dv = select(vec4<f32>(0.0), v, ok);
                }
                let wv = wt[wr + kx];
                a0 += subgroupBroadcast(wv, 0u) * dv;
                a1 += subgroupBroadcast(wv, 1u) * dv;
                a2 += subgroupBroadcast(wv, 2u) * dv;
                a3 += subgroupBroadcast(wv, 3u) * dv;
                a4 += subgroupBroadcast(wv, 4u) * dv;
                a5 += subgroupBroadcast(wv, 5u) * dv;
                a6 += subgroupBroadcast(wv, 6u) * dv;
                a7 += subgroupBroadcast(wv, 7u) * dv;
            }
        }
    }
    if !live || iy >= p.h {
        return;
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
    if nci > 4u {
        store(nb, ci0 + 4u, iy, rx, m0, a4);
    }
    if nci > 5u {
        store(nb, ci0 + 5u, iy, rx, m0, a5);
    }
    if nci > 6u {
        store(nb, ci0 + 6u, iy, rx, m0, a6);
    }
    if nci > 7u {
        store(nb, ci0 + 7u, iy, rx, m0, a7);
    }
}

//#include conv_store_backward_data.wgsl
