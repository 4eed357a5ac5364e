//! IDX files (LeCun's MNIST format, also Fashion-MNIST): big-endian header `0, 0, type, ndims`,
//! `ndims` u32 dimensions, then the data. Only unsigned-byte data (type 0x08) is accepted.
//! Gzipped files are recognised by their magic bytes, whatever their name.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::{format_err, DataError, Split};

/// Data larger than this (after decompression) is refused: a corrupt header or a gzip bomb
/// must not allocate gigabytes. About twice the largest IDX set in use (EMNIST, ~550 MB).
pub(crate) const MAX_BYTES: u64 = 1 << 30;

/// The contents of one IDX file of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

fn io_err(path: &Path, source: std::io::Error) -> DataError {
    DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens a data file as a stream of its bytes, gunzipped if it starts with the gzip magic.
/// Only regular files are opened (a FIFO or a device is refused without blocking on it).
fn open_maybe_gz(path: &Path) -> Result<Box<dyn Read>, DataError> {
    let f = limpq_io::files::open_regular(path).map_err(|e| {
        io_err(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
        )
    })?;
    let mut r = BufReader::new(f);
    let gz = r
        .fill_buf()
        .map_err(|e| io_err(path, e))?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gz {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else {
        Box::new(r)
    })
}

/// Reads up to `limit` bytes of `r` (`limit + 1` to tell an over-long stream).
fn read_up_to(
    path: &Path,
    r: &mut dyn Read,
    limit: u64,
    out: &mut Vec<u8>,
) -> Result<(), DataError> {
    r.take(limit).read_to_end(out).map_err(|e| {
        io_err(
            path,
            std::io::Error::new(
                e.kind(),
                format!("gzip or read error: {e} (a damaged file, or bytes after its end)"),
            ),
        )
    })?;
    Ok(())
}

/// Reads a whole data file of at most `limit` bytes after decompression.
pub(crate) fn read_maybe_gz(path: &Path, limit: u64) -> Result<Vec<u8>, DataError> {
    let mut r = open_maybe_gz(path)?;
    let mut out = Vec::new();
    read_up_to(path, &mut r, limit.saturating_add(1), &mut out)?;
    if out.len() as u64 > limit {
        return Err(format_err(
            path,
            format!("decompresses to more than {limit} bytes"),
        ));
    }
    Ok(out)
}

/// An IDX file whose header is read and checked: its dimensions, and the stream at its
/// first data byte.
struct IdxHeader {
    dims: Vec<usize>,
    /// The data bytes the dimensions announce.
    len: usize,
    rest: Box<dyn Read>,
}

/// Opens an IDX file and reads and checks its header: magic, type, dimensions, and that
/// the data they announce are at most `MAX_BYTES`. No data byte is read yet.
fn open_idx(path: &Path) -> Result<IdxHeader, DataError> {
    let mut r = open_maybe_gz(path)?;
    let mut head = Vec::with_capacity(4);
    read_up_to(path, &mut r, 4, &mut head)?;
    if head.len() < 4 {
        return Err(format_err(
            path,
            format!("IDX file too short for its header ({} bytes)", head.len()),
        ));
    }
    if head[0] != 0 || head[1] != 0 {
        return Err(format_err(
            path,
            format!(
                "bad IDX magic {:02x} {:02x} (expected 00 00)",
                head[0], head[1]
            ),
        ));
    }
    if head[2] != 0x08 {
        return Err(format_err(
            path,
            format!(
                "IDX data type 0x{:02x} not supported (expected 0x08, unsigned byte)",
                head[2]
            ),
        ));
    }
    let ndims = head[3] as usize;
    if ndims == 0 {
        return Err(format_err(path, "IDX header has 0 dimensions"));
    }
    let header = 4 + 4 * ndims;
    let mut raw_dims = Vec::with_capacity(4 * ndims);
    read_up_to(path, &mut r, 4 * ndims as u64, &mut raw_dims)?;
    if raw_dims.len() < 4 * ndims {
        return Err(format_err(
            path,
            format!(
                "truncated IDX header: {ndims} dimensions need {header} bytes, file has {}",
                4 + raw_dims.len()
            ),
        ));
    }
    let dims: Vec<usize> = raw_dims
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let len = match dims.iter().try_fold(1usize, |a, d| a.checked_mul(*d)) {
        Some(e) if e as u64 <= MAX_BYTES => e,
        Some(e) => {
            return Err(format_err(
                path,
                format!("IDX dimensions {dims:?} need {e} data bytes, more than the {MAX_BYTES} this reader accepts"),
            ))
        }
        None => return Err(format_err(path, format!("IDX dimensions {dims:?} overflow"))),
    };
    Ok(IdxHeader { dims, len, rest: r })
}

impl IdxHeader {
    /// Reads the data the header announces, and checks that the file ends there: one
    /// more byte is asked for, which for a gzip stream also reads its trailer and checks
    /// its checksum (a corrupt stream fails here, after the last data byte).
    fn read_data(mut self, path: &Path) -> Result<IdxArray, DataError> {
        let expected = self.len;
        // Grows with what arrives, not with what the header claims.
        let mut data = Vec::with_capacity(expected.min(64 << 20));
        read_up_to(path, &mut self.rest, expected as u64 + 1, &mut data)?;
        if data.len() != expected {
            let has = if data.len() > expected {
                String::from("more")
            } else {
                data.len().to_string()
            };
            return Err(format_err(path, format!("IDX dimensions {:?} need {expected} data bytes, file has {has} (truncated or corrupt)", self.dims)));
        }
        Ok(IdxArray {
            dims: self.dims,
            data,
        })
    }
}

/// Parses and validates an IDX file: magic, type, dimensions, and that the data length is
/// exactly the product of the dimensions. The header is read and checked first, and then
/// only as many bytes as it announces (and one more, to tell a longer file), so a gzip bomb
/// costs no more memory than its header claims, at most `MAX_BYTES` (1 GiB).
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    open_idx(path)?.read_data(path)
}

/// `dir/stem.gz` or `dir/stem`, the first that exists as anything (the canonical file names
/// only; no other spellings are guessed). One that is no regular file (a FIFO, a folder, a
/// dangling link) is found, and the reader says what it is, rather than "not found".
pub(crate) fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.symlink_metadata().is_ok())
}

fn find_or_err(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    find(dir, stem).ok_or_else(|| DataError::Io {
        path: dir.join(format!("{stem}.gz")),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("neither {stem}.gz nor {stem} found"),
        ),
    })
}

/// Reads the images and labels of a split, checking they agree with each other and `shape`.
pub(crate) fn load_split(
    dir: &Path,
    split: Split,
    shape: (usize, usize, usize),
) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let ip = find_or_err(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let lp = find_or_err(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    // Both headers are checked against each other before any data is read: a labels file
    // claiming 2^32 labels is refused at its header, not after reading them.
    let images = open_idx(&ip)?;
    let labels = open_idx(&lp)?;
    let (c, h, w) = shape;
    if images.dims.len() != 3 || images.dims[1] != h || images.dims[2] != w || c != 1 {
        return Err(format_err(
            &ip,
            format!("image dimensions {:?}, expected [n, {h}, {w}]", images.dims),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(format_err(
            &lp,
            format!("label dimensions {:?}, expected [n]", labels.dims),
        ));
    }
    if labels.dims[0] != images.dims[0] {
        return Err(format_err(
            &lp,
            format!(
                "{} labels for {} images in {}",
                labels.dims[0],
                images.dims[0],
                ip.display()
            ),
        ));
    }
    if images.dims[0] == 0 {
        return Err(format_err(&ip, "holds 0 images"));
    }
    let (images, labels) = (images.read_data(&ip)?, labels.read_data(&lp)?);
    if let Some((i, l)) = labels.data.iter().enumerate().find(|(_, l)| **l >= 10) {
        return Err(format_err(
            &lp,
            format!("label {l} at index {i} is not a class (0..10)"),
        ));
    }
    Ok((images.data, labels.data))
}
