// Tensor-core GEMM through wgpu's cooperative-matrix extension:
// C = alpha · A16 · B16 + beta · C, batched over workgroup z. Used only where the adapter
// offers EXPERIMENTAL_COOPERATIVE_MATRIX with 16×16×16 f16·f16→f32 and subgroups of exactly
// 32 given SUBGROUP (see gpu/device.rs).
//
// Operands as for gemm_f16.wgsl: A16 (M_p×K_p) and B16 (K_p×N_p) row-major f16, zero-padded
// by f16_pack.wgsl to multiples of 16; C is the logical M×N row-major f32 matrix. The
// multiply-adds run on coop_mat16x16 tiles: f16 operands, f32 accumulators.
//
// One kernel, four variants chosen by pipeline-overridable constants (kernels/gemm_f16.rs,
// `HalfKind`); all give the same results:
// - SUBGROUPS = 1: one workgroup = 32 invocations = one subgroup, computing a 64×64 block of
//   C. SUBGROUPS = 4: 128 invocations = 4 subgroups of 32, a 128×128 block, subgroup s (from
//   `subgroup_id`) taking the 64×64 quadrant (s / 2, s % 2); the two subgroups of a quadrant
//   row read the same A tiles and the two of a column the same B tiles at about the same
//   time, so half of the tile loads can hit L1 instead of L2.
// - PREFETCH: the K loop is software-pipelined: it issues the coopLoadT of step k+16 before
//   the 16 coopMultiplyAdd of step k, holding two sets of A/B tiles, so the loads' latency
//   overlaps the multiply-adds instead of relying on the driver compiler to reorder them.
//   Which variant is fastest is a question for the GPU: `limpq bench gemm --kind all`.
//
// Each subgroup computes its 64×64 block as 4×4 tiles of 16×16, its A and B tiles loaded
// straight from storage (coopLoadT, row-major, stride K_p / N_p) — on the H200 that beat
// staging tiles in workgroup memory. Tile origins past M_p / N_p are clamped to the last
// tile so that every load is in bounds; their results are never stored. The accumulators
// start as a zeroed workgroup tile. The epilogue stores each accumulator into the
// subgroup's own 16×16 workgroup tile and its 32 invocations write the 256 values to C with
// bounds checks, alpha and beta (beta == 0 never reads C), so M and N need not be multiples
// of 16. Every subgroup runs the epilogue for all 16 of its tiles (elements outside C,
// including whole clamped duplicate tiles, are masked per element), so the barriers stay
// uniform.
// naga 30 pitfall: index expressions are bound to a `let` before coopLoadT / coopStoreT.
// Dispatch: (ceil(N_p/B), ceil(M_p/B), batch), B = 64 (SUBGROUPS = 1) or 128 (4).

enable f16;
enable wgpu_cooperative_matrix;

// Subgroups of 32 per workgroup: 1 or 4 (no other value is valid).
override SUBGROUPS: u32 = 1u;
// Software-pipelined K loop.
override PREFETCH: bool = false;

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

// One 16×16 f32 tile per subgroup (room for 4): zeros for the accumulators, then the
// epilogue's staging.
var<workgroup> stage: array<f32, 1024>;

@compute @workgroup_size(32u * SUBGROUPS, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    // Block edge of a workgroup: 64 with one subgroup, 128 with four.
    let block = select(64u, 128u, SUBGROUPS == 4u);
    let row0 = wid.y * block + (sg >> 1u) * 64u;
    let col0 = wid.x * block + (sg & 1u) * 64u;
    let a_off = wid.z * p.stride_a;
    let b_off = wid.z * p.stride_b;
    let c_off = wid.z * p.stride_c;
    let base = sg * 256u;
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
        stage[base + lane * 8u + e] = 0.0;
    }
    workgroupBarrier();
    let zero = coopLoadT<coop_mat16x16<f32, C>>(&stage[base], 16u);
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

    if PREFETCH {
        let ia00 = a_off + r0 * p.kp;
        var a0 = coopLoadT<coop_mat16x16<f16, A>>(&lhs[ia00], p.kp);
        let ia10 = a_off + r1 * p.kp;
        var a1 = coopLoadT<coop_mat16x16<f16, A>>(&lhs[ia10], p.kp);
        let ia20 = a_off + r2 * p.kp;
        var a2 = coopLoadT<coop_mat16x16<f16, A>>(&lhs[ia20], p.kp);
        let ia30 = a_off + r3 * p.kp;
        var a3 = coopLoadT<coop_mat16x16<f16, A>>(&lhs[ia30], p.kp);
        let ib00 = b_off + c0;
        var b0 = coopLoadT<coop_mat16x16<f16, B>>(&rhs[ib00], p.np);
        let ib10 = b_off + c1;
        var b1 = coopLoadT<coop_mat16x16<f16, B>>(&rhs[ib10], p.np);
        let ib20 = b_off + c2;
        var b2 = coopLoadT<coop_mat16x16<f16, B>>(&rhs[ib20], p.np);
        let ib30 = b_off + c3;
        var b3 = coopLoadT<coop_mat16x16<f16, B>>(&rhs[ib30], p.np);
        for (var k = 16u; k < p.kp; k += 16u) {
            // Issue the next step's loads before this step's multiply-adds.
            let ia0 = a_off + r0 * p.kp + k;
            let na0 = coopLoadT<coop_mat16x16<f16, A>>(&lhs[ia0], p.kp);
            let ia1 = a_off + r1 * p.kp + k;
            let na1 = coopLoadT<coop_mat16x16<f16, A>>(&lhs[ia1], p.kp);
            let ia2 = a_off + r2 * p.kp + k;
            let na2 = coopLoadT<coop_mat16x16<f16, A>>(&lhs[ia2], p.kp);
            let ia3 = a_off + r3 * p.kp + k;
            let na3 = coopLoadT<coop_mat16x16<f16, A>>(&lhs[ia3], p.kp);
            let ib0 = b_off + k * p.np + c0;
            let nb0 = coopLoadT<coop_mat16x16<f16, B>>(&rhs[ib0], p.np);
            let ib1 = b_off + k * p.np + c1;
            let nb1 = coopLoadT<coop_mat16x16<f16, B>>(&rhs[ib1], p.np);
            let ib2 = b_off + k * p.np + c2;
            let nb2 = coopLoadT<coop_mat16x16<f16, B>>(&rhs[ib2], p.np);
            let ib3 = b_off + k * p.np + c3;
            let nb3 = coopLoadT<coop_mat16x16<f16, B>>(&rhs[ib3], p.np);
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
            a0 = na0;
            a1 = na1;
            a2 = na2;
            a3 = na3;
            b0 = nb0;
            b1 = nb1;
            b2 = nb2;
            b3 = nb3;
        }
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
    } else {
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
    }

    emit(acc00, row0 + 0u, col0 + 0u, lane, base, c_off);
    emit(acc01, row0 + 0u, col0 + 16u, lane, base, c_off);
    emit(acc02, row0 + 0u, col0 + 32u, lane, base, c_off);
    emit(acc03, row0 + 0u, col0 + 48u, lane, base, c_off);
    emit(acc10, row0 + 16u, col0 + 0u, lane, base, c_off);
    emit(acc11, row0 + 16u, col0 + 16u, lane, base, c_off);
    emit(acc12, row0 + 16u, col0 + 32u, lane, base, c_off);
    emit(acc13, row0 + 16u, col0 + 48u, lane, base, c_off);
    emit(acc20, row0 + 32u, col0 + 0u, lane, base, c_off);
    emit(acc21, row0 + 32u, col0 + 16u, lane, base, c_off);
    emit(acc22, row0 + 32u, col0 + 32u, lane, base, c_off);
    emit(acc23, row0 + 32u, col0 + 48u, lane, base, c_off);
    emit(acc30, row0 + 48u, col0 + 0u, lane, base, c_off);
    emit(acc31, row0 + 48u, col0 + 16u, lane, base, c_off);
    emit(acc32, row0 + 48u, col0 + 32u, lane, base, c_off);
    emit(acc33, row0 + 48u, col0 + 48u, lane, base, c_off);
}

// C[tr.., tc..] (16×16, within bounds) = alpha · acc + beta · C, through this subgroup's
// staging tile. Every subgroup calls it for all its tiles (uniform barriers); elements
// outside C, including whole clamped duplicate tiles, are not written.
fn emit(acc: coop_mat16x16<f32, C>, tr: u32, tc: u32, lane: u32, base: u32, c_off: u32) {
    workgroupBarrier();
    coopStoreT(acc, &stage[base], 16u);
    workgroupBarrier();
    for (var e = 0u; e < 8u; e++) {
        let i = lane * 8u + e;
        let r = tr + (i >> 4u);
        let c = tc + (i & 15u);
        if r < p.m && c < p.n {
            let idx = c_off + r * p.n + c;
            var v = p.alpha * stage[base + i];
            if p.beta != 0.0 {
                v += p.beta * out[idx];
            }
            out[idx] = v;
        }
    }
}
