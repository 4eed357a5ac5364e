// Average pooling forward (count_include_pad = true), one thread per output: the sum of the
// window's in-bounds inputs times 1/k^2.

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
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

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
    let area = p.h_out * p.w_out;
    let plane = i / area;
    let r = i - plane * area;
    let oy = r / p.w_out;
    let ox = r - oy * p.w_out;
    let y0 = i32(oy * p.stride) - i32(p.pad);
    let x0 = i32(ox * p.stride) - i32(p.pad);
    var acc = 0.0;
    for (var ky = 0; ky < i32(p.k); ky++) {
        let iy = y0 + ky;
        if iy < 0 || iy >= i32(p.h) {
            continue;
        }
        for (var kx = 0; kx < i32(p.k); kx++) {
            let ix = x0 + kx;
            if ix < 0 || ix >= i32(p.w) {
                continue;
            }
            acc += x[(plane * p.h + u32(iy)) * p.w + u32(ix)];
        }
    }
    y[i] = acc * p.inv_area;
}
