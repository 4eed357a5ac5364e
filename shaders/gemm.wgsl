// Tiled GEMM: C = alpha * op(A) · op(B) + beta * C, batched over workgroup z.
//
// op(A) is M×K, op(B) is K×N, C is M×N, all row-major f32. Flag bit 0: A is stored
// transposed (K×M); bit 1: B is stored transposed (N×K). This covers the linear layer:
// forward y = x·Wᵀ (B transposed), dx = dy·W, dW = dyᵀ·x (A transposed).
//
// Each workgroup computes a 64×64 tile of C with 16×16 threads, 4×4 outputs per thread,
// stepping K by 16 through workgroup memory. Tiles are fetched as vec4 loads when a run of
// 4 elements is in bounds and 16-byte aligned, else element by element with zero padding,
// so any M, N, K works. beta == 0 never reads C (stale NaNs cannot leak in).
// Dispatch: (ceil(N/64), ceil(M/64), batch).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    alpha: f32,
    beta: f32,
    batch: u32,
    _pad0: u32,
    // Element offsets between consecutive matrices of a batch.
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TILE: u32 = 64u;
const KT: u32 = 16u;

// [KT][TILE / 4]: a_tile[kk * 16 + i] holds op(A) rows 4i..4i+3 at k = kk.
var<workgroup> a_tile: array<vec4<f32>, 256>;
// [KT][TILE / 4]: b_tile[kk * 16 + j] holds op(B) columns 4j..4j+3 at k = kk.
var<workgroup> b_tile: array<vec4<f32>, 256>;

// Four consecutive elements of `a` from flat index i; only the first `valid` are read.
fn load_a4(i: u32, valid: u32) -> vec4<f32> {
    if valid >= 4u && (i & 3u) == 0u {
        return a[i >> 2u];
    }
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < min(valid, 4u); j++) {
        v[j] = a[(i + j) >> 2u][(i + j) & 3u];
    }
    return v;
}

fn load_b4(i: u32, valid: u32) -> vec4<f32> {
    if valid >= 4u && (i & 3u) == 0u {
        return b[i >> 2u];
    }
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < min(valid, 4u); j++) {
        v[j] = b[(i + j) >> 2u][(i + j) & 3u];
    }
    return v;
}

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let a_off = wid.z * p.stride_a;
    let b_off = wid.z * p.stride_b;
    let c_off = wid.z * p.stride_c;
    let trans_a = (p.flags & 1u) != 0u;
    let trans_b = (p.flags & 2u) != 0u;

    // Four named accumulators (not an array): constant indexing keeps them in registers.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < p.k; k0 += KT) {
        // op(A) tile: rows row0..row0+64, k0..k0+16; one vec4 per thread.
        if !trans_a {
            // Stored M×K, contiguous along k: thread t takes row t/4, k offsets (t%4)*4..+4.
            let r = t >> 2u;
            let kc = (t & 3u) * 4u;
            let m = row0 + r;
            let kg = k0 + kc;
            var v = vec4<f32>(0.0);
            if m < p.m && kg < p.k {
                v = load_a4(a_off + m * p.k + kg, p.k - kg);
            }
            for (var j = 0u; j < 4u; j++) {
                a_tile[(kc + j) * 16u + (r >> 2u)][r & 3u] = v[j];
            }
        } else {
            // Stored K×M, contiguous along m: thread t takes k = t/16, rows (t%16)*4..+4.
            let kk = t >> 4u;
            let mc = (t & 15u) * 4u;
            let m = row0 + mc;
            let kg = k0 + kk;
            var v = vec4<f32>(0.0);
            if m < p.m && kg < p.k {
                v = load_a4(a_off + kg * p.m + m, p.m - m);
            }
            a_tile[kk * 16u + (mc >> 2u)] = v;
        }
        // op(B) tile: k0..k0+16, columns col0..col0+64.
        if !trans_b {
            // Stored K×N, contiguous along n.
            let kk = t >> 4u;
            let nc = (t & 15u) * 4u;
            let n = col0 + nc;
            let kg = k0 + kk;
            var v = vec4<f32>(0.0);
            if n < p.n && kg < p.k {
                v = load_b4(b_off + kg * p.n + n, p.n - n);
            }
            b_tile[kk * 16u + (nc >> 2u)] = v;
        } else {
            // Stored N×K, contiguous along k.
            let cidx = t >> 2u;
            let kc = (t & 3u) * 4u;
            let n = col0 + cidx;
            let kg = k0 + kc;
            var v = vec4<f32>(0.0);
            if n < p.n && kg < p.k {
                v = load_b4(b_off + n * p.k + kg, p.k - kg);
            }
            for (var j = 0u; j < 4u; j++) {
                b_tile[(kc + j) * 16u + (cidx >> 2u)][cidx & 3u] = v[j];
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KT; kk++) {
            let av = a_tile[kk * 16u + lid.y];
            let bv = b_tile[kk * 16u + lid.x];
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
        workgroupBarrier();
    }

    let m0 = row0 + lid.y * 4u;
    let n0 = col0 + lid.x * 4u;
    store_row(c_off, m0, n0, acc0);
    store_row(c_off, m0 + 1u, n0, acc1);
    store_row(c_off, m0 + 2u, n0, acc2);
    store_row(c_off, m0 + 3u, n0, acc3);
}

// C[m, n0..n0+4] = alpha · v + beta · C, within bounds.
fn store_row(c_off: u32, m: u32, n0: u32, v: vec4<f32>) {
    if m >= p.m {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + j;
        if n >= p.n {
            return;
        }
        let idx = c_off + m * p.n + n;
        var r = p.alpha * v[j];
        if p.beta != 0.0 {
            r += p.beta * c[idx];
        }
        c[idx] = r;
    }
}
