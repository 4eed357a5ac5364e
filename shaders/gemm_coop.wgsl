// Tensor-core GEMM through wgpu's cooperative-matrix extension:
// C = alpha · A16 · B16 + beta · C, batched over workgroup z. Used only where the adapter
// offers EXPERIMENTAL_COOPERATIVE_MATRIX with 16×16×16 f16·f16→f32 (see gpu.rs).
//
// Operands as for gemm_f16.wgsl: A16 (M_p×K_p) and B16 (K_p×N_p) row-major f16, zero-padded
// by f16_pack.wgsl to multiples of 16; C is the logical M×N row-major f32 matrix. The
// multiply-adds run on coop_mat16x16 tiles: f16 operands, f32 accumulators.
//
// One workgroup = 32 invocations = one subgroup (gpu.rs requires the adapter's subgroups to
// be exactly 32 wide, as on NVIDIA). Each computes a 64×64 block of C as
// 4×4 tiles of 16×16, its A and B tiles loaded straight from storage (coopLoadT, row-major,
// stride K_p / N_p) — on the H200 that beat staging tiles in workgroup memory
// (docs/PERFORMANCE.md). Tile origins past M_p / N_p are clamped to the last tile so that
// every load is in bounds; their results are never stored. The accumulators start as a zeroed
// workgroup tile. The epilogue stores each accumulator into a 16×16 workgroup tile and the 32
// invocations write its 256 values to C with bounds checks, alpha and beta (beta == 0 never
// reads C), so M and N need not be multiples of 16.
// naga 30 pitfall: index expressions are bound to a `let` before coopLoadT / coopStoreT.
// Dispatch: (ceil(N_p/64), ceil(M_p/64), batch).

enable f16;
enable wgpu_cooperative_matrix;

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
@group(0) @binding(1) var<storage, read> lhs: array<f16>;
@group(0) @binding(2) var<storage, read> rhs: array<f16>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// One 16×16 f32 tile: zeros for the accumulators, then the epilogue's staging.
var<workgroup> stage: array<f32, 256>;

@compute @workgroup_size(32, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row0 = wid.y * 64u;
    let col0 = wid.x * 64u;
    let a_off = wid.z * p.stride_a;
    let b_off = wid.z * p.stride_b;
    let c_off = wid.z * p.stride_c;
    // Tile origins, clamped into the padded operands.
    let r0 = min(row0, p.mp - 16u);
    let r1 = min(row0 + 16u, p.mp - 16u);
    let r2 = min(row0 + 32u, p.mp - 16u);
    let r3 = min(row0 + 48u, p.mp - 16u);
    let c0 = min(col0, p.np - 16u);
    let c1 = min(col0 + 16u, p.np - 16u);
    let c2 = min(col0 + 32u, p.np - 16u);
    let c3 = min(col0 + 48u, p.np - 16u);

    for (var e = 0u; e < 8u; e++) {
        stage[lane * 8u + e] = 0.0;
    }
    workgroupBarrier();
    let origin = 0u;
    let zero = coopLoadT<coop_mat16x16<f32, C>>(&stage[origin], 16u);
    var acc00 = zero;
    var acc01 = zero;
    var acc02 = zero;
    var acc03 = zero;
    var acc10 = zero;
    var acc11 = zero;
    var acc12 = zero;
    var acc13 = zero;
    var acc20 = zero;
    var acc21 = zero;
    var acc22 = zero;
    var acc23 = zero;
    var acc30 = zero;
    var acc31 = zero;
    var acc32 = zero;
    var acc33 = zero;

    for (var k = 0u; k < p.kp; k += 16u) {
        let ia0 = a_off + r0 * p.kp + k;
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&lhs[ia0], p.kp);
        let ia1 = a_off + r1 * p.kp + k;
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&lhs[ia1], p.kp);
        let ia2 = a_off + r2 * p.kp + k;
        let a2 = coopLoadT<coop_mat16x16<f16, A>>(&lhs[ia2], p.kp);
        let ia3 = a_off + r3 * p.kp + k;
        let a3 = coopLoadT<coop_mat16x16<f16, A>>(&lhs[ia3], p.kp);
        let ib0 = b_off + k * p.np + c0;
        let b0 = coopLoadT<coop_mat16x16<f16, B>>(&rhs[ib0], p.np);
        let ib1 = b_off + k * p.np + c1;
        let b1 = coopLoadT<coop_mat16x16<f16, B>>(&rhs[ib1], p.np);
        let ib2 = b_off + k * p.np + c2;
        let b2 = coopLoadT<coop_mat16x16<f16, B>>(&rhs[ib2], p.np);
        let ib3 = b_off + k * p.np + c3;
        let b3 = coopLoadT<coop_mat16x16<f16, B>>(&rhs[ib3], p.np);
        acc00 = coopMultiplyAdd(a0, b0, acc00);
        acc01 = coopMultiplyAdd(a0, b1, acc01);
        acc02 = coopMultiplyAdd(a0, b2, acc02);
        acc03 = coopMultiplyAdd(a0, b3, acc03);
        acc10 = coopMultiplyAdd(a1, b0, acc10);
        acc11 = coopMultiplyAdd(a1, b1, acc11);
        acc12 = coopMultiplyAdd(a1, b2, acc12);
        acc13 = coopMultiplyAdd(a1, b3, acc13);
        acc20 = coopMultiplyAdd(a2, b0, acc20);
        acc21 = coopMultiplyAdd(a2, b1, acc21);
        acc22 = coopMultiplyAdd(a2, b2, acc22);
        acc23 = coopMultiplyAdd(a2, b3, acc23);
        acc30 = coopMultiplyAdd(a3, b0, acc30);
        acc31 = coopMultiplyAdd(a3, b1, acc31);
        acc32 = coopMultiplyAdd(a3, b2, acc32);
        acc33 = coopMultiplyAdd(a3, b3, acc33);
    }

    emit(acc00, row0 + 0u, col0 + 0u, lane, c_off);
    emit(acc01, row0 + 0u, col0 + 16u, lane, c_off);
    emit(acc02, row0 + 0u, col0 + 32u, lane, c_off);
    emit(acc03, row0 + 0u, col0 + 48u, lane, c_off);
    emit(acc10, row0 + 16u, col0 + 0u, lane, c_off);
    emit(acc11, row0 + 16u, col0 + 16u, lane, c_off);
    emit(acc12, row0 + 16u, col0 + 32u, lane, c_off);
    emit(acc13, row0 + 16u, col0 + 48u, lane, c_off);
    emit(acc20, row0 + 32u, col0 + 0u, lane, c_off);
    emit(acc21, row0 + 32u, col0 + 16u, lane, c_off);
    emit(acc22, row0 + 32u, col0 + 32u, lane, c_off);
    emit(acc23, row0 + 32u, col0 + 48u, lane, c_off);
    emit(acc30, row0 + 48u, col0 + 0u, lane, c_off);
    emit(acc31, row0 + 48u, col0 + 16u, lane, c_off);
    emit(acc32, row0 + 48u, col0 + 32u, lane, c_off);
    emit(acc33, row0 + 48u, col0 + 48u, lane, c_off);
}

// C[tr.., tc..] (16×16, within bounds) = alpha · acc + beta · C, through the staging tile.
// tr, tc are the unclamped origins: a tile starting past M or N (a clamped duplicate among
// them) is skipped. The condition depends only on the workgroup, so barriers stay uniform.
fn emit(acc: coop_mat16x16<f32, C>, tr: u32, tc: u32, lane: u32, c_off: u32) {
    if tr >= p.m || tc >= p.n {
        return;
    }
    workgroupBarrier();
    let origin = 0u;
    coopStoreT(acc, &stage[origin], 16u);
    workgroupBarrier();
    for (var e = 0u; e < 8u; e++) {
        let i = lane * 8u + e;
        let r = tr + (i >> 4u);
        let c = tc + (i & 15u);
        if r < p.m && c < p.n {
            let idx = c_off + r * p.n + c;
            var v = p.alpha * stage[i];
            if p.beta != 0.0 {
                v += p.beta * out[idx];
            }
            out[idx] = v;
        }
    }
}
