// Batch-norm normalisation, one thread per element: y = (x - mean[c]) * invstd * gamma[c]
// + beta[c], with c = (i / hw) % C. Train (flags bit 0 clear): stat = saved invstd.
// Eval (bit 0 set): mean and stat are the running mean and variance, invstd = 1/sqrt(var+eps).

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
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> stat: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

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
    var invstd = stat[ch];
    if (p.flags & 1u) != 0u {
        invstd = 1.0 / sqrt(stat[ch] + p.eps);
    }
    y[i] = (x[i] - mean[ch]) * invstd * gamma[ch] + beta[ch];
}
