// Average pooling backward (count_include_pad = true), one thread per INPUT element:
// dx[i] = (sum of dy over the outputs whose window covers i) / k^2.

struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    k: u32,
    stride: u32,
    pad: u32,
    h_out: u32,
    w_out: u32,
    total: u32,
    inv_area: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

// Output positions o (0 <= o < n_out) whose window o*stride - pad .. + k - 1 covers v.
fn covering(v: u32, n_out: u32) -> vec2<u32> {
    let top = i32(v) + i32(p.pad);
    let lo = top - i32(p.k) + 1;
    var first = 0u;
    if lo > 0 {
        first = (u32(lo) + p.stride - 1u) / p.stride;
    }
    let last = min(u32(top) / p.stride + 1u, n_out);
    return vec2<u32>(first, last);
}

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
    let in_area = p.h * p.w;
    let plane = i / in_area;
    let r = i - plane * in_area;
    let iy = r / p.w;
    let ix = r - iy * p.w;
    let ys = covering(iy, p.h_out);
    let xs = covering(ix, p.w_out);
    var acc = 0.0;
    for (var oy = ys.x; oy < ys.y; oy++) {
        for (var ox = xs.x; ox < xs.y; ox++) {
            acc += dy[(plane * p.h_out + oy) * p.w_out + ox];
        }
    }
    dx[i] = acc * p.inv_area;
}
