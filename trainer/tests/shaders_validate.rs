//! Every `shaders/*.wgsl` parses and validates with naga, without a GPU, as the pipelines
//! compile it: with its `//#include` lines expanded (`gpu::expand_includes`), so each
//! fragment of `shaders/include/` is validated inside every kernel that uses it. New shader
//! files are picked up automatically.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

use std::path::PathBuf;

#[test]
fn every_shader_validates() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shaders");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .wgsl files in {}", dir.display());
    let mut failures = Vec::new();
    for path in &files {
        let raw = std::fs::read_to_string(path).expect("read shader");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let src = match limpq_trainer::gpu::expand_includes(&raw) {
            Ok(s) => s.into_owned(),
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let module = match naga::front::wgsl::parse_str(&src) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{name}: parse error:\n{}", e.emit_to_string(&src)));
                continue;
            }
        };
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            // f16 / cooperative-matrix shaders must say `enable ...;` to parse at all; the
            // capabilities are the device features their Rust callers check for first.
            naga::valid::Capabilities::default()
                | naga::valid::Capabilities::SHADER_FLOAT16
                | naga::valid::Capabilities::COOPERATIVE_MATRIX
                | naga::valid::Capabilities::SUBGROUP,
        );
        if let Err(e) = validator.validate(&module) {
            failures.push(format!(
                "{name}: validation error:\n{}",
                e.emit_to_string(&src)
            ));
            continue;
        }
        if !module
            .entry_points
            .iter()
            .any(|ep| ep.stage == naga::ShaderStage::Compute)
        {
            failures.push(format!("{name}: no @compute entry point"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!("validated {} shaders", files.len());
}

/// Every fragment in `shaders/include/` is used by some kernel (so it is validated), and an
/// include of a name that does not exist is an error naming it.
#[test]
fn every_include_is_used_and_unknown_ones_are_refused() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shaders");
    let sources: Vec<String> = std::fs::read_dir(&root)
        .expect("shaders folder")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .map(|p| std::fs::read_to_string(p).expect("read shader"))
        .collect();
    for entry in std::fs::read_dir(root.join("include")).expect("shaders/include") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let line = format!("//#include {name}");
        assert!(
            sources.iter().any(|s| s.lines().any(|l| l.trim() == line)),
            "shaders/include/{name} is included by no kernel"
        );
        let expanded = limpq_trainer::gpu::expand_includes(&line).expect("known include");
        assert!(expanded.len() > line.len(), "{name}: nothing pasted");
    }
    let e = limpq_trainer::gpu::expand_includes("//#include nowhere.wgsl\n").unwrap_err();
    assert!(e.contains("nowhere.wgsl"), "{e}");
}
