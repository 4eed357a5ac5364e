//! Softmax cross-entropy with label smoothing, PyTorch's `F.cross_entropy(logits, y,
//! label_smoothing = ε)` with mean reduction.

/// Loss, its gradient and the accuracy count of one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropy {
    /// Mean over the batch of `(1-ε)·(-log p[y]) + ε · mean_j(-log p[j])`.
    pub loss: f32,
    /// `[n, classes]`: `(p - ((1-ε)·onehot(y) + ε/classes)) / n`.
    pub dlogits: Vec<f32>,
    /// Rows whose argmax (first maximum on ties) equals the label.
    pub correct: usize,
}

/// `logits` `[n, classes]`, `labels` `[n]` (each `< classes`), smoothing `eps` in [0, 1].
pub fn softmax_cross_entropy(
    n: usize,
    classes: usize,
    logits: &[f32],
    labels: &[u32],
    eps: f32,
) -> CrossEntropy {
    assert_eq!(
        logits.len(),
        n * classes,
        "softmax_cross_entropy: logits length"
    );
    assert_eq!(labels.len(), n, "softmax_cross_entropy: labels length");
    let eps = eps as f64;
    let k = classes as f64;
    let mut loss = 0.0f64;
    let mut dlogits = vec![0.0f32; n * classes];
    let mut correct = 0;
    for i in 0..n {
        let row = &logits[i * classes..(i + 1) * classes];
        let y = labels[i] as usize;
        assert!(
            y < classes,
            "softmax_cross_entropy: label {y} out of range (classes {classes})"
        );
        let mut arg = 0;
        for (j, v) in row.iter().enumerate() {
            if *v > row[arg] {
                arg = j;
            }
        }
        correct += usize::from(arg == y);
        let max = row[arg] as f64;
        let lse = max
            + row
                .iter()
                .map(|v| (*v as f64 - max).exp())
                .sum::<f64>()
                .ln();
        let logp = |j: usize| row[j] as f64 - lse;
        let mean_neg_logp = -(0..classes).map(logp).sum::<f64>() / k;
        loss += (1.0 - eps) * -logp(y) + eps * mean_neg_logp;
        for j in 0..classes {
            let target = eps / k + if j == y { 1.0 - eps } else { 0.0 };
            dlogits[i * classes + j] = ((logp(j).exp() - target) / n as f64) as f32;
        }
    }
    CrossEntropy {
        loss: (loss / n as f64) as f32,
        dlogits,
        correct,
    }
}
