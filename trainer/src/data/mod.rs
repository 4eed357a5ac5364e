//! Datasets and the batch loader: IDX (MNIST, Fashion-MNIST; gzipped or not), CIFAR-10 binary
//! batches, image folders (PNG / JPEG, decoded per batch), and loader threads that shuffle,
//! decode, augment and normalise on the CPU while the GPU runs. docs/DATA.md describes the
//! formats, paths and environment variables.

mod cifar;
mod folder;
mod idx;
mod loader;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use cifar::read_cifar_batch;
pub use folder::{
    resized_dims, split_dir, FolderSettings, ImageFolder, Transform, IMAGENET_MEAN, IMAGENET_STD,
    IMAGE_EXTENSIONS,
};
pub use idx::{read_idx, IdxArray};
pub use loader::{
    epoch_order, make_batch, produce, Augment, Batch, Loader, LoaderConfig, Normalize,
};

use crate::reference::rng::SeededRng;

/// Environment variable naming the data root (or the folder holding one dataset's files).
pub const DATA_ENV: &str = "LIMPQ_DATA";
/// Where Debian's `dataset-fashion-mnist` puts the files; the other datasets follow the pattern.
pub const SYSTEM_DATA_DIR: &str = "/usr/share/datasets";

/// Meta key under which a checkpoint records the image folder it was trained on.
pub const META_DATA_DIR: &str = "data_dir";
/// Meta key under which a checkpoint records its image folder's transform (RON).
pub const META_TRANSFORM: &str = "data_transform";

/// Seed of every test subset (`--test-subset` of the CLI, the pipeline's and the daemon's
/// `test` sizes): the same N is the same images everywhere.
pub const TEST_SUBSET_SEED: u64 = 0x7E57;

/// Everything that can go wrong reading data; every variant names the file or the setting.
#[derive(Debug)]
#[non_exhaustive]
pub enum DataError {
    /// The file could not be opened or read (including a truncated or corrupt gzip stream).
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file was read but its content is not what the format requires.
    Format { path: PathBuf, what: String },
    /// A dataset name, split or option that does not exist.
    Invalid(String),
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            DataError::Format { path, what } => write!(f, "{}: {what}", path.display()),
            DataError::Invalid(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub(crate) fn format_err(path: &Path, what: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

impl std::str::FromStr for Split {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            _ => Err(DataError::Invalid(format!(
                "unknown split {s:?} (expected \"train\" or \"test\")"
            ))),
        }
    }
}

/// The datasets this crate can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    FashionMnist,
    Mnist,
    Cifar10,
    /// An image folder (`ROOT/train/<class>/*.png`, `ROOT/val/…`), read at the model's
    /// input size: [`Dataset::load_for`].
    Folder,
}

impl DatasetKind {
    /// Accepts "fashion-mnist" (also "fashion_mnist", "fmnist"), "mnist", "cifar10"
    /// ("cifar-10"), "folder".
    pub fn parse(name: &str) -> Result<Self, DataError> {
        match name.to_ascii_lowercase().as_str() {
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" | "fmnist" => Ok(Self::FashionMnist),
            "mnist" => Ok(Self::Mnist),
            n if crate::model::Model::CIFAR10_NAMES.contains(&n) => Ok(Self::Cifar10),
            "folder" | "image-folder" | "imagefolder" => Ok(Self::Folder),
            _ => Err(DataError::Invalid(format!(
                "unknown dataset {name:?} (expected \"fashion-mnist\", \"mnist\", \"cifar10\", \
                 \"folder\" with a folder, or the path of an image folder)"
            ))),
        }
    }

    /// Canonical name, also the folder name under the data root.
    pub fn name(self) -> &'static str {
        match self {
            Self::FashionMnist => "fashion-mnist",
            Self::Mnist => "mnist",
            Self::Cifar10 => "cifar10",
            Self::Folder => "folder",
        }
    }

    /// (channels, height, width); an image folder has the model's (here 3×224×224, the
    /// usual ImageNet input, when no model says).
    pub fn shape(self) -> (usize, usize, usize) {
        match self {
            Self::FashionMnist | Self::Mnist => (1, 28, 28),
            Self::Cifar10 => (3, 32, 32),
            Self::Folder => (3, 224, 224),
        }
    }

    pub fn classes(self) -> usize {
        10
    }

    /// Per-channel mean and std of the training set in [0, 1] pixel units (the usual constants).
    pub fn normalize(self) -> Normalize {
        match self {
            Self::FashionMnist => Normalize {
                mean: vec![0.2860],
                std: vec![0.3530],
            },
            Self::Mnist => Normalize {
                mean: vec![0.1307],
                std: vec![0.3081],
            },
            Self::Cifar10 => Normalize {
                mean: vec![0.4914, 0.4822, 0.4465],
                std: vec![0.2470, 0.2435, 0.2616],
            },
            Self::Folder => Normalize {
                mean: IMAGENET_MEAN.to_vec(),
                std: IMAGENET_STD.to_vec(),
            },
        }
    }

    /// Training augmentation: random crop with zero padding 2 (28 px) or 4 (32 px); horizontal
    /// flip for Fashion-MNIST and CIFAR-10 (a mirrored garment or object is the same class;
    /// the PyTorch reference recipe flips Fashion-MNIST too), not for digits.
    pub fn train_augment(self) -> Augment {
        match self {
            Self::FashionMnist => Augment {
                crop_pad: 2,
                hflip: true,
                ..Augment::default()
            },
            Self::Mnist => Augment {
                crop_pad: 2,
                hflip: false,
                ..Augment::default()
            },
            Self::Cifar10 => Augment {
                crop_pad: 4,
                hflip: true,
                ..Augment::default()
            },
            Self::Folder => Augment {
                crop_pad: 0,
                hflip: true,
                random_crop: true,
            },
        }
    }

    /// Whether `dir` holds this dataset's files (any of the expected names, gz or plain).
    fn has_files(self, dir: &Path) -> bool {
        match self {
            Self::FashionMnist | Self::Mnist => {
                idx::find(dir, "train-labels-idx1-ubyte").is_some()
                    || idx::find(dir, "t10k-labels-idx1-ubyte").is_some()
            }
            Self::Cifar10 => cifar::batch_dir(dir).is_some(),
            Self::Folder => dir.join("train").is_dir(),
        }
    }

    /// Where the files are looked for when no folder is given: `$LIMPQ_DATA/<name>` if that
    /// exists, else `$LIMPQ_DATA` itself if it holds the files, else `/usr/share/datasets/<name>`.
    pub fn default_dir(self) -> PathBuf {
        if let Some(root) = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()) {
            let root = PathBuf::from(root);
            let sub = root.join(self.name());
            if sub.is_dir() || !self.has_files(&root) {
                return sub;
            }
            return root;
        }
        Path::new(SYSTEM_DATA_DIR).join(self.name())
    }
}

/// The first labels of each split of MNIST and Fashion-MNIST: `(dataset, training split's,
/// test split's)`. Both sets have the same file names, sizes and format, so these are what
/// tells one from the other.
const IDX_SIGNATURES: [(DatasetKind, [u8; 10], [u8; 10]); 2] = [
    (
        DatasetKind::Mnist,
        [5, 0, 4, 1, 9, 2, 1, 3, 1, 4],
        [7, 2, 1, 0, 4, 1, 4, 9, 5, 9],
    ),
    (
        DatasetKind::FashionMnist,
        [9, 0, 0, 3, 0, 2, 7, 2, 5, 5],
        [9, 2, 1, 1, 6, 1, 4, 6, 5, 7],
    ),
];

/// Refuses the other set's files read as `kind` (`LIMPQ_DATA` pointing straight at MNIST's
/// files made Fashion-MNIST runs train on digits, with Fashion-MNIST's normalisation and
/// flips, and record `fashion-mnist`): a full split (60,000 or 10,000 images) whose first
/// labels are the other set's.
fn check_not_the_other_idx_set(
    kind: DatasetKind,
    split: Split,
    dir: &Path,
    labels: &[u8],
) -> Result<(), DataError> {
    let full = match split {
        Split::Train => 60_000,
        Split::Test => 10_000,
    };
    if labels.len() != full {
        return Ok(());
    }
    let first = |s: &(DatasetKind, [u8; 10], [u8; 10])| match split {
        Split::Train => s.1,
        Split::Test => s.2,
    };
    match IDX_SIGNATURES
        .iter()
        .find(|s| s.0 != kind && labels[..10] == first(s))
    {
        Some((other, ..)) => Err(DataError::Invalid(format!(
            "{}: these are {}'s files (their labels begin as its {} split's do), read as {}; \
             give --data {} or point the data folder at {}'s files",
            dir.display(),
            other.name(),
            match split {
                Split::Train => "training",
                Split::Test => "test",
            },
            kind.name(),
            other.name(),
            kind.name()
        ))),
        None => Ok(()),
    }
}

/// What to load: a dataset name (or an image folder's path), its folder, and for an image
/// folder the model's input (channels, height, width) and the decoding settings.
#[derive(Clone, Copy, Debug, Default)]
pub struct DataSource<'a> {
    pub name: &'a str,
    pub dir: Option<&'a Path>,
    pub input: Option<(usize, usize, usize)>,
    pub transform: Option<&'a Transform>,
}

/// Which examples to keep of a loaded split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subset {
    All,
    /// The first n (in file order).
    First(usize),
    /// n distinct examples drawn with a seeded shuffle, kept in file order.
    Random {
        n: usize,
        seed: u64,
    },
}

/// One split of a dataset: raw pixels `[len, c, h, w]` (u8) in memory, or for an image
/// folder the files (`folder`, decoded per batch, `images` empty); and the labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub kind: DatasetKind,
    pub images: Vec<u8>,
    pub labels: Vec<u16>,
    /// (channels, height, width).
    pub shape: (usize, usize, usize),
    pub classes: usize,
    /// The image files of a folder dataset (None: the pixels are in `images`).
    pub folder: Option<Arc<ImageFolder>>,
}

impl Dataset {
    /// [`Dataset::load`], then a seeded random subset of `subset` images when given (the
    /// training split of every command and job, and the test split with
    /// [`TEST_SUBSET_SEED`]).
    pub fn load_subset(
        name: &str,
        dir: Option<&Path>,
        split: Split,
        subset: Option<usize>,
        seed: u64,
    ) -> Result<Self, DataError> {
        let ds = Dataset::load(name, dir, split)?;
        match subset {
            Some(n) => ds.subset(Subset::Random { n, seed }),
            None => Ok(ds),
        }
    }

    /// [`Dataset::load_for`] and a seeded random subset, as [`Dataset::load_subset`].
    pub fn load_subset_for(
        source: &DataSource<'_>,
        split: Split,
        subset: Option<usize>,
        seed: u64,
    ) -> Result<Self, DataError> {
        let ds = Dataset::load_for(source, split)?;
        match subset {
            // Which split the count was asked of: `--subset` and `--test-subset` read alike.
            Some(n) => ds.subset(Subset::Random { n, seed }).map_err(|e| match e {
                DataError::Invalid(m) => DataError::Invalid(format!(
                    "the {} split: {m}",
                    match split {
                        Split::Train => "training",
                        Split::Test => "test",
                    }
                )),
                other => other,
            }),
            None => Ok(ds),
        }
    }

    /// Loads `split` of `source`: a dataset of files ([`Dataset::load`]) or an image folder
    /// read at the model's input. A name that is no dataset's but an existing folder is an
    /// image folder at that path.
    pub fn load_for(source: &DataSource<'_>, split: Split) -> Result<Self, DataError> {
        let (kind, dir) = match DatasetKind::parse(source.name) {
            Ok(k) => (k, source.dir.map(Path::to_path_buf)),
            Err(e) => {
                let p = Path::new(source.name);
                if source.dir.is_none() && p.join("train").is_dir() {
                    (DatasetKind::Folder, Some(p.to_path_buf()))
                } else {
                    return Err(e);
                }
            }
        };
        if kind != DatasetKind::Folder {
            return Dataset::load(kind.name(), dir.as_deref(), split);
        }
        let root = dir.ok_or_else(|| {
            DataError::Invalid(
                "dataset \"folder\" needs its folder (the CLI's --data-dir, a job's `data.dir`), \
                 or give the folder's path as the dataset"
                    .into(),
            )
        })?;
        let input = source.input.ok_or_else(|| {
            DataError::Invalid(
                "an image folder is read at a model's input size; this command has no model to \
                 take it from"
                    .into(),
            )
        })?;
        let default = Transform::default();
        let settings = FolderSettings::new(input, source.transform.unwrap_or(&default))?;
        let (folder, labels) = ImageFolder::open(&root, split, settings)?;
        Ok(Self {
            kind,
            images: Vec::new(),
            labels,
            shape: input,
            classes: folder.classes.len(),
            folder: Some(Arc::new(folder)),
        })
    }

    /// Loads `split` of `name` from `dir`, or from [`DatasetKind::default_dir`] when `dir` is
    /// None. An image folder needs the model's input: [`Dataset::load_for`].
    pub fn load(name: &str, dir: Option<&Path>, split: Split) -> Result<Self, DataError> {
        let kind = DatasetKind::parse(name)?;
        if kind == DatasetKind::Folder {
            return Dataset::load_for(
                &DataSource {
                    name,
                    dir,
                    input: None,
                    transform: None,
                },
                split,
            );
        }
        // Where the folder was the default, say how to give another; where it was given,
        // the path is the news.
        let hint = match dir {
            Some(_) => String::new(),
            None => format!(" (set {DATA_ENV} or pass a folder)"),
        };
        let dir = dir.map_or_else(|| kind.default_dir(), Path::to_path_buf);
        if !dir.is_dir() {
            return Err(DataError::Io {
                path: dir.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} data folder not found{hint}", kind.name()),
                ),
            });
        }
        let (images, labels) = match kind {
            DatasetKind::FashionMnist | DatasetKind::Mnist => {
                let (images, labels) = idx::load_split(&dir, split, kind.shape())?;
                check_not_the_other_idx_set(kind, split, &dir, &labels)?;
                (images, labels)
            }
            DatasetKind::Cifar10 => cifar::load_split(&dir, split)?,
            DatasetKind::Folder => unreachable!("read by load_for above"),
        };
        Ok(Self {
            kind,
            images,
            labels: labels.into_iter().map(u16::from).collect(),
            shape: kind.shape(),
            classes: kind.classes(),
            folder: None,
        })
    }

    /// The normalisation of this dataset: the folder's settings, else the kind's constants.
    pub fn normalize(&self) -> Normalize {
        match &self.folder {
            Some(f) => f.settings.normalize.clone(),
            None => self.kind.normalize(),
        }
    }

    /// The training augmentation: the folder's flip setting, else the kind's.
    pub fn train_augment(&self) -> Augment {
        match &self.folder {
            Some(f) => Augment {
                hflip: f.settings.flip,
                ..DatasetKind::Folder.train_augment()
            },
            None => self.kind.train_augment(),
        }
    }

    /// An image folder's root (absolute) and transform as checkpoint meta entries
    /// ([`META_DATA_DIR`], [`META_TRANSFORM`]), so later commands find them; nothing for
    /// the other datasets.
    pub fn folder_meta(&self) -> Vec<(String, String)> {
        let Some(f) = &self.folder else {
            return Vec::new();
        };
        let root = f.dir.parent().unwrap_or(&f.dir);
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        let s = &f.settings;
        let t = Transform {
            resize: s.resize,
            crop: 0,
            flip: s.flip,
            mean: s.normalize.mean.clone(),
            std: s.normalize.std.clone(),
        };
        vec![
            (META_DATA_DIR.into(), root.display().to_string()),
            (META_TRANSFORM.into(), t.to_ron()),
        ]
    }

    /// The class names of a folder dataset (others: None, their classes are 0..10).
    pub fn class_names(&self) -> Option<&[String]> {
        self.folder.as_deref().map(|f| f.classes.as_slice())
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per example: c·h·w.
    pub fn image_len(&self) -> usize {
        self.shape.0 * self.shape.1 * self.shape.2
    }

    /// Raw pixels of example `i`, `[c, h, w]`, of a dataset held in memory (an image
    /// folder's are decoded per batch: [`ImageFolder::load`]; here they are empty).
    pub fn image(&self, i: usize) -> &[u8] {
        let l = self.image_len();
        self.images.get(i * l..(i + 1) * l).unwrap_or(&[])
    }

    /// A new dataset holding only the chosen examples (errors if more are asked than exist).
    pub fn subset(&self, which: Subset) -> Result<Self, DataError> {
        let idx: Vec<usize> = match which {
            Subset::All => return Ok(self.clone()),
            // An empty subset trains nothing and evaluates to a made-up 0% accuracy.
            Subset::First(0) | Subset::Random { n: 0, .. } => {
                return Err(DataError::Invalid(format!(
                    "a subset of 0 examples of {} asked: give at least 1",
                    self.kind.name()
                )))
            }
            Subset::First(n) | Subset::Random { n, .. } if n > self.len() => {
                return Err(DataError::Invalid(format!(
                    "subset of {n} asked, {} has only {} examples",
                    self.kind.name(),
                    self.len()
                )))
            }
            Subset::First(n) => (0..n).collect(),
            Subset::Random { n, seed } => {
                let mut all: Vec<usize> = (0..self.len()).collect();
                SeededRng::new(seed).shuffle(&mut all);
                let mut pick = all[..n].to_vec();
                pick.sort_unstable();
                pick
            }
        };
        let labels = idx.iter().map(|&i| self.labels[i]).collect();
        if let Some(f) = &self.folder {
            return Ok(Self {
                labels,
                folder: Some(Arc::new(f.select(&idx))),
                ..self.clone_meta()
            });
        }
        let mut images = Vec::with_capacity(idx.len() * self.image_len());
        for &i in &idx {
            images.extend_from_slice(self.image(i));
        }
        Ok(Self {
            images,
            labels,
            ..self.clone_meta()
        })
    }

    fn clone_meta(&self) -> Self {
        Self {
            kind: self.kind,
            images: Vec::new(),
            labels: Vec::new(),
            shape: self.shape,
            classes: self.classes,
            folder: None,
        }
    }

    /// Examples per class (for checks and reports).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }
}
