// Store of the blocked / broadcast backward-data kernels: columns rx + stride·(m0 + t),
// t = 0..3, of dx[nb, ci, iy, ·], those inside the row, written from v (or added to dx when
// flag bit 0 is set). Needs `p` (conv_params.wgsl) and `dx` from the including file.
fn store(nb: u32, ci: u32, iy: u32, rx: u32, m0: u32, v: vec4<f32>) {
    let row = ((nb * p.c_in + ci) * p.h + iy) * p.w;
    let acc = (p.flags & 1u) != 0u;
    for (var t = 0u; t < 4u; t++) {
        let ix = rx + p.stride * (m0 + t);
        if ix >= p.w {
            break;
        }
        var r = v[t];
        if acc {
            r += dx[row + ix];
        }
        dx[row + ix] = r;
    }
}
