//! LSQ fake quantisation (Esser et al. 2020) as docs/METHOD.md defines it (PyTorch
//! semantics). This is the spec for the GPU kernel:
//!
//! - `v = x / s` in f32 (a division, not a multiply by 1/s);
//! - `q = round_half_even(clamp(v, Qn, Qp)) · s` — `torch.round` and WGSL `round` both round
//!   half to even, and so does this reference (`f32::round_ties_even`);
//! - "inside" means `Qn ≤ v ≤ Qp`, boundaries included (`torch.clamp`'s backward passes the
//!   gradient at the bounds);
//! - `dx = dy` inside, 0 outside (straight-through estimator);
//! - `ds = g · Σ dy · t`, with `t = round(v) - v` inside, `Qn` below, `Qp` above, and
//!   `g = 1 / sqrt(N · Qp)`, N = number of elements of `x`;
//! - the caller clamps `s` to [1e-5, 1] before calling; [`lsq_clamped_backward`] does it
//!   from the stored step as the model does (`torch.clamp(s, 1e-5, 1)`: no step gradient
//!   outside the range).

/// Signed (weights): `Qn = -2^(b-1)`, `Qp = 2^(b-1) - 1`; unsigned (activations): `0`, `2^b - 1`.
pub fn lsq_range(bits: u32, signed: bool) -> (f32, f32) {
    assert!(
        (1..=16).contains(&bits),
        "lsq_range: bits {bits} out of 1..=16"
    );
    if signed {
        (
            -((1u32 << (bits - 1)) as f32),
            ((1u32 << (bits - 1)) - 1) as f32,
        )
    } else {
        (0.0, ((1u32 << bits) - 1) as f32)
    }
}

/// `round_half_even(clamp(x / s, Qn, Qp)) · s` per element.
pub fn lsq_quantize_forward(x: &[f32], s: f32, bits: u32, signed: bool) -> Vec<f32> {
    let (qn, qp) = lsq_range(bits, signed);
    x.iter()
        .map(|v| (v / s).clamp(qn, qp).round_ties_even() * s)
        .collect()
}

/// Returns `(dx, ds)` for upstream gradient `dy` (see the module doc for the formulas).
pub fn lsq_quantize_backward(
    x: &[f32],
    s: f32,
    bits: u32,
    signed: bool,
    dy: &[f32],
) -> (Vec<f32>, f32) {
    assert_eq!(
        x.len(),
        dy.len(),
        "lsq_quantize_backward: x and dy lengths differ"
    );
    let (qn, qp) = lsq_range(bits, signed);
    let g = 1.0 / ((x.len() as f64) * qp as f64).sqrt();
    let mut dx = Vec::with_capacity(x.len());
    let mut ds = 0.0f64;
    for (xv, gv) in x.iter().zip(dy) {
        let v = xv / s;
        let t = if v < qn {
            dx.push(0.0);
            qn
        } else if v > qp {
            dx.push(0.0);
            qp
        } else {
            dx.push(*gv);
            v.round_ties_even() - v
        };
        ds += *gv as f64 * t as f64;
    }
    (dx, (ds * g) as f32)
}

/// The range a stored step is clamped to when used (`torch.clamp(s, 1e-5, 1)`).
pub const STEP_RANGE: (f32, f32) = (1e-5, 1.0);

/// [`lsq_quantize_backward`] from the STORED step `step`: the step used is `step` clamped
/// to [`STEP_RANGE`], and the step gradient goes through the clamp, whose derivative is 1
/// inside the range (bounds included, as `torch.clamp`'s backward) and 0 outside: a step
/// outside the range (or NaN) gets `ds = 0`. `dx` is that of the clamped step.
pub fn lsq_clamped_backward(
    x: &[f32],
    step: f32,
    bits: u32,
    signed: bool,
    dy: &[f32],
) -> (Vec<f32>, f32) {
    let (lo, hi) = STEP_RANGE;
    let (dx, ds) = lsq_quantize_backward(x, step.clamp(lo, hi), bits, signed, dy);
    let inside = step >= lo && step <= hi;
    (dx, if inside { ds } else { 0.0 })
}

/// Weight step-size init: `max(|mean - 3·std|, |mean + 3·std|) / 2^(b-1)`, std unbiased
/// (`torch.Tensor.std()`).
pub fn lsq_init_weight_scale(w: &[f32], bits: u32) -> f32 {
    let n = w.len() as f64;
    let mean = w.iter().map(|v| *v as f64).sum::<f64>() / n;
    let var = w.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let std = var.sqrt();
    ((mean - 3.0 * std).abs().max((mean + 3.0 * std).abs()) / (1u64 << (bits - 1)) as f64) as f32
}

/// Activation step-size init on the first batch: `2 · mean(|x|) / sqrt(Qp)`, `Qp = 2^b - 1`.
pub fn lsq_init_act_scale(x: &[f32], bits: u32) -> f32 {
    let mean_abs = x.iter().map(|v| v.abs() as f64).sum::<f64>() / x.len() as f64;
    (2.0 * mean_abs / (((1u64 << bits) - 1) as f64).sqrt()) as f32
}
