//! Max, average and global average pooling (PyTorch semantics, floor output sizes).

use super::Nchw;

/// Square window `k`, `stride`, zero `pad` on every side (`pad ≤ k / 2`, as PyTorch requires).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Pool2d {
    pub fn out_dims(&self, d: &Nchw) -> Nchw {
        assert!(
            self.k > 0 && self.stride > 0 && self.pad <= self.k / 2,
            "pool: bad params {self:?}"
        );
        assert!(
            d.h + 2 * self.pad >= self.k && d.w + 2 * self.pad >= self.k,
            "pool: window larger than input {d:?} {self:?}"
        );
        Nchw {
            n: d.n,
            c: d.c,
            h: (d.h + 2 * self.pad - self.k) / self.stride + 1,
            w: (d.w + 2 * self.pad - self.k) / self.stride + 1,
        }
    }

    /// Input indices (into the whole tensor) of the window of output `(plane, oy, ox)`; padding
    /// positions are skipped.
    fn window(
        &self,
        d: &Nchw,
        plane: usize,
        oy: usize,
        ox: usize,
    ) -> impl Iterator<Item = usize> + '_ {
        let (h, w) = (d.h as isize, d.w as isize);
        let y0 = (oy * self.stride) as isize - self.pad as isize;
        let x0 = (ox * self.stride) as isize - self.pad as isize;
        (0..self.k as isize).flat_map(move |ky| {
            (0..self.k as isize).filter_map(move |kx| {
                let (iy, ix) = (y0 + ky, x0 + kx);
                (iy >= 0 && iy < h && ix >= 0 && ix < w)
                    .then(|| (plane as isize * h * w + iy * w + ix) as usize)
            })
        })
    }
}

/// Max pooling; padding counts as -inf. Returns `y` and, per output, the index of its maximum in
/// `x` (the whole tensor, row-major). Ties: the first in row-major window order wins (strict `>`).
pub fn max_pool2d_forward(d: &Nchw, p: &Pool2d, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
    assert_eq!(x.len(), d.len(), "max_pool2d_forward: x length");
    let o = p.out_dims(d);
    let mut y = Vec::with_capacity(o.len());
    let mut arg = Vec::with_capacity(o.len());
    for plane in 0..d.n * d.c {
        for oy in 0..o.h {
            for ox in 0..o.w {
                let mut best = (f32::NEG_INFINITY, usize::MAX);
                for i in p.window(d, plane, oy, ox) {
                    if best.1 == usize::MAX || x[i] > best.0 {
                        best = (x[i], i);
                    }
                }
                y.push(best.0);
                arg.push(best.1 as u32);
            }
        }
    }
    (y, arg)
}

/// Scatters each `dy` to its window's argmax (summing where windows overlap).
pub fn max_pool2d_backward(d: &Nchw, argmax: &[u32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(
        argmax.len(),
        dy.len(),
        "max_pool2d_backward: argmax and dy lengths differ"
    );
    let mut dx = vec![0.0f64; d.len()];
    for (a, g) in argmax.iter().zip(dy) {
        dx[*a as usize] += *g as f64;
    }
    dx.into_iter().map(|v| v as f32).collect()
}

/// Average pooling with `count_include_pad = true` (PyTorch's default): every window divides by
/// k², padding counting as zeros.
pub fn avg_pool2d_forward(d: &Nchw, p: &Pool2d, x: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), d.len(), "avg_pool2d_forward: x length");
    let o = p.out_dims(d);
    let div = (p.k * p.k) as f64;
    let mut y = Vec::with_capacity(o.len());
    for plane in 0..d.n * d.c {
        for oy in 0..o.h {
            for ox in 0..o.w {
                let s: f64 = p.window(d, plane, oy, ox).map(|i| x[i] as f64).sum();
                y.push((s / div) as f32);
            }
        }
    }
    y
}

/// Each input in a window receives `dy / k²`.
pub fn avg_pool2d_backward(d: &Nchw, p: &Pool2d, dy: &[f32]) -> Vec<f32> {
    let o = p.out_dims(d);
    assert_eq!(dy.len(), o.len(), "avg_pool2d_backward: dy length");
    let div = (p.k * p.k) as f64;
    let mut dx = vec![0.0f64; d.len()];
    for plane in 0..d.n * d.c {
        for oy in 0..o.h {
            for ox in 0..o.w {
                let g = dy[(plane * o.h + oy) * o.w + ox] as f64 / div;
                for i in p.window(d, plane, oy, ox) {
                    dx[i] += g;
                }
            }
        }
    }
    dx.into_iter().map(|v| v as f32).collect()
}

/// `[n, c, h, w]` → `[n, c]`, the mean of each plane.
pub fn global_avg_pool_forward(d: &Nchw, x: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), d.len(), "global_avg_pool_forward: x length");
    let hw = d.h * d.w;
    x.chunks(hw)
        .map(|pl| (pl.iter().map(|v| *v as f64).sum::<f64>() / hw as f64) as f32)
        .collect()
}

/// Every position of plane (n, c) receives `dy[n, c] / (h·w)`.
pub fn global_avg_pool_backward(d: &Nchw, dy: &[f32]) -> Vec<f32> {
    assert_eq!(dy.len(), d.n * d.c, "global_avg_pool_backward: dy length");
    let hw = d.h * d.w;
    dy.iter()
        .flat_map(|g| std::iter::repeat_n((*g as f64 / hw as f64) as f32, hw))
        .collect()
}
