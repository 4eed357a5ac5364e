// Batch-norm statistics, stage 2: one workgroup per channel (flat workgroup index, grid
// layout) merges the channel's chunks (mean_k, M2_k, of n_k values: 4096, the last the
// rest of m) in two fixed trees, as Chan's parallel update does:
//   mean = mean_0 + sum n_k (mean_k - mean_0) / m,
//   M2 = sum M2_k + sum n_k (mean_k - mean)^2,   var = M2 * inv_m (biased),
//   invstd = 1/sqrt(var + eps),
//   running_mean = (1 - momentum) * running_mean + momentum * mean,
//   running_var  = (1 - momentum) * running_var  + momentum * var * unbias.
// inv_m and unbias count every rank's values under synchronised BN, whose combined
// partials give every chunk the mean of all ranks and M2_k = ranks * n_k * var.

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    m: u32,
    chunks: u32,
    flags: u32,
    eps: f32,
    momentum: f32,
    inv_m: f32,
    unbias: f32,
    total: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> saved_mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> saved_invstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> running_var: array<f32>;

const CHUNK: u32 = 4096u;

var<workgroup> s1: array<f32, 256>;
var<workgroup> s2: array<f32, 256>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let ch = wid.x + wid.y * nwg.x;
    // Uniform per workgroup, so returning here keeps the barriers below uniform.
    if ch >= p.c {
        return;
    }
    let base = ch * p.chunks;
    let ref_mean = partials[base * 2u];
    var a = 0.0;
    for (var k = t; k < p.chunks; k += 256u) {
        let nk = f32(min(CHUNK, p.m - k * CHUNK));
        a += nk * (partials[(base + k) * 2u] - ref_mean);
    }
    s1[t] = a;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if t < stride {
            s1[t] += s1[t + stride];
        }
        workgroupBarrier();
    }
    let mean = ref_mean + s1[0] / f32(p.m);
    var b = 0.0;
    for (var k = t; k < p.chunks; k += 256u) {
        let nk = f32(min(CHUNK, p.m - k * CHUNK));
        let d = partials[(base + k) * 2u] - mean;
        b += partials[(base + k) * 2u + 1u] + nk * d * d;
    }
    s2[t] = b;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if t < stride {
            s2[t] += s2[t + stride];
        }
        workgroupBarrier();
    }
    if t == 0u {
        let v = max(s2[0] * p.inv_m, 0.0);
        saved_mean[ch] = mean;
        saved_invstd[ch] = 1.0 / sqrt(v + p.eps);
        running_mean[ch] = (1.0 - p.momentum) * running_mean[ch] + p.momentum * mean;
        running_var[ch] = (1.0 - p.momentum) * running_var[ch] + p.momentum * v * p.unbias;
    }
}
