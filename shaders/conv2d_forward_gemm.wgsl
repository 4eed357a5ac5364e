// conv2d forward as an implicit GEMM, per group g (workgroup z):
//   Y_g[co', col] = Σ_k W_g[co', k] · X_g[k, col]   (+ bias[co])
// with k = (ci', ky, kx) over c_in/groups · kh · kw and col = (n, oy, ox) over n · h_out · w_out;
// X_g is the im2col of the input, gathered on the fly (zero where the window hits padding).
// Same tiling as gemm.wgsl: 64×64 output tiles (64 output channels × 64 pixels), 16×16
// invocations with 4×4 outputs each, K stepped by 16 through workgroup memory. Every
// invocation decomposes its 4 pixel columns once, and its k once per K step.
// Dispatch: (ceil(n·h_out·w_out / 64), ceil((c_out/groups) / 64), groups). Flag bit 0: bias.

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

const TILE: u32 = 64u;
const KT: u32 = 16u;

// [KT][16]: w_tile[kk * 16 + i] holds output channels 4i..4i+3 of the tile at k = kk.
var<workgroup> w_tile: array<vec4<f32>, 256>;
// [KT][16]: x_tile[kk * 16 + j] holds pixel columns 4j..4j+3 of the tile at k = kk.
var<workgroup> x_tile: array<vec4<f32>, 256>;

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
    let k_len = cin_g * khw;
    let plane = p.h_out * p.w_out;
    let cols = p.n * plane;
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;

    // Loader role: k row kk = t / 16 of both tiles, 4 output channels / 4 pixel columns.
    let kk_load = t >> 4u;
    let m_load = row0 + (t & 15u) * 4u;
    let c_load = col0 + (t & 15u) * 4u;
    // Per pixel column: input offset of (n, channel g·cin_g, 0, 0), top-left corner of its window.
    var col_base: array<u32, 4>;
    var col_iy: array<i32, 4>;
    var col_ix: array<i32, 4>;
    var col_ok: array<bool, 4>;
    for (var j = 0u; j < 4u; j++) {
        let col = c_load + j;
        col_ok[j] = col < cols;
        let cc = min(col, max(cols, 1u) - 1u);
        let nb = cc / plane;
        let pix = cc % plane;
        col_base[j] = (nb * p.c_in + g * cin_g) * p.h * p.w;
        col_iy[j] = i32((pix / p.w_out) * p.stride) - i32(p.pad);
        col_ix[j] = i32((pix % p.w_out) * p.stride) - i32(p.pad);
    }

    let lsq = quant_params();
    // Four named accumulators (not an array): constant indexing keeps them in registers.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < k_len; k0 += KT) {
        let k = k0 + kk_load;
        var wv = vec4<f32>(0.0);
        var xv = vec4<f32>(0.0);
        if k < k_len {
            for (var i = 0u; i < 4u; i++) {
                let m = m_load + i;
                if m < cout_g {
                    wv[i] = wt[(g * cout_g + m) * k_len + k];
                }
            }
            let c = k / khw;
            let ky = i32((k / p.kw) % p.kh);
            let kx = i32(k % p.kw);
            let c_off = c * p.h * p.w;
            for (var j = 0u; j < 4u; j++) {
                let iy = col_iy[j] + ky;
                let ix = col_ix[j] + kx;
                if col_ok[j] && iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w) {
                    xv[j] = load_x(col_base[j] + c_off + u32(iy) * p.w + u32(ix), lsq);
                }
            }
        }
        w_tile[t] = wv;
        x_tile[t] = xv;
        workgroupBarrier();
        for (var kk = 0u; kk < KT; kk++) {
            let av = w_tile[kk * 16u + lid.y];
            let bv = x_tile[kk * 16u + lid.x];
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

// y[n, g·cout_g + m, pixel] for the 4 columns c0.. of output channel m of group g (+ bias).
fn store_row(g: u32, m: u32, c0: u32, v: vec4<f32>) {
    let cout_g = p.c_out / p.groups;
    if m >= cout_g {
        return;
    }
    let plane = p.h_out * p.w_out;
    let cols = p.n * plane;
    let co = g * cout_g + m;
    var b = 0.0;
    if (p.flags & 1u) != 0u {
        b = bias[co];
    }
    for (var j = 0u; j < 4u; j++) {
        let col = c0 + j;
        if col >= cols {
            return;
        }
        let nb = col / plane;
        y[(nb * p.c_out + co) * plane + col % plane] = v[j] + b;
    }
}
