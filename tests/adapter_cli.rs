//! Choosing the adapter: `limpq devices` numbers every adapter of every backend, and
//! `--adapter N|NAME|BACKEND[:N|NAME]` (or `LIMPQ_ADAPTER`) opens exactly that one
//! (`devices --open` creates its device and says which it opened). Skips only when wgpu
//! finds no adapter at all.
// These commands exist only with the default `gpu` feature.
#![cfg(feature = "gpu")]

mod common;

use common::{limpq_cmd, limpq_env, refused, stderr, stdout};

/// `(name, backend)` of every adapter `limpq devices --format json` lists, or `None` (skip)
/// without any.
fn adapters() -> Option<Vec<(String, String)>> {
    let out = limpq_cmd(&["devices", "--format", "json"])
        .env_remove("LIMPQ_ADAPTER")
        .output()
        .expect("run limpq");
    if !out.status.success() {
        eprintln!("SKIP: no GPU adapter: {}", stderr(&out));
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    Some(
        v["adapters"]
            .as_array()
            .expect("adapters")
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap().to_string(),
                    a["backend"].as_str().unwrap().to_string(),
                )
            })
            .collect(),
    )
}

/// The `opened: NAME (BACKEND, TYPE)` line of `devices --open`.
fn opened(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    let text = stdout(out);
    text.lines()
        .find(|l| l.starts_with("opened: "))
        .unwrap_or_else(|| panic!("no `opened:` line:\n{text}"))
        .to_string()
}

#[test]
fn every_listed_adapter_is_opened_by_its_index() {
    let Some(list) = adapters() else { return };
    let has_vulkan = list.iter().any(|(_, b)| b == "Vulkan");
    for (i, (name, backend)) in list.iter().enumerate() {
        let out = limpq_cmd(&["devices", "--open", "--adapter", &i.to_string()])
            .env_remove("LIMPQ_ADAPTER")
            .output()
            .expect("run limpq");
        let line = opened(&out);
        assert!(
            line.starts_with(&format!("opened: {name} ({backend},")),
            "--adapter {i} should open {name} on {backend}: {line}"
        );
        // The table marks the same one.
        let star = stdout(&out)
            .lines()
            .find(|l| l.starts_with('*') && !l.starts_with("* chosen"))
            .map(str::to_string)
            .unwrap_or_default();
        assert!(
            star.split_whitespace().nth(1) == Some(&i.to_string()),
            "row {i} not marked: {star}"
        );
        // The environment variable does the same.
        let env = limpq_env(&["devices", "--open"], &[("LIMPQ_ADAPTER", &i.to_string())]);
        assert_eq!(opened(&env), line, "LIMPQ_ADAPTER={i}");
    }
    // Vulkan adapters come first in wgpu's order: on a machine with lavapipe, index 0 is
    // a Vulkan adapter, and GL's (if any) follow.
    if has_vulkan {
        assert_eq!(list[0].1, "Vulkan", "{list:?}");
    }
    if let Some(gl) = list.iter().position(|(_, b)| b == "Gl") {
        assert!(list[gl..].iter().all(|(_, b)| b == "Gl"), "{list:?}");
        let out = limpq_cmd(&["devices", "--open", "--adapter", "gl"])
            .env_remove("LIMPQ_ADAPTER")
            .output()
            .unwrap();
        assert!(
            opened(&out).contains("(Gl, "),
            "--adapter gl: {}",
            opened(&out)
        );
        let out = limpq_cmd(&["devices", "--open", "--adapter", "gl:0"])
            .env_remove("LIMPQ_ADAPTER")
            .output()
            .unwrap();
        assert!(opened(&out).starts_with(&format!("opened: {} (Gl, ", list[gl].0)));
    } else {
        eprintln!("note: no GL adapter listed: --adapter gl not exercised");
    }
}

#[test]
fn a_name_or_index_that_matches_nothing_lists_the_adapters() {
    let Some(list) = adapters() else { return };
    let too_far = list.len().to_string();
    for (args, env) in [
        (vec!["devices", "--adapter", too_far.as_str()], None),
        (vec!["devices", "--adapter", "no-such-gpu-name"], None),
        (vec!["devices", "--open"], Some(too_far.as_str())),
    ] {
        let mut c = limpq_cmd(&args);
        c.env_remove("LIMPQ_ADAPTER");
        if let Some(v) = env {
            c.env("LIMPQ_ADAPTER", v);
        }
        let out = c.output().unwrap();
        let err = refused(&out);
        assert!(err.contains("no adapter matches"), "{args:?}: {err}");
        assert!(err.contains("LIMPQ_ADAPTER"), "{args:?}: {err}");
        for (i, (name, backend)) in list.iter().enumerate() {
            assert!(
                err.contains(&format!("{i}: {name} ({backend}, ")),
                "{args:?}: the error must list adapter {i}: {err}"
            );
        }
    }
    // A value that is no choice at all: a usage error naming what is accepted.
    let out = limpq_cmd(&["devices", "--adapter", "opengles:1"])
        .output()
        .unwrap();
    let err = refused(&out);
    assert!(err.contains("opengles"), "{err}");
    let out = limpq_env(&["devices", "--open"], &[("LIMPQ_ADAPTER", "warp:0")]);
    let err = refused(&out);
    assert!(
        err.contains("LIMPQ_ADAPTER") && err.contains("warp"),
        "{err}"
    );
    // A value that is not text was ignored (the default adapter opened, no word said).
    #[cfg(unix)]
    for var in ["LIMPQ_ADAPTER", "WGPU_BACKEND"] {
        use std::os::unix::ffi::OsStrExt;
        let not_text = std::ffi::OsStr::from_bytes(b"\xff");
        let out = limpq_cmd(&["devices", "--open"])
            .env(var, not_text)
            .output()
            .unwrap();
        let err = refused(&out);
        assert!(err.contains(var) && err.contains("not text"), "{err}");
    }
    // A WGPU_BACKEND naming no backend was taken for none ("wgpu sees no adapter"); a
    // blank one for none as well, where it means what unset means.
    let out = limpq_env(&["devices"], &[("WGPU_BACKEND", "vulcan")]);
    let err = refused(&out);
    assert!(
        err.contains("WGPU_BACKEND=\"vulcan\" names no backend"),
        "{err}"
    );
    let out = limpq_env(&["devices"], &[("WGPU_BACKEND", "")]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A command that opens the GPU to work (here `bench gemm`) is refused up front, naming the
/// choice, when `--adapter` names nothing: every command goes through the same choice.
#[test]
fn a_gpu_command_obeys_the_adapter_flag() {
    let Some(list) = adapters() else { return };
    let out = limpq_cmd(&["bench", "gemm", "--adapter", &list.len().to_string()])
        .env_remove("LIMPQ_ADAPTER")
        .output()
        .unwrap();
    let err = refused(&out);
    assert!(err.contains("no adapter matches"), "{err}");
}
