// SGD step, one thread per parameter element (torch.optim.SGD, dampening 0):
//   g = clamp(g, -clip, clip)          (flags bit 2)
//   d = g + weight_decay * p
//   buf = momentum * buf + d           (flags bit 0: momentum != 0)
//   d = nesterov ? d + momentum * buf : buf   (bit 1: nesterov)
//   p -= lr * d

struct Params {
    len: u32,
    flags: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    clip: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;

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
    var g = grad[i];
    if (p.flags & 4u) != 0u {
        g = clamp(g, -p.clip, p.clip);
    }
    let w = param[i];
    var d = g + p.weight_decay * w;
    if (p.flags & 1u) != 0u {
        let b = p.momentum * buf[i] + d;
        buf[i] = b;
        if (p.flags & 2u) != 0u {
            d = d + p.momentum * b;
        } else {
            d = b;
        }
    }
    param[i] = w - p.lr * d;
}
