//! The learning-rate schedules a run steps through, cosine annealing either way. Production
//! code (training, joint training, finetuning) and the CPU reference share these
//! definitions.
//!
//! - [`LrSchedule::PerStep`]: one value per optimizer step, annealed to 0 at the end of
//!   the run ([`cosine_lr`]); full-precision training's schedule.
//! - [`LrSchedule::PerEpoch`]: one value per epoch, annealed towards a floor
//!   ([`cosine_epoch_lr`]): what the reference code's timm `CosineLRScheduler` does with
//!   `t_initial` = epochs, no warm-up, stepped once per epoch. The learning rate is
//!   constant within an epoch, and a one-epoch run keeps the base rate all along. The
//!   recipe of joint training and finetuning.

use serde::{Deserialize, Serialize};

/// How the learning rate of a run falls from its base value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum LrSchedule {
    /// Cosine per optimizer step, to 0 at the end of the run.
    PerStep,
    /// Cosine per epoch, epoch `e` (from 0) of `E` at
    /// `floor + (base − floor)·(1 + cos(π·e/E))/2`.
    PerEpoch { floor: f32 },
}

impl LrSchedule {
    /// The reference's floor (`min_lr` in its configs).
    pub const REFERENCE_FLOOR: f32 = 1e-5;

    /// The reference recipe: per epoch with the reference's floor.
    pub const fn reference() -> LrSchedule {
        LrSchedule::PerEpoch {
            floor: Self::REFERENCE_FLOOR,
        }
    }

    /// The learning rate of optimizer step `step` (from 0) of a run of `epochs` epochs of
    /// `steps_per_epoch` steps, from `base`.
    pub fn lr(&self, base: f32, step: usize, steps_per_epoch: usize, epochs: usize) -> f32 {
        match *self {
            LrSchedule::PerStep => cosine_lr(base, step, epochs.saturating_mul(steps_per_epoch)),
            LrSchedule::PerEpoch { floor } => {
                cosine_epoch_lr(base, floor, step / steps_per_epoch.max(1), epochs)
            }
        }
    }

    /// The schedule as a checkpoint records it (`per_step`, `per_epoch(floor)`).
    pub fn text(&self) -> String {
        match self {
            LrSchedule::PerStep => "per_step".into(),
            LrSchedule::PerEpoch { floor } => format!("per_epoch({floor})"),
        }
    }

    /// Refuses a floor that is not finite or is negative. The error is the sentence.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            LrSchedule::PerEpoch { floor } if !(floor.is_finite() && floor >= 0.0) => Err(format!(
                "learning-rate floor {floor} must be finite and ≥ 0"
            )),
            _ => Ok(()),
        }
    }
}

/// Cosine learning rate without restarts: `base · (1 + cos(π · step / total)) / 2`
/// (`torch.optim.lr_scheduler.CosineAnnealingLR` with eta_min 0, stepped per `step`).
pub fn cosine_lr(base: f32, step: usize, total: usize) -> f32 {
    if total == 0 {
        return base;
    }
    let t = step.min(total) as f64 / total as f64;
    (base as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
}

/// Cosine learning rate stepped per epoch with a floor: epoch `epoch` (from 0) of `epochs`
/// at `floor + (base − floor) · (1 + cos(π · epoch / epochs)) / 2` (timm's
/// `CosineLRScheduler` with `t_initial = epochs`, `lr_min = floor`, no warm-up). The first
/// epoch runs at `base`; an epoch past the end stays at the last epoch's value.
pub fn cosine_epoch_lr(base: f32, floor: f32, epoch: usize, epochs: usize) -> f32 {
    if epochs == 0 {
        return base;
    }
    let e = epoch.min(epochs - 1) as f64 / epochs as f64;
    let (b, f) = (base as f64, floor as f64);
    (f + (b - f) * 0.5 * (1.0 + (std::f64::consts::PI * e).cos())) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_epoch_is_constant_within_an_epoch_and_follows_timm() {
        let s = LrSchedule::reference();
        // Three epochs of four steps, base 0.01, floor 1e-5: timm gives
        // 1e-5 + (0.01 − 1e-5)·(1 + cos(π e / 3))/2 for e = 0, 1, 2.
        let want = [0.01f64, 0.007_502_5, 0.002_507_5];
        for (step, w) in (0..12).map(|s| (s, want[s / 4])) {
            let got = s.lr(0.01, step, 4, 3) as f64;
            assert!((got - w).abs() < 1e-8, "step {step}: {got} vs {w}");
        }
        // One epoch: the base rate all along.
        assert!((0..7).all(|st| s.lr(0.01, st, 7, 1) == 0.01));
        // Per step falls within the first epoch, to 0 at the end.
        let p = LrSchedule::PerStep;
        assert!(p.lr(0.01, 1, 4, 3) < 0.01);
        assert_eq!(p.lr(0.01, 12, 4, 3), 0.0);
        assert_eq!(s.text(), "per_epoch(0.00001)");
        assert!(LrSchedule::PerEpoch { floor: -1.0 }.check().is_err());
        assert!(LrSchedule::PerEpoch { floor: f32::NAN }.check().is_err());
    }
}
