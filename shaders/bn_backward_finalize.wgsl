// Batch-norm backward, stage 2: one workgroup per channel sums the chunk partials in a fixed
// tree: dbeta[c] = sum dy, dgamma[c] = sum dy * xhat.

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
@group(0) @binding(2) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> dbeta: array<f32>;

var<workgroup> s1: array<f32, 256>;
var<workgroup> s2: array<f32, 256>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let ch = wid.x + wid.y * nwg.x;
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
        dbeta[ch] = s1[0];
        dgamma[ch] = s2[0];
    }
}
