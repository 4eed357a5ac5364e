//! The GEMM oracle: `C = A·B` accumulated in f64, as the GEMM kernels' checks and the
//! `limpq bench gemm` check compare against. For the f16-operand kernels, round the
//! operands first ([`crate::kernels::gemm_f16::round_f16`]) and pass the rounded copies.

/// `C = A·B` in f64, row-major: `a` is `m×k`, `b` is `k×n`, the result `m×n`.
///
/// Panics on wrong lengths (a bug in the calling test or harness, not user input).
pub fn gemm_f64(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f64> {
    assert_eq!(a.len(), m * k, "gemm_f64: a.len() != m*k");
    assert_eq!(b.len(), k * n, "gemm_f64: b.len() != k*n");
    // B transposed, so both operands of each dot product are read contiguously.
    let bt: Vec<f64> = (0..n * k)
        .map(|i| f64::from(b[(i % k) * n + i / k]))
        .collect();
    let ar: Vec<f64> = a.iter().map(|&x| f64::from(x)).collect();
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = ar[i * k..(i + 1) * k]
                .iter()
                .zip(&bt[j * k..(j + 1) * k])
                .map(|(x, y)| x * y)
                .sum();
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::matmul;
    use crate::reference::rng::SeededRng;

    #[test]
    fn small_product_by_hand() {
        // [1 2 3; 4 5 6] · [7 8; 9 10; 11 12]
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
        assert_eq!(gemm_f64(2, 3, 2, &a, &b), vec![58.0, 64.0, 139.0, 154.0]);
    }

    #[test]
    fn agrees_with_matmul_on_uneven_shapes() {
        let mut rng = SeededRng::new(7);
        for (m, k, n) in [(1, 1, 1), (3, 17, 5), (16, 9, 33)] {
            let a = rng.vec_uniform(m * k, -1.0, 1.0);
            let b = rng.vec_uniform(k * n, -1.0, 1.0);
            let want = matmul(m, k, n, &a, &b);
            let got = gemm_f64(m, k, n, &a, &b);
            for (g, w) in got.iter().zip(&want) {
                // matmul rounds its f64 sum to f32 once.
                assert!(
                    (g - f64::from(*w)).abs() <= 1e-6 * (1.0 + g.abs()),
                    "{g} vs {w}"
                );
            }
        }
    }
}
