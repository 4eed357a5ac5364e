// ReLU / ReLU6 backward from the forward INPUT x: dx = dy where 0 < x (< cap when flags
// bit 0 is set, cap = value), else 0. PyTorch's convention: no gradient at exactly 0 or cap.

struct Params {
    len: u32,
    flags: u32,
    value: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

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
    let v = x[i];
    var pass_through = v > 0.0;
    if (p.flags & 1u) != 0u {
        pass_through = pass_through && v < p.value;
    }
    dx[i] = select(0.0, dy[i], pass_through);
}
