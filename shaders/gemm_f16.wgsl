// f16-operand GEMM: C = alpha · A16 · B16 + beta · C, batched over workgroup z.
//
// A16 (M_p×K_p) and B16 (K_p×N_p) are row-major f16 matrices zero-padded by f16_pack.wgsl so
// that M_p, N_p and K_p are multiples of 16 (the transposes were taken while packing). C is
// the logical M×N row-major f32 matrix. Products and sums are f32: an f16·f16 product is
// exact in f32, so the only precision lost against the f32 GEMM is the operands' rounding.
//
// Same scheme as gemm.wgsl: each workgroup computes a 64×64 tile of C with 16×16 threads,
// 4×4 outputs per thread, stepping K by 16 through workgroup memory (held as f32: converted
// once on load). Every load is one vec4<f16> (8 bytes): K_p and N_p are multiples of 16, so
// a run of 4 never crosses a row end and the only bounds checks are rows ≥ M_p / columns
// ≥ N_p of the 64-wide tile. beta == 0 never reads C.
// Dispatch: (ceil(N_p/64), ceil(M_p/64), batch).

enable f16;

struct Params {
    m: u32,
    n: u32,
    mp: u32,
    np: u32,
    kp: u32,
    batch: u32,
    alpha: f32,
    beta: f32,
    // Elements between consecutive matrices of a batch (f16 elements for A16 and B16).
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> lhs: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> rhs: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const TILE: u32 = 64u;
const KT: u32 = 16u;

// [KT][TILE / 4]: a_tile[kk * 16 + i] holds A rows 4i..4i+3 at k = kk.
var<workgroup> a_tile: array<vec4<f32>, 256>;
// [KT][TILE / 4]: b_tile[kk * 16 + j] holds B columns 4j..4j+3 at k = kk.
var<workgroup> b_tile: array<vec4<f32>, 256>;

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

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    // A: thread t takes row t/4, k offsets (t%4)*4..+4. B: k = t/16, columns (t%16)*4..+4.
    let ar = t >> 2u;
    let ak = (t & 3u) * 4u;
    let am = row0 + ar;
    let bk = t >> 4u;
    let bc = (t & 15u) * 4u;
    let bn = col0 + bc;
    for (var k0 = 0u; k0 < p.kp; k0 += KT) {
        var va = vec4<f32>(0.0);
        if am < p.mp {
            va = vec4<f32>(lhs[(a_off + am * p.kp + k0 + ak) >> 2u]);
        }
        for (var j = 0u; j < 4u; j++) {
            a_tile[(ak + j) * 16u + (ar >> 2u)][ar & 3u] = va[j];
        }
        var vb = vec4<f32>(0.0);
        if bn < p.np {
            vb = vec4<f32>(rhs[(b_off + (k0 + bk) * p.np + bn) >> 2u]);
        }
        b_tile[bk * 16u + (bc >> 2u)] = vb;
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
            r += p.beta * out[idx];
        }
        out[idx] = r;
    }
}
