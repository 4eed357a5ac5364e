//! The solver's documents on disk: indicator sets, policies, resource tables and
//! frontiers, RON or JSON by extension, read at most [`MAX_TEXT`](crate::files::MAX_TEXT)
//! bytes with errors naming the file, written atomically with their `format_version`.
//! Every command and library that reads or writes one calls these.

use std::path::Path;

use limpq_solver::{Frontier, IndicatorSet, Policy, ResourceTable};

use crate::files::{self, FileError, Format};

/// Reads an indicator set (`limpq indicators`, `limpq import-limpq`).
pub fn read_indicators(path: &Path) -> Result<IndicatorSet, FileError> {
    read_solver_document(path, |text, format| match format {
        Format::Json => IndicatorSet::from_json_str(text),
        Format::Ron => IndicatorSet::from_ron_str(text),
    })
}

/// [`files::read_document_with`] for the solver's own readers. Their parse errors say
/// "cannot parse RON indicator set: …"; the file error names the path and the format
/// already, so only the parser's message is kept ("PATH: RON: 1:22-1:23: …", not
/// "PATH: RON: cannot parse RON indicator set: 1:22-1:23: …").
fn read_solver_document<T>(
    path: &Path,
    parse: impl FnOnce(&str, Format) -> Result<T, limpq_solver::Error>,
) -> Result<T, FileError> {
    files::read_document_with(path, |text, format| {
        parse(text, format).map_err(solver_message)
    })
}

fn solver_message(e: limpq_solver::Error) -> String {
    match e {
        limpq_solver::Error::Parse { message, .. } => message,
        other => other.to_string(),
    }
}

/// Reads a policy (`limpq solve`, and every command that quantizes at one). A layer named
/// twice is refused: the commands took one entry or the other (finetune the first, an ONNX
/// Runtime export the last) without a word.
pub fn read_policy(path: &Path) -> Result<Policy, FileError> {
    files::read_document_with(path, |text, format| {
        let policy = match format {
            Format::Json => Policy::from_json_str(text),
            Format::Ron => Policy::from_ron_str(text),
        }
        .map_err(solver_message)?;
        let mut names: Vec<&str> = policy.layers.iter().map(|l| l.name.as_str()).collect();
        names.sort_unstable();
        match names.windows(2).find(|w| w[0] == w[1]) {
            Some(w) => Err(format!("layer '{}' is listed twice", w[0])),
            None => Ok(policy),
        }
    })
}

/// Reads an extra resource table (`limpq solve --resource`).
pub fn read_resource_table(path: &Path) -> Result<ResourceTable, FileError> {
    read_solver_document(path, |text, format| match format {
        Format::Json => ResourceTable::from_json_str(text),
        Format::Ron => ResourceTable::from_ron_str(text),
    })
}

/// Writes `text_of(format)`, the document in the format `path`'s extension names,
/// atomically.
fn write_with(path: &Path, text_of: impl FnOnce(Format) -> String) -> Result<(), FileError> {
    files::write_atomic(path, text_of(Format::of(path)).as_bytes())
}

/// Writes an indicator set (`limpq indicators`).
pub fn write_indicators(path: &Path, set: &IndicatorSet) -> Result<(), FileError> {
    write_with(path, |f| match f {
        Format::Json => set.to_json_string(),
        Format::Ron => set.to_ron_string(),
    })
}

/// Writes a policy (`limpq solve -o`).
pub fn write_policy(path: &Path, policy: &Policy) -> Result<(), FileError> {
    write_with(path, |f| match f {
        Format::Json => policy.to_json_string(),
        Format::Ron => policy.to_ron_string(),
    })
}

/// Writes a frontier (`limpq solve --sweep -o`).
pub fn write_frontier(path: &Path, frontier: &Frontier) -> Result<(), FileError> {
    write_with(path, |f| match f {
        Format::Json => frontier.to_json_string(),
        Format::Ron => frontier.to_ron_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        crate::scratch(&format!("documents-{name}"))
    }

    #[test]
    fn reads_both_formats_and_names_the_file_on_error() {
        let set = IndicatorSet {
            model: "m".into(),
            weight_bits: vec![2, 4],
            act_bits: vec![2, 4],
            layers: vec![limpq_solver::Layer {
                name: "l".into(),
                macs: 10,
                params: 5,
                weight_scale: vec![1.0, 0.5],
                act_scale: vec![1.0, 0.5],
                fixed: None,
            }],
            meta: Vec::new(),
        };
        let (_dir, d) = dir("ind");
        for name in ["a.ron", "a.json"] {
            let p = d.join(name);
            files::write_document(&p, &set).unwrap();
            assert_eq!(read_indicators(&p).unwrap(), set, "{name}");
            write_indicators(&p, &set).unwrap();
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.contains("format_version"), "{name}: {text}");
            assert_eq!(read_indicators(&p).unwrap(), set, "{name}");
        }
        let bad = d.join("bad.json");
        std::fs::write(&bad, "{\"model\": 3}").unwrap();
        let e = read_indicators(&bad).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: JSON: ", bad.display())), "{e}");
        // The path and the format are said once: the solver's own "cannot parse JSON
        // indicator set" is not repeated after them.
        assert!(!e.contains("cannot parse"), "{e}");
        let bad = d.join("bad.ron");
        std::fs::write(&bad, "(format_version: 1, layers: [").unwrap();
        for e in [
            read_indicators(&bad).unwrap_err(),
            read_policy(&bad).unwrap_err(),
            read_resource_table(&bad).unwrap_err(),
        ] {
            assert!(matches!(e.kind(), files::ErrorKind::Parse { .. }), "{e:?}");
            let e = e.to_string();
            assert!(e.starts_with(&format!("{}: RON: 1:", bad.display())), "{e}");
            assert!(!e.contains("cannot parse"), "{e}");
        }
        std::fs::write(&bad, "(format_version: 99)").unwrap();
        let e = read_policy(&bad).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: RON: ", bad.display())), "{e}");
        assert!(e.contains("version 99 is newer"), "{e}");
        let e = read_policy(&d.join("missing.ron")).unwrap_err().to_string();
        assert!(e.contains("missing.ron"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Every f64 a file holds reads back to the same bits, in both formats: a solve from a
    /// JSON copy of an indicator file is the solve of the original.
    #[test]
    fn floats_read_back_bit_for_bit_in_both_formats() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // A finite value of any magnitude: random mantissa, exponent in [-60, 60].
            let m = 1.0 + (x >> 12) as f64 / (1u64 << 52) as f64;
            m * 2f64.powi((x % 121) as i32 - 60)
        };
        let layers = (0..200)
            .map(|i| limpq_solver::Layer {
                name: format!("l{i}"),
                macs: 10 + i,
                params: 5 + i,
                weight_scale: (0..4).map(|_| next()).collect(),
                act_scale: (0..4).map(|_| next()).collect(),
                fixed: None,
            })
            .collect();
        let set = IndicatorSet {
            model: "m".into(),
            weight_bits: vec![2, 3, 4, 8],
            act_bits: vec![2, 3, 4, 8],
            layers,
            meta: Vec::new(),
        };
        let table = ResourceTable {
            name: "latency".into(),
            layers: (0..200)
                .map(|i| limpq_solver::ResourceLayer {
                    name: format!("l{i}"),
                    costs: vec![(2, 2, next()), (8, 8, next())],
                })
                .collect(),
        };
        let (_dir, d) = dir("floats");
        for name in ["f.ron", "f.json"] {
            let p = d.join(name);
            write_indicators(&p, &set).unwrap();
            let back = read_indicators(&p).unwrap();
            for (a, b) in set.layers.iter().zip(&back.layers) {
                for (x, y) in a
                    .weight_scale
                    .iter()
                    .chain(&a.act_scale)
                    .zip(b.weight_scale.iter().chain(&b.act_scale))
                {
                    assert_eq!(x.to_bits(), y.to_bits(), "{name}: {x:e} read back as {y:e}");
                }
            }
            let p = d.join(format!("t.{name}"));
            files::write_document(&p, &table).unwrap();
            let back = read_resource_table(&p).unwrap();
            for (a, b) in table.layers.iter().zip(&back.layers) {
                for (x, y) in a.costs.iter().zip(&b.costs) {
                    assert_eq!(
                        x.2.to_bits(),
                        y.2.to_bits(),
                        "{name}: {:e} read back as {:e}",
                        x.2,
                        y.2
                    );
                }
            }
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
