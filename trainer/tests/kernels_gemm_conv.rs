//! GEMM and conv2d kernels against the CPU reference on seeded U(-1,1) data.
//! Skips (with a printed reason) only when no GPU adapter exists; lavapipe runs them.

mod common;

use common::{assert_close, gpu_or_skip, Tol};
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
