// Batch-norm backward, stage 1: workgroup (chunk = wid.x, channel = wid.y) sums dy and
// dy * xhat, xhat = (x - mean) * invstd, over the chunk's elements (layout as in
// bn_stats_partial). partials[(ch * chunks + chunk) * 2 + {0, 1}].

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
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> invstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;

const CHUNK: u32 = 4096u;

var<workgroup> s1: array<f32, 256>;
var<workgroup> s2: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let chunk = wid.x;
    let ch = wid.y;
    let mu = mean[ch];
    let is = invstd[ch];
    let start = chunk * CHUNK;
    let end = min(start + CHUNK, p.m);
    var a = 0.0;
    var b = 0.0;
    for (var i = start + t; i < end; i += 256u) {
        let img = i / p.hw;
        let j = i - img * p.hw;
        let k = (img * p.c + ch) * p.hw + j;
        let g = dy[k];
        a += g;
        b += g * (x[k] - mu) * is;
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
    }
}
