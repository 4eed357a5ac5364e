// Batch-norm statistics, stage 1. Workgroup (chunk = wid.x, channel = wid.y) sums, over
// elements chunk*4096 .. +4096 of the channel's m = n*hw values (element i is x[n', ch, j]
// with n' = i / hw, j = i % hw), the shifted values x - K and (x - K)^2, K = x[0, ch, 0].
// Thread t takes elements t, t + 256, ... of the chunk (coalesced), then a fixed tree in
// workgroup memory. partials[(ch * chunks + chunk) * 2 + {0, 1}] = the two sums; chunk 0
// also writes the shift, partials[2 * c * chunks + ch] = K (synchronised BN combines the
// ranks' sums on the host and needs each rank's K).

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
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;

const CHUNK: u32 = 4096u;

var<workgroup> s1: array<f32, 256>;
var<workgroup> s2: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let chunk = wid.x;
    let ch = wid.y;
    let shift = x[ch * p.hw];
    let start = chunk * CHUNK;
    let end = min(start + CHUNK, p.m);
    var a = 0.0;
    var b = 0.0;
    for (var i = start + t; i < end; i += 256u) {
        let img = i / p.hw;
        let j = i - img * p.hw;
        let v = x[(img * p.c + ch) * p.hw + j] - shift;
        a += v;
        b += v * v;
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
        let o = (ch * p.chunks + chunk) * 2u;
        partials[o] = s1[0];
        partials[o + 1u] = s2[0];
        if chunk == 0u {
            partials[2u * p.c * p.chunks + ch] = shift;
        }
    }
}
