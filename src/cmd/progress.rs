//! The progress bar and per-epoch summary lines of the in-process training commands
//! (`train`, `indicators`, `finetune`, and the stages of `pipeline` / `demo`), fed by
//! `limpq_trainer::train::Event`s.

use std::cell::RefCell;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use limpq_trainer::interrupt;
use limpq_trainer::train::{Event, StopFlag};

/// A progress bar fed by training [`Event`]s, drawn as `limpq train` draws its own, with a
/// summary line per epoch.
pub struct Progress {
    bar: ProgressBar,
    /// Printed before "epoch" in the per-epoch summary line ("" or e.g. "joint ").
    prefix: String,
    /// With [`Progress::for_stages`]: the running stage's label, which heads the bar; the
    /// epoch lines then go, indented, to stderr (stdout has one line per stage).
    stage: Option<RefCell<String>>,
}

impl Progress {
    /// `what` names the run in the summary lines ("joint", "finetune"); "" prints none.
    pub fn new(what: &str) -> anyhow::Result<Progress> {
        let prefix = if what.is_empty() {
            String::new()
        } else {
            format!("{what} ")
        };
        Self::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
            prefix,
            None,
        )
    }

    /// For a run of several stages (`limpq pipeline`): the bar is headed by the stage set
    /// with [`Progress::start_stage`] and its epoch.
    pub fn for_stages() -> anyhow::Result<Progress> {
        Self::with_template(
            "{prefix} [{bar:25}] {pos}/{len} {msg} ETA {eta}",
            "    ".into(),
            Some(RefCell::new(String::new())),
        )
    }

    fn with_template(
        template: &str,
        prefix: String,
        stage: Option<RefCell<String>>,
    ) -> anyhow::Result<Progress> {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(template)
                .context("progress bar template")?
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(500));
        Ok(Progress { bar, prefix, stage })
    }

    /// The bar itself, e.g. to print a line around it (`bar().suspend(..)`).
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }

    /// A new stage (with [`Progress::for_stages`]): the bar starts over under `label`.
    pub fn start_stage(&self, label: String) {
        self.bar.reset();
        self.bar.set_prefix(label.clone());
        self.bar.set_message("starting");
        if let Some(s) = &self.stage {
            *s.borrow_mut() = label;
        }
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
                bar.set_prefix(match &self.stage {
                    Some(s) => format!("{} epoch {epoch}/{epochs}", s.borrow()),
                    None => format!("{epoch}/{epochs}"),
                });
                bar.set_position(*step as u64);
                bar.set_message(format!(
                    "loss {loss:.4} acc {:.2}% {images_per_sec:.0} img/s",
                    accuracy * 100.0
                ));
            }
            Event::Evaluating { .. } => bar.set_message("evaluating"),
            Event::Epoch(s) => {
                let line = format!(
                    "{}epoch {}/{}: train loss {:.4} acc {:.2}%{} | {:.1} s, {:.0} img/s",
                    self.prefix,
                    s.epoch,
                    s.epochs,
                    s.train_loss,
                    s.train_acc * 100.0,
                    s.test_text(),
                    s.seconds,
                    s.images_per_sec
                );
                bar.suspend(|| match self.stage {
                    Some(_) => eprintln!("{line}"),
                    None => super::out::progress_line(&line),
                });
                bar.reset();
            }
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Ctrl-C and SIGTERM stop the run after its current step.
pub fn stop_on_ctrl_c() -> anyhow::Result<StopFlag> {
    Ok(StopFlag::new(interrupt::stop_on_signal(|| {
        eprintln!("\nstopping after the current step (Ctrl-C again to quit at once)")
    })?))
}
