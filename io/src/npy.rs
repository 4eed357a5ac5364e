//! NumPy `.npy` arrays of floats in and out (`limpq infer`'s inputs and logits).
//!
//! The format is small enough to read by hand: magic `\x93NUMPY`, a version byte pair, a
//! header length (u16 for version 1, u32 for versions 2 and 3), a Python-literal dict
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded with spaces, then the
//! raw values in C order. Only what the tools exchange is read: little-endian `f4` or `f8`
//! (converted to f32), C order. Every malformed file is an error saying what is wrong; no
//! input panics.

/// An array of f32 in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// The value of `key` in the header dict: the text after `'key':` up to the next top-level
/// comma or the closing brace.
fn field<'h>(header: &'h str, key: &str) -> Result<&'h str, String> {
    let pat = format!("'{key}':");
    let at = header
        .find(&pat)
        .or_else(|| header.find(&format!("\"{key}\":")))
        .ok_or_else(|| format!("header has no '{key}'"))?;
    let rest = header[at + pat.len()..].trim_start();
    if rest.starts_with('(') {
        let end = rest
            .find(')')
            .ok_or_else(|| format!("'{key}': unclosed tuple"))?;
        return Ok(&rest[..=end]);
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Ok(rest[..end].trim())
}

/// Parses the bytes of a `.npy` file holding floats.
pub fn parse(bytes: &[u8]) -> Result<Array, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("format version {v}; versions 1 to 3 are read")),
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| format!("truncated: header of {hlen} bytes"))?;
    let header =
        std::str::from_utf8(&bytes[start..end]).map_err(|_| "header is not text".to_string())?;
    let descr = field(header, "descr")?.trim_matches(['\'', '"']);
    let width = match descr {
        "<f4" => 4,
        "<f8" => 8,
        other => {
            return Err(format!(
                "dtype '{other}'; little-endian float32 ('<f4') or float64 ('<f8') is read"
            ))
        }
    };
    if field(header, "fortran_order")? != "False" {
        return Err("fortran_order True; C-order arrays are read".into());
    }
    let shape_text = field(header, "shape")?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("shape '{shape_text}' is not a tuple"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("shape '{shape_text}': '{s}' is not a size"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} overflows"))?;
    let body = &bytes[end..];
    if Some(body.len()) != n.checked_mul(width) {
        return Err(format!(
            "shape {shape:?} of {descr} needs {} data bytes, the file has {}",
            n.saturating_mul(width),
            body.len()
        ));
    }
    let data = if width == 4 {
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        body.chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect()
    };
    Ok(Array { shape, data })
}

/// The bytes of a version-1 `.npy` file of little-endian f32 in C order.
pub fn to_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // Magic, version and length take 10 bytes; pad so the data starts at a multiple of 64.
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    while 10 + header.len() + 1 < total {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(total + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_alignment() {
        let data: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
        let bytes = to_bytes(&[2, 3], &data);
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let a = parse(&bytes).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, data);
        let one = parse(&to_bytes(&[4], &data[..4])).unwrap();
        assert_eq!(one.shape, vec![4]);
    }

    /// What numpy 1.x/2.x writes for `np.save(f, np.zeros((1, 2), np.float64))`.
    #[test]
    fn reads_numpys_float64() {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let mut h = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }".to_string();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
        bytes.extend_from_slice(h.as_bytes());
        bytes.extend_from_slice(&1.5f64.to_le_bytes());
        bytes.extend_from_slice(&(-2.0f64).to_le_bytes());
        let a = parse(&bytes).unwrap();
        assert_eq!((a.shape, a.data), (vec![1, 2], vec![1.5, -2.0]));
    }

    #[test]
    fn malformed_files_are_errors() {
        let good = to_bytes(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        for len in 0..good.len() {
            assert!(parse(&good[..len]).is_err(), "cut at {len}");
        }
        let replace = |from: &[u8], to: &[u8]| {
            let at = good.windows(from.len()).position(|w| w == from).unwrap();
            let mut b = good.clone();
            b[at..at + to.len()].copy_from_slice(to);
            b
        };
        let e = parse(&replace(b"<f4", b">f4")).unwrap_err();
        assert!(e.contains(">f4"), "{e}");
        let e = parse(&replace(b"False", b"True ")).unwrap_err();
        assert!(e.contains("fortran"), "{e}");
        let e = parse(&replace(b"(2, 2)", b"(2, 3)")).unwrap_err();
        assert!(e.contains("needs 24 data bytes"), "{e}");
        assert!(parse(b"PK\x03\x04 a zip").is_err());
    }
}
