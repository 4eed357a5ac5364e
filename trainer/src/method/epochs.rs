//! The epoch loop that joint training and finetuning share: stop checks, the seeded loader,
//! LSQ step init on the first batch, cosine learning rate per step, one submission of
//! passes per step, divergence checks, progress events, and after every epoch a test
//! evaluation and a checkpoint. What differs — the passes of a step and what a checkpoint
//! holds — comes from the caller.
//!
//! Every checkpoint the loop writes (epoch ends, a stop) carries the run's exact
//! [`Position`] (the same meta keys `train_from` writes), and the loop starts from any such
//! position: a run stopped after any step and resumed ends with the same state, bit for
//! bit, as the run never stopped (same adapter).

use std::cell::OnceCell;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::{MethodError, StopFlag};
use crate::checkpoint::{Checkpoint, NamedTensor};
use crate::data::Dataset;
use crate::engine::{LayerSteps, Network};
use crate::reference::cosine_lr;
use crate::train::{check_resume, evaluate, loader_at, stop_state, EpochSummary, Event, Position};

/// How the loop runs.
pub(super) struct Schedule<'a> {
    /// Names the run in errors (`"joint training"`, `"finetuning"`).
    pub stage: &'static str,
    pub epochs: usize,
    pub batch: usize,
    /// Peak of the cosine schedule.
    pub lr: f32,
    /// Seeds the loader's order and augmentation.
    pub seed: u64,
    pub stop: &'a StopFlag,
    /// Layers whose step sizes get the LSQ init on the first training batch of the run
    /// (not on a resumed run past its first step: the state holds the learned steps).
    pub init_steps: Vec<bool>,
    /// One name per pass of a step, for the divergence error (`"4-bit"`, `"policy"`); a
    /// step runs exactly this many passes.
    pub pass_names: Vec<String>,
    /// The selection the evaluation network uses after importing the state, if any.
    pub eval_selection: Option<Vec<usize>>,
    /// Written (atomically) after every epoch and at a stop, when set.
    pub checkpoint: Option<&'a Path>,
    /// Filled with every quantized layer's step sizes right after their LSQ init on the
    /// first batch (before the first update), when given: what the run started from.
    pub init_record: Option<&'a OnceCell<Vec<LayerSteps>>>,
}

/// What the loop produced.
pub(super) struct Ran {
    /// The end of the run: every epoch done, the history of all of them (the earlier ones
    /// from the resumed checkpoint).
    pub position: Position,
    /// The final state.
    pub state: Vec<NamedTensor>,
}

/// Builds a checkpoint of the run at a position from the state at that position.
pub(super) type CheckpointFn<'a> = dyn Fn(&Position, Vec<NamedTensor>) -> Checkpoint + 'a;

/// Full batches per epoch, or an error when there is none.
pub(super) fn steps_per_epoch(images: usize, batch: usize) -> Result<usize, MethodError> {
    crate::train::steps_per_epoch(images, batch).map_err(MethodError::Config)
}

/// The position to resume from, after checking that `ck` was written by a run with the
/// same settings: `settings` are `(meta key, this run's value)`, `seed` and `steps` this
/// run's seed and steps per epoch. Differences are named in one [`MethodError::Config`].
pub(super) fn resume_position(
    ck: &Checkpoint,
    settings: &[(&'static str, String)],
    seed: u64,
    steps: usize,
) -> Result<Position, MethodError> {
    let pos = Position::of(ck)?.ok_or_else(|| {
        MethodError::Config(
            "the resume checkpoint carries no position (it is not a state written by a \
             joint or finetune run of this version); start a new run instead"
                .into(),
        )
    })?;
    check_resume(ck, &pos, settings, seed, steps).map_err(MethodError::Config)?;
    Ok(pos)
}

/// Runs `s.epochs` epochs from `pos` (a [`Position::start`] or a resumed one). `passes`
/// gives each step's selections (one pass each); it is called once per step of the whole
/// run, in order — for a resumed run first once per step already done, results dropped, so
/// a closure that draws from a generator continues where the stopped run's left off.
/// `checkpoint(position, state)` builds what is saved to `s.checkpoint` after every
/// epoch's evaluation and at a stop.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_epochs(
    net: &mut Network<'_>,
    eval_net: &mut Network<'_>,
    train: &Arc<Dataset>,
    test: &Arc<Dataset>,
    s: &Schedule<'_>,
    mut pos: Position,
    passes: &mut dyn FnMut() -> Vec<Vec<usize>>,
    checkpoint: &CheckpointFn<'_>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Ran, MethodError> {
    let steps = steps_per_epoch(train.len(), s.batch)?;
    if pos.steps_per_epoch != steps || pos.epochs != s.epochs {
        return Err(MethodError::Config(format!(
            "internal: position of a run of {} epochs of {} steps, this run has {} of {steps}",
            pos.epochs, pos.steps_per_epoch, s.epochs
        )));
    }
    on_event(&Event::Start {
        epochs: s.epochs,
        steps_per_epoch: steps,
        train_images: steps * s.batch,
        test_images: test.len(),
    });
    let total = s.epochs * steps;
    let n_passes = s.pass_names.len().max(1);
    for _ in 0..pos.global_step {
        passes();
    }
    let early = || MethodError::Config("the data loader stopped early".into());
    let mut loader = loader_at(train, s.batch, s.seed, &pos, early)?;
    // The step-size init ran on the first batch of the run; a resumed state holds its result.
    let mut initialised = pos.global_step > 0;
    let mut state = None;
    while pos.epochs_done < s.epochs {
        let epoch = pos.epochs_done + 1;
        let start = Instant::now();
        let first_step = pos.epoch_step;
        let mut seen_here = 0usize;
        while pos.epoch_step < steps {
            if s.stop.requested() {
                return Err(stopped(net, s, &pos, checkpoint));
            }
            let b = loader.next().ok_or_else(early)?;
            if !initialised {
                // Step-size init on the first training batch (docs/METHOD.md).
                if s.init_steps.iter().any(|&i| i) {
                    net.init_steps(&b.x, &b.y, &s.init_steps)?;
                }
                if let Some(rec) = s.init_record {
                    // Set once per run: a run that starts here has not filled it yet.
                    let _ = rec.set(net.read_steps()?);
                }
                initialised = true;
            }
            let sels = passes();
            let lr = cosine_lr(s.lr, pos.global_step, total);
            let stats = net.train_passes(&b.x, &b.y, lr, &sels)?;
            pos.global_step += 1;
            pos.epoch_step += 1;
            let step = pos.epoch_step;
            if let Some((i, st)) = stats
                .iter()
                .enumerate()
                .find(|(_, st)| !st.loss.is_finite())
            {
                return Err(MethodError::Diverged {
                    stage: s.stage,
                    epoch,
                    step,
                    pass: s
                        .pass_names
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("#{i}")),
                    loss: st.loss,
                    lr,
                });
            }
            let mean_loss =
                stats.iter().map(|st| st.loss as f64).sum::<f64>() / stats.len().max(1) as f64;
            pos.loss_sum += mean_loss * b.n as f64;
            pos.correct += stats.iter().map(|st| st.correct).sum::<usize>();
            pos.seen += b.n;
            seen_here += b.n;
            let secs = start.elapsed().as_secs_f64().max(1e-9);
            let per_step = secs / (step - first_step) as f64;
            on_event(&Event::Step {
                epoch,
                epochs: s.epochs,
                step,
                steps,
                loss: mean_loss as f32,
                accuracy: pos.correct as f64 / (pos.seen * n_passes) as f64,
                lr,
                images_per_sec: seen_here as f64 / secs,
                eta_secs: per_step * (total - pos.global_step) as f64,
            });
        }
        if s.stop.requested() {
            return Err(stopped(net, s, &pos, checkpoint));
        }
        let train_secs = start.elapsed().as_secs_f64();
        on_event(&Event::Evaluating { epoch });
        let st = net.export_state()?;
        eval_net.import_state(&st, false)?;
        if let Some(sel) = &s.eval_selection {
            eval_net.set_selection(sel)?;
        }
        let ev = evaluate(eval_net, test)?;
        let summary = EpochSummary {
            epoch,
            epochs: s.epochs,
            train_loss: pos.loss_sum / pos.seen.max(1) as f64,
            train_acc: pos.correct as f64 / (pos.seen * n_passes).max(1) as f64,
            test_loss: ev.mean_loss(),
            test_acc: ev.accuracy(),
            seconds: start.elapsed().as_secs_f64(),
            images_per_sec: seen_here as f64 / train_secs.max(1e-9),
        };
        on_event(&Event::Epoch(summary.clone()));
        pos.history.push(summary);
        pos.epochs_done = epoch;
        pos.epoch_step = 0;
        pos.loss_sum = 0.0;
        pos.correct = 0;
        pos.seen = 0;
        if let Some(path) = s.checkpoint {
            checkpoint(&pos, st.clone()).save(path)?;
        }
        state = Some(st);
    }
    // Stop the loader thread before handing back.
    drop(loader);
    // No epoch ran (`epochs` 0, or resumed at the end): the state as it is.
    let state = match state {
        Some(st) => st,
        None => net.export_state()?,
    };
    Ok(Ran {
        position: pos,
        state,
    })
}

/// Saves the exact position (to `s.checkpoint` when set) and describes the stop; an error
/// while saving is returned instead.
fn stopped(
    net: &Network<'_>,
    s: &Schedule<'_>,
    pos: &Position,
    checkpoint: &CheckpointFn<'_>,
) -> MethodError {
    match stop_state(net, pos, s.checkpoint, |t| checkpoint(pos, t)) {
        Ok(st) => MethodError::Stopped {
            stage: s.stage,
            epoch: pos.epochs_done + 1,
            step: pos.epoch_step + 1,
            state: Box::new(st),
        },
        Err(e) => e,
    }
}
