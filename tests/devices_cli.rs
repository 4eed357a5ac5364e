//! `limpq devices` on a headless machine: a successful run prints the adapter table and
//! nothing the graphics stack calls an error (the GL/EGL backend, probed only when Vulkan,
//! Metal and DX12 offer nothing, prints `XDG_RUNTIME_DIR` errors without a display session).
//! Skips only when wgpu finds no adapter at all.

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
