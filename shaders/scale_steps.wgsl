// y *= s_x · s_w, the two step sizes read from the GPU (kernels::conv_f16): the product of
// two LSQ code matrices (im2col_f16.wgsl / f16_pack.wgsl with their code overrides) times
// the quantizers' steps is the product of the fake-quantized operands.
// s_x = clamp(steps_x[p.ix], STEP_MIN, STEP_MAX), s_w likewise from steps_w[p.iw].
// One invocation per element; dispatch: grid over ceil(len / 256).

struct Params {
    len: u32,
    ix: u32,
    iw: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> steps_x: array<f32>;
@group(0) @binding(2) var<storage, read> steps_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

override STEP_MIN: f32 = 1e-5;
override STEP_MAX: f32 = 1.0;

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
    let s = clamp(steps_x[p.ix], STEP_MIN, STEP_MAX) * clamp(steps_w[p.iw], STEP_MIN, STEP_MAX);
    y[i] = y[i] * s;
}
