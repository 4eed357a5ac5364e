//! CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B,
//! each 32×32 row-major), 10000 records per file. Train: data_batch_1.bin … data_batch_5.bin;
//! test: test_batch.bin. The folder may be the one holding them or its parent (the archive
//! unpacks to `cifar-10-batches-bin/`).
//!
//! A file of any other number of whole records is refused, naming the records found: one
//! cut at a record boundary would otherwise be read as a smaller data set without a word
//! (and results compared with CIFAR-10's would not be). Fewer images are a subset of the
//! whole files (`--subset`, `--test-subset`, a pipeline job's `train` / `test`).

use std::path::{Path, PathBuf};

use super::{format_err, idx::read_maybe_gz, DataError, Split};

/// The records of every CIFAR-10 batch file, train and test.
const BATCH_RECORDS: usize = 10_000;

/// A batch file holds 10000 records (30.7 MB). Up to four times that is read, so that a file
/// of too many records is refused with their number; a longer one is refused unread.
const MAX_BATCH: u64 = 4 * BATCH_RECORDS as u64 * RECORD as u64;

const RECORD: usize = 1 + 3 * 32 * 32;

/// The folder holding the batch files: `dir` or `dir/cifar-10-batches-bin`.
pub(crate) fn batch_dir(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("cifar-10-batches-bin")]
        .into_iter()
        .find(|d| d.join("test_batch.bin").is_file() || d.join("data_batch_1.bin").is_file())
}

/// Reads one batch file: images `[10000, 3, 32, 32]` and labels.
pub fn read_cifar_batch(path: &Path) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let bytes = read_maybe_gz(path, MAX_BATCH)?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(format_err(path, format!("{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (truncated or corrupt)", bytes.len())));
    }
    let n = bytes.len() / RECORD;
    if n != BATCH_RECORDS {
        return Err(format_err(
            path,
            format!(
                "{n} records of {RECORD} bytes; a CIFAR-10 batch file holds {BATCH_RECORDS} \
                 (truncated, or not a CIFAR-10 batch file; for fewer images keep the files \
                 whole and take a subset)"
            ),
        ));
    }
    let mut images = Vec::with_capacity(n * (RECORD - 1));
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] >= 10 {
            return Err(format_err(
                path,
                format!("record {i}: label {} is not a class (0..10)", rec[0]),
            ));
        }
        labels.push(rec[0]);
        images.extend_from_slice(&rec[1..]);
    }
    Ok((images, labels))
}

pub(crate) fn load_split(dir: &Path, split: Split) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let bdir = batch_dir(dir).unwrap_or_else(|| dir.to_path_buf());
    let files: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".into()],
    };
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for f in files {
        let (i, l) = read_cifar_batch(&bdir.join(f))?;
        images.extend(i);
        labels.extend(l);
    }
    Ok((images, labels))
}
