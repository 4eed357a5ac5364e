// Deterministic sum, stage 1: workgroup w (flat index over the grid) sums x[w*4096 ..
// min((w+1)*4096, len)]: thread t takes every 256th element from t, then a fixed tree in
// workgroup memory. partials[w] = the sum (0 for an empty input).

struct Params {
    len: u32,
    index: u32,
    scale: f32,
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;

const CHUNK: u32 = 4096u;

var<workgroup> s: array<f32, 256>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let w = wid.x + wid.y * nwg.x;
    let start = w * CHUNK;
    // Uniform per workgroup: the whole workgroup returns or none of it does.
    if start >= p.len && w > 0u {
        return;
    }
    let end = min(start + CHUNK, p.len);
    var a = 0.0;
    for (var i = start + t; i < end; i += 256u) {
        a += x[i];
    }
    s[t] = a;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if t < stride {
            s[t] += s[t + stride];
        }
        workgroupBarrier();
    }
    if t == 0u {
        partials[w] = s[0];
    }
}
