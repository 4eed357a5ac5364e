// Global average pooling [planes, hw] -> [planes], one thread per plane.

struct Params {
    planes: u32,
    hw: u32,
    total: u32,
    inv_hw: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.planes {
        return;
    }
    var acc = 0.0;
    let base = i * p.hw;
    for (var j = 0u; j < p.hw; j++) {
        acc += x[base + j];
    }
    y[i] = acc * p.inv_hw;
}
