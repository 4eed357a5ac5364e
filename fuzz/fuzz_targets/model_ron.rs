//! A model description (`limpq layers FILE`, a job's `model: "FILE.ron"`): parsed with its
//! format version, checked, and everything the solver-side commands read from it computed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use limpq_trainer::model::Model;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(model) = limpq_solver::format::versioned::from_ron::<Model>(text, Model::FORMAT_VERSION)
    else {
        return;
    };
    if model.analyze().is_err() {
        return;
    }
    let _ = model.quantizable_layers();
    let _ = model.layer_table(true);
    let _ = model.layer_table(false);
    let _ = model.indicator_skeleton(&[2, 4, 8], &[2, 4, 8]);
    let _ = limpq_trainer::weights::tensor_specs(&model);
    // What is written back reads back.
    let again: Model =
        limpq_solver::format::versioned::from_ron(&model.to_ron_versioned(), Model::FORMAT_VERSION)
            .expect("a model's own RON reads back");
    again.analyze().expect("a model's own RON still checks");
});
