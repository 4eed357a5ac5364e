//! The GPU job kinds at work: `Train` (full-precision training through
//! [`crate::train::train_from`]), `Eval` (test accuracy of a checkpoint) and `Pipeline`.
//!
//! Stopping a training run: the job forwards the daemon's stop flag to
//! [`TrainConfig::stop`]; `train_from` then saves the exact position (epoch, step within it,
//! global step, momentum, partial epoch figures) to the job's `current.ckpt` and returns
//! [`TrainError::Stopped`]. Resuming: `current.ckpt` (written at every epoch end and at a
//! stop) is passed as [`Start::Resume`], so the cosine schedule, momentum and the order and
//! augmentation of the remaining batches are those of an uninterrupted run. The spec's
//! `init` is [`Start::Init`]: a new run from those weights.
//!
//! Pipeline jobs: the same flag goes to the pipeline's GPU stages, which pass it to every
//! training run; `pipeline::run` returns [`PipelineError::Stopped`] after the running
//! stage's current step, and a rerun goes on from where it stopped (completed stages
//! skipped, the stopped one from its exact step).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use limpq_io::documents::{read_indicators, read_policy};
use limpq_io::files::{self, write_private};
use serde::Serialize;

use super::exec::{JobContext, Outcome};
use crate::checkpoint::Checkpoint;
use crate::daemon::gpu_specs::{
    default_data, resolve_model, EvalJob, FinetuneJob, IndicatorsJob, JobData, PipelineJob,
    TrainJob,
};
use crate::daemon::job::check_regular;
use crate::daemon::protocol::Progress;
use crate::data::{Dataset, Split, TEST_SUBSET_SEED};
use crate::gpu::{Gpu, GpuOptions};
use crate::method::{
    checkpoint_policy, evaluate_checkpoint, finetune, joint_train_full, FinetuneConfig,
    JointConfig, MethodError,
};
use crate::pipeline::PipelineError;
use crate::train::{
    check_checkpoint_model, check_data, train_from, Event, Position, RunConfig, Start, StopFlag,
    TrainConfig, TrainError,
};

fn load_split(
    data: &str,
    dir: Option<&Path>,
    split: Split,
    subset: Option<usize>,
    seed: u64,
) -> Result<Arc<Dataset>, String> {
    Dataset::load_subset(data, dir, split, subset, seed)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// The training split (a subset drawn with the job's seed) and the test split (a subset
/// drawn with [`TEST_SUBSET_SEED`]) of data set `name`, as the CLI's training commands load
/// them.
fn load_splits(name: &str, d: &JobData) -> Result<(Arc<Dataset>, Arc<Dataset>), String> {
    let dir = d.data_dir.as_deref();
    Ok((
        load_split(name, dir, Split::Train, d.subset, d.seed)?,
        load_split(name, dir, Split::Test, d.test_subset, TEST_SUBSET_SEED)?,
    ))
}

/// A run's event as the job's progress (steps, evaluations) or log line (epochs).
fn report(ctx: &mut JobContext<'_>, stage: &str, epochs: usize, e: &Event) {
    let total = epochs as u64;
    match e {
        Event::Start { .. } => {}
        Event::Step {
            epoch,
            step,
            steps,
            loss,
            accuracy,
            images_per_sec,
            eta_secs,
            ..
        } => ctx.progress(Progress {
            stage: stage.into(),
            epoch: Some((*epoch as u64, total)),
            step: Some((*step as u64, *steps as u64)),
            loss: Some(*loss as f64),
            accuracy: Some(*accuracy),
            images_per_sec: Some(*images_per_sec),
            eta_secs: Some(*eta_secs),
        }),
        Event::Evaluating { epoch } => ctx.progress(Progress {
            stage: "evaluating".into(),
            epoch: Some((*epoch as u64, total)),
            ..Progress::default()
        }),
        Event::Epoch(s) => ctx.log(format!(
            "epoch {}/{}: train loss {:.4} acc {:.2}%{} | {:.1} s, {:.0} img/s",
            s.epoch,
            total,
            s.train_loss,
            s.train_acc * 100.0,
            s.test_text(),
            s.seconds,
            s.images_per_sec
        )),
    }
}

/// The progress callback of a training run in a job: reports each event as `stage`, and
/// forwards the daemon's stop (cancel or shutdown) to the run's own flag, which the run
/// checks before its next step.
fn run_events<'a, 'j>(
    ctx: &'a mut JobContext<'j>,
    stage: &'static str,
    epochs: usize,
    stop: &'a AtomicBool,
) -> impl FnMut(&Event) + use<'a, 'j> {
    move |e: &Event| {
        report(ctx, stage, epochs, e);
        if ctx.should_stop() {
            stop.store(true, Ordering::SeqCst);
        }
    }
}

/// The data's provenance for a checkpoint's or indicator file's meta, as the CLI writes it.
fn data_meta(train: &Dataset, init: &Path, d: &JobData) -> Vec<(String, String)> {
    let mut meta = vec![
        ("data".to_string(), train.kind.name().to_string()),
        ("init".to_string(), init.display().to_string()),
    ];
    if let Some(n) = d.subset {
        meta.push(("subset".into(), n.to_string()));
    }
    meta
}

/// A state file the job resumes from, when an earlier run of it left one.
fn resume_from(ctx: &mut JobContext<'_>, path: &Path) -> Result<Option<Arc<Checkpoint>>, String> {
    if !path.is_file() {
        return Ok(None);
    }
    let ck = Checkpoint::load(path).map_err(|e| e.to_string())?;
    match Position::of(&ck) {
        Ok(Some(pos)) => ctx.log(format!(
            "resumed from checkpoint at epoch {} of {}, step {} of {} in the next epoch \
             (global step {}); schedule, momentum and batch order continue exactly",
            pos.epochs_done, pos.epochs, pos.epoch_step, pos.steps_per_epoch, pos.global_step
        )),
        _ => ctx.log(format!("resuming from {}", path.display())),
    }
    Ok(Some(Arc::new(ck)))
}

/// How a stopped method run ends the job: stopped (its state saved, resumed next time),
/// or an error.
fn method_end<T>(
    ran: Result<T, MethodError>,
    ctx: &mut JobContext<'_>,
) -> Result<Result<T, Outcome>, String> {
    match ran {
        Ok(t) => Ok(Ok(t)),
        Err(e @ MethodError::Stopped { .. }) => {
            ctx.log(format!("{e}; the job resumes from there"));
            Ok(Err(Outcome::Stopped))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Writes `text` to the job's own output folder (`name`) or to the file the job named.
fn write_output(
    ctx: &JobContext<'_>,
    named: Option<&Path>,
    name: &str,
    bytes: &[u8],
) -> Result<PathBuf, String> {
    let out = named.map_or_else(|| ctx.output_dir.join(name), Path::to_path_buf);
    let written = if named.is_some() {
        files::write_atomic(&out, bytes)
    } else {
        write_private(&out, bytes)
    };
    written.map_err(|e| e.to_string())?;
    Ok(out)
}

fn gpu(ctx: &mut JobContext<'_>) -> Result<Gpu, String> {
    let mut opts = GpuOptions::from_env();
    if let Some(pick) = &ctx.adapter {
        opts = opts.with_adapter(pick.clone());
    }
    let g = Gpu::new(&opts).map_err(|e| format!("GPU: {e}"))?;
    ctx.log(format!(
        "adapter: {} ({})",
        g.summary.name, g.summary.backend
    ));
    Ok(g)
}

/// The data set of a job that starts from `ckpt`: the job's (`given`), else the one the
/// checkpoint records, else fashion-mnist. An import records none unless told, and MNIST's
/// images have Fashion-MNIST's shape: the default is then said in the job's log.
fn job_data(ctx: &mut JobContext<'_>, given: Option<&str>, ckpt: Option<&Checkpoint>) -> String {
    if let Some(d) = given.or_else(|| ckpt.and_then(|c| c.meta("data"))) {
        return d.to_string();
    }
    if ckpt.is_some() {
        ctx.log(
            "note: the input checkpoint records no data set (imports record one only with \
             --data): reading fashion-mnist; the job's `data` names another",
        );
    }
    default_data()
}

pub fn run_train(job: &TrainJob, ctx: &mut JobContext<'_>) -> Result<Outcome, String> {
    let run = job.config();
    let current = ctx.checkpoint_dir.join("current.ckpt");
    // What the job starts from: its own last checkpoint (an exact position), else the
    // spec's init (weights only, a new run), else a fresh initialisation.
    let resume = if current.is_file() {
        Some(Checkpoint::load(&current).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let init = match (&resume, &job.init) {
        (None, Some(p)) => Some(Checkpoint::load(p).map_err(|e| e.to_string())?),
        _ => None,
    };
    // The data set is the job's, else the one the run (or its init) was trained on, as
    // `limpq train --init` takes it.
    let data = job_data(
        ctx,
        job.data.data.as_deref(),
        resume.as_ref().or(init.as_ref()),
    );
    let model = resolve_model("train.model", &job.model, &data)?;
    if let Some(ck) = &resume {
        check_checkpoint_model(ck, &model, &current.display().to_string())
            .map_err(|e| e.to_string())?;
        let pos = Position::of(ck)
            .map_err(|e| format!("{}: {e}", current.display()))?
            .ok_or_else(|| {
                format!(
                    "{}: this checkpoint carries no training position (written by an older \
                     limpq); delete it to restart the job from the beginning",
                    current.display()
                )
            })?;
        ctx.log(format!(
            "resumed from checkpoint at epoch {} of {}, step {} of {} in the next epoch \
             (global step {}); schedule, momentum and batch order continue exactly",
            pos.epochs_done, run.epochs, pos.epoch_step, pos.steps_per_epoch, pos.global_step
        ));
    }
    let start = match (&resume, &init) {
        (Some(ck), _) => Start::Resume(ck),
        (None, Some(ck)) => Start::Init(ck),
        (None, None) => Start::Fresh,
    };
    let (train_ds, test_ds) = load_splits(&data, &job.data)?;
    let gpu = gpu(ctx)?;
    // The daemon's stop flag (cancel or shutdown) is an AtomicU8 owned by the worker; the
    // progress callback, which runs after every step, forwards it to train's own flag,
    // which train checks before the next step and before each evaluation.
    let stop = Arc::new(AtomicBool::new(false));
    let cfg = TrainConfig {
        checkpoint: Some(current.clone()),
        meta: vec![("data".into(), train_ds.kind.name().to_string())],
        stop: StopFlag::new(stop.clone()),
        ..run
    };
    let ran = {
        let mut on_event = run_events(ctx, "training", cfg.epochs, &stop);
        train_from(&gpu, &model, train_ds, test_ds, &cfg, start, &mut on_event)
    };
    let trained = match ran {
        Ok(t) => t,
        Err(TrainError::Stopped(s)) => {
            let p = &s.position;
            ctx.log(format!(
                "stopped after step {} of {} in epoch {} (global step {}); resumes from there",
                p.epoch_step,
                p.steps_per_epoch,
                p.epochs_done + 1,
                p.global_step
            ));
            return Ok(Outcome::Stopped);
        }
        Err(e) => return Err(e.to_string()),
    };
    let out = ctx.output_dir.join("model.ckpt");
    trained.checkpoint.save(&out).map_err(|e| e.to_string())?;
    let history = ron::ser::to_string_pretty(
        &trained
            .history
            .iter()
            // NaN: an epoch not evaluated (`eval_every`).
            .map(|s| {
                let nan = f64::NAN;
                let (tl, ta) = (s.test_loss.unwrap_or(nan), s.test_acc.unwrap_or(nan));
                (s.epoch, s.train_loss, s.train_acc, tl, ta)
            })
            .collect::<Vec<_>>(),
        ron::ser::PrettyConfig::default(),
    )
    .map_err(|e| e.to_string())?;
    write_private(&ctx.output_dir.join("history.ron"), history.as_bytes())
        .map_err(|e| e.to_string())?;
    ctx.log(format!("checkpoint written to {}", out.display()));
    Ok(Outcome::Completed)
}

/// The figures an eval job writes to `eval.ron`.
#[derive(Serialize)]
struct EvalResult {
    model: String,
    data: String,
    images: usize,
    correct: usize,
    accuracy: f64,
    loss: f64,
}

pub fn run_eval(job: &EvalJob, ctx: &mut JobContext<'_>) -> Result<Outcome, String> {
    ctx.progress(Progress {
        stage: "evaluating".into(),
        ..Progress::default()
    });
    let ckpt = Checkpoint::load(&job.ckpt).map_err(|e| e.to_string())?;
    let data = job_data(ctx, job.data.as_deref(), Some(&ckpt));
    let test = load_split(
        &data,
        job.data_dir.as_deref(),
        Split::Test,
        job.subset,
        TEST_SUBSET_SEED,
    )?;
    check_data(&ckpt.model, &test).map_err(|e| e.to_string())?;
    let gpu = gpu(ctx)?;
    // As `limpq eval`: a finetuned checkpoint at the policy it stores (the model it is),
    // a full-precision one in full precision.
    let name = job.ckpt.display().to_string();
    let policy = checkpoint_policy(&ckpt).map_err(|e| format!("{name}: {e}"))?;
    if let Some(p) = &policy {
        ctx.log(format!(
            "quantized at the checkpoint's policy ({} layers)",
            p.layers.len()
        ));
    }
    let rep = evaluate_checkpoint(
        &gpu,
        &ckpt,
        &name,
        policy.as_ref(),
        &data,
        test,
        job.batch,
        None,
    )
    .map_err(|e| e.to_string())?;
    let r = EvalResult {
        model: rep.model,
        data: rep.data,
        images: rep.images,
        correct: rep.correct,
        accuracy: rep.accuracy,
        loss: rep.loss,
    };
    ctx.log(format!(
        "accuracy {:.2}% ({}/{}), loss {:.4}",
        r.accuracy * 100.0,
        r.correct,
        r.images,
        r.loss
    ));
    let text = ron::ser::to_string_pretty(&r, ron::ser::PrettyConfig::default())
        .map_err(|e| e.to_string())?;
    write_private(&ctx.output_dir.join("eval.ron"), text.as_bytes()).map_err(|e| e.to_string())?;
    Ok(Outcome::Completed)
}

pub fn run_pipeline(job: &PipelineJob, ctx: &mut JobContext<'_>) -> Result<Outcome, String> {
    use crate::pipeline::{self, Event as PEvent};
    let plan = pipeline::Plan::new(job.clone()).map_err(|e| e.to_string())?;
    let (train_ds, test_ds) = pipeline::gpu::load_data(job)?;
    let gpu = gpu(ctx)?;
    // As for train jobs: the callback forwards the daemon's flag to the stages' own.
    let stop = Arc::new(AtomicBool::new(false));
    let mut stages = pipeline::gpu::GpuStages {
        gpu: &gpu,
        model: plan.model.clone(),
        job: job.clone(),
        train: train_ds,
        test: test_ds,
        stop: StopFlag::new(stop.clone()),
    };
    let ran = {
        let ctx = &mut *ctx;
        let mut stage = String::new();
        let mut on_event = |e: &PEvent| {
            match e {
                PEvent::Plan { total } => ctx.log(format!("{total} stages")),
                PEvent::StageStart { index, total, name } => {
                    stage = format!("[{index}/{total}] {name}");
                    ctx.progress(Progress {
                        stage: stage.clone(),
                        ..Progress::default()
                    });
                }
                PEvent::StageSkipped { index, total, name } => {
                    ctx.log(format!("[{index}/{total}] {name}: done earlier, skipped"))
                }
                PEvent::StageDone {
                    index,
                    total,
                    name,
                    summary,
                } => ctx.log(format!("[{index}/{total}] {name}: {summary}")),
                PEvent::Note(n) => ctx.log(format!("note: {n}")),
                PEvent::Train(Event::Step {
                    epoch,
                    epochs,
                    step,
                    steps,
                    loss,
                    accuracy,
                    images_per_sec,
                    eta_secs,
                    ..
                }) => ctx.progress(Progress {
                    stage: stage.clone(),
                    epoch: Some((*epoch as u64, *epochs as u64)),
                    step: Some((*step as u64, *steps as u64)),
                    loss: Some(*loss as f64),
                    accuracy: Some(*accuracy),
                    images_per_sec: Some(*images_per_sec),
                    eta_secs: Some(*eta_secs),
                }),
                PEvent::Train(_) => {}
            }
            if ctx.should_stop() {
                stop.store(true, Ordering::SeqCst);
            }
        };
        pipeline::run(&plan, &mut stages, &mut on_event)
    };
    match ran {
        Ok(_) => {
            ctx.log(format!("report written to {}", job.output.display()));
            Ok(Outcome::Completed)
        }
        Err(PipelineError::Stopped { stage }) => {
            ctx.log(format!(
                "stopped during {stage}; resumes there: completed stages are kept, and a \
                 training stage continues from its partial checkpoint"
            ));
            Ok(Outcome::Stopped)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Joint indicator training (`limpq indicators`) through
/// [`crate::method::joint_train_full`]. Its state is `checkpoint/joint.ckpt`, written after
/// every epoch and at a stop with the exact position; a resumed job continues from it.
pub fn run_indicators(job: &IndicatorsJob, ctx: &mut JobContext<'_>) -> Result<Outcome, String> {
    let init = Checkpoint::load(&job.ckpt).map_err(|e| e.to_string())?;
    let data = job_data(ctx, job.data.data.as_deref(), Some(&init));
    let model = resolve_model("indicators.model", &job.model, &data)?;
    let state = ctx.checkpoint_dir.join("joint.ckpt");
    let resume = resume_from(ctx, &state)?;
    let (train_ds, test_ds) = load_splits(&data, &job.data)?;
    let gpu = gpu(ctx)?;
    ctx.log(format!(
        "joint indicator training of {} at bits {:?} on {} ({} train / {} test images)",
        model.name,
        job.bits,
        train_ds.kind.name(),
        train_ds.len(),
        test_ds.len()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let base = job.config();
    let cfg = JointConfig {
        bits: base.bits,
        fixed_bits: base.fixed_bits,
        run: RunConfig {
            meta: data_meta(&train_ds, &job.ckpt, &job.data),
            checkpoint: Some(state),
            stop: StopFlag::new(stop.clone()),
            resume,
            ..base.run
        },
    };
    let ran = {
        let mut on_event = run_events(ctx, "joint training", cfg.run.epochs, &stop);
        joint_train_full(&gpu, &model, &init, train_ds, test_ds, &cfg, &mut on_event)
    };
    let out = match method_end(ran, ctx)? {
        Ok(out) => out,
        Err(stopped) => return Ok(stopped),
    };
    if let Some(w) = out.clamped_warning() {
        ctx.log(w);
    }
    if !out.non_monotone.is_empty() {
        ctx.log(format!(
            "warning: {} indicator pairs are not monotone in bits (listed in the file's meta)",
            out.non_monotone.len()
        ));
    }
    if let Some(d) = &out.drift {
        ctx.log(format!("the step sizes moved from their LSQ init {d}"));
    }
    let named = job.output.as_deref();
    let json = named.is_some_and(|p| {
        p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    });
    let text = if json {
        out.indicators.to_json_string()
    } else {
        out.indicators.to_ron_string()
    };
    let path = write_output(ctx, named, "indicators.ron", text.as_bytes())?;
    if let Some(p) = &job.checkpoint {
        out.checkpoint.save(p).map_err(|e| e.to_string())?;
        ctx.log(format!("joint state written to {}", p.display()));
    }
    ctx.log(format!("indicators written to {}", path.display()));
    Ok(Outcome::Completed)
}

/// Finetuning of a policy (`limpq finetune`) through [`crate::method::finetune`]. Its state
/// is `checkpoint/current.ckpt`, written after every epoch and at a stop with the exact
/// position; a resumed job continues from it.
pub fn run_finetune(job: &FinetuneJob, ctx: &mut JobContext<'_>) -> Result<Outcome, String> {
    let init = Checkpoint::load(&job.ckpt).map_err(|e| e.to_string())?;
    let model = init.model.clone();
    // Checked again: the files may have changed since the submission.
    check_regular("finetune.policy", &job.policy)?;
    let policy = read_policy(&job.policy).map_err(|e| e.to_string())?;
    if policy.model != model.name {
        return Err(format!(
            "{} is a policy for model '{}', {} holds '{}'",
            job.policy.display(),
            policy.model,
            job.ckpt.display(),
            model.name
        ));
    }
    // Every layer's bits, named with the file, before the data and the GPU.
    crate::engine::QuantSpec::policy(&model, &policy)
        .map_err(|e| format!("{}: {e}", job.policy.display()))?;
    let indicators = match &job.indicators {
        Some(p) => {
            check_regular("finetune.indicators", p)?;
            Some(read_indicators(p).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let data = job_data(ctx, job.data.data.as_deref(), Some(&init));
    let state = ctx.checkpoint_dir.join("current.ckpt");
    let resume = resume_from(ctx, &state)?;
    let (train_ds, test_ds) = load_splits(&data, &job.data)?;
    let gpu = gpu(ctx)?;
    ctx.log(format!(
        "finetuning {} at {} on {} ({} train / {} test images)",
        model.name,
        job.policy.display(),
        train_ds.kind.name(),
        train_ds.len(),
        test_ds.len()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let base = job.config();
    let cfg = FinetuneConfig {
        run: RunConfig {
            meta: data_meta(&train_ds, &job.ckpt, &job.data),
            checkpoint: Some(state),
            stop: StopFlag::new(stop.clone()),
            resume,
            ..base.run
        },
        ..base
    };
    let ran = {
        let mut on_event = run_events(ctx, "finetuning", cfg.run.epochs, &stop);
        finetune(
            &gpu,
            &model,
            &init,
            &policy,
            indicators.as_ref(),
            train_ds,
            test_ds,
            &cfg,
            &mut on_event,
        )
    };
    let ft = match method_end(ran, ctx)? {
        Ok(ft) => ft,
        Err(stopped) => return Ok(stopped),
    };
    let path = write_output(
        ctx,
        job.output.as_deref(),
        "model.ckpt",
        &ft.checkpoint.to_bytes(),
    )?;
    ctx.log(format!(
        "quantized test accuracy {:.2}%, loss {:.4}; checkpoint written to {}",
        ft.test_accuracy * 100.0,
        ft.test_loss,
        path.display()
    ));
    Ok(Outcome::Completed)
}
