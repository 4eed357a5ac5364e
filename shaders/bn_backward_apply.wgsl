// Batch-norm backward, stage 3, one thread per element:
//   dx = gamma * invstd * (dy - dbeta / m - xhat * dgamma / m),  xhat = (x - mean) * invstd.

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    m: u32,
    chunks: u32,
    flags: u32,
    eps: f32,
    momentum: f32,
    inv_m: f32,
    unbias: f32,
    total: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> invstd: array<f32>;
@group(0) @binding(5) var<storage, read> gamma: array<f32>;
@group(0) @binding(6) var<storage, read> dgamma: array<f32>;
@group(0) @binding(7) var<storage, read> dbeta: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx: array<f32>;

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
    let ch = (i / p.hw) % p.c;
    let is = invstd[ch];
    let xhat = (x[i] - mean[ch]) * is;
    dx[i] = gamma[ch] * is * (dy[i] - (dbeta[ch] + xhat * dgamma[ch]) * p.inv_m);
}
