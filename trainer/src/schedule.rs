//! The learning-rate schedule every run steps through: cosine annealing to zero, one value
//! per optimizer step. Production code (training, joint training, finetuning) and the CPU
//! reference share this one definition.

/// Cosine learning rate without restarts: `base · (1 + cos(π · step / total)) / 2`
/// (`torch.optim.lr_scheduler.CosineAnnealingLR` with eta_min 0, stepped per `step`).
pub fn cosine_lr(base: f32, step: usize, total: usize) -> f32 {
    if total == 0 {
        return base;
    }
    let t = step.min(total) as f64 / total as f64;
    (base as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
}
