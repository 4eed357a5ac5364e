//! An ONNX file (`limpq import-onnx`, a pipeline's `model: "FILE.onnx"`): decoded and
//! imported; what imports must be a model that checks and lists its layers, with a tensor
//! of the right length for every weight.
#![no_main]

use libfuzzer_sys::fuzz_target;
use limpq_trainer::import::{import_bytes, ImportOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(im) = import_bytes(data, &ImportOptions::default()) else {
        return;
    };
    im.model.analyze().expect("an imported model checks");
    im.model
        .quantizable_layers()
        .expect("an imported model lists its layers");
    let specs = limpq_trainer::weights::tensor_specs(&im.model).expect("its tensors have shapes");
    for s in &specs {
        let n: usize = s.shape.iter().product();
        let t = im
            .tensors
            .iter()
            .find(|t| t.name == s.name && t.kind == s.kind)
            .unwrap_or_else(|| panic!("no tensor {}", s.name));
        assert_eq!(t.data.len(), n, "tensor {}", s.name);
    }
});
