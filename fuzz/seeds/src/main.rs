//! A starting corpus for the fuzz targets: for each, a few files that its reader accepts,
//! made with the project's own writers (or copied from its fixtures), so the fuzzer starts
//! past the first checks. Writes `fuzz/corpus/TARGET/NAME`; run from anywhere.
use std::path::{Path, PathBuf};

use limpq_onnx::build::{float_init, gap_fc_head, ints, model, node};
use limpq_solver::IndicatorSet;
use limpq_trainer::checkpoint::{Checkpoint, NamedTensor};
use limpq_trainer::model::{builtin, Model, BUILTIN_NAMES};
use limpq_trainer::weights::{export_safetensors, tensor_specs};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn put(target: &str, name: &str, bytes: &[u8]) {
    let dir = root().join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus folder");
    std::fs::write(dir.join(name), bytes).expect("corpus file");
}

/// A checkpoint of `model` with every tensor a ramp of small values.
fn checkpoint(model: &Model) -> Checkpoint {
    let tensors = tensor_specs(model)
        .expect("a built-in model's tensors")
        .into_iter()
        .map(|s| NamedTensor {
            data: (0..s.shape.iter().product::<usize>())
                .map(|i| (i % 17) as f32 * 0.01)
                .collect(),
            name: s.name,
            kind: s.kind,
        })
        .collect();
    Checkpoint {
        model: model.clone(),
        seed: 7,
        epoch: 1,
        step: 10,
        meta: vec![("stage".into(), "seed".into())],
        tensors,
        origin: None,
    }
}

fn main() {
    for name in BUILTIN_NAMES {
        let m = builtin(name).expect("a built-in name");
        put(
            "model_ron",
            &format!("{name}.ron"),
            m.to_ron_versioned().as_bytes(),
        );
    }
    for f in ["small_cnn.model.ron", "resnet20_lite.model.ron"] {
        let text = std::fs::read(root().join("examples").join(f)).expect("example model");
        put("model_ron", f, &text);
    }

    for name in ["small_cnn", "resnet20"] {
        let ck = checkpoint(&builtin(name).expect("built-in"));
        let bytes = ck.to_bytes();
        // The target frames the header length, header and payload itself: drop the magic,
        // the version and the checksum.
        put(
            "checkpoint",
            &format!("{name}.bin"),
            &bytes[12..bytes.len() - 8],
        );
        let st = export_safetensors(&ck).expect("safetensors export");
        put("safetensors_import", &format!("{name}.safetensors"), &st);
    }

    let folded = model(
        "tiny",
        vec![
            node(
                "Conv",
                "/conv1/Conv",
                &["x", "conv1.weight", "conv1.bias"],
                "c",
                vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1])],
            ),
            node(
                "BatchNormalization",
                "/bn1/BatchNormalization",
                &["c", "bn1.weight", "bn1.bias", "bn1.mean", "bn1.var"],
                "b",
                vec![],
            ),
            node("Relu", "/relu/Relu", &["b"], "r", vec![]),
            node(
                "MaxPool",
                "/pool/MaxPool",
                &["r"],
                "m",
                vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
            ),
        ]
        .into_iter()
        .chain(gap_fc_head("m"))
        .collect(),
        vec![
            float_init(
                "conv1.weight",
                &[4, 2, 3, 3],
                (0..72).map(|i| i as f32 * 0.01).collect(),
            ),
            float_init("conv1.bias", &[4], vec![0.1, -0.2, 0.3, -0.4]),
            float_init("bn1.weight", &[4], vec![1.0; 4]),
            float_init("bn1.bias", &[4], vec![0.0; 4]),
            float_init("bn1.mean", &[4], vec![0.0; 4]),
            float_init("bn1.var", &[4], vec![1.0; 4]),
            float_init("fc.weight", &[3, 4], vec![0.5; 12]),
            float_init("fc.bias", &[3], vec![0.0; 3]),
        ],
        [2, 6, 6],
        3,
    );
    put(
        "onnx_import",
        "tiny.onnx",
        &limpq_onnx::write_model(&folded),
    );

    put(
        "npy",
        "a.npy",
        &limpq_io::npy::to_bytes(&[2, 3], &[0.0, 1.0, -2.5, 3.25, 1e-3, 7.0]),
    );

    for f in ["good_p2.pkl", "good_p5.pkl", "exploit_p2.pkl"] {
        let bytes = std::fs::read(root().join("tests/fixtures/import").join(f)).expect("fixture");
        put("pickle_import", f, &bytes);
    }

    for e in std::fs::read_dir(root().join("examples")).expect("examples folder") {
        let p = e.expect("examples entry").path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".pipeline.ron") || name.ends_with(".job.ron") {
            put("job_files", name, &std::fs::read(&p).expect("example job"));
        }
    }

    let text = std::fs::read_to_string(root().join("examples/resnet20.indicators.ron"))
        .expect("example indicators");
    let set = IndicatorSet::from_ron_str(&text).expect("example indicators parse");
    // Two knob bytes: W4A4-ish BitOps, and a size budget.
    let mut ron = set.to_ron_string().into_bytes();
    ron.extend_from_slice(&[2 + 7 * 2, 33]);
    put("indicators_solve", "resnet20.ron", &ron);
    let mut json = set.to_json_string().into_bytes();
    json.extend_from_slice(&[2 + 7, 0]);
    put("indicators_solve", "resnet20.json", &json);
    // Requests to the WebAssembly face: a solve with every kind of option, a sweep, a
    // policy to price, and the indicator set given as RON text.
    let read = |f: &str| {
        std::fs::read_to_string(root().join("tests/fixtures/solver").join(f)).expect("fixture")
    };
    let tiny = IndicatorSet::from_ron_str(&read("tiny.indicators.ron")).expect("tiny parses");
    let tiny_json: serde_json::Value =
        serde_json::from_str(&tiny.to_json_string()).expect("JSON of a set");
    let lat = limpq_solver::ResourceTable::from_ron_str(&read("latency.ron")).expect("table");
    let lat_json: serde_json::Value =
        serde_json::from_str(&lat.to_json_string()).expect("JSON of a table");
    let requests = [
        (
            "solve.json",
            serde_json::json!({
                "indicators": tiny_json, "bitops": "w3a3", "size": "cr:9", "alpha": 1.5,
                "weight_bits": [2, 3, 4], "pins": [["layer1.conv1", 4, 4]],
                "tie_weights": [["layer2.conv1", "layer2.shortcut"]],
                "tie_acts": [["layer1.conv2", "layer2.conv1"]],
                "resources": [{"table": lat_json, "max": 20.0}],
            }),
        ),
        (
            "sweep.json",
            serde_json::json!({"indicators": tiny_json, "size": "cr:8", "sweep": 3}),
        ),
        (
            "evaluate.json",
            serde_json::json!({
                "indicators": tiny_json, "bitops": "w3a3",
                "evaluate": tiny.layers.iter().map(|l| {
                    let (w, a) = l.fixed.unwrap_or((3, 3));
                    serde_json::json!({"name": l.name, "weight": w, "act": a})
                }).collect::<Vec<_>>(),
            }),
        ),
        (
            "ron.json",
            serde_json::json!({
                "indicators_ron": read("tiny.indicators.ron"), "bitops": 900000,
                "weight_only": 8, "node_limit": 100,
            }),
        ),
    ];
    for (name, r) in requests {
        put("wasm_request", name, r.to_string().as_bytes());
    }
    println!(
        "seeds written under {}",
        root().join("fuzz/corpus").display()
    );
}
