// Deterministic sum, stage 2, ONE workgroup: out[index] = scale * sum(partials[0..len])
// (added to the old out[index] when accumulate != 0), thread t summing every 256th partial
// from t, then a fixed tree. Other elements of out are left untouched.

struct Params {
    len: u32,
    index: u32,
    scale: f32,
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> s: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32) {
    var a = 0.0;
    for (var i = t; i < p.len; i += 256u) {
        a += partials[i];
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
        var prev = 0.0;
        if p.accumulate != 0u {
            prev = out[p.index];
        }
        out[p.index] = prev + p.scale * s[0];
    }
}
