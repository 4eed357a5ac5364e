//! Writes `onnx/src/onnx.rs`, the prost messages of `onnx/proto/onnx.proto`.
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let proto_dir = root.join("proto");
    let out = root.join("src");
    let files = protox::compile([proto_dir.join("onnx.proto")], [&proto_dir])
        .unwrap_or_else(|e| panic!("parsing onnx.proto: {e}"));
    let mut config = prost_build::Config::new();
    config.out_dir(&out);
    config
        .compile_fds(files)
        .unwrap_or_else(|e| panic!("generating the messages: {e}"));
    println!("wrote {}", out.join("onnx.rs").display());
}
