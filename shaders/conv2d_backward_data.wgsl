// conv2d backward data: dx[n, ci, iy, ix] = Σ dy[n, co, oy, ox] · w[co, ci', ky, kx] over the
// output channels co of ci's group and the (ky, kx) with oy·s - p + ky = iy, ox·s - p + kx = ix.
// One invocation per input element, 256 per workgroup, 2-D grid (flat = wid.x + wid.y · nwg.x).
// Flag bit 0: accumulate into dx (e.g. a residual branch's gradient) instead of overwriting.

//#include conv_params.wgsl

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

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
    let ix = idx % p.w;
    let iy = (idx / p.w) % p.h;
    let ci = (idx / (p.w * p.h)) % p.c_in;
    let nb = idx / (p.w * p.h * p.c_in);
    let cin_g = p.c_in / p.groups;
    let cout_g = p.c_out / p.groups;
    let g = ci / cin_g;
    let cl = ci % cin_g;

    var acc = 0.0;
    for (var j = 0u; j < cout_g; j++) {
        let co = g * cout_g + j;
        let dy_base = (nb * p.c_out + co) * p.h_out;
        let w_base = (co * cin_g + cl) * p.kh;
        for (var ky = 0u; ky < p.kh; ky++) {
            // oy · stride = iy + pad - ky must be a non-negative multiple of stride.
            let ty = i32(iy + p.pad) - i32(ky);
            if ty < 0 || u32(ty) % p.stride != 0u {
                continue;
            }
            let oy = u32(ty) / p.stride;
            if oy >= p.h_out {
                continue;
            }
            for (var kx = 0u; kx < p.kw; kx++) {
                let tx = i32(ix + p.pad) - i32(kx);
                if tx < 0 || u32(tx) % p.stride != 0u {
                    continue;
                }
                let ox = u32(tx) / p.stride;
                if ox >= p.w_out {
                    continue;
                }
                acc += dy[(dy_base + oy) * p.w_out + ox] * wt[(w_base + ky) * p.kw + kx];
            }
        }
    }
    if (p.flags & 1u) != 0u {
        acc += dx[idx];
    }
    dx[idx] = acc;
}
