//! Matmul and 2-D convolution (stride, padding, groups incl. depthwise), forward and backward.
//! Plain loops accumulating in f64: obviously correct, slow, the oracle for the GPU kernels.
//! Lengths are checked with `assert!`: these are test oracles, a wrong length is a bug in the
//! caller, not user input.

use crate::shapes::Conv2dShape;

/// `a` is `m×k`, `b` is `k×n`, result `m×n`, all row-major.
pub fn matmul(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), m * k, "matmul: a.len() != m*k");
    assert_eq!(b.len(), k * n, "matmul: b.len() != k*n");
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for p in 0..k {
                acc += a[i * k + p] as f64 * b[p * n + j] as f64;
            }
            c[i * n + j] = acc as f32;
        }
    }
    c
}

fn check_shape(s: &Conv2dShape) {
    assert!(
        s.groups > 0 && s.c_in % s.groups == 0 && s.c_out % s.groups == 0,
        "conv2d: groups must divide c_in and c_out: {s:?}"
    );
    assert!(s.stride > 0, "conv2d: stride 0: {s:?}");
    assert!(
        s.h + 2 * s.pad >= s.kh && s.w + 2 * s.pad >= s.kw,
        "conv2d: kernel larger than padded input: {s:?}"
    );
}

/// Calls `f(x_index, w_index, y_index)` for every multiply-accumulate of the convolution.
/// Every pass (forward, both backwards) is this one loop nest, so they cannot disagree on indexing.
fn for_each_mac(s: &Conv2dShape, mut f: impl FnMut(usize, usize, usize)) {
    check_shape(s);
    let (ho, wo) = (s.h_out(), s.w_out());
    let cin_g = s.c_in / s.groups;
    let cout_g = s.c_out / s.groups;
    for n in 0..s.n {
        for co in 0..s.c_out {
            let g = co / cout_g;
            for oy in 0..ho {
                for ox in 0..wo {
                    let yi = ((n * s.c_out + co) * ho + oy) * wo + ox;
                    for ci in 0..cin_g {
                        let c = g * cin_g + ci;
                        for ky in 0..s.kh {
                            let iy = (oy * s.stride + ky) as isize - s.pad as isize;
                            if iy < 0 || iy >= s.h as isize {
                                continue;
                            }
                            for kx in 0..s.kw {
                                let ix = (ox * s.stride + kx) as isize - s.pad as isize;
                                if ix < 0 || ix >= s.w as isize {
                                    continue;
                                }
                                let xi = ((n * s.c_in + c) * s.h + iy as usize) * s.w + ix as usize;
                                let wi = ((co * cin_g + ci) * s.kh + ky) * s.kw + kx;
                                f(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn to_f32(v: Vec<f64>) -> Vec<f32> {
    v.into_iter().map(|x| x as f32).collect()
}

/// `x` `[n, c_in, h, w]`, `w` `[c_out, c_in/groups, kh, kw]`, optional `bias` `[c_out]`;
/// returns `[n, c_out, h_out, w_out]`.
pub fn conv2d_forward(s: &Conv2dShape, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(x.len(), s.input_len(), "conv2d_forward: x length");
    assert_eq!(w.len(), s.weight_len(), "conv2d_forward: w length");
    let mut y = vec![0.0f64; s.output_len()];
    if let Some(b) = bias {
        assert_eq!(b.len(), s.c_out, "conv2d_forward: bias length");
        let plane = s.h_out() * s.w_out();
        for (i, v) in y.iter_mut().enumerate() {
            *v = b[(i / plane) % s.c_out] as f64;
        }
    }
    for_each_mac(s, |xi, wi, yi| y[yi] += x[xi] as f64 * w[wi] as f64);
    to_f32(y)
}

/// Gradient of the input: `dx[n, c_in, h, w]` from `dy[n, c_out, h_out, w_out]`.
pub fn conv2d_backward_data(s: &Conv2dShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
    assert_eq!(dy.len(), s.output_len(), "conv2d_backward_data: dy length");
    assert_eq!(w.len(), s.weight_len(), "conv2d_backward_data: w length");
    let mut dx = vec![0.0f64; s.input_len()];
    for_each_mac(s, |xi, wi, yi| dx[xi] += dy[yi] as f64 * w[wi] as f64);
    to_f32(dx)
}

/// Gradient of the weight: `dw[c_out, c_in/groups, kh, kw]`, summed over the batch.
pub fn conv2d_backward_weight(s: &Conv2dShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), s.input_len(), "conv2d_backward_weight: x length");
    assert_eq!(
        dy.len(),
        s.output_len(),
        "conv2d_backward_weight: dy length"
    );
    let mut dw = vec![0.0f64; s.weight_len()];
    for_each_mac(s, |xi, wi, yi| dw[wi] += x[xi] as f64 * dy[yi] as f64);
    to_f32(dw)
}

/// Gradient of the bias: `db[c_out]` = sum of `dy` over n, h_out, w_out.
pub fn conv2d_backward_bias(s: &Conv2dShape, dy: &[f32]) -> Vec<f32> {
    assert_eq!(dy.len(), s.output_len(), "conv2d_backward_bias: dy length");
    let plane = s.h_out() * s.w_out();
    let mut db = vec![0.0f64; s.c_out];
    for (i, v) in dy.iter().enumerate() {
        db[(i / plane) % s.c_out] += *v as f64;
    }
    to_f32(db)
}
