// LSQ backward, stage 1. Workgroup w (flat index over the grid) handles elements
// w*4096 .. min((w+1)*4096, len), thread t every 256th from t. With s = clamp(steps[index],
// step_min, step_max) and v = x / s:
//   inside (qn <= v <= qp): dx = dy, t = round(v) - v
//   below / above:          dx = 0,  t = qn / qp
// partials[w] = sum of dy * t (strided per thread, then a fixed tree). reduce_final turns
// the partials into dsteps[index] = g * sum, g = 1 / sqrt(N * qp).
// The clamp is part of the model (torch.clamp in the reference): its gradient is 1 inside
// [step_min, step_max], bounds included, and 0 outside, so a stored step outside the range
// (or NaN) gets a zero step gradient and stays where it is; dx is unaffected.

struct Params {
    len: u32,
    index: u32,
    qn: f32,
    qp: f32,
    step_min: f32,
    step_max: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> steps: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;

const CHUNK: u32 = 4096u;

var<workgroup> acc: array<f32, 256>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let w = wid.x + wid.y * nwg.x;
    let start = w * CHUNK;
    // Uniform per workgroup (workgroup 0 always runs, so an empty input gives a 0 partial).
    if start >= p.len && w > 0u {
        return;
    }
    let raw = steps[p.index];
    let s = clamp(raw, p.step_min, p.step_max);
    // Uniform: every thread reads the same step.
    let frozen = !(raw >= p.step_min && raw <= p.step_max);
    let end = min(start + CHUNK, p.len);
    var a = 0.0;
    for (var i = start + t; i < end; i += 256u) {
        let v = x[i] / s;
        let g = dy[i];
        var tv: f32;
        if v < p.qn {
            dx[i] = 0.0;
            tv = p.qn;
        } else if v > p.qp {
            dx[i] = 0.0;
            tv = p.qp;
        } else {
            dx[i] = g;
            tv = round(v) - v;
        }
        if !frozen {
            a += g * tv;
        }
    }
    acc[t] = a;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if t < stride {
            acc[t] += acc[t + stride];
        }
        workgroupBarrier();
    }
    if t == 0u {
        partials[w] = acc[0];
    }
}
