//! A checkpoint file (`--ckpt`, `--init`, `limpq infer`, `limpq export`). The input is the
//! header text and the payload; the target frames them with the right magic, version,
//! length and checksum, so the fuzzer spends its time past the checks a corrupt file fails
//! at once. A checkpoint that reads is then exported as safetensors, as `limpq export
//! --safetensors` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use limpq_trainer::checkpoint::Checkpoint;

/// The checkpoint's checksum (FNV-1a, 64 bit), as the format defines it.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let hlen = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let rest = &data[4..];
    let hlen = hlen.min(rest.len());
    let mut file = b"LIMPQCKP".to_vec();
    file.extend_from_slice(&1u32.to_le_bytes());
    file.extend_from_slice(&(hlen as u32).to_le_bytes());
    file.extend_from_slice(rest);
    let sum = fnv1a(&file);
    file.extend_from_slice(&sum.to_le_bytes());
    if let Ok(ck) = Checkpoint::from_bytes(&file, std::path::Path::new("fuzz.ckpt")) {
        let _ = ck.model.quantizable_layers();
        let _ = limpq_trainer::weights::export_safetensors(&ck);
        // What is written back reads back.
        let again = Checkpoint::from_bytes(&ck.to_bytes(), std::path::Path::new("again.ckpt"))
            .expect("a checkpoint's own bytes read back");
        assert_eq!(again.tensors.len(), ck.tensors.len());
    }
});
