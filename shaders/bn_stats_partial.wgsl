// Batch-norm statistics, stage 1. Workgroup (chunk = wid.x, channel = wid.y) takes
// elements chunk*4096 .. +4096 of the channel's m = n*hw values (element i is
// x[n', ch, j] with n' = i / hw, j = i % hw) and writes the chunk's mean and its sum of
// squared deviations from that mean (M2), in two passes over the chunk:
//   1. mean = K + sum(x - K) / count, K = the chunk's first element;
//   2. M2 = sum((x - mean)^2).
// Each is a sum of terms of the data's own spread, so no cancellation: one pass of
// sum((x - K)^2) - (sum(x - K))^2 / count lost the variance to f32 rounding when K, one
// sample, was far from the mean (a zero-padded corner, a rare large activation).
// partials[(ch * chunks + chunk) * 2 + {0, 1}] = (mean, M2); the finalize kernel merges
// the chunks (Chan's update). Thread t takes elements t, t + 256, ... of the chunk
// (coalesced), then a fixed tree in workgroup memory.

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
    let start = chunk * CHUNK;
    let end = min(start + CHUNK, p.m);
    let first = start / p.hw;
    let shift = x[(first * p.c + ch) * p.hw + (start - first * p.hw)];
    var a = 0.0;
    for (var i = start + t; i < end; i += 256u) {
        let img = i / p.hw;
        let j = i - img * p.hw;
        a += x[(img * p.c + ch) * p.hw + j] - shift;
    }
    s1[t] = a;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if t < stride {
            s1[t] += s1[t + stride];
        }
        workgroupBarrier();
    }
    let mean = shift + s1[0] / f32(end - start);
    var b = 0.0;
    for (var i = start + t; i < end; i += 256u) {
        let img = i / p.hw;
        let j = i - img * p.hw;
        let d = x[(img * p.c + ch) * p.hw + j] - mean;
        b += d * d;
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
        let o = (ch * p.chunks + chunk) * 2u;
        partials[o] = mean;
        partials[o + 1u] = s2[0];
    }
}
