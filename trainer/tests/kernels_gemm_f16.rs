//! f16-operand GEMMs (`kernels::gemm_f16`): the f32 → f16 rounding, the packing kernel, the
//! f16-storage GEMM and the tensor-core (cooperative-matrix) GEMM against CPU references.
//!
//! The references round the operands to f16 exactly as the packing kernel does (round to
//! nearest even, checked bit for bit) and accumulate in f64, so the kernels may differ from
//! them only by f32 summation error: an f16·f16 product is exact in f32. The tolerance is the
//! f32 GEMM's (`Tol::sum_of(k + 1)`, ~50× the expected rounding, far below an indexing error).
//!
//! lavapipe has SHADER_F16 but no cooperative matrix: there the coop kernel is checked by
//! naga (parse, validate with the capabilities wgpu grants, SPIR-V generation — where naga 30
//! panics on some coop index expressions) and its runtime test prints why it skipped; on an
//! adapter with the feature (the H200) the runtime test runs.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

mod common;

use common::{assert_close, gpu_or_skip, Tol};
use limpq_trainer::gpu::{Gpu, GpuError, Recorder, Tensor};
use limpq_trainer::kernels::gemm::GemmShape;
use limpq_trainer::kernels::gemm_f16::{
    f16_bits_to_f32, f32_to_f16_bits, pad16, round_f16, GemmF16, HalfKind, PackF16, COOP_SOURCE,
    F16_SOURCE, PACK_SOURCE,
};
use limpq_trainer::reference::rng::SeededRng;

#[test]
fn cpu_rounding_is_ieee_round_to_nearest_even() {
    for (x, bits) in [
        (0.0f32, 0x0000u16),
        (-0.0, 0x8000),
        (1.0, 0x3c00),
        (-2.0, 0xc000),
        (65504.0, 0x7bff),
        (65519.99, 0x7bff),
        (65520.0, 0x7c00),
        (f32::INFINITY, 0x7c00),
        (f32::NEG_INFINITY, 0xfc00),
        (6.103_515_6e-5, 0x0400),     // 2^-14, smallest normal
        (5.960_464_5e-8, 0x0001),     // 2^-24, smallest subnormal
        (2.980_232_2e-8, 0x0000),     // 2^-25: tie between 0 and 2^-24, to even
        (4.470_348_4e-8, 0x0001),     // 1.5 · 2^-25
        (1.0 + 1.0 / 2048.0, 0x3c00), // tie, to even (down)
        (1.0 + 3.0 / 2048.0, 0x3c02), // tie, to even (up)
        (0.1, 0x2e66),
    ] {
        assert_eq!(f32_to_f16_bits(x), bits, "f16({x:e})");
    }
    assert_eq!(f32_to_f16_bits(f32::NAN) & 0x7e00, 0x7e00);
    // Every finite f16 survives the round trip, and every midpoint between neighbours rounds
    // to the even one of the two.
    for h in 0u16..0x7c00 {
        for s in [0u16, 0x8000] {
            let v = f16_bits_to_f32(h | s);
            assert_eq!(f32_to_f16_bits(v), h | s, "round trip of {:#06x}", h | s);
        }
        if h == 0x7bff {
            continue; // above 65504 comes inf; its rounding boundary is checked above
        }
        let lo = f64::from(f16_bits_to_f32(h));
        let hi = f64::from(f16_bits_to_f32(h + 1));
        let mid = ((lo + hi) / 2.0) as f32; // exact: f16 neighbours' midpoint fits in f32
        let even = if h % 2 == 0 { h } else { h + 1 };
        assert_eq!(f32_to_f16_bits(mid), even, "midpoint above {h:#06x}");
        // Just off the midpoint goes to the nearer one.
        assert_eq!(
            f32_to_f16_bits(mid.next_down_compat()),
            h,
            "below mid of {h:#06x}"
        );
        assert_eq!(
            f32_to_f16_bits(mid.next_up_compat()),
            h + 1,
            "above mid of {h:#06x}"
        );
    }
}

trait NextCompat {
    fn next_up_compat(self) -> Self;
    fn next_down_compat(self) -> Self;
}

impl NextCompat for f32 {
    // Positive finite values only.
    fn next_up_compat(self) -> f32 {
        f32::from_bits(self.to_bits() + 1)
    }
    fn next_down_compat(self) -> f32 {
        f32::from_bits(self.to_bits() - 1)
    }
}

/// Values that exercise every branch of the rounding: zeros, subnormals, ties, overflow, NaN.
fn awkward_values(rng: &mut SeededRng, n: usize) -> Vec<f32> {
    let special = [
        0.0f32,
        -0.0,
        1.0,
        -1.0,
        65504.0,
        65520.0,
        -70000.0,
        f32::INFINITY,
        f32::NAN,
        5.960_464_5e-8,
        2.980_232_2e-8,
        4.470_348_4e-8,
        -3.0e-6,
        6.0e-5,
        6.103_515_6e-5,
        1.0 + 1.0 / 2048.0,
        1.0 + 3.0 / 2048.0,
        1e-10,
        0.1,
        -0.333,
    ];
    (0..n)
        .map(|i| match i % 3 {
            0 => special[(i / 3) % special.len()],
            1 => rng.uniform(-1.0, 1.0) * 10f32.powi(rng.below(12) as i32 - 9),
            _ => f32::from_bits(rng.below(1 << 31) as u32 | ((rng.below(2) as u32) << 31)),
        })
        .collect()
}

#[test]
fn pack_rounds_and_pads_bit_exactly() {
    let Some(gpu) = gpu_or_skip("f16 pack") else {
        return;
    };
    for &(rows, cols, trans, batch) in &[
        (1, 1, false, 1),
        (3, 5, false, 2),
        (17, 33, true, 1),
        (40, 7, true, 3),
        (16, 16, false, 1),
    ] {
        let mut rng = SeededRng::new((rows * 131 + cols * 7 + batch) as u64);
        let src = awkward_values(&mut rng, rows * cols * batch);
        let (rp, cp) = (pad16(rows), pad16(cols));
        let ts = Tensor::from_f32(gpu, &src, "src").unwrap();
        // Poison the destination: the padding must be written as zeros.
        let words = PackF16::words(rows, cols, batch);
        let td = Tensor::from_u32(gpu, &vec![0xdead_beef; words], "dst").unwrap();
        let pack = PackF16::new(gpu, &ts, rows, cols, trans, batch, &td).unwrap();
        let mut rec = Recorder::new(gpu);
        pack.record(&mut rec);
        let i = rec.read(&td);
        let out = rec.submit().unwrap();
        let got: Vec<u16> = out
            .u32(i)
            .iter()
            .flat_map(|w| [(*w & 0xffff) as u16, (*w >> 16) as u16])
            .collect();
        for b in 0..batch {
            for r in 0..rp {
                for c in 0..cp {
                    let want = if r < rows && c < cols {
                        let x = if trans {
                            src[b * rows * cols + c * rows + r]
                        } else {
                            src[b * rows * cols + r * cols + c]
                        };
                        f32_to_f16_bits(x)
                    } else {
                        0
                    };
                    let g = got[b * rp * cp + r * cp + c];
                    let both_nan = (g & 0x7c00) == 0x7c00
                        && (g & 0x3ff) != 0
                        && (want & 0x7c00) == 0x7c00
                        && (want & 0x3ff) != 0;
                    assert!(
                        g == want || both_nan,
                        "pack {rows}x{cols} trans={trans} batch {batch}: [{b}][{r}][{c}] got \
                         {g:#06x} want {want:#06x}"
                    );
                }
            }
        }
    }
}

fn transpose(r: usize, c: usize, x: &[f32]) -> Vec<f32> {
    let mut t = vec![0.0; x.len()];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = x[i * c + j];
        }
    }
    t
}

/// C = alpha·A·B + beta·C0 per batch on f16-rounded operands, accumulated in f64.
fn reference(s: &GemmShape, a: &[f32], b: &[f32], c0: &[f32]) -> Vec<f32> {
    let (m, n, k) = (s.m, s.n, s.k);
    let mut out = vec![0.0f32; m * n * s.batch];
    for z in 0..s.batch {
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f64;
                for l in 0..k {
                    let x = round_f16(a[z * m * k + i * k + l]);
                    let y = round_f16(b[z * k * n + l * n + j]);
                    acc += f64::from(x) * f64::from(y);
                }
                let idx = z * m * n + i * n + j;
                let mut v = f64::from(s.alpha) * acc;
                if s.beta != 0.0 {
                    v += f64::from(s.beta) * f64::from(c0[idx]);
                }
                out[idx] = v as f32;
            }
        }
    }
    out
}

/// Runs `kind` on `shape` against the f16-rounded reference; returns the worst error.
fn check(gpu: &Gpu, kind: HalfKind, s: GemmShape, subnormals: bool) -> f32 {
    let (m, n, k, nb) = (s.m, s.n, s.k, s.batch);
    let seed = (m * 1_000_003 + k * 1009 + n + nb * 77) as u64
        ^ ((s.trans_a as u64) << 40 | (s.trans_b as u64) << 41);
    let mut rng = SeededRng::new(seed);
    let mut a = rng.vec_uniform(m * k * nb, -1.0, 1.0);
    let mut b = rng.vec_uniform(k * n * nb, -1.0, 1.0);
    if subnormals {
        // Every A operand in f16's subnormal range (j · 2^-24, j < 1024) and B scaled up so
        // that flushing them to zero would move each output by far more than the tolerance.
        for (i, x) in a.iter_mut().enumerate() {
            let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
            *x = sign * (1 + i % 1023) as f32 * 5.960_464_5e-8;
        }
        for y in &mut b {
            *y *= 1024.0;
        }
    }
    let c0 = rng.vec_uniform(m * n * nb, -1.0, 1.0);
    let want = reference(&s, &a, &b, &c0);
    let a_stored: Vec<f32> = if s.trans_a {
        a.chunks(m * k).flat_map(|x| transpose(m, k, x)).collect()
    } else {
        a
    };
    let b_stored: Vec<f32> = if s.trans_b {
        b.chunks(k * n).flat_map(|x| transpose(k, n, x)).collect()
    } else {
        b
    };
    let ta = Tensor::from_f32(gpu, &a_stored, "a").unwrap();
    let tb = Tensor::from_f32(gpu, &b_stored, "b").unwrap();
    let tc = if s.beta != 0.0 {
        Tensor::from_f32(gpu, &c0, "c").unwrap()
    } else {
        Tensor::from_f32(gpu, &vec![f32::NAN; m * n * nb], "c").unwrap()
    };
    let gemm = GemmF16::new(gpu, s, &ta, &tb, &tc, kind).unwrap();
    let mut rec = Recorder::new(gpu);
    gemm.record(&mut rec);
    let i = rec.read(&tc);
    let out = rec.submit().unwrap();
    let what = format!(
        "gemm_{} {m}x{k}x{n} ta={} tb={} beta={} alpha={} batch {nb}",
        kind.name(),
        s.trans_a,
        s.trans_b,
        s.beta,
        s.alpha
    );
    let tol = Tol::sum_of(k + 1);
    let worst = assert_close(&what, out.f32(i), &want, tol);
    eprintln!(
        "{what}: worst |err| {worst:.2e} (tolerance {:.1e})",
        tol.abs
    );
    worst
}

fn shapes() -> Vec<GemmShape> {
    let mut v = Vec::new();
    for &(m, k, n) in &[
        (1, 1, 1),
        (3, 5, 7),
        (63, 17, 65),
        (64, 64, 64),
        (130, 33, 70),
        (16, 100, 200),
    ] {
        v.push(GemmShape::new(m, k, n));
    }
    v.push(GemmShape::new(63, 17, 65).trans_a(true));
    v.push(GemmShape::new(9, 130, 4).trans_b(true));
    v.push(
        GemmShape::new(33, 40, 18)
            .trans_a(true)
            .trans_b(true)
            .accumulate(true),
    );
    let mut scaled = GemmShape::new(20, 50, 30).batch(3);
    scaled.alpha = 0.5;
    scaled.beta = -2.0;
    v.push(scaled);
    v
}

fn run_all(kind: HalfKind) {
    let Some(gpu) = gpu_or_skip(&format!("gemm_{}", kind.name())) else {
        return;
    };
    if !kind.available(gpu) {
        eprintln!(
            "SKIP gemm_{} runtime test: {}",
            kind.name(),
            kind.missing(gpu)
        );
        // Building it must then be a clean error, not a panic or a validation error.
        let s = GemmShape::new(2, 2, 2);
        let t = || Tensor::zeros(gpu, 4, "t").unwrap();
        let (a, b, c) = (t(), t(), t());
        match GemmF16::new(gpu, s, &a, &b, &c, kind) {
            Err(GpuError::Unsupported(m)) => eprintln!("  as expected: {m}"),
            other => panic!("gemm_{} on a device without it: {other:?}", kind.name()),
        }
        return;
    }
    for s in shapes() {
        check(gpu, kind, s, false);
    }
    check(gpu, kind, GemmShape::new(40, 48, 24), true);
    if kind != HalfKind::F16 {
        // Several 64×64 blocks per dimension, clamped edge tiles, long K.
        check(gpu, kind, GemmShape::new(200, 300, 150), false);
    }
}

#[test]
fn gemm_f16_matches_f16_rounded_reference() {
    run_all(HalfKind::F16);
}

#[test]
fn gemm_coop_matches_f16_rounded_reference() {
    run_all(HalfKind::Coop);
}

#[test]
fn gemm_coop_prefetch_matches_f16_rounded_reference() {
    run_all(HalfKind::CoopPrefetch);
}

#[test]
fn gemm_coop_wg4_matches_f16_rounded_reference() {
    run_all(HalfKind::CoopWg4);
}

#[test]
fn gemm_coop_wg4_prefetch_matches_f16_rounded_reference() {
    run_all(HalfKind::CoopWg4Prefetch);
}

#[test]
fn gemm_f16_rejects_wrong_lengths() {
    let Some(gpu) = gpu_or_skip("gemm_f16 shapes") else {
        return;
    };
    let Some(kind) = HalfKind::best(gpu) else {
        eprintln!("SKIP gemm_f16 shapes: {}", HalfKind::F16.missing(gpu));
        return;
    };
    let a = Tensor::zeros(gpu, 6, "a").unwrap();
    let b = Tensor::zeros(gpu, 12, "b").unwrap();
    let c = Tensor::zeros(gpu, 7, "c").unwrap();
    match GemmF16::new(gpu, GemmShape::new(2, 3, 4), &a, &b, &c, kind) {
        Err(GpuError::Shape(m)) => assert!(m.contains("tensor c"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// Count SPIR-V instructions by opcode.
fn opcodes(words: &[u32]) -> std::collections::HashMap<u32, usize> {
    let mut count = std::collections::HashMap::new();
    let mut i = 5; // header
    while i < words.len() {
        let len = (words[i] >> 16) as usize;
        *count.entry(words[i] & 0xffff).or_insert(0) += 1;
        i += len.max(1);
    }
    count
}

/// Parse, validate with `caps`, and write SPIR-V with both of wgpu's bounds-check styles.
fn spirv(name: &str, src: &str, caps: naga::valid::Capabilities) -> Vec<u32> {
    spirv_with(name, src, caps, &[]).0
}

/// As [`spirv`], with pipeline-overridable constants set (the others keep their defaults),
/// as wgpu does when it builds a pipeline; also the entry point's workgroup size after the
/// constants are applied.
fn spirv_with(
    name: &str,
    src: &str,
    caps: naga::valid::Capabilities,
    constants: &[(&str, f64)],
) -> (Vec<u32>, [u32; 3]) {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    let mut values = naga::back::PipelineConstants::default();
    for (k, v) in constants {
        values.insert((*k).to_string(), *v);
    }
    let (module, info) =
        naga::back::pipeline_constants::process_overrides(&module, &info, None, &values)
            .unwrap_or_else(|e| panic!("{name} {constants:?}: overrides: {e}"));
    let (module, info) = (module.as_ref(), info.as_ref());
    let mut words = Vec::new();
    for policy in [
        naga::proc::BoundsCheckPolicy::Unchecked,
        naga::proc::BoundsCheckPolicy::ReadZeroSkipWrite,
        naga::proc::BoundsCheckPolicy::Restrict,
    ] {
        let options = naga::back::spv::Options {
            lang_version: (1, 3),
            bounds_check_policies: naga::proc::BoundsCheckPolicies {
                index: policy,
                buffer: policy,
                image_load: policy,
                binding_array: policy,
            },
            ..Default::default()
        };
        words = naga::back::spv::write_vec(module, info, &options, None)
            .unwrap_or_else(|e| panic!("{name} SPIR-V ({policy:?}): {e}"));
        assert_eq!(words[0], 0x0723_0203, "{name}: SPIR-V magic");
    }
    (words, module.entry_points[0].workgroup_size)
}

#[test]
fn coop_shader_validates_and_compiles_to_spirv() {
    use naga::valid::Capabilities as Caps;
    let caps = Caps::default() | Caps::SHADER_FLOAT16 | Caps::COOPERATIVE_MATRIX | Caps::SUBGROUP;
    const LOAD: u32 = 4457; // OpCooperativeMatrixLoadKHR
    const STORE: u32 = 4458; // OpCooperativeMatrixStoreKHR
    const MULADD: u32 = 4459; // OpCooperativeMatrixMulAddKHR
                              // Every variant a pipeline asks for, with the constants it asks for.
    let kinds = [
        HalfKind::Coop,
        HalfKind::CoopPrefetch,
        HalfKind::CoopWg4,
        HalfKind::CoopWg4Prefetch,
    ];
    let mut seen = Vec::new();
    for kind in kinds {
        let constants = kind
            .coop_constants()
            .unwrap_or_else(|| panic!("{}: no coop constants", kind.name()));
        let name = format!("gemm_coop.wgsl ({}, {constants:?})", kind.name());
        let (words, size) = spirv_with(&name, COOP_SOURCE, caps, constants);
        let value = |key: &str| {
            constants
                .iter()
                .find(|(k, _)| *k == key)
                .map(|&(_, v)| v)
                .unwrap_or_else(|| panic!("{name}: {key} not set"))
        };
        let (subgroups, prefetch) = (value("SUBGROUPS"), value("PREFETCH") != 0.0);
        let wg4 = matches!(kind, HalfKind::CoopWg4 | HalfKind::CoopWg4Prefetch);
        let pf = matches!(kind, HalfKind::CoopPrefetch | HalfKind::CoopWg4Prefetch);
        assert_eq!(
            (subgroups, prefetch),
            (if wg4 { 4.0 } else { 1.0 }, pf),
            "{name}: constants of the variant"
        );
        assert_eq!(
            size,
            [32 * subgroups as u32, 1, 1],
            "{name}: one subgroup of 32 per SUBGROUPS"
        );
        let ops = opcodes(&words);
        // Both K loops are in the module (the PREFETCH branch is resolved by the driver):
        // the plain loop's 16 multiply-adds, the pipelined one's 16 in the loop and 16
        // after it.
        assert_eq!(ops.get(&MULADD), Some(&48), "{name}: multiply-adds");
        assert_eq!(
            ops.get(&LOAD),
            Some(&25),
            "{name}: 8 tiles per plain step, 8 + 8 pipelined, 1 zero tile"
        );
        assert_eq!(
            ops.get(&STORE),
            Some(&1),
            "{name}: one staging store in the epilogue"
        );
        seen.push((subgroups as u32, prefetch));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4, "four distinct variants: {seen:?}");
    // Without the capabilities the validator must refuse it (the checks above mean something).
    let module = naga::front::wgsl::parse_str(COOP_SOURCE).unwrap();
    for (without, missing) in [
        (
            Caps::default() | Caps::SHADER_FLOAT16 | Caps::SUBGROUP,
            "COOPERATIVE_MATRIX",
        ),
        (
            Caps::default() | Caps::SHADER_FLOAT16 | Caps::COOPERATIVE_MATRIX,
            "SUBGROUP",
        ),
    ] {
        assert!(
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), without)
                .validate(&module)
                .is_err(),
            "gemm_coop.wgsl validated without {missing}"
        );
    }
    spirv(
        "gemm_f16.wgsl",
        F16_SOURCE,
        Caps::default() | Caps::SHADER_FLOAT16,
    );
    spirv("f16_pack.wgsl", PACK_SOURCE, Caps::default());
    spirv_with(
        "f16_pack.wgsl",
        PACK_SOURCE,
        Caps::default(),
        &[("CODES", 1.0)],
    );
}
