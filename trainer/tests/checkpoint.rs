//! Checkpoint files on disk: what is refused before a byte is read, and what a save never
//! replaces or leaves behind.
// Every case needs a FIFO, a device or a symbolic link: Unix only.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(all(unix, feature = "gpu"))]

use limpq_trainer::checkpoint::{Checkpoint, NamedTensor, TensorKind};
use limpq_trainer::model::Model;

fn ckpt() -> Checkpoint {
    Checkpoint {
        origin: None,
        model: Model::resolve("small_cnn").unwrap(),
        seed: 1,
        epoch: 0,
        step: 0,
        meta: Vec::new(),
        tensors: vec![NamedTensor {
            name: "w".into(),
            kind: TensorKind::Param,
            data: vec![0.5, -1.0],
        }],
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("limpq-ckpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn names(d: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn devices_and_fifos_are_refused_before_reading() {
    let e = Checkpoint::load("/dev/zero").unwrap_err().to_string();
    assert!(
        e.contains("/dev/zero") && e.contains("character device"),
        "{e}"
    );
    let d = scratch("fifo");
    let fifo = d.join("f.ckpt");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(
            Checkpoint::load(&fifo)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
    });
    let r = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("loading a FIFO blocked");
    assert!(r.unwrap_err().contains("FIFO"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_save_replaces_only_regular_files_and_leaves_nothing_behind() {
    let d = scratch("save");
    let target = d.join("real.ckpt");
    std::fs::write(&target, b"keep me").unwrap();
    let link = d.join("link.ckpt");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let e = ckpt().save(&link).unwrap_err().to_string();
    assert!(
        e.contains("link.ckpt") && e.contains("symbolic link"),
        "{e}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    let e = ckpt().save("/dev/null").unwrap_err().to_string();
    assert!(e.contains("character device"), "{e}");
    let path = d.join("a.ckpt");
    ckpt().save(&path).unwrap();
    ckpt().save(&path).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap(), ckpt());
    assert_eq!(names(&d), ["a.ckpt", "link.ckpt", "real.ckpt"]);
    // A failed save (its folder is gone) leaves no temporary file anywhere.
    assert!(ckpt().save(d.join("gone/b.ckpt")).is_err());
    assert_eq!(names(&d), ["a.ckpt", "link.ckpt", "real.ckpt"]);
    std::fs::remove_dir_all(&d).unwrap();
}
