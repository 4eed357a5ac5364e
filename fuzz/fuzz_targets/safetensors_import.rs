//! A safetensors file (`limpq import-safetensors --model resnet20`): its tensors read
//! against a model's (ResNet-20's and a small CNN's).
#![no_main]

use libfuzzer_sys::fuzz_target;
use limpq_trainer::model::builtin;
use limpq_trainer::weights::import_safetensors;

fuzz_target!(|data: &[u8]| {
    for name in ["resnet20", "small_cnn"] {
        let model = builtin(name).expect("a built-in model");
        if let Ok(tensors) = import_safetensors(data, &model) {
            let specs = limpq_trainer::weights::tensor_specs(&model).expect("shapes");
            assert_eq!(tensors.len(), specs.len());
        }
    }
});
