//! A `.npy` file as `limpq infer --input` reads it, and the array written back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = limpq_io::npy::parse(data) {
        let _ = limpq_io::npy::to_bytes(&a.shape, &a.data);
    }
});
