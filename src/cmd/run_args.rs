//! Argument groups the training commands share (`#[command(flatten)]`), so that one idea
//! has one spelling everywhere: the run settings ([`RunArgs`]: `train`, `indicators`,
//! `finetune`) and the data a run reads.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use limpq_trainer::checkpoint::Checkpoint;
use limpq_trainer::data::{
    DataSource, Dataset, Split, Transform, META_DATA_DIR, META_TRANSFORM, TEST_SUBSET_SEED,
};
use limpq_trainer::model::Model;
use limpq_trainer::schedule::LrSchedule;
use limpq_trainer::train::RunConfig;

/// The run settings and the data of `train`, `indicators` and `finetune`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Passes over the training set (0: no training; the starting model, with a quantized
    /// run's step sizes initialised on one batch, is written).
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Images per optimizer step (the last partial batch of an epoch is dropped).
    #[arg(long, default_value_t = 64, value_parser = super::num::count)]
    pub batch: usize,
    /// Initial learning rate, cosine-annealed over the run as --lr-schedule says (default:
    /// 0.1 for `train`, 0.01 for `indicators` and `finetune`).
    #[arg(long, value_parser = super::num::non_negative_f32, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// How the learning rate falls: `per-epoch` (cosine stepped once per epoch down to
    /// --lr-floor, constant within an epoch: the reference's, default of `indicators` and
    /// `finetune`) or `per-step` (cosine every step down to 0: default of `train`).
    #[arg(long, value_enum)]
    pub lr_schedule: Option<ScheduleArg>,
    /// Floor of the per-epoch schedule (default 1e-5); implies `--lr-schedule per-epoch`
    /// when that is not given, and is refused with `per-step`.
    #[arg(long, value_parser = super::num::non_negative_f32, allow_negative_numbers = true)]
    pub lr_floor: Option<f32>,
    /// SGD momentum (default: 0.9).
    #[arg(long, value_parser = super::num::non_negative_f32, allow_negative_numbers = true)]
    pub momentum: Option<f32>,
    /// Weight decay on conv and linear weights (default: 5e-4 for `train`, 2.5e-5 for
    /// `indicators` and `finetune`).
    #[arg(long, value_parser = super::num::non_negative_f32, allow_negative_numbers = true)]
    pub weight_decay: Option<f32>,
    /// Label smoothing of the cross-entropy loss, in [0, 1) (default: 0 for `train`, 0.1
    /// for `indicators` and `finetune`).
    #[arg(long, value_parser = super::num::fraction_below_one, allow_negative_numbers = true)]
    pub label_smoothing: Option<f32>,
    /// Seed of the weight init, the --subset draw, shuffling and augmentation (and of
    /// `indicators`' random-policy passes).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per evaluation batch.
    #[arg(long, default_value_t = 256, value_parser = super::num::count)]
    pub eval_batch: usize,
    /// Evaluate on the test set after every N-th epoch and after the last (1: after every
    /// epoch). Skipped evaluations change no weight and no final figure; on a large test
    /// set they are most of a short run's time.
    #[arg(long, default_value_t = 1, value_parser = super::num::count)]
    pub eval_every: usize,
    // This comment is also `--help` text, where `<class>` is a placeholder, not HTML.
    #[allow(rustdoc::invalid_html_tags)]
    /// Dataset: fashion-mnist, mnist, cifar10, or folder (an image folder, ROOT/train/<class>/
    /// and ROOT/val/<class>/ of PNG or JPEG files, at --data-dir; its path works too)
    /// (default: the one the input checkpoint was trained on, else fashion-mnist).
    #[arg(long)]
    pub data: Option<String>,
    /// Folder holding the dataset's files (default: $LIMPQ_DATA, else /usr/share/datasets/NAME;
    /// an image folder's: the one the input checkpoint recorded).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Image folders: how images become inputs, in RON, e.g. `(resize: 256, flip: false,
    /// mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])` (default: the input checkpoint's, else
    /// resize to 8/7 of the input, random crop and flip, ImageNet normalisation; docs/DATA.md).
    #[arg(long)]
    pub transform: Option<String>,
    /// Train on N training images drawn with --subset-seed (default: all).
    #[arg(long, value_parser = super::num::count)]
    pub subset: Option<usize>,
    /// Evaluate on N test images drawn with a fixed seed (default: all).
    #[arg(long, value_parser = super::num::count)]
    pub test_subset: Option<usize>,
    /// Seed of the --subset draw alone (default: --seed). `limpq pipeline` draws one
    /// training subset for every run seed, with seed 55930; pass that to redo one of its
    /// stages by hand on the same images.
    #[arg(long)]
    pub subset_seed: Option<u64>,
    /// Under `mpirun` with several ranks: batch norm over the whole global batch (every
    /// rank's part), not over each rank's part; costs an exchange per BN layer in the
    /// forward and the backward (docs/SCALING.md). No effect in a single process.
    #[arg(long)]
    pub sync_bn: bool,
}

/// `--lr-schedule`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScheduleArg {
    PerEpoch,
    PerStep,
}

impl RunArgs {
    /// The schedule `--lr-schedule` and `--lr-floor` choose, `base`'s when neither is given.
    fn schedule(&self, base: LrSchedule) -> anyhow::Result<LrSchedule> {
        let floor = self.lr_floor.unwrap_or(LrSchedule::REFERENCE_FLOOR);
        Ok(match (self.lr_schedule, self.lr_floor) {
            (Some(ScheduleArg::PerStep), Some(_)) => {
                return Err(super::out::usage(
                    "--lr-floor applies to --lr-schedule per-epoch only",
                ))
            }
            (Some(ScheduleArg::PerStep), None) => LrSchedule::PerStep,
            (Some(ScheduleArg::PerEpoch), _) | (None, Some(_)) => LrSchedule::PerEpoch { floor },
            (None, None) => base,
        })
    }

    /// The flags' combinations a run cannot honour, as usage errors: for a command to call
    /// first, before it reads a file or opens a GPU.
    pub fn check(&self) -> anyhow::Result<()> {
        self.schedule(LrSchedule::PerStep).map(drop)
    }

    /// `base` (the command's recipe) with the settings given here.
    pub fn config(&self, base: RunConfig) -> anyhow::Result<RunConfig> {
        let lr = self.lr.unwrap_or(base.lr);
        // The schedule's own refusals first (a floor with the per-step schedule).
        let schedule = self.schedule(base.schedule)?;
        if let Some(floor) = self.lr_floor.filter(|&f| f > lr) {
            return Err(super::out::usage(format!(
                "--lr-floor {floor} is above the learning rate {lr} (--lr, or this command's \
                 default): the per-epoch schedule falls from the rate to the floor"
            )));
        }
        Ok(RunConfig {
            epochs: self.epochs,
            batch: self.batch,
            lr,
            schedule,
            momentum: self.momentum.unwrap_or(base.momentum),
            weight_decay: self.weight_decay.unwrap_or(base.weight_decay),
            label_smoothing: self.label_smoothing.unwrap_or(base.label_smoothing),
            seed: self.seed,
            eval_batch: self.eval_batch,
            eval_every: self.eval_every,
            // Under `mpirun`, the job's ranks (set once at start); else a single process.
            dist: limpq_trainer::dist::Dist::global(),
            sync_bn: self.sync_bn,
            ..base
        })
    }

    /// The dataset: `--data`, else the checkpoint's, else Fashion-MNIST ([`data_for`]).
    pub fn data_name(&self, ckpt: Option<&Checkpoint>) -> String {
        data_for(self.data.as_deref(), ckpt)
    }

    /// The training split (`--subset`, drawn with `--subset-seed`, else `--seed`) and the
    /// test split (`--test-subset`) of dataset `data`, for a model whose input is `input`
    /// (an image folder is read at that size). `ckpt`: the input checkpoint, whose recorded
    /// image folder and transform are the defaults.
    pub fn splits(
        &self,
        data: &str,
        input: (usize, usize, usize),
        ckpt: Option<&Checkpoint>,
    ) -> anyhow::Result<(Arc<Dataset>, Arc<Dataset>)> {
        transform_applies(data, self.transform.as_deref())?;
        let (dir, transform) = folder_args(
            data,
            self.data_dir.as_deref(),
            self.transform.as_deref(),
            ckpt,
        )?;
        let source = DataSource {
            name: data,
            dir: dir.as_deref(),
            input: Some(input),
            transform: transform.as_ref(),
        };
        load_splits(
            &source,
            self.subset,
            self.subset_seed.unwrap_or(self.seed),
            self.test_subset,
        )
    }

    /// Provenance of the data for a checkpoint's or indicator file's meta (and an image
    /// folder's path and transform, so later commands find them).
    pub fn subset_meta(&self, train: &Dataset) -> Vec<(String, String)> {
        let mut meta = folder_meta(train);
        if let Some(n) = self.subset {
            meta.push(("subset".into(), n.to_string()));
        }
        if let Some(s) = self.subset_seed {
            meta.push(("subset_seed".into(), s.to_string()));
        }
        meta
    }
}

/// The data set of a command: `flag` (its --data), else the one the input checkpoint
/// records, else Fashion-MNIST. An import records none unless given `--data`, and MNIST's
/// images have Fashion-MNIST's shape, so nothing else would tell a wrong default: a
/// checkpoint that records none gets a note on stderr.
pub fn data_for(flag: Option<&str>, ckpt: Option<&Checkpoint>) -> String {
    match (flag, ckpt.and_then(|c| c.meta("data"))) {
        (Some(d), _) => d.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => {
            if ckpt.is_some() {
                eprintln!(
                    "note: the input checkpoint records no data set (imports record one only \
                     with --data): reading fashion-mnist; --data names another"
                );
            }
            "fashion-mnist".to_string()
        }
    }
}

/// What an import records of `--data` for later commands: the data set's own name, refused
/// when its images do not fit `model` (shape, classes); or an image folder's path (a folder
/// holding `train/`), recorded as `limpq train` records one, refused when it has more
/// classes than `model` (as the commands that read it would refuse it). `model` takes the
/// folder's images at its input: they are read at that size.
pub fn import_data_meta(data: &str, model: &Model) -> anyhow::Result<Vec<(String, String)>> {
    use limpq_trainer::data::{split_dir, DatasetKind, ImageFolder};
    match DatasetKind::parse(data) {
        Ok(DatasetKind::Folder) => Err(super::out::usage(
            "--data folder: give the image folder's path (the folder holding train/) instead",
        )),
        Ok(kind) => {
            if kind.shape() != model.input || kind.classes() > model.classes {
                return Err(super::out::usage(format!(
                    "--data {data}: its images are {:?} in {} classes; model '{}' takes {:?} \
                     in {} classes",
                    kind.shape(),
                    kind.classes(),
                    model.name,
                    model.input,
                    model.classes
                )));
            }
            Ok(vec![("data".into(), kind.name().into())])
        }
        Err(e) => {
            let root = Path::new(data);
            if !root.join("train").is_dir() {
                return Err(super::out::usage(format!(
                    "--data: {e}; {data} is no folder holding train/"
                )));
            }
            let classes = ImageFolder::class_names(root)?.len();
            if classes > model.classes {
                return Err(super::out::usage(format!(
                    "--data {data}: the image folder has {classes} classes (the class folders \
                     of {}); model '{}' has {} classes",
                    split_dir(root, Split::Train).display(),
                    model.name,
                    model.classes
                )));
            }
            let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
            Ok(vec![
                ("data".into(), DatasetKind::Folder.name().into()),
                (META_DATA_DIR.into(), root.display().to_string()),
            ])
        }
    }
}

/// Refuses a `--resume` whose checkpoint was written by a run on other data than this one's
/// (`meta`, the entries this run records): the data set, `--subset`, `--subset-seed`, the
/// image folder and its transform. The other settings are compared by the library; these
/// were not, and a resumed run went on silently with other images.
pub fn check_resume_data(
    resume: Option<&Checkpoint>,
    meta: &[(String, String)],
) -> anyhow::Result<()> {
    let Some(ck) = resume else {
        return Ok(());
    };
    let now = |k: &str| meta.iter().find(|(m, _)| m == k).map(|(_, v)| v.as_str());
    let diffs: Vec<String> = [
        "data",
        "subset",
        "subset_seed",
        META_DATA_DIR,
        META_TRANSFORM,
    ]
    .into_iter()
    .filter(|&k| ck.meta(k) != now(k))
    .map(|k| {
        format!(
            "{k} {} (this run {})",
            ck.meta(k).unwrap_or("none"),
            now(k).unwrap_or("none")
        )
    })
    .collect();
    if diffs.is_empty() {
        return Ok(());
    }
    Err(anyhow::anyhow!(
        "--resume: {} was written by a run on other data: {}; give the same data flags, or \
         remove the file (or name another) and start afresh without --resume",
        ck.describe(),
        diffs.join(", ")
    ))
}

/// An image folder's path and transform as meta entries (nothing for other datasets).
fn folder_meta(ds: &Dataset) -> Vec<(String, String)> {
    ds.folder_meta()
}

/// --transform shapes an image folder's images; the fixed datasets have none to shape, and
/// it was ignored for them: a usage error there.
pub fn transform_applies(data: &str, transform: Option<&str>) -> anyhow::Result<()> {
    let fixed = limpq_trainer::data::DatasetKind::parse(data)
        .is_ok_and(|k| k != limpq_trainer::data::DatasetKind::Folder);
    if transform.is_some() && fixed {
        return Err(super::out::usage(format!(
            "--transform applies to an image folder (--data folder), not to {data}"
        )));
    }
    Ok(())
}

/// The data folder and image-folder transform for dataset `data`: the flags, else what
/// `ckpt` recorded. The checkpoint's image folder is the default only for `data` "folder":
/// `--data ROOT` (a folder's path) names its own, and a fixed dataset's files are elsewhere.
pub fn folder_args(
    data: &str,
    dir: Option<&Path>,
    transform: Option<&str>,
    ckpt: Option<&Checkpoint>,
) -> anyhow::Result<(Option<PathBuf>, Option<Transform>)> {
    let folder = limpq_trainer::data::DatasetKind::parse(data)
        .is_ok_and(|k| k == limpq_trainer::data::DatasetKind::Folder);
    let dir = dir.map(Path::to_path_buf).or_else(|| {
        ckpt.filter(|_| folder)
            .and_then(|c| c.meta(META_DATA_DIR))
            .map(PathBuf::from)
    });
    let transform = match transform {
        // A flag that does not parse is a usage error (exit 2), as every other flag's.
        Some(t) => Some(
            Transform::from_ron_str(t)
                .map_err(|e| super::out::usage(format!("--transform: {e}")))?,
        ),
        None => match ckpt.and_then(|c| c.meta(META_TRANSFORM)) {
            Some(t) => Some(
                Transform::from_ron_str(t)
                    .map_err(|e| anyhow::anyhow!("the checkpoint's {META_TRANSFORM}: {e}"))?,
            ),
            None => None,
        },
    };
    Ok((dir, transform))
}

/// The training split (a subset of `subset` images drawn with `subset_seed` when given) and
/// the test split (a subset of `test_subset` drawn with [`TEST_SUBSET_SEED`] when given).
pub fn load_splits(
    source: &DataSource<'_>,
    subset: Option<usize>,
    subset_seed: u64,
    test_subset: Option<usize>,
) -> anyhow::Result<(Arc<Dataset>, Arc<Dataset>)> {
    Ok((
        Arc::new(Dataset::load_subset_for(
            source,
            Split::Train,
            subset,
            subset_seed,
        )?),
        Arc::new(Dataset::load_subset_for(
            source,
            Split::Test,
            test_subset,
            TEST_SUBSET_SEED,
        )?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(input: (usize, usize, usize), classes: usize) -> Model {
        let mut m = Model::resolve("small_cnn").unwrap();
        m.input = input;
        m.classes = classes;
        m
    }

    #[test]
    fn an_import_records_a_data_set_that_fits_its_model() {
        let mnist_like = model((1, 28, 28), 10);
        assert_eq!(
            import_data_meta("FMNIST", &mnist_like).unwrap(),
            [("data".to_string(), "fashion-mnist".to_string())]
        );
        let e = import_data_meta("cifar10", &mnist_like).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("(3, 32, 32)") && s.contains("(1, 28, 28)"),
            "{s}"
        );
        // Fewer classes than the data set's labels.
        let e = import_data_meta("mnist", &model((1, 28, 28), 5)).unwrap_err();
        assert!(e.to_string().contains("10 classes"), "{e}");
        assert!(import_data_meta("folder", &mnist_like).is_err());
        let e = import_data_meta("/no/such/folder", &mnist_like).unwrap_err();
        assert!(e.to_string().contains("no folder holding train/"), "{e}");

        // An image folder: recorded as `limpq train` records one, with its absolute path.
        let root = std::env::temp_dir().join(format!("limpq-import-data-{}", std::process::id()));
        std::fs::create_dir_all(root.join("train")).unwrap();
        let path = root.to_str().unwrap();
        // No class folders: nothing a later command could read.
        let e = import_data_meta(path, &model((3, 64, 64), 4)).unwrap_err();
        assert!(e.to_string().contains("no class folders"), "{e}");
        for class in ["a", "b", "c", "d"] {
            std::fs::create_dir_all(root.join("train").join(class)).unwrap();
        }
        let meta = import_data_meta(path, &model((3, 64, 64), 4)).unwrap();
        assert_eq!(meta[0], ("data".to_string(), "folder".to_string()));
        assert_eq!(meta[1].0, META_DATA_DIR);
        assert!(Path::new(&meta[1].1).is_absolute(), "{meta:?}");
        // More classes than the model has: refused, naming the folder and both counts
        // (fewer are taken, as training and evaluation take them).
        let e = import_data_meta(path, &model((3, 64, 64), 3)).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains(path) && s.contains("has 4 classes") && s.contains("has 3 classes"),
            "{s}"
        );
        assert!(import_data_meta(path, &model((3, 64, 64), 10)).is_ok());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
