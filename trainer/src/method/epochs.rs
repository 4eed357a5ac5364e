//! What joint training and finetuning add to the one epoch loop
//! ([`crate::train::run_epochs`]): LSQ step init on the first batch, one submission of
//! several passes per step (their selections drawn per step), the evaluation network's
//! selection, and their own checkpoints and errors.
//!
//! Every checkpoint the loop writes (epoch ends, a stop) carries the run's exact
//! [`Position`] (the same meta keys `train_from` writes), and the loop starts from any such
//! position: a run stopped after any step and resumed ends with the same state, bit for
//! bit, as the run never stopped (same adapter).

use std::cell::OnceCell;
use std::sync::Arc;

use super::{MethodError, Stopped};
use crate::checkpoint::{Checkpoint, NamedTensor};
use crate::data::{Batch, Dataset};
use crate::dist::Dist;
use crate::engine::{LayerSteps, Network, StepStats};
use crate::train::{
    check_resume, mean_grads, run_epochs as run_loop, EpochRun, Event, Position, RunConfig,
};

/// What a quantized run adds to the loop.
pub(super) struct Schedule<'a> {
    /// Names the run in errors (`"joint training"`, `"finetuning"`).
    pub stage: &'static str,
    /// Layers whose step sizes get the LSQ init on the first training batch of the run
    /// (not on a resumed run past its first step: the state holds the learned steps).
    pub init_steps: Vec<bool>,
    /// One name per pass of a step, for the divergence error (`"4-bit"`, `"policy"`); a
    /// step runs exactly this many passes.
    pub pass_names: Vec<String>,
    /// The selection the evaluation network uses after importing the state, if any.
    pub eval_selection: Option<Vec<usize>>,
    /// Filled with every quantized layer's step sizes right after their LSQ init on the
    /// first batch (before the first update), when given: what the run started from.
    pub init_record: Option<&'a OnceCell<Vec<LayerSteps>>>,
    /// BN recalibration of the evaluation network before every evaluation, when given;
    /// the saved state then holds the recalibrated statistics.
    pub recalibrate: Option<super::Recalibration>,
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

/// A quantized run in the loop.
struct Quantized<'s, 'a> {
    s: &'s Schedule<'a>,
    passes: &'s mut dyn FnMut() -> Vec<Vec<usize>>,
    checkpoint: &'s CheckpointFn<'s>,
}

impl EpochRun for Quantized<'_, '_> {
    type Error = MethodError;

    fn passes(&self) -> usize {
        self.s.pass_names.len()
    }

    fn skip_steps(&mut self, done: usize) {
        for _ in 0..done {
            (self.passes)();
        }
    }

    fn first_batch(
        &mut self,
        net: &mut Network<'_>,
        b: &Batch,
        dist: &Dist,
    ) -> Result<(), MethodError> {
        // Step-size init on the first training batch.
        if self.s.init_steps.iter().any(|&i| i) {
            match dist.peers() {
                None => net.init_steps(&b.x, &b.y, &self.s.init_steps)?,
                Some(c) => {
                    net.init_steps_synced(&b.x, &b.y, &self.s.init_steps, &mut |v| c.mean_f32(v))?
                }
            }
        }
        if let Some(rec) = self.s.init_record {
            // Set once per run: a run that starts here has not filled it yet.
            let _ = rec.set(net.read_steps()?);
        }
        Ok(())
    }

    fn step(
        &mut self,
        net: &mut Network<'_>,
        b: &Batch,
        lr: f32,
        dist: &Dist,
    ) -> Result<Vec<StepStats>, MethodError> {
        let sels = (self.passes)();
        Ok(match dist.peers() {
            None => net.train_passes(&b.x, &b.y, lr, &sels)?,
            Some(c) => net.train_step_synced(&b.x, &b.y, lr, Some(&sels), &|g| mean_grads(c, g))?,
        })
    }

    fn before_eval(&self, eval_net: &mut Network<'_>) -> Result<bool, MethodError> {
        if let Some(sel) = &self.s.eval_selection {
            eval_net.set_selection(sel)?;
        }
        match &self.s.recalibrate {
            Some(r) => Ok(r.apply(eval_net)? > 0),
            None => Ok(false),
        }
    }

    fn checkpoint(&self, pos: &Position, tensors: Vec<NamedTensor>) -> Checkpoint {
        (self.checkpoint)(pos, tensors)
    }

    fn diverged(&self, epoch: usize, step: usize, pass: usize, loss: f32, lr: f32) -> MethodError {
        MethodError::Diverged {
            stage: self.s.stage,
            epoch,
            step,
            pass: self
                .s
                .pass_names
                .get(pass)
                .cloned()
                .unwrap_or_else(|| format!("#{pass}")),
            loss,
            lr,
        }
    }

    fn stopped(&self, pos: &Position, state: Stopped) -> MethodError {
        MethodError::Stopped {
            stage: self.s.stage,
            epoch: pos.epochs_done + 1,
            step: pos.epoch_step + 1,
            state: Box::new(state),
        }
    }

    fn diverged_state(&self, epoch: usize, what: &str, lr: f32) -> MethodError {
        MethodError::Config(format!(
            "{} diverged: {what} is not finite after epoch {epoch} (lr {lr}); try a smaller \
             --lr; nothing was saved for this epoch",
            self.s.stage
        ))
    }

    fn config(message: String) -> MethodError {
        MethodError::Config(message)
    }
}

/// Runs `run.epochs` epochs from `pos` (a [`Position::start`] or a resumed one) in the
/// shared loop. `passes` gives each step's selections (one pass each); it is called once
/// per step of the whole run, in order — for a resumed run first once per step already
/// done, results dropped, so a closure that draws from a generator continues where the
/// stopped run's left off. `checkpoint(position, state)` builds what is saved to
/// `run.checkpoint` after every epoch's evaluation and at a stop.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_epochs(
    net: &mut Network<'_>,
    eval_net: &mut Network<'_>,
    train: &Arc<Dataset>,
    test: &Arc<Dataset>,
    run: &RunConfig,
    s: &Schedule<'_>,
    pos: Position,
    passes: &mut dyn FnMut() -> Vec<Vec<usize>>,
    checkpoint: &CheckpointFn<'_>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Ran, MethodError> {
    let mut q = Quantized {
        s,
        passes,
        checkpoint,
    };
    let (position, state) = run_loop(net, eval_net, train, test, run, pos, &mut q, on_event)?;
    Ok(Ran { position, state })
}
