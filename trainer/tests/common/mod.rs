//! Helpers shared by the GPU kernel tests: get an adapter or skip, compare with a tolerance.
//!
//! Use from a test file with `mod common;` and:
//! ```ignore
//! let Some(gpu) = common::gpu_or_skip("gemm") else { return };
//! common::assert_close("gemm 3x5x7", &got, &want, common::Tol::sum_of(k));
//! ```
#![allow(dead_code)] // each test binary uses a different subset

use limpq_trainer::gpu::{Gpu, GpuError, GpuOptions};
use std::sync::OnceLock;

/// Whether this test binary runs the kernel tests on wgpu's GL backend: `tests/backend_gl.rs`
/// includes kernel test files, which reach their device through this module.
pub fn on_gl() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .is_some_and(|s| s.starts_with("backend_gl"))
}

/// The adapter options of this test binary: GL in `backend_gl`, else the environment's
/// (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME`, `LIMPQ_ADAPTER`).
pub fn gpu_options() -> GpuOptions {
    if on_gl() {
        GpuOptions::from_env()
            .with_backend_list("gl")
            .expect("a known backend")
    } else {
        GpuOptions::from_env()
    }
}

/// One device per test binary: creating a Vulkan device on lavapipe costs ~100 ms and tests
/// run on several threads.
pub fn shared_gpu() -> &'static Result<Gpu, GpuError> {
    static GPU: OnceLock<Result<Gpu, GpuError>> = OnceLock::new();
    GPU.get_or_init(|| Gpu::new(&gpu_options()))
}

/// On GL one test at a time uses the device: wgpu's GL backend guards its one context with
/// a lock it gives up on (panics) after 6 seconds, which tests waiting on each other's work
/// on a busy software adapter exceed. The calling test thread holds the lock until it ends
/// (libtest runs each test on a thread of its own; a thread that holds it already, as when
/// tests run on one thread, keeps it).
fn serialize_gl(gpu: &Gpu) {
    use std::cell::RefCell;
    use std::sync::{Mutex, MutexGuard};
    static LOCK: Mutex<()> = Mutex::new(());
    thread_local! {
        static HELD: RefCell<Option<MutexGuard<'static, ()>>> = const { RefCell::new(None) };
    }
    if gpu.summary.backend != "Gl" {
        return;
    }
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        if h.is_none() {
            // A test that panicked while holding it poisoned it; the device is still usable.
            *h = Some(LOCK.lock().unwrap_or_else(|p| p.into_inner()));
        }
    });
}

/// The shared GPU, or `None` after printing why the calling test skips. Only "no adapter"
/// skips; any other failure to create the device fails the test.
pub fn gpu_or_skip(test: &str) -> Option<&'static Gpu> {
    match shared_gpu() {
        Ok(g) => {
            serialize_gl(g);
            Some(g)
        }
        Err(e @ GpuError::NoAdapter { .. }) => {
            eprintln!("SKIP {test}: {e}");
            None
        }
        Err(e) => panic!("{test}: GPU context failed: {e}"),
    }
}

/// Tolerance `|got - want| <= abs + rel * |want|`.
#[derive(Debug, Clone, Copy)]
pub struct Tol {
    pub abs: f32,
    pub rel: f32,
}

impl Tol {
    /// For a value that is a sum of `terms` products of U(-1,1) numbers: f32 rounding error
    /// grows like sqrt(terms) × the typical magnitude (sqrt(terms / 9)), so abs scales with
    /// `terms` itself; `1e-5 · terms` is ~50× the expected rounding, far below any indexing
    /// error (a wrong or missing term moves the value by ~0.3).
    pub fn sum_of(terms: usize) -> Tol {
        Tol {
            abs: 1e-5 * (terms.max(1) as f32),
            rel: 1e-5,
        }
    }
}

/// Panics naming the first element out of tolerance (and how many are), or on NaN / length
/// mismatch. Returns the worst absolute error for reporting.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: Tol) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length differs");
    let mut worst = 0.0f32;
    let mut bad = Vec::new();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        if err.is_nan() || err > tol.abs + tol.rel * w.abs() {
            bad.push((i, g, w));
        }
        if err > worst {
            worst = err;
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {} of {} elements out of tolerance {tol:?}; first: index {} got {} want {}",
        bad.len(),
        got.len(),
        bad[0].0,
        bad[0].1,
        bad[0].2
    );
    worst
}

/// The whole-network f16 override (`LIMPQ_CONV_ALGO=f16gemm`) as a network's conv policy.
pub const F16_OVERRIDE: limpq_trainer::kernels::conv::ConvPolicy =
    limpq_trainer::kernels::conv::ConvPolicy::Force(
        limpq_trainer::kernels::conv::ConvAlgo::F16Gemm,
    );

/// A device the whole-network f16 override ([`F16_OVERRIDE`]) can run on, or `None` after
/// printing why the calling test skips: no adapter, or one without SHADER_F16 (whose refusal
/// must name the override and the missing feature).
pub fn f16_override_gpu_or_skip(test: &str) -> Option<Gpu> {
    let gpu = match Gpu::new(&gpu_options()) {
        Ok(g) => g,
        Err(e @ GpuError::NoAdapter { .. }) => {
            eprintln!("SKIP {test}: {e}");
            return None;
        }
        Err(e) => panic!("{test}: Gpu::new: {e}"),
    };
    match F16_OVERRIDE.rule(&gpu) {
        Ok(_) => Some(gpu),
        Err(GpuError::InvalidOption(m)) => {
            assert!(m.contains("f16gemm") && m.contains("SHADER_F16"), "{m}");
            eprintln!("SKIP {test}: adapter without SHADER_F16: {m}");
            None
        }
        Err(e) => panic!("{test}: Gpu::new with the f16gemm override: {e}"),
    }
}

/// A fresh folder under the system temp dir, unique to this test binary's process and
/// `tag` (so tags must differ within one test file), removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let exe = std::env::current_exe().ok();
        let suite = exe
            .as_deref()
            .and_then(|p| p.file_stem())
            .and_then(|s| s.to_str())
            .unwrap_or("test");
        let p = std::env::temp_dir().join(format!("limpq-{suite}-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The first tensor whose bits differ (names and kinds must match), or None: for the
/// tests that a stopped and resumed run ends where an uninterrupted one does.
pub fn first_difference(
    a: &[limpq_trainer::checkpoint::NamedTensor],
    b: &[limpq_trainer::checkpoint::NamedTensor],
) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("{} tensors vs {}", a.len(), b.len()));
    }
    for (x, y) in a.iter().zip(b) {
        assert_eq!((&x.name, x.kind), (&y.name, y.kind));
        let bits = |t: &limpq_trainer::checkpoint::NamedTensor| {
            t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        if bits(x) != bits(y) {
            let worst = x
                .data
                .iter()
                .zip(&y.data)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0f32, f32::max);
            return Some(format!("{} differs (max |Δ| {worst:e})", x.name));
        }
    }
    None
}

/// A progress callback that calls `on_step(global step)` after every training step's event
/// (how the resume tests stop a run at a chosen step, as the daemon does).
pub fn on_steps<'a>(
    on_step: &'a mut dyn FnMut(usize),
) -> impl FnMut(&limpq_trainer::train::Event) + 'a {
    let mut global = 0;
    move |e| {
        if let limpq_trainer::train::Event::Step { .. } = e {
            global += 1;
            on_step(global);
        }
    }
}

/// The conv algorithms every conv test runs on `gpu`: direct, implicit GEMM, register-blocked,
/// and subgroup-broadcast where the device has subgroups of 8 (a note says when it has not).
pub fn conv_algos(gpu: &Gpu) -> Vec<limpq_trainer::kernels::conv::ConvAlgo> {
    use limpq_trainer::kernels::conv::ConvAlgo;
    let mut algos = vec![ConvAlgo::Direct, ConvAlgo::ImplicitGemm, ConvAlgo::Blocked];
    if gpu.subgroup8 {
        algos.push(ConvAlgo::Broadcast);
    } else {
        eprintln!(
            "note: {} has no subgroups of 8: ConvAlgo::Broadcast not run",
            gpu.summary.name
        );
    }
    algos
}

/// What `ConvAlgo::Auto` must pick for every conv op on a software adapter: `Broadcast` with
/// subgroups of 8, else `Blocked`.
pub fn software_conv_algo(gpu: &Gpu) -> limpq_trainer::kernels::conv::ConvAlgo {
    use limpq_trainer::kernels::conv::ConvAlgo;
    if gpu.subgroup8 {
        ConvAlgo::Broadcast
    } else {
        ConvAlgo::Blocked
    }
}

/// The backward-weight kernel a conv op built with `algo` runs: `Blocked` and `Broadcast`
/// their own, every other algorithm the per-weight reduction (`Direct`).
pub fn backward_weight_algo(
    algo: limpq_trainer::kernels::conv::ConvAlgo,
) -> limpq_trainer::kernels::conv::ConvAlgo {
    use limpq_trainer::kernels::conv::ConvAlgo;
    match algo {
        ConvAlgo::Blocked | ConvAlgo::Broadcast => algo,
        _ => ConvAlgo::Direct,
    }
}

/// An IDX file of unsigned bytes (MNIST's format): the magic, `dims` big-endian, `data`.
pub fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}
