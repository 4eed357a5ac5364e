//! ReLU, ReLU6 and the residual add.

/// `max(x, 0)`.
pub fn relu_forward(x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| v.max(0.0)).collect()
}

/// Gradient passes where the INPUT was `> 0` (PyTorch: 0 at exactly 0).
pub fn relu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), dy.len(), "relu_backward: lengths differ");
    x.iter()
        .zip(dy)
        .map(|(x, g)| if *x > 0.0 { *g } else { 0.0 })
        .collect()
}

/// `min(max(x, 0), 6)`.
pub fn relu6_forward(x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| v.clamp(0.0, 6.0)).collect()
}

/// Gradient passes where `0 < x < 6` (PyTorch hardtanh backward: 0 at both ends).
pub fn relu6_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), dy.len(), "relu6_backward: lengths differ");
    x.iter()
        .zip(dy)
        .map(|(x, g)| if *x > 0.0 && *x < 6.0 { *g } else { 0.0 })
        .collect()
}

/// `a + b`.
pub fn add_forward(a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "add_forward: lengths differ");
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// Both inputs receive `dy` unchanged: returns `(da, db)`.
pub fn add_backward(dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    (dy.to_vec(), dy.to_vec())
}
