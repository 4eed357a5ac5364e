// LSQ fake quantisation forward, one thread per element:
//   s = clamp(steps[index], step_min, step_max)
//   y = round(clamp(x / s, qn, qp)) * s      (round = half to even, a division not 1/s)

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
@group(0) @binding(2) var<storage, read> steps: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.len {
        return;
    }
    let s = clamp(steps[p.index], p.step_min, p.step_max);
    y[i] = round(clamp(x[i] / s, p.qn, p.qp)) * s;
}
