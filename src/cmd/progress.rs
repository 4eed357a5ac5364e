//! The progress bar and per-epoch summary lines of the in-process training commands
//! (`train`, `indicators`, `finetune`), fed by `limpq_trainer::train::Event`s.

use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use limpq_trainer::train::Event;

/// A progress bar fed by training [`Event`]s, drawn as `limpq train` draws its own; `what`
/// names the stage in the per-epoch lines.
pub struct Progress {
    bar: ProgressBar,
    /// Printed before "epoch" in the per-epoch summary line ("" or e.g. "joint ").
    prefix: String,
}

impl Progress {
    /// `what` names the run in the summary lines ("joint", "finetune"); "" prints none.
    pub fn new(what: &str) -> anyhow::Result<Progress> {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                .context("progress bar template")?
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(500));
        let prefix = if what.is_empty() {
            String::new()
        } else {
            format!("{what} ")
        };
        Ok(Progress { bar, prefix })
    }

    pub fn event(&self, e: &Event) {
        let bar = &self.bar;
        match e {
            Event::Start {
                steps_per_epoch, ..
            } => bar.set_length(*steps_per_epoch as u64),
            Event::Step {
                epoch,
                epochs,
                step,
                loss,
                accuracy,
                images_per_sec,
                ..
            } => {
                bar.set_prefix(format!("{epoch}/{epochs}"));
                bar.set_position(*step as u64);
                bar.set_message(format!(
                    "loss {loss:.4} acc {:.2}% {images_per_sec:.0} img/s",
                    accuracy * 100.0
                ));
            }
            Event::Evaluating { .. } => bar.set_message("evaluating"),
            Event::Epoch(s) => {
                bar.suspend(|| {
                    println!(
                        "{}epoch {}/{}: train loss {:.4} acc {:.2}% | test loss {:.4} acc {:.2}% | {:.1} s, {:.0} img/s",
                        self.prefix,
                        s.epoch,
                        s.epochs,
                        s.train_loss,
                        s.train_acc * 100.0,
                        s.test_loss,
                        s.test_acc * 100.0,
                        s.seconds,
                        s.images_per_sec
                    )
                });
                bar.reset();
            }
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
