// conv2d backward weight: dw[co, ci', ky, kx] = Σ_{n, oy, ox} dy[n, co, oy, ox] · x[n, ci, oy·s - p + ky, ox·s - p + kx]
// with ci = group(co) · (c_in / groups) + ci'. One workgroup per weight element: its 256
// invocations stride over the n · h_out · w_out terms and reduce in workgroup memory.
// 2-D grid, flat workgroup = wid.x + wid.y · nwg.x. Flag bit 0: accumulate into dw.

struct Params {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    groups: u32,
    h_out: u32,
    w_out: u32,
    flags: u32,
    total: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Uniform across the workgroup, so the early return keeps barriers in uniform control flow.
    let widx = wid.x + wid.y * nwg.x;
    if widx >= p.total {
        return;
    }
    let cin_g = p.c_in / p.groups;
    let cout_g = p.c_out / p.groups;
    let kx = widx % p.kw;
    let ky = (widx / p.kw) % p.kh;
    let cl = (widx / (p.kw * p.kh)) % cin_g;
    let co = widx / (p.kw * p.kh * cin_g);
    let ci = (co / cout_g) * cin_g + cl;

    let plane = p.h_out * p.w_out;
    let terms = p.n * plane;
    var acc = 0.0;
    for (var r = lid; r < terms; r += 256u) {
        let ox = r % p.w_out;
        let oy = (r / p.w_out) % p.h_out;
        let nb = r / plane;
        let iy = i32(oy * p.stride + ky) - i32(p.pad);
        let ix = i32(ox * p.stride + kx) - i32(p.pad);
        if iy < 0 || iy >= i32(p.h) || ix < 0 || ix >= i32(p.w) {
            continue;
        }
        acc += dy[(nb * p.c_out + co) * plane + oy * p.w_out + ox]
            * x[((nb * p.c_in + ci) * p.h + u32(iy)) * p.w + u32(ix)];
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
            r += dw[widx];
        }
        dw[widx] = r;
    }
}
