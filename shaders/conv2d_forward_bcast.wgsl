// conv2d forward, subgroup-broadcast kernel for CPU adapters with subgroups of exactly 8
// (lavapipe on x86-64; gpu/device.rs `Gpu::subgroup8`):
// y[n, co, oy, ox] = bias[co] + Σ x[n, ci, oy·s - p + ky, ox·s - p + kx] · w[co, ci', ky, kx].
// llvmpipe runs 8 invocations as one SIMD batch and executes every storage-buffer load lane by
// lane (a loop with a bounds check per lane), so loads, not arithmetic, set its pace, while a
// subgroupBroadcast from a constant lane is one extract and splat. Every invocation of a
// workgroup works on the same 8 output channels (workgroup_id.z = group · ⌈(c_out/groups)/8⌉
// + channel block) and computes them for 4 consecutive ox of one row: per tap each lane loads
// its 4 x values and ONE weight (lane j: channel j of the block), and the 8 weights reach every
// lane by broadcast — 32 products per 5 loads (the register-blocked kernel: 16 per 8). Under
// stride 1 the next tap's 4 columns are the last 3 and one more, so a row of kw taps loads
// 4 + (kw - 1) x values, not 4·kw (3×3: 96 products per 9 loads).
// Control flow is uniform (loops over uniform bounds, rows and columns off the image loaded
// from a clamped index and replaced by 0 with select, invocations past the end compute a
// clamped block and skip the store), as subgroup operations need.
// 64 invocations per workgroup; wid.x + wid.y · nwg.x indexes the spatial blocks
// (n · h_out · ⌈w_out/4⌉ = `total`). Flag bit 0: add bias.

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
    let wblocks = (p.w_out + 3u) / 4u;
    let cblocks = (cout_g + 7u) / 8u;
    let oxb = idx % wblocks;
    let r = idx / wblocks;
    let oy = r % p.h_out;
    let nb = r / p.h_out;
    let cb = wid.z % cblocks;
    let g = wid.z / cblocks;

    let cl0 = cb * 8u;
    let nco = min(8u, cout_g - cl0);
    let co0 = g * cout_g + cl0;
    let kk = p.kh * p.kw;
    let wstride = cin_g * kk;
    // This lane's weight row: channel `sid` of the block (past the group's end, the last one).
    let wl = (co0 + min(sid, nco - 1u)) * wstride;

    let ox0 = oxb * 4u;
    let s = i32(p.stride);
    let ixb = vec4<i32>(i32(ox0) * s - i32(p.pad)) + vec4<i32>(0, s, 2 * s, 3 * s);
    let wmax = i32(p.w) - 1;
    let hmax = i32(p.h) - 1;
    let iy0 = i32(oy * p.stride) - i32(p.pad);
    let unit = p.stride == 1u;

    let lsq = quant_params();
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    for (var c = 0u; c < cin_g; c++) {
        let x_base = (nb * p.c_in + g * cin_g + c) * p.h;
        let wc = wl + c * kk;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = iy0 + i32(ky);
            let row_ok = iy >= 0 && iy <= hmax;
            let xr = (x_base + u32(clamp(iy, 0, hmax))) * p.w;
            let wr = wc + ky * p.kw;
            var xv = vec4<f32>(0.0);
            for (var kx = 0u; kx < p.kw; kx++) {
                if unit && kx > 0u {
                    // Stride 1: the 4 columns move one to the right; load only the new one.
                    let i = ixb.w + i32(kx);
                    let v = quant1(x[xr + u32(clamp(i, 0, wmax))], lsq);
                    xv = vec4<f32>(xv.yzw, select(0.0, v, row_ok && i >= 0 && i <= wmax));
                } else {
                    let ix = ixb + vec4<i32>(i32(kx));
                    let ok = ix >= vec4<i32>(0) & ix <= vec4<i32>(wmax) & vec4<bool>(row_ok);
                    let ic = vec4<u32>(clamp(ix, vec4<i32>(0), vec4<i32>(wmax)));
                    let v = vec4<f32>(x[xr + ic.x], x[xr + ic.y], x[xr + ic.z], x[xr + ic.w]);
                    xv = select(vec4<f32>(0.0), quant4(v, lsq), ok);
                }
                let wv = wt[wr + kx];
                a0 += subgroupBroadcast(wv, 0u) * xv;
                a1 += subgroupBroadcast(wv, 1u) * xv;
                a2 += subgroupBroadcast(wv, 2u) * xv;
                a3 += subgroupBroadcast(wv, 3u) * xv;
                a4 += subgroupBroadcast(wv, 4u) * xv;
                a5 += subgroupBroadcast(wv, 5u) * xv;
                a6 += subgroupBroadcast(wv, 6u) * xv;
                a7 += subgroupBroadcast(wv, 7u) * xv;
            }
        }
    }
    if !live {
        return;
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
    if nco > 4u {
        store(nb, co0 + 4u, oy, ox0, a4);
    }
    if nco > 5u {
        store(nb, co0 + 5u, oy, ox0, a5);
    }
    if nco > 6u {
        store(nb, co0 + 6u, oy, ox0, a6);
    }
    if nco > 7u {
        store(nb, co0 + 7u, oy, ox0, a7);
    }
}

//#include conv_store_forward.wgsl
