// Batch-norm statistics, stage 2: one workgroup per channel (flat workgroup index, grid
// layout) sums the channel's chunk partials in a fixed tree, then
//   mean = K + S1/m, var = max(S2/m - (S1/m)^2, 0) (biased), invstd = 1/sqrt(var + eps),
//   running_mean = (1 - momentum) * running_mean + momentum * mean,
//   running_var  = (1 - momentum) * running_var  + momentum * var * m/(m-1).

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
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> saved_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> saved_invstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> running_var: array<f32>;

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
    var a = 0.0;
    var b = 0.0;
    for (var k = t; k < p.chunks; k += 256u) {
        let o = (ch * p.chunks + k) * 2u;
        a += partials[o];
        b += partials[o + 1u];
    }
    s1[t] = a;
    s2[t] = b;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if t < stride {
            s1[t] += s1[t + stride];
            s2[t] += s2[t + stride];
        }
        workgroupBarrier();
    }
    if t == 0u {
        let d = s1[0] * p.inv_m;
        let v = max(s2[0] * p.inv_m - d * d, 0.0);
        let mean = x[ch * p.hw] + d;
        saved_mean[ch] = mean;
        saved_invstd[ch] = 1.0 / sqrt(v + p.eps);
        running_mean[ch] = (1.0 - p.momentum) * running_mean[ch] + p.momentum * mean;
        running_var[ch] = (1.0 - p.momentum) * running_var[ch] + p.momentum * v * p.unbias;
    }
}
