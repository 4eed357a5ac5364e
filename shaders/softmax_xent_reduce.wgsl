// Mean loss and hit count of softmax_xent_rows' per-row results, in ONE workgroup: thread t
// sums rows t, t + 256, ... in order, then a fixed tree in workgroup memory. Deterministic.

struct Params {
    n: u32,
    classes: u32,
    eps: f32,
    inv_n: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> rows: array<f32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;
@group(0) @binding(3) var<storage, read_write> correct: array<f32>;

var<workgroup> s_loss: array<f32, 256>;
var<workgroup> s_hit: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32) {
    var a = 0.0;
    var c = 0.0;
    for (var i = t; i < p.n; i += 256u) {
        a += rows[i];
        c += rows[p.n + i];
    }
    s_loss[t] = a;
    s_hit[t] = c;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if t < stride {
            s_loss[t] += s_loss[t + stride];
            s_hit[t] += s_hit[t + stride];
        }
        workgroupBarrier();
    }
    if t == 0u {
        loss[0] = s_loss[0] * p.inv_n;
        correct[0] = s_hit[0];
    }
}
