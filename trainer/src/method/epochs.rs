//! The epoch loop that joint training and finetuning share: stop checks, the seeded loader,
//! LSQ step init on the first batch, cosine learning rate per step, one submission of
//! passes per step, divergence checks, progress events, and after every epoch a test
//! evaluation and a checkpoint. What differs — the passes of a step and what a checkpoint
//! holds — comes from the caller.

use std::sync::Arc;
use std::time::Instant;

use super::{MethodError, StopFlag};
use crate::checkpoint::NamedTensor;
use crate::data::{Dataset, Loader, LoaderConfig};
use crate::engine::Network;
use crate::reference::cosine_lr;
use crate::train::{evaluate, EpochSummary, Event};

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
    /// Layers whose step sizes get the LSQ init on the first training batch.
    pub init_steps: Vec<bool>,
    /// One name per pass of a step, for the divergence error (`"4-bit"`, `"policy"`).
    pub pass_names: Vec<String>,
    /// The selection the evaluation network uses after importing the state, if any.
    pub eval_selection: Option<Vec<usize>>,
}

/// What the loop produced.
pub(super) struct Ran {
    pub history: Vec<EpochSummary>,
    /// Optimizer steps taken.
    pub steps: usize,
}

/// Called after every epoch's evaluation: `(epoch, steps so far, history, state)`.
pub(super) type SaveFn<'a> =
    dyn FnMut(usize, usize, &[EpochSummary], Vec<NamedTensor>) -> Result<(), MethodError> + 'a;

/// Full batches per epoch, or an error when there is none.
pub(super) fn steps_per_epoch(images: usize, batch: usize) -> Result<usize, MethodError> {
    crate::train::steps_per_epoch(images, batch).map_err(MethodError::Config)
}

/// Runs `s.epochs` epochs. `passes` gives each step's selections (one pass each);
/// `save(epoch, steps, history, state)` runs after every epoch's evaluation.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_epochs(
    net: &mut Network<'_>,
    eval_net: &mut Network<'_>,
    train: &Arc<Dataset>,
    test: &Arc<Dataset>,
    s: &Schedule<'_>,
    passes: &mut dyn FnMut() -> Vec<Vec<usize>>,
    save: &mut SaveFn<'_>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Ran, MethodError> {
    let steps = steps_per_epoch(train.len(), s.batch)?;
    on_event(&Event::Start {
        epochs: s.epochs,
        steps_per_epoch: steps,
        train_images: steps * s.batch,
        test_images: test.len(),
    });
    let total = s.epochs * steps;
    let loader_cfg = LoaderConfig::train(train, s.batch, s.seed, s.epochs);
    let mut loader = Loader::spawn(train.clone(), loader_cfg)?;
    let mut history = Vec::new();
    let mut global = 0usize;
    let mut initialised = false;
    for epoch in 1..=s.epochs {
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut seen, mut passes_run) = (0.0f64, 0usize, 0usize, 0);
        for step in 1..=steps {
            if s.stop.requested() {
                return Err(MethodError::Stopped {
                    stage: s.stage,
                    epoch,
                    step,
                });
            }
            let b = loader
                .next()
                .ok_or_else(|| MethodError::Config("the data loader stopped early".into()))?;
            if !initialised {
                // Step-size init on the first training batch (DESIGN.md).
                if s.init_steps.iter().any(|&i| i) {
                    net.init_steps(&b.x, &b.y, &s.init_steps)?;
                }
                initialised = true;
            }
            let sels = passes();
            let lr = cosine_lr(s.lr, global, total);
            let stats = net.train_passes(&b.x, &b.y, lr, &sels)?;
            global += 1;
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
            let n_passes = stats.len().max(1);
            let mean_loss = stats.iter().map(|st| st.loss as f64).sum::<f64>() / n_passes as f64;
            loss_sum += mean_loss * b.n as f64;
            correct += stats.iter().map(|st| st.correct).sum::<usize>();
            seen += b.n;
            passes_run += b.n * n_passes;
            let secs = start.elapsed().as_secs_f64().max(1e-9);
            on_event(&Event::Step {
                epoch,
                epochs: s.epochs,
                step,
                steps,
                loss: mean_loss as f32,
                accuracy: correct as f64 / passes_run as f64,
                lr,
                images_per_sec: seen as f64 / secs,
                eta_secs: secs / step as f64 * (total - global) as f64,
            });
        }
        let train_secs = start.elapsed().as_secs_f64();
        on_event(&Event::Evaluating { epoch });
        let state = net.export_state()?;
        eval_net.import_state(&state, false)?;
        if let Some(sel) = &s.eval_selection {
            eval_net.set_selection(sel)?;
        }
        let ev = evaluate(eval_net, test)?;
        let summary = EpochSummary {
            epoch,
            epochs: s.epochs,
            train_loss: loss_sum / seen as f64,
            train_acc: correct as f64 / passes_run as f64,
            test_loss: ev.mean_loss(),
            test_acc: ev.accuracy(),
            seconds: start.elapsed().as_secs_f64(),
            images_per_sec: seen as f64 / train_secs.max(1e-9),
        };
        on_event(&Event::Epoch(summary.clone()));
        history.push(summary);
        save(epoch, global, &history, state)?;
    }
    Ok(Ran {
        history,
        steps: global,
    })
}
