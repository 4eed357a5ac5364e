//! The solver's documents on disk: indicator sets, policies, resource tables and
//! frontiers, RON or JSON by extension, read at most [`MAX_TEXT`](crate::files::MAX_TEXT)
//! bytes with errors naming the file, written atomically with their `format_version`.
//! Every command and library that reads or writes one calls these.

use std::path::Path;

use limpq_solver::{Frontier, IndicatorSet, Policy, ResourceTable};

use crate::files::{self, FileError, Format};

/// Reads an indicator set (`limpq indicators`, `limpq import-limpq`).
pub fn read_indicators(path: &Path) -> Result<IndicatorSet, FileError> {
    files::read_document_with(path, |text, format| match format {
        Format::Json => IndicatorSet::from_json_str(text),
        Format::Ron => IndicatorSet::from_ron_str(text),
    })
}

/// Reads a policy (`limpq solve`).
pub fn read_policy(path: &Path) -> Result<Policy, FileError> {
    files::read_document_with(path, |text, format| match format {
        Format::Json => Policy::from_json_str(text),
        Format::Ron => Policy::from_ron_str(text),
    })
}

/// Reads an extra resource table (`limpq solve --resource`).
pub fn read_resource_table(path: &Path) -> Result<ResourceTable, FileError> {
    files::read_document_with(path, |text, format| match format {
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

    fn dir(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("limpq-io-documents-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
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
        let d = dir("ind");
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
        assert!(e.contains("bad.json"), "{e}");
        let e = read_policy(&d.join("missing.ron")).unwrap_err().to_string();
        assert!(e.contains("missing.ron"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
