//! `limpq devices` on a headless machine: a successful run prints the adapter table and
//! nothing the graphics stack calls an error (the GL/EGL backend, probed only when Vulkan,
//! Metal and DX12 offer nothing, prints `XDG_RUNTIME_DIR` errors without a display session).
//! Skips only when wgpu finds no adapter at all.
// These commands exist only with the default `gpu` feature.
#![cfg(feature = "gpu")]

mod common;

use common::{limpq_cmd, stderr, stdout};

#[test]
fn a_headless_run_prints_no_error_line() {
    // As on a server or in CI: no session runtime folder, no display, backends left to limpq.
    let out = limpq_cmd(&["devices"])
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("DISPLAY")
        .env_remove("WGPU_BACKEND")
        .env_remove("WGPU_ADAPTER_NAME")
        .output()
        .expect("run limpq");
    let err = stderr(&out);
    if !out.status.success() {
        eprintln!("SKIP a_headless_run_prints_no_error_line: no GPU adapter: {err}");
        return;
    }
    let text = stdout(&out);
    assert!(text.contains("* chosen:"), "no chosen adapter:\n{text}");
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("error"))
        .collect();
    assert!(
        errors.is_empty(),
        "error lines on a successful headless run:\n{}",
        errors.join("\n")
    );
}

/// `--format json` lists the adapters the table lists, with the same figures, and the
/// same chosen one; a closed pipe ends the command quietly.
#[test]
fn json_carries_what_the_table_shows() {
    let table = limpq_cmd(&["devices"]).output().expect("run limpq");
    if !table.status.success() {
        eprintln!(
            "SKIP json_carries_what_the_table_shows: no GPU adapter: {}",
            stderr(&table)
        );
        return;
    }
    let table = stdout(&table);
    let json = limpq_cmd(&["devices", "--format", "json"])
        .output()
        .unwrap();
    assert!(json.status.success(), "{}", stderr(&json));
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("JSON");
    let adapters = v["adapters"].as_array().unwrap();
    let rows: Vec<&str> = table
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(adapters.len(), rows.len(), "{table}");
    for (i, (a, row)) in adapters.iter().zip(&rows).enumerate() {
        let mib = a["max_storage_buffer_binding_size"].as_u64().unwrap() >> 20;
        for cell in [
            a["name"].as_str().unwrap().to_string(),
            a["device_type"].as_str().unwrap().to_string(),
            a["backend"].as_str().unwrap().to_string(),
            format!("  {mib}  "),
            a["max_compute_invocations_per_workgroup"].to_string(),
        ] {
            assert!(row.contains(&cell), "row {i} `{row}` lacks `{cell}`");
        }
        assert_eq!(row.starts_with('*'), v["chosen"] == i, "{row}");
    }
    let chosen = &adapters[v["chosen"].as_u64().unwrap() as usize];
    let name = chosen["name"].as_str().unwrap();
    assert!(table.contains(&format!("* chosen: {name} (")), "{table}");

    let mut child = limpq_cmd(&["devices"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
