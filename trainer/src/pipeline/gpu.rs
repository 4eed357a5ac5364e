//! The pipeline's stages on a GPU: [`crate::train::train`] for pretraining,
//! [`crate::method::joint_train`] for the indicators and [`crate::method::finetune`] for
//! every policy, all on the same train/test subsets.

use std::sync::Arc;

use limpq_solver::{IndicatorSet, Policy};

use super::{Eval, Job, Partial, SensitivitySpec, StageError, Stages, PARTIAL_FINGERPRINT};
use crate::checkpoint::Checkpoint;
use crate::data::{DataSource, Dataset, DatasetKind, Split, Subset, TEST_SUBSET_SEED};
use crate::dist::Dist;
use crate::engine::{Network, NetworkConfig};
use crate::gpu::Gpu;
use crate::method::{self, FinetuneConfig, JointConfig, MethodError, StopFlag};
use crate::model::Model;
use crate::train::{self, Event as TrainEvent, RunConfig, Start, TrainConfig, TrainError};

/// Seed of the training subset: one subset for every run seed, so that seeds vary the
/// initialisation and the batch order only. 0xDA7A = 55930, the value the CLI's help names
/// for `--subset-seed` to redo a pipeline stage by hand.
pub const TRAIN_SUBSET_SEED: u64 = 0xDA7A;

/// Loads the job's train and test splits (subsets as the job asks). A data set that is
/// not installed gets the ways to install it. An image folder is read at the input size of
/// the job's model (resolved, or imported, here: [`load_plan_data`] reuses a plan's).
pub fn load_data(job: &Job) -> Result<(Arc<Dataset>, Arc<Dataset>), String> {
    let (model, _) = super::source::resolve(job)?;
    load_splits(job, model.input).map_err(|e| install_hint(&job.data.name, e))
}

/// [`load_data`] for the plan's model.
pub fn load_plan_data(plan: &super::Plan) -> Result<(Arc<Dataset>, Arc<Dataset>), String> {
    let job = &plan.job;
    load_splits(job, plan.model.input).map_err(|e| install_hint(&job.data.name, e))
}

/// `message` and, when the data set's folder is missing, how to install it.
fn install_hint(name: &str, message: String) -> String {
    let kind = DatasetKind::parse(name).ok();
    if kind == Some(DatasetKind::Folder) || kind.is_none() {
        return message;
    }
    let missing = kind.is_some_and(|k| !k.default_dir().is_dir())
        || message.contains("not found")
        || message.contains("No such file");
    if !missing {
        return message;
    }
    let install = match kind {
        Some(DatasetKind::FashionMnist) => {
            "install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu: files in \
             /usr/share/datasets/fashion-mnist), or download the four *-idx?-ubyte.gz files and \
             set LIMPQ_DATA to their folder (or its parent)"
        }
        _ => {
            "set LIMPQ_DATA to the folder holding the dataset (or its parent), or give \
             `data.dir` in the job"
        }
    };
    format!("{message}\n{name} is not installed: {install} (see docs/DATA.md)")
}

fn load_splits(
    job: &Job,
    input: (usize, usize, usize),
) -> Result<(Arc<Dataset>, Arc<Dataset>), String> {
    let source = DataSource {
        name: &job.data.name,
        dir: job.data.dir.as_deref(),
        input: Some(input),
        transform: job.data.transform.as_ref(),
    };
    let load = |split: Split, n: Option<usize>, seed: u64| -> Result<Arc<Dataset>, String> {
        let ds = Dataset::load_for(&source, split).map_err(|e| e.to_string())?;
        let ds = match n {
            Some(n) => ds
                .subset(Subset::Random { n, seed })
                .map_err(|e| format!("field `data`: {e}"))?,
            None => ds,
        };
        Ok(Arc::new(ds))
    };
    Ok((
        load(Split::Train, job.data.train, TRAIN_SUBSET_SEED)?,
        load(Split::Test, job.data.test, TEST_SUBSET_SEED)?,
    ))
}

/// The real stages.
pub struct GpuStages<'g> {
    pub gpu: &'g Gpu,
    pub model: Model,
    pub job: Job,
    pub train: Arc<Dataset>,
    pub test: Arc<Dataset>,
    /// Set by another thread to stop the running training run after its current step
    /// (the daemon's cancel and shutdown).
    pub stop: StopFlag,
}

impl GpuStages<'_> {
    fn meta(&self, seed: u64) -> Vec<(String, String)> {
        let mut meta = vec![
            ("data".into(), self.train.kind.name().to_string()),
            ("train_images".into(), self.train.len().to_string()),
            ("test_images".into(), self.test.len().to_string()),
            ("run_seed".into(), seed.to_string()),
            ("pipeline".into(), self.job.output.display().to_string()),
        ];
        // The training subset as the CLI records one, so `limpq eval --recalibrate-bn`
        // draws from the images the run trained on.
        if let Some(n) = self.job.data.train {
            meta.push(("subset".into(), n.to_string()));
            meta.push(("subset_seed".into(), TRAIN_SUBSET_SEED.to_string()));
        }
        // An image folder's path and transform, so `limpq eval --ckpt` finds them.
        meta.extend(self.train.folder_meta());
        meta
    }
}

/// The run's meta plus the stage's fingerprint, so its partial checkpoint names its inputs.
fn partial_meta(mut meta: Vec<(String, String)>, partial: &Partial) -> Vec<(String, String)> {
    meta.push((PARTIAL_FINGERPRINT.into(), partial.fingerprint.clone()));
    meta
}

/// The progress an earlier run of this very stage (same inputs) left, if any: anything else
/// there (other inputs, an unreadable file) is ignored and overwritten.
fn earlier_partial(partial: &Partial) -> Option<Arc<Checkpoint>> {
    Checkpoint::load(&partial.path)
        .ok()
        .filter(|ck| ck.meta(PARTIAL_FINGERPRINT) == Some(partial.fingerprint.as_str()))
        .map(Arc::new)
}

/// A training run's error as the pipeline sees it: a stop, or a failure with its message.
fn train_stage_error(e: TrainError) -> StageError {
    match e {
        TrainError::Stopped(_) => StageError::Stopped,
        e => StageError::Failed(e.to_string()),
    }
}

/// A joint or finetune run's error as the pipeline sees it.
fn method_stage_error(e: MethodError) -> StageError {
    match e {
        MethodError::Stopped { .. } => StageError::Stopped,
        e => StageError::Failed(e.to_string()),
    }
}

/// Runs a joint or finetune stage (`run(resume)`) from the progress an earlier run of it
/// left, if any; a state this run's settings do not match is dropped and the stage starts
/// over rather than fail.
fn from_partial<T>(
    partial: &Partial,
    mut run: impl FnMut(Option<Arc<Checkpoint>>) -> Result<T, MethodError>,
) -> Result<T, StageError> {
    match earlier_partial(partial) {
        Some(ck) => match run(Some(ck)) {
            Err(MethodError::Config(_)) => run(None),
            r => r,
        },
        None => run(None),
    }
    .map_err(method_stage_error)
}

impl Stages for GpuStages<'_> {
    fn stop_requested(&self) -> bool {
        self.stop.requested()
    }

    fn pretrain(
        &mut self,
        seed: u64,
        partial: &Partial,
        on_event: &mut dyn FnMut(&TrainEvent),
    ) -> Result<(Checkpoint, Eval), StageError> {
        // The job's settings over the reference recipe (`PretrainSpec::config`).
        let cfg = TrainConfig {
            // Written at every epoch end and at a stop: the next run continues from it.
            checkpoint: Some(partial.path.clone()),
            meta: partial_meta(self.meta(seed), partial),
            stop: self.stop.clone(),
            // Data-parallel over the job's ranks under `mpirun` (else one process).
            dist: Dist::global(),
            ..self.job.pretrain.config(seed)
        };
        let earlier = earlier_partial(partial);
        let mut run = |start| {
            train::train_from(
                self.gpu,
                &self.model,
                self.train.clone(),
                self.test.clone(),
                &cfg,
                start,
                on_event,
            )
        };
        let t = match &earlier {
            Some(ck) => match run(Start::Resume(ck)) {
                // Settings the checkpoint does not match: start over rather than fail.
                Err(TrainError::Config(_)) => run(Start::Fresh),
                r => r,
            },
            None => run(Start::Fresh),
        }
        .map_err(train_stage_error)?;
        let last = t.history.last().ok_or("pretraining ran no epoch")?.clone();
        // The last epoch is always evaluated ([`RunConfig::eval_every`]).
        let (Some(accuracy), Some(loss)) = (last.test_acc, last.test_loss) else {
            return Err("pretraining's last epoch was not evaluated".into());
        };
        let mut ck = t.checkpoint;
        ck.meta.retain(|(k, _)| k != PARTIAL_FINGERPRINT);
        Ok((ck, Eval { accuracy, loss }))
    }

    fn evaluate_fp(&mut self, ckpt: &Checkpoint) -> Result<Eval, StageError> {
        train::check_checkpoint_model(ckpt, &self.model, "field `pretrain.init`")
            .map_err(|e| e.to_string())?;
        let cfg = NetworkConfig {
            batch: 256,
            ..NetworkConfig::default()
        };
        let mut net = Network::new(self.gpu, &self.model, cfg).map_err(|e| e.to_string())?;
        net.import_state(&ckpt.tensors, false)
            .map_err(|e| format!("field `pretrain.init`: {e}"))?;
        let s = train::evaluate(&mut net, &self.test).map_err(|e| e.to_string())?;
        Ok(Eval {
            accuracy: s.accuracy(),
            loss: s.mean_loss(),
        })
    }

    fn indicators(
        &mut self,
        init: &Checkpoint,
        seed: u64,
        partial: &Partial,
        on_event: &mut dyn FnMut(&TrainEvent),
    ) -> Result<IndicatorSet, StageError> {
        let mut cfg = self.job.joint.config(seed);
        cfg.run.meta = partial_meta(self.meta(seed), partial);
        cfg.run.stop = self.stop.clone();
        // Data-parallel over the job's ranks under `mpirun` (else one process).
        cfg.run.dist = Dist::global();
        // Written at every epoch end and at a stop: the next run continues from it.
        cfg.run.checkpoint = Some(partial.path.clone());
        let mut ind = from_partial(partial, |resume| {
            method::joint_train(
                self.gpu,
                &self.model,
                init,
                self.train.clone(),
                self.test.clone(),
                &JointConfig {
                    run: RunConfig {
                        resume,
                        ..cfg.run.clone()
                    },
                    ..cfg.clone()
                },
                on_event,
            )
        })?;
        ind.meta.retain(|(k, _)| k != PARTIAL_FINGERPRINT);
        Ok(ind)
    }

    fn data_sizes(&self) -> (usize, usize) {
        (self.train.len(), self.test.len())
    }

    fn sensitivity(
        &mut self,
        init: &Checkpoint,
        bits: &[u32],
        spec: &SensitivitySpec,
        seed: u64,
    ) -> Result<IndicatorSet, StageError> {
        // Calibration images from the run's own training images, drawn with the run seed.
        let (n, batch, _) = spec.calibration(self.train.len());
        let calib = self
            .train
            .subset(Subset::Random { n, seed })
            .map_err(|e| StageError::Failed(e.to_string()))?;
        let mut meta = self.meta(seed);
        meta.push(("calibration_seed".into(), seed.to_string()));
        let cfg = method::SensitivityConfig {
            bits: bits.to_vec(),
            batch,
            meta,
            ..method::SensitivityConfig::default()
        };
        method::measure_sensitivity(
            self.gpu,
            &self.model,
            init,
            Arc::new(calib),
            &cfg,
            &mut |_, _| {},
        )
        .map(|s| s.indicators)
        .map_err(method_stage_error)
    }

    fn finetune(
        &mut self,
        init: &Checkpoint,
        policy: &Policy,
        indicators: &IndicatorSet,
        seed: u64,
        partial: &Partial,
        on_event: &mut dyn FnMut(&TrainEvent),
    ) -> Result<(Checkpoint, Eval), StageError> {
        let mut cfg = self.job.finetune.config(seed);
        cfg.run.meta = partial_meta(self.meta(seed), partial);
        cfg.run.stop = self.stop.clone();
        cfg.run.checkpoint = Some(partial.path.clone());
        let mut r = from_partial(partial, |resume| {
            method::finetune(
                self.gpu,
                &self.model,
                init,
                policy,
                Some(indicators),
                self.train.clone(),
                self.test.clone(),
                &FinetuneConfig {
                    run: RunConfig {
                        resume,
                        ..cfg.run.clone()
                    },
                    ..cfg.clone()
                },
                on_event,
            )
        })?;
        r.checkpoint.meta.retain(|(k, _)| k != PARTIAL_FINGERPRINT);
        Ok((
            r.checkpoint,
            Eval {
                accuracy: r.test_accuracy,
                loss: r.test_loss,
            },
        ))
    }
}
