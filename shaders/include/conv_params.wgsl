// The parameters of every conv kernel (conv2d_*.wgsl); must match `ConvParams` in
// trainer/src/kernels/conv.rs. Shapes as `Conv2dShape`; `total` is what the kernel's grid
// covers (elements, blocks, weights or channels: each kernel says); flags bit 0: bias
// (forward) / accumulate (backward), bit 1: the input quantizer is signed; q_step, q_bits:
// the input quantizer of the quantize-on-load kernels (quant_x.wgsl), unused elsewhere.
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
    q_step: u32,
    q_bits: u32,
}
