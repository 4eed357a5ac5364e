//! The checkpoints the commands read and write: a run stopped before its end is refused as
//! the output of a new run, and noted when read as an input.
use std::path::Path;

use limpq_trainer::checkpoint::Checkpoint;
use limpq_trainer::train::Position;

/// Where a checkpoint's run stopped, when it stopped before its last epoch (a Ctrl-C, a
/// kill after an epoch's checkpoint): `epoch E of N (step S of T)`.
fn unfinished(ck: &Checkpoint) -> Option<String> {
    match Position::of(ck) {
        Ok(Some(pos)) if pos.epochs_done < pos.epochs => Some(format!(
            "a run stopped in epoch {} of {} (step {} of {})",
            pos.epochs_done + 1,
            pos.epochs,
            pos.epoch_step,
            pos.steps_per_epoch
        )),
        _ => None,
    }
}

/// Refuses, as a usage error, to start a new run over `path` when it holds a run that
/// stopped before its end (Ctrl-C, a kill after a checkpoint): the new run would replace
/// it, and `--resume` was most likely forgotten. A finished run's file, or any other
/// file, is left for the run to replace.
pub fn refuse_stopped_run(path: &Path) -> anyhow::Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    let Ok(ck) = Checkpoint::load(path) else {
        return Ok(());
    };
    match unfinished(&ck) {
        Some(run) => Err(super::out::usage(format!(
            "{} holds {run}; add --resume to continue it, or remove the file to start over",
            path.display()
        ))),
        None => Ok(()),
    }
}

/// After a run failed (a divergence in a later epoch, a full disk, a `--resume` refused for
/// other settings or other data):
/// when `path` holds a run short of its last epoch (the last epoch this one finished, or
/// the stopped run it was to continue), a note says so and gives the two ways on, since
/// the same command without `--resume` is refused while the file holds it. Printed before
/// the command's error line.
pub fn note_kept_run(path: &Path) {
    let Ok(ck) = Checkpoint::load(path) else {
        return;
    };
    if let Some(run) = unfinished(&ck) {
        eprintln!(
            "note: {} keeps {run}: --resume continues it with the same settings (a run that \
             diverged diverges again); remove the file, or name another, to start over with \
             others",
            path.display()
        );
    }
}

/// Loads an input checkpoint; one that holds a run stopped before its end is read (its
/// state is a model), with a note that says so: exporting or evaluating it is rarely meant.
pub fn load_input(path: &Path) -> anyhow::Result<Checkpoint> {
    let ck = Checkpoint::load(path)?;
    if let Some(run) = unfinished(&ck) {
        eprintln!(
            "note: {} holds {run}, not a finished one (--resume with its command finishes it)",
            path.display()
        );
    }
    let changed = limpq_trainer::method::act_signs_changed(&ck);
    if let Some(first) = changed.first() {
        eprintln!(
            "note: {} was quantized when only the model input's activation quantizer was \
             signed; {} layer(s) ({first}{}) now quantize their input signed, as it can be \
             negative, with step sizes learned for the unsigned range: finetune it again",
            path.display(),
            changed.len(),
            if changed.len() > 1 { ", ..." } else { "" }
        );
    }
    Ok(ck)
}
