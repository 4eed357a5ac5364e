//! Checkpoints: a model description, its parameters, BN running statistics, optimizer
//! momentum and the training position, in one small self-describing binary file.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic    8 bytes  "LIMPQCKP"
//! version  u32      1
//! hlen     u32      length of the header in bytes
//! header   hlen     RON text of `Header` (model, seed, epoch, step, tensor table)
//! payload  Σ len·4  f32 values of every tensor, in table order
//! checksum u64      FNV-1a 64 of every byte before it
//! ```
//!
//! Written atomically: to a unique temporary file beside `PATH`, fsync, rename over `PATH`,
//! fsync the directory, so a crash leaves either the old file or the new one. Loading checks magic, version, length,
//! checksum and the tensor table, and every error names the file.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use limpq_solver::format::versioned::ron_from_str;
use serde::{Deserialize, Serialize};

use crate::model::Model;

const MAGIC: &[u8; 8] = b"LIMPQCKP";
const VERSION: u32 = 1;
/// Refuse headers larger than this (a corrupt length field must not allocate gigabytes).
const MAX_HEADER: usize = 64 << 20;
/// Largest checkpoint file read: 16 GiB, about forty times a ResNet-50 with momentum.
pub const MAX_FILE: u64 = 16 << 30;

/// What a stored tensor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TensorKind {
    /// A trained parameter (conv/linear weight or bias, BN gamma/beta).
    Param,
    /// BN running mean or variance.
    RunningStat,
    /// SGD momentum buffer of a parameter.
    Momentum,
}

/// One named tensor (`conv1.weight`, `bn1.running_mean`, `conv1.weight.momentum`).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub kind: TensorKind,
    pub data: Vec<f32>,
}

/// `tensors` by kind and name, the first of each (kind, name) as a search from the start
/// would find it: one lookup per tensor wanted, where a search of every tensor for each
/// grew with the square of a model's layers.
pub fn by_kind_and_name(tensors: &[NamedTensor]) -> HashMap<(TensorKind, &str), &NamedTensor> {
    let mut map = HashMap::with_capacity(tensors.len());
    for t in tensors {
        map.entry((t.kind, t.name.as_str())).or_insert(t);
    }
    map
}

/// Everything a checkpoint holds.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub model: Model,
    /// Seed the run was started with.
    pub seed: u64,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps completed.
    pub step: u64,
    /// Free-form facts (`data`, `test_acc`, `lr`, ...), kept as text.
    pub meta: Vec<(String, String)>,
    pub tensors: Vec<NamedTensor>,
    /// The file it was read from (set by [`Checkpoint::load`] and [`Checkpoint::from_bytes`];
    /// `None` for one made in memory), so that a run refusing its tensors can name the file.
    /// Not stored in the file and not part of equality.
    pub origin: Option<PathBuf>,
}

/// Two checkpoints are equal when they hold the same things, wherever they were read from.
impl PartialEq for Checkpoint {
    fn eq(&self, o: &Checkpoint) -> bool {
        self.model == o.model
            && self.seed == o.seed
            && self.epoch == o.epoch
            && self.step == o.step
            && self.meta == o.meta
            && self.tensors == o.tensors
    }
}

#[derive(Serialize, Deserialize)]
struct TensorEntry {
    name: String,
    kind: TensorKind,
    len: usize,
}

#[derive(Serialize, Deserialize)]
struct Header {
    model: Model,
    seed: u64,
    epoch: usize,
    step: u64,
    meta: Vec<(String, String)>,
    tensors: Vec<TensorEntry>,
}

/// Why a checkpoint could not be written or read. Every variant names the file.
#[derive(Debug)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The file could not be read or written (it names the file).
    File(limpq_io::FileError),
    /// Not a checkpoint, truncated, corrupt, or of another version.
    Format { path: PathBuf, message: String },
    /// A valid checkpoint that does not fit what it is loaded into.
    Mismatch { path: PathBuf, message: String },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::File(e) => write!(f, "{e}"),
            CheckpointError::Format { path, message } => {
                write!(
                    f,
                    "{}: not a valid limpq checkpoint: {message}",
                    path.display()
                )
            }
            CheckpointError::Mismatch { path, message } => {
                write!(f, "{}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckpointError::File(e) => e.source(),
            _ => None,
        }
    }
}

/// FNV-1a, 64 bit: enough to catch truncation and bit rot, not an integrity proof.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Checkpoint {
    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = Header {
            model: self.model.clone(),
            seed: self.seed,
            epoch: self.epoch,
            step: self.step,
            meta: self.meta.clone(),
            tensors: self
                .tensors
                .iter()
                .map(|t| TensorEntry {
                    name: t.name.clone(),
                    kind: t.kind,
                    len: t.data.len(),
                })
                .collect(),
        };
        // Plain strings, numbers and enums: serialising cannot fail.
        let text = ron::ser::to_string(&header).unwrap_or_default();
        let payload: usize = self.tensors.iter().map(|t| t.data.len() * 4).sum();
        let mut out = Vec::with_capacity(16 + text.len() + payload + 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        for t in &self.tensors {
            for v in &t.data {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        let sum = fnv1a(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Parse the bytes of a checkpoint file; `path` only names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint, CheckpointError> {
        let bad = |message: String| CheckpointError::Format {
            path: path.to_path_buf(),
            message,
        };
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err(bad("bad magic (expected LIMPQCKP)".into()));
        }
        if bytes.len() < 16 + 8 {
            return Err(bad(format!("truncated: {} bytes", bytes.len())));
        }
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let version = word(8);
        if version != VERSION {
            return Err(bad(format!(
                "field `version` (bytes 8..12): format version {version}, this build reads version {VERSION}"
            )));
        }
        let hlen = word(12) as usize;
        if hlen > MAX_HEADER || 16 + hlen + 8 > bytes.len() {
            return Err(bad(format!(
                "truncated: header of {hlen} bytes does not fit in {} bytes",
                bytes.len()
            )));
        }
        let body_end = bytes.len() - 8;
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&bytes[body_end..]);
        let text = std::str::from_utf8(&bytes[16..16 + hlen])
            .map_err(|e| bad(format!("header is not UTF-8: {e}")))?;
        let header: Header = ron_from_str(text).map_err(|e| bad(format!("header: {e}")))?;
        let want: usize = header
            .tensors
            .iter()
            .try_fold(0usize, |acc, t| acc.checked_add(t.len.checked_mul(4)?))
            .ok_or_else(|| bad("tensor table sizes overflow".into()))?;
        let have = body_end - 16 - hlen;
        if have != want {
            return Err(bad(format!(
                "truncated or padded: the tensor table needs {want} payload bytes, the file has {have}"
            )));
        }
        if fnv1a(&bytes[..body_end]) != u64::from_le_bytes(sum) {
            return Err(bad("checksum mismatch (file corrupt)".into()));
        }
        header
            .model
            .analyze()
            .map_err(|e| bad(format!("model: {e}")))?;
        let mut at = 16 + hlen;
        let tensors = header
            .tensors
            .into_iter()
            .map(|t| {
                let data = bytes[at..at + t.len * 4]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                at += t.len * 4;
                NamedTensor {
                    name: t.name,
                    kind: t.kind,
                    data,
                }
            })
            .collect();
        Ok(Checkpoint {
            model: header.model,
            seed: header.seed,
            epoch: header.epoch,
            step: header.step,
            meta: header.meta,
            tensors,
            origin: Some(path.to_path_buf()),
        })
    }

    /// Write atomically (a unique temporary file beside `path`, fsync, rename, fsync of
    /// the folder; see `limpq_io::files::write_atomic`): a crash leaves the old file or the
    /// new one, and a path that is not a regular file (a device, FIFO, link) is refused.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
        limpq_io::files::write_atomic(path.as_ref(), &self.to_bytes())
            .map_err(CheckpointError::File)
    }

    /// Read and check a checkpoint file. Only a regular file of at most [`MAX_FILE`] bytes
    /// is read (a FIFO or a device such as `/dev/zero` is refused before a byte is read).
    /// Whether the file at `path` begins as a checkpoint does (its magic), whatever
    /// follows: for a command that takes several kinds of file, to say what is wrong with
    /// a damaged checkpoint rather than that it is not some other kind. Reads 8 bytes.
    pub fn looks_like_one(path: &Path) -> Result<bool, limpq_io::files::FileError> {
        use std::io::Read as _;
        let mut f = limpq_io::files::open_regular(path)?;
        let mut magic = [0u8; 8];
        let n = f.read(&mut magic).unwrap_or(0);
        Ok(n == 8 && &magic == MAGIC)
    }

    pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint, CheckpointError> {
        let path = path.as_ref();
        let bytes = limpq_io::files::read_regular(path, MAX_FILE).map_err(CheckpointError::File)?;
        Self::from_bytes(&bytes, path)
    }

    /// The file this checkpoint was read from, for messages, or `a checkpoint made in
    /// memory`.
    pub fn describe(&self) -> String {
        match &self.origin {
            Some(p) => p.display().to_string(),
            None => String::from("a checkpoint made in memory"),
        }
    }

    /// The tensors of one kind.
    pub fn of_kind(&self, kind: TensorKind) -> impl Iterator<Item = &NamedTensor> {
        self.tensors.iter().filter(move |t| t.kind == kind)
    }

    /// A `meta` value by key.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.meta
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}
