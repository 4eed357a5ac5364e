// Global average pooling backward, one thread per input element: dx[i] = dy[i / hw] / hw.

struct Params {
    planes: u32,
    hw: u32,
    total: u32,
    inv_hw: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.total {
        return;
    }
    dx[i] = dy[i / p.hw] * p.inv_hw;
}
