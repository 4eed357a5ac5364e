// conv2d backward bias: db[co] = Σ_{n, oy, ox} dy[n, co, oy, ox]. One workgroup per output
// channel; 256 invocations stride over the terms and reduce in workgroup memory.
// 2-D grid, flat workgroup = wid.x + wid.y · nwg.x. Flag bit 0: accumulate into db.

//#include conv_params.wgsl

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let co = wid.x + wid.y * nwg.x;
    if co >= p.total {
        return;
    }
    let plane = p.h_out * p.w_out;
    let terms = p.n * plane;
    var acc = 0.0;
    for (var r = lid; r < terms; r += 256u) {
        let nb = r / plane;
        acc += dy[(nb * p.c_out + co) * plane + r % plane];
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if lid < s {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        var r = partial[0];
        if (p.flags & 1u) != 0u {
            r += db[co];
        }
        db[co] = r;
    }
}
