// Store of the blocked / broadcast forward kernels: the 4 outputs y[nb, co, oy, ox0..ox0+3]
// (those inside the row) from v, plus bias[co] when flag bit 0 is set. Needs `p`
// (conv_params.wgsl), `bias` and `y` from the including file.
fn store(nb: u32, co: u32, oy: u32, ox0: u32, v: vec4<f32>) {
    var b = 0.0;
    if (p.flags & 1u) != 0u {
        b = bias[co];
    }
    let base = ((nb * p.c_out + co) * p.h_out + oy) * p.w_out + ox0;
    let n = min(4u, p.w_out - ox0);
    for (var i = 0u; i < n; i++) {
        y[base + i] = v[i] + b;
    }
}
