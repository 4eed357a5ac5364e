//! Shapes shared by the GPU kernels and their CPU references. Tensors are NCHW, row-major.

/// A 2-D convolution: input `[n, c_in, h, w]`, weight `[c_out, c_in / groups, kh, kw]`,
/// output `[n, c_out, h_out, w_out]`. Square stride and padding, no dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dShape {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
}

impl Conv2dShape {
    /// A conv with a square `k × k` kernel, as every conv of a model description has.
    #[allow(clippy::too_many_arguments)] // the conv's own parameters, in PyTorch's order
    pub fn square(
        n: usize,
        c_in: usize,
        h: usize,
        w: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> Conv2dShape {
        Conv2dShape {
            n,
            c_in,
            h,
            w,
            c_out,
            kh: k,
            kw: k,
            stride,
            pad,
            groups,
        }
    }

    /// Output height, floored as in PyTorch.
    pub fn h_out(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }
    /// Output width, floored as in PyTorch.
    pub fn w_out(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }
    pub fn input_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }
    pub fn weight_len(&self) -> usize {
        self.c_out * (self.c_in / self.groups) * self.kh * self.kw
    }
    pub fn output_len(&self) -> usize {
        self.n * self.c_out * self.h_out() * self.w_out()
    }
    /// Multiply-accumulates for the whole batch.
    pub fn macs(&self) -> u64 {
        (self.n * self.c_out * self.h_out() * self.w_out()) as u64
            * ((self.c_in / self.groups) * self.kh * self.kw) as u64
    }
}
