//! GEMM and conv2d kernels against the CPU reference on seeded U(-1,1) data.
//! Skips (with a printed reason) only when no GPU adapter exists; lavapipe runs them.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

mod common;

use common::{assert_close, gpu_or_skip, Tol};
use limpq_trainer::gpu::Gpu;
use limpq_trainer::kernels::gemm::{Gemm, GemmShape};
use limpq_trainer::kernels::{Recorder, Tensor};
use limpq_trainer::reference;
use limpq_trainer::reference::rng::SeededRng;

/// Row-major transpose of an `r×c` matrix.
fn transpose(r: usize, c: usize, x: &[f32]) -> Vec<f32> {
    let mut t = vec![0.0; x.len()];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = x[i * c + j];
        }
    }
    t
}

/// GEMM tolerance: each output is a sum of `k` products (plus the old C when accumulating).
fn check_gemm(m: usize, k: usize, n: usize, trans_a: bool, trans_b: bool, accumulate: bool) {
    let Some(gpu) = gpu_or_skip("gemm") else {
        return;
    };
    let seed =
        (m * 1_000_003 + k * 1009 + n) as u64 ^ ((trans_a as u64) << 40 | (trans_b as u64) << 41);
    let mut rng = SeededRng::new(seed);
    let a = rng.vec_uniform(m * k, -1.0, 1.0);
    let b = rng.vec_uniform(k * n, -1.0, 1.0);
    let c0 = rng.vec_uniform(m * n, -1.0, 1.0);
    let mut want = reference::matmul(m, k, n, &a, &b);
    if accumulate {
        for (w, c) in want.iter_mut().zip(&c0) {
            *w += c;
        }
    }
    // Store A as k×m / B as n×k when the kernel is asked to transpose them.
    let a_stored = if trans_a { transpose(m, k, &a) } else { a };
    let b_stored = if trans_b { transpose(k, n, &b) } else { b };
    let ta = Tensor::from_f32(gpu, &a_stored, "a").unwrap();
    let tb = Tensor::from_f32(gpu, &b_stored, "b").unwrap();
    let tc = if accumulate {
        Tensor::from_f32(gpu, &c0, "c").unwrap()
    } else {
        // Poison C: beta = 0 must not read it.
        Tensor::from_f32(gpu, &vec![f32::NAN; m * n], "c").unwrap()
    };
    let shape = GemmShape::new(m, k, n)
        .trans_a(trans_a)
        .trans_b(trans_b)
        .accumulate(accumulate);
    let gemm = Gemm::new(gpu, shape, &ta, &tb, &tc).unwrap();
    let mut rec = Recorder::new(gpu);
    gemm.record(&mut rec);
    let i = rec.read(&tc);
    let out = rec.submit().unwrap();
    let what = format!("gemm {m}x{k}x{n} ta={trans_a} tb={trans_b} acc={accumulate}");
    assert_close(&what, out.f32(i), &want, Tol::sum_of(k + 1));
}

#[test]
fn gemm_tiny_and_uneven() {
    for &(m, k, n) in &[
        (1, 1, 1),
        (3, 5, 7),
        (63, 17, 65),
        (64, 64, 64),
        (130, 33, 70),
    ] {
        check_gemm(m, k, n, false, false, false);
    }
}

#[test]
fn gemm_transposes_and_accumulate() {
    for &(m, k, n) in &[(1, 1, 1), (63, 17, 65), (9, 130, 4)] {
        check_gemm(m, k, n, true, false, false);
        check_gemm(m, k, n, false, true, false);
        check_gemm(m, k, n, true, true, true);
    }
}

#[test]
fn gemm_batched() {
    let Some(gpu) = gpu_or_skip("gemm_batched") else {
        return;
    };
    let (m, k, n, batch) = (5, 6, 7, 3);
    let mut rng = SeededRng::new(7);
    let a = rng.vec_uniform(batch * m * k, -1.0, 1.0);
    let b = rng.vec_uniform(batch * k * n, -1.0, 1.0);
    let mut want = Vec::new();
    for i in 0..batch {
        want.extend(reference::matmul(
            m,
            k,
            n,
            &a[i * m * k..(i + 1) * m * k],
            &b[i * k * n..(i + 1) * k * n],
        ));
    }
    let ta = Tensor::from_f32(gpu, &a, "a").unwrap();
    let tb = Tensor::from_f32(gpu, &b, "b").unwrap();
    let tc = Tensor::zeros(gpu, batch * m * n, "c").unwrap();
    let gemm = Gemm::new(gpu, GemmShape::new(m, k, n).batch(batch), &ta, &tb, &tc).unwrap();
    let mut rec = Recorder::new(gpu);
    gemm.record(&mut rec);
    rec.submit().unwrap();
    assert_close(
        "gemm batched",
        &tc.read_f32(gpu).unwrap(),
        &want,
        Tol::sum_of(k),
    );
}

#[test]
fn gemm_rejects_wrong_lengths() {
    let Some(gpu) = gpu_or_skip("gemm_rejects_wrong_lengths") else {
        return;
    };
    let a = Tensor::zeros(gpu, 6, "a").unwrap();
    let b = Tensor::zeros(gpu, 6, "b").unwrap();
    let c = Tensor::zeros(gpu, 5, "c").unwrap();
    let err = Gemm::new(gpu, GemmShape::new(2, 3, 2), &a, &b, &c).unwrap_err();
    assert!(err.to_string().contains("tensor c"), "{err}");
}

use limpq_trainer::kernels::conv::{
    Conv2dBackwardBias, Conv2dBackwardData, Conv2dBackwardWeight, Conv2dForward, ConvAlgo,
};
use limpq_trainer::shapes::Conv2dShape;

/// Forward (with and without bias), backward data, weight and bias of one shape, all in ONE
/// submission, each against the CPU reference. The backward-data pass is also fed the GPU's
/// own forward output as `dy` in the same submission, which fails if dispatches in one
/// recorder were not ordered. Backward passes accumulate into a random start when `accumulate`.
///
/// Tolerances (see `Tol::sum_of`): forward sums c_in/groups·kh·kw products (+ bias), backward
/// data c_out/groups·kh·kw, backward weight and bias n·h_out·w_out.
fn check_conv(s: Conv2dShape, accumulate: bool) {
    let Some(gpu) = gpu_or_skip("conv") else {
        return;
    };
    for algo in common::conv_algos(gpu) {
        check_conv_on(gpu, s, accumulate, algo);
    }
}

fn check_conv_on(gpu: &Gpu, s: Conv2dShape, accumulate: bool, algo: ConvAlgo) {
    let mut rng = SeededRng::new(s.input_len() as u64 * 31 + s.weight_len() as u64);
    let x = rng.vec_uniform(s.input_len(), -1.0, 1.0);
    let w = rng.vec_uniform(s.weight_len(), -1.0, 1.0);
    let bias = rng.vec_uniform(s.c_out, -1.0, 1.0);
    let dy = rng.vec_uniform(s.output_len(), -1.0, 1.0);
    let dx0 = rng.vec_uniform(s.input_len(), -1.0, 1.0);
    let dw0 = rng.vec_uniform(s.weight_len(), -1.0, 1.0);
    let db0 = rng.vec_uniform(s.c_out, -1.0, 1.0);

    let want_y = reference::conv2d_forward(&s, &x, &w, Some(&bias));
    let want_y_nobias = reference::conv2d_forward(&s, &x, &w, None);
    let mut want_dx = reference::conv2d_backward_data(&s, &dy, &w);
    let mut want_dw = reference::conv2d_backward_weight(&s, &x, &dy);
    let mut want_db = reference::conv2d_backward_bias(&s, &dy);
    let want_dx_chain = reference::conv2d_backward_data(&s, &want_y, &w);
    if accumulate {
        for (v, o) in want_dx.iter_mut().zip(&dx0) {
            *v += o;
        }
        for (v, o) in want_dw.iter_mut().zip(&dw0) {
            *v += o;
        }
        for (v, o) in want_db.iter_mut().zip(&db0) {
            *v += o;
        }
    }

    let t = |d: &[f32], l: &str| Tensor::from_f32(gpu, d, l).unwrap();
    let (tx, tw, tb, tdy) = (t(&x, "x"), t(&w, "w"), t(&bias, "bias"), t(&dy, "dy"));
    let nan = |len: usize, l: &str| t(&vec![f32::NAN; len], l);
    let ty = nan(s.output_len(), "y");
    let ty2 = nan(s.output_len(), "y nobias");
    let tdx_chain = nan(s.input_len(), "dx chain");
    let (tdx, tdw, tdb) = if accumulate {
        (t(&dx0, "dx"), t(&dw0, "dw"), t(&db0, "db"))
    } else {
        (
            nan(s.input_len(), "dx"),
            nan(s.weight_len(), "dw"),
            nan(s.c_out, "db"),
        )
    };

    let fwd = Conv2dForward::with_algo(gpu, &s, &tx, &tw, Some(&tb), &ty, algo).unwrap();
    let fwd2 = Conv2dForward::with_algo(gpu, &s, &tx, &tw, None, &ty2, algo).unwrap();
    let bd = Conv2dBackwardData::with_algo(gpu, &s, &tdy, &tw, &tdx, accumulate, algo).unwrap();
    let bd_chain =
        Conv2dBackwardData::with_algo(gpu, &s, &ty, &tw, &tdx_chain, false, algo).unwrap();
    assert_eq!((fwd.algo, bd.algo), (algo, algo));
    // Backward weight: `Blocked` / `Broadcast` run their kernels, the others the per-weight
    // reduction.
    let bw = Conv2dBackwardWeight::with_algo(gpu, &s, &tx, &tdy, &tdw, accumulate, algo).unwrap();
    assert_eq!(bw.algo, common::backward_weight_algo(algo));
    let bb = Conv2dBackwardBias::new(gpu, &s, &tdy, &tdb, accumulate).unwrap();

    let mut rec = Recorder::new(gpu);
    fwd.record(&mut rec);
    fwd2.record(&mut rec);
    bd.record(&mut rec);
    bd_chain.record(&mut rec);
    bw.record(&mut rec);
    bb.record(&mut rec);
    let reads: Vec<usize> = [&ty, &ty2, &tdx, &tdx_chain, &tdw, &tdb]
        .into_iter()
        .map(|t| rec.read(t))
        .collect();
    let out = rec.submit().unwrap();

    let cin_g = s.c_in / s.groups;
    let cout_g = s.c_out / s.groups;
    let k2 = s.kh * s.kw;
    let plane_terms = s.n * s.h_out() * s.w_out();
    let tag = format!("{s:?} acc={accumulate} {algo:?}");
    let fwd_tol = Tol::sum_of(cin_g * k2 + 1);
    assert_close(
        &format!("forward {tag}"),
        out.f32(reads[0]),
        &want_y,
        fwd_tol,
    );
    assert_close(
        &format!("forward no bias {tag}"),
        out.f32(reads[1]),
        &want_y_nobias,
        fwd_tol,
    );
    let bd_tol = Tol::sum_of(cout_g * k2 + 1);
    assert_close(
        &format!("backward data {tag}"),
        out.f32(reads[2]),
        &want_dx,
        bd_tol,
    );
    // dy here is y itself (|y| up to ~sqrt(terms)), so scale the tolerance by that too.
    let chain_tol = Tol::sum_of((cout_g * k2) * (cin_g * k2 + 1));
    assert_close(
        &format!("chained {tag}"),
        out.f32(reads[3]),
        &want_dx_chain,
        chain_tol,
    );
    let bw_tol = Tol::sum_of(plane_terms + 1);
    assert_close(
        &format!("backward weight {tag}"),
        out.f32(reads[4]),
        &want_dw,
        bw_tol,
    );
    assert_close(
        &format!("backward bias {tag}"),
        out.f32(reads[5]),
        &want_db,
        bw_tol,
    );
}

#[test]
fn conv_tiny_and_1x1() {
    check_conv(Conv2dShape::square(1, 1, 1, 1, 1, 1, 1, 0, 1), false);
    // 1×1 stride-2 projection shortcut, uneven spatial size.
    check_conv(Conv2dShape::square(3, 4, 6, 5, 8, 1, 2, 0, 1), true);
}

#[test]
fn conv_3x3_stride_padding() {
    check_conv(Conv2dShape::square(2, 3, 5, 7, 4, 3, 1, 1, 1), false);
    check_conv(Conv2dShape::square(2, 5, 9, 8, 6, 3, 2, 1, 1), true);
    check_conv(Conv2dShape::square(2, 3, 7, 6, 5, 3, 2, 0, 1), false);
    // Stride 3: three residue classes of columns in the blocked backward data, rows of
    // 11 and 10 columns (classes of unequal length).
    check_conv(Conv2dShape::square(2, 5, 10, 11, 6, 3, 3, 1, 1), true);
    check_conv(Conv2dShape::square(1, 3, 9, 10, 4, 5, 3, 2, 1), false);
    // Stride larger than the row: some residue classes hold no column at all.
    check_conv(Conv2dShape::square(2, 3, 2, 2, 4, 1, 3, 0, 1), false);
}

#[test]
fn conv_groups_and_depthwise() {
    check_conv(Conv2dShape::square(2, 4, 9, 8, 6, 3, 2, 1, 2), false);
    // Depthwise (MobileNet): groups = c_in = c_out, stride 2 and 1.
    check_conv(Conv2dShape::square(2, 6, 7, 7, 6, 3, 2, 1, 6), true);
    check_conv(Conv2dShape::square(3, 5, 6, 6, 5, 3, 1, 0, 5), false);
    // Depthwise with channel multiplier 2.
    check_conv(Conv2dShape::square(2, 3, 5, 5, 6, 3, 1, 1, 3), false);
}

/// More than one 64-row and 64-column tile, K longer than one 16-step: the implicit GEMM's
/// tiling edges.
#[test]
fn conv_several_tiles() {
    check_conv(Conv2dShape::square(2, 20, 9, 9, 70, 1, 1, 0, 1), false);
    check_conv(Conv2dShape::square(1, 70, 5, 5, 4, 3, 2, 1, 1), true);
    check_conv(Conv2dShape::square(1, 12, 6, 6, 132, 1, 1, 0, 2), false);
}

#[test]
fn conv_auto_algo_choice() {
    let Some(gpu) = gpu_or_skip("conv_auto_algo_choice") else {
        return;
    };
    let pick = |s: Conv2dShape| {
        let x = Tensor::zeros(gpu, s.input_len(), "x").unwrap();
        let w = Tensor::zeros(gpu, s.weight_len(), "w").unwrap();
        let y = Tensor::zeros(gpu, s.output_len(), "y").unwrap();
        let f = Conv2dForward::new(gpu, &s, &x, &w, None, &y).unwrap();
        let b = Conv2dBackwardData::new(gpu, &s, &y, &w, &x, false).unwrap();
        (f.algo, b.algo)
    };
    let (d, g) = (ConvAlgo::Direct, ConvAlgo::ImplicitGemm);
    if gpu.adapter.get_info().device_type == wgpu::DeviceType::Cpu {
        // Software adapters (lavapipe) always take the CPU kernels: subgroup-broadcast where
        // subgroups of 8 were given, else register-blocked.
        let b = common::software_conv_algo(gpu);
        assert_eq!(
            pick(Conv2dShape::square(1, 32, 6, 6, 64, 3, 1, 1, 1)),
            (b, b)
        );
        assert_eq!(
            pick(Conv2dShape::square(1, 32, 6, 6, 32, 3, 1, 1, 32)),
            (b, b)
        );
        return;
    }
    assert_eq!(
        pick(Conv2dShape::square(1, 32, 6, 6, 64, 3, 1, 1, 1)),
        (g, g)
    );
    assert_eq!(
        pick(Conv2dShape::square(1, 16, 6, 6, 16, 3, 1, 1, 1)),
        (d, d)
    );
    assert_eq!(
        pick(Conv2dShape::square(1, 32, 6, 6, 32, 3, 1, 1, 32)),
        (d, d)
    ); // depthwise
    assert_eq!(
        pick(Conv2dShape::square(1, 3, 6, 6, 64, 3, 1, 1, 1)),
        (g, d)
    ); // RGB stem
}

#[test]
fn conv_7x7_stem() {
    check_conv(Conv2dShape::square(2, 3, 13, 11, 4, 7, 2, 3, 1), false);
}

/// More workgroups than one grid dimension allows must be split into a 2-D grid that covers
/// them all, and the surplus workgroups of the last row must do nothing. Lowering the limit the
/// kernels plan against to 20 exercises exactly the code a 65535 limit would, at lavapipe speed
/// (the kernels compute the flat workgroup index from `num_workgroups`, not from the limit).
#[test]
fn conv_grid_split_beyond_the_per_dimension_limit() {
    if gpu_or_skip("conv_grid_split").is_none() {
        return;
    }
    let mut gpu = Gpu::new(&common::gpu_options()).unwrap();
    gpu.limits.max_compute_workgroups_per_dimension = 20;
    // Workgroups: forward 25 (grid 20×2), backward weight 288 (20×15), data 13, bias 8.
    check_conv_on(
        &gpu,
        Conv2dShape::square(2, 4, 20, 20, 8, 3, 1, 1, 1),
        false,
        ConvAlgo::Direct,
    );
    // Backward weight 144 (20×8).
    check_conv_on(
        &gpu,
        Conv2dShape::square(2, 4, 20, 20, 8, 3, 2, 1, 2),
        true,
        ConvAlgo::Direct,
    );
    assert_eq!(
        limpq_trainer::kernels::grid(&gpu, 288).unwrap(),
        [20, 15, 1]
    );
    let e = limpq_trainer::kernels::grid(&gpu, 401).unwrap_err();
    assert!(e.to_string().contains("exceed"), "{e}");
}

#[test]
fn conv_rejects_bad_shapes() {
    let Some(gpu) = gpu_or_skip("conv_rejects_bad_shapes") else {
        return;
    };
    let s = Conv2dShape::square(1, 3, 4, 4, 4, 3, 1, 1, 2); // 3 channels in 2 groups
    let x = Tensor::zeros(gpu, s.input_len(), "x").unwrap();
    let w = Tensor::zeros(gpu, 4 * 3 * 9, "w").unwrap();
    let y = Tensor::zeros(gpu, s.output_len(), "y").unwrap();
    let e = Conv2dForward::new(gpu, &s, &x, &w, None, &y).unwrap_err();
    assert!(e.to_string().contains("multiples of groups"), "{e}");
    let s = Conv2dShape::square(1, 4, 4, 4, 4, 3, 1, 1, 1);
    let e = Conv2dForward::new(gpu, &s, &x, &w, None, &y).unwrap_err();
    assert!(e.to_string().contains("tensor x"), "{e}");
}

/// A shader that does not compile, or a bind group that does not match, is an `Err` naming
/// the kernel, not a panic from wgpu's default error handler.
#[test]
fn infra_errors_are_errors() {
    use limpq_trainer::kernels::{pipeline, Binding, KernelSpec};
    let Some(gpu) = gpu_or_skip("infra_errors_are_errors") else {
        return;
    };
    static BROKEN: KernelSpec = KernelSpec {
        id: "test_broken",
        source: "@compute @workgroup_size(1) fn main() { let x: f32 = undefined_thing; }",
        entry: "main",
        bindings: &[],
    };
    let e = pipeline(gpu, &BROKEN).unwrap_err();
    assert!(e.to_string().contains("test_broken"), "{e}");
    // Layout says read-only storage, shader says read_write: pipeline creation must fail.
    static MISMATCH: KernelSpec = KernelSpec {
        id: "test_mismatch",
        source: "@group(0) @binding(0) var<storage, read_write> a: array<f32>;
                 @compute @workgroup_size(1) fn main() { a[0] = 1.0; }",
        entry: "main",
        bindings: &[Binding::ReadOnly],
    };
    let e = pipeline(gpu, &MISMATCH).unwrap_err();
    assert!(e.to_string().contains("test_mismatch"), "{e}");
    // Wrong number of buffers for a good pipeline.
    static ONE: KernelSpec = KernelSpec {
        id: "test_one",
        source: "@group(0) @binding(0) var<storage, read_write> a: array<f32>;
                 @compute @workgroup_size(1) fn main() { a[0] = 1.0; }",
        entry: "main",
        bindings: &[Binding::ReadWrite],
    };
    let p = pipeline(gpu, &ONE).unwrap();
    let t = Tensor::zeros(gpu, 4, "t").unwrap();
    assert!(p.dispatch(gpu, &[&t.buffer, &t.buffer], [1, 1, 1]).is_err());
    let too_many = gpu.limits.max_compute_workgroups_per_dimension + 1;
    assert!(p.dispatch(gpu, &[&t.buffer], [too_many, 1, 1]).is_err());
    // And the good path works, through the cache.
    let d = pipeline(gpu, &ONE)
        .unwrap()
        .dispatch(gpu, &[&t.buffer], [1, 1, 1])
        .unwrap();
    let mut rec = Recorder::new(gpu);
    rec.dispatch(&d);
    rec.submit().unwrap();
    assert_eq!(t.read_f32(gpu).unwrap(), vec![1.0, 0.0, 0.0, 0.0]);
    gpu.check().unwrap();
}

/// Tensors round-trip f32 and u32 data; copies and clears recorded in one submission apply
/// in order; a wrong-length write is an error.
#[test]
fn infra_tensor_copy_clear_read() {
    let Some(gpu) = gpu_or_skip("infra_tensor_copy_clear_read") else {
        return;
    };
    let a = Tensor::from_f32(gpu, &[1.0, -2.5, 3.0], "a").unwrap();
    let b = Tensor::zeros(gpu, 3, "b").unwrap();
    let c = Tensor::from_u32(gpu, &[7, 8, 9, 10, 11], "c").unwrap();
    assert_eq!(c.read_u32(gpu).unwrap(), vec![7, 8, 9, 10, 11]);
    assert!(a.write_f32(gpu, &[1.0]).is_err());
    let mut rec = Recorder::new(gpu);
    rec.copy(&a, &b);
    let before = rec.read(&b);
    rec.clear(&a);
    let cleared = rec.read(&a);
    let out = rec.submit().unwrap();
    assert_eq!(out.f32(before), &[1.0, -2.5, 3.0]);
    assert_eq!(out.f32(cleared), &[0.0, 0.0, 0.0]);
}
