// conv2d backward data as an implicit GEMM, per group g (workgroup z):
//   dX_g[ci', col] = Σ_k Wᵀ_g[ci', k] · dY_g[k, col]
// with k = (co', ky, kx) over c_out/groups · kh · kw and col = (n, iy, ix) over n · h · w;
// dY_g[k, col] = dy[n, co, oy, ox] where oy·stride = iy + pad - ky (zero when that is not a
// non-negative multiple of the stride or falls outside the output), likewise ox.
// Tiling as in gemm.wgsl: 64 input channels × 64 pixels per workgroup, 4×4 per invocation,
// K step 16. Dispatch: (ceil(n·h·w / 64), ceil((c_in/groups) / 64), groups).
// Flag bit 0: accumulate into dx.

//#include conv_params.wgsl

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

const TILE: u32 = 64u;
const KT: u32 = 16u;

var<workgroup> w_tile: array<vec4<f32>, 256>;
var<workgroup> g_tile: array<vec4<f32>, 256>;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let g = wid.z;
    let cin_g = p.c_in / p.groups;
    let cout_g = p.c_out / p.groups;
    let khw = p.kh * p.kw;
    let k_len = cout_g * khw;
    let plane_in = p.h * p.w;
    let plane_out = p.h_out * p.w_out;
    let cols = p.n * plane_in;
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;

    let kk_load = t >> 4u;
    let m_load = row0 + (t & 15u) * 4u;
    let c_load = col0 + (t & 15u) * 4u;
    var col_base: array<u32, 4>;
    var col_ty: array<i32, 4>;
    var col_tx: array<i32, 4>;
    var col_ok: array<bool, 4>;
    for (var j = 0u; j < 4u; j++) {
        let col = c_load + j;
        col_ok[j] = col < cols;
        let cc = min(col, max(cols, 1u) - 1u);
        let nb = cc / plane_in;
        let pix = cc % plane_in;
        col_base[j] = (nb * p.c_out + g * cout_g) * plane_out;
        col_ty[j] = i32(pix / p.w + p.pad);
        col_tx[j] = i32(pix % p.w + p.pad);
    }

    // Four named accumulators (not an array): constant indexing keeps them in registers.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    let s = i32(p.stride);
    for (var k0 = 0u; k0 < k_len; k0 += KT) {
        let k = k0 + kk_load;
        var wv = vec4<f32>(0.0);
        var gv = vec4<f32>(0.0);
        if k < k_len {
            let co = k / khw;
            let r = k % khw;
            let w_base = (g * cout_g + co) * cin_g * khw + r;
            for (var i = 0u; i < 4u; i++) {
                let m = m_load + i;
                if m < cin_g {
                    wv[i] = wt[w_base + m * khw];
                }
            }
            let ky = i32(r / p.kw);
            let kx = i32(r % p.kw);
            for (var j = 0u; j < 4u; j++) {
                let ty = col_ty[j] - ky;
                let tx = col_tx[j] - kx;
                if col_ok[j] && ty >= 0 && tx >= 0 && ty % s == 0 && tx % s == 0 {
                    let oy = u32(ty / s);
                    let ox = u32(tx / s);
                    if oy < p.h_out && ox < p.w_out {
                        gv[j] = dy[col_base[j] + co * plane_out + oy * p.w_out + ox];
                    }
                }
            }
        }
        w_tile[t] = wv;
        g_tile[t] = gv;
        workgroupBarrier();
        for (var kk = 0u; kk < KT; kk++) {
            let av = w_tile[kk * 16u + lid.y];
            let bv = g_tile[kk * 16u + lid.x];
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
        workgroupBarrier();
    }

    let m0 = row0 + lid.y * 4u;
    let c0 = col0 + lid.x * 4u;
    store_row(g, m0, c0, acc0);
    store_row(g, m0 + 1u, c0, acc1);
    store_row(g, m0 + 2u, c0, acc2);
    store_row(g, m0 + 3u, c0, acc3);
}

// dx[n, g·cin_g + m, pixel] (+)= v for the 4 columns c0.. of input channel m of group g.
fn store_row(g: u32, m: u32, c0: u32, v: vec4<f32>) {
    let cin_g = p.c_in / p.groups;
    if m >= cin_g {
        return;
    }
    let plane_in = p.h * p.w;
    let cols = p.n * plane_in;
    for (var j = 0u; j < 4u; j++) {
        let col = c0 + j;
        if col >= cols {
            return;
        }
        let nb = col / plane_in;
        let idx = (nb * p.c_in + g * cin_g + m) * plane_in + col % plane_in;
        var r = v[j];
        if (p.flags & 1u) != 0u {
            r += dx[idx];
        }
        dx[idx] = r;
    }
}
