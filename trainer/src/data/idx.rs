//! IDX files (LeCun's MNIST format, also Fashion-MNIST): big-endian header `0, 0, type, ndims`,
//! `ndims` u32 dimensions, then the data. Only unsigned-byte data (type 0x08) is accepted.
//! Gzipped files are recognised by their magic bytes, whatever their name.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{format_err, DataError, Split};

/// Decompressed files larger than this are refused (a corrupt header or a gzip bomb).
const MAX_BYTES: u64 = 1 << 32;

/// The contents of one IDX file of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads a whole file, gunzipping it if it starts with the gzip magic.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .take(MAX_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| DataError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(e.kind(), format!("gzip: {e}")),
            })?;
        if out.len() as u64 > MAX_BYTES {
            return Err(format_err(
                path,
                format!("decompresses to more than {MAX_BYTES} bytes"),
            ));
        }
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses and validates an IDX file: magic, type, dimensions, and that the data length is
/// exactly the product of the dimensions.
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let bytes = read_maybe_gz(path)?;
    if bytes.len() < 4 {
        return Err(format_err(
            path,
            format!("IDX file too short for its header ({} bytes)", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format_err(
            path,
            format!(
                "bad IDX magic {:02x} {:02x} (expected 00 00)",
                bytes[0], bytes[1]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format_err(
            path,
            format!(
                "IDX data type 0x{:02x} not supported (expected 0x08, unsigned byte)",
                bytes[2]
            ),
        ));
    }
    let ndims = bytes[3] as usize;
    if ndims == 0 {
        return Err(format_err(path, "IDX header has 0 dimensions"));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(format_err(
            path,
            format!(
                "truncated IDX header: {ndims} dimensions need {header} bytes, file has {}",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let expected = dims.iter().try_fold(1usize, |a, d| a.checked_mul(*d));
    let data_len = bytes.len() - header;
    match expected {
        Some(e) if e == data_len => {}
        Some(e) => {
            return Err(format_err(path, format!("IDX dimensions {dims:?} need {e} data bytes, file has {data_len} (truncated or corrupt)")))
        }
        None => return Err(format_err(path, format!("IDX dimensions {dims:?} overflow"))),
    }
    let mut data = bytes;
    data.drain(..header);
    Ok(IdxArray { dims, data })
}

/// `dir/stem.gz` or `dir/stem` (the canonical file names only; no other spellings are guessed).
pub(crate) fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
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
    let images = read_idx(&ip)?;
    let labels = read_idx(&lp)?;
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
    if let Some((i, l)) = labels.data.iter().enumerate().find(|(_, l)| **l >= 10) {
        return Err(format_err(
            &lp,
            format!("label {l} at index {i} is not a class (0..10)"),
        ));
    }
    Ok((images.data, labels.data))
}
