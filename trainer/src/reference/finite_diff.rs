//! Central finite differences, for checking every backward against its forward.

/// Numerical gradient of the scalar `f` at `x`: for each element, `(f(x + h) - f(x - h)) / Δ`,
/// where Δ is the actual f32 distance between the two perturbed values (so f32 rounding of the
/// perturbation does not bias the quotient).
pub fn numeric_grad(x: &[f32], h: f32, mut f: impl FnMut(&[f32]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    let mut g = Vec::with_capacity(x.len());
    for i in 0..x.len() {
        let orig = x[i];
        let (hi, lo) = (orig + h, orig - h);
        xp[i] = hi;
        let fp = f(&xp);
        xp[i] = lo;
        let fm = f(&xp);
        xp[i] = orig;
        g.push((fp - fm) / (hi as f64 - lo as f64));
    }
    g
}

/// `Σ a·b` in f64: the scalar loss `L = <r, y>` whose gradient with respect to `y` is `r`.
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Largest `|a - b| / (atol + rtol·|b|)` over the elements; ≤ 1 means every element is within
/// tolerance. Returns the worst ratio and its index.
pub fn worst_error(a: &[f32], b: &[f64], atol: f64, rtol: f64) -> (f64, usize) {
    assert_eq!(a.len(), b.len(), "worst_error: lengths differ");
    let mut worst = (0.0, 0);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let r = (*x as f64 - y).abs() / (atol + rtol * y.abs());
        if r > worst.0 || r.is_nan() {
            worst = (r, i);
        }
    }
    worst
}
