//! `include/limpq_solver.h` is what cbindgen makes of `src/lib.rs` with `cbindgen.toml`:
//! this test regenerates it in memory and fails when the committed file differs.
//! `LIMPQ_BLESS_HEADER=1 cargo test -p limpq-solver-c --test header` rewrites it.

use std::path::Path;

#[test]
fn committed_header_matches_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen could not generate the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir.join("include/limpq_solver.h");
    if std::env::var_os("LIMPQ_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write the header");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with src/lib.rs; regenerate it with \
         LIMPQ_BLESS_HEADER=1 cargo test -p limpq-solver-c --test header\n\
         --- generated ---\n{}",
        path.display(),
        String::from_utf8_lossy(&generated)
    );
}
