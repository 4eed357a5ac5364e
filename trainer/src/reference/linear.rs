//! Fully connected layer, `y = x·Wᵀ + b` with `W` `[out, in]` (PyTorch layout).

/// `x` `[n, in]`, `w` `[out, in]`, optional `b` `[out]` → `[n, out]`.
pub fn linear_forward(
    n: usize,
    in_f: usize,
    out_f: usize,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
) -> Vec<f32> {
    assert_eq!(x.len(), n * in_f, "linear_forward: x length");
    assert_eq!(w.len(), out_f * in_f, "linear_forward: w length");
    let mut y = vec![0.0f32; n * out_f];
    for i in 0..n {
        for o in 0..out_f {
            let mut acc = b.map_or(0.0, |b| b[o] as f64);
            for k in 0..in_f {
                acc += x[i * in_f + k] as f64 * w[o * in_f + k] as f64;
            }
            y[i * out_f + o] = acc as f32;
        }
    }
    y
}

/// Gradients of [`linear_forward`]: `dx = dy·W` `[n, in]`, `dW = dyᵀ·x` `[out, in]`,
/// `db = Σ_n dy` `[out]`. Returns `(dx, dw, db)`.
pub fn linear_backward(
    n: usize,
    in_f: usize,
    out_f: usize,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), n * in_f, "linear_backward: x length");
    assert_eq!(w.len(), out_f * in_f, "linear_backward: w length");
    assert_eq!(dy.len(), n * out_f, "linear_backward: dy length");
    let mut dx = vec![0.0f32; n * in_f];
    for i in 0..n {
        for k in 0..in_f {
            let acc: f64 = (0..out_f)
                .map(|o| dy[i * out_f + o] as f64 * w[o * in_f + k] as f64)
                .sum();
            dx[i * in_f + k] = acc as f32;
        }
    }
    let mut dw = vec![0.0f32; out_f * in_f];
    for o in 0..out_f {
        for k in 0..in_f {
            let acc: f64 = (0..n)
                .map(|i| dy[i * out_f + o] as f64 * x[i * in_f + k] as f64)
                .sum();
            dw[o * in_f + k] = acc as f32;
        }
    }
    let db = (0..out_f)
        .map(|o| (0..n).map(|i| dy[i * out_f + o] as f64).sum::<f64>() as f32)
        .collect();
    (dx, dw, db)
}
