//! Benchmarks of the GPU trainer: each a function taking a config and returning the
//! figures, so the CLI only prints them.
//!
//! - [`train`]: training-step throughput on synthetic data (`limpq bench train`).
//! - [`gemm`]: GEMM TFLOP/s of the f32, f16 and tensor-core kernels (`limpq bench gemm`).
//! - [`conv`]: the conv kernels per distinct conv shape of a model (`limpq bench conv`).
//!
//! - [`report`]: their figures as readable text and as JSON lines.
//!
//! Every kernel is checked against the CPU reference ([`crate::reference`]) before it is
//! timed; a wrong kernel is reported, not timed. Nothing here asserts a speed.
use std::fmt;
use std::time::{Duration, Instant};

use crate::engine::EngineError;
use crate::gpu::{Gpu, GpuError};
use crate::kernels::{Recorder, Tensor};
use crate::model::ModelError;
use crate::pipeline::report::median;

/// The kernels' own names for what a bench config chooses (conv algorithm and policy, half
/// GEMM kind), named here so that a caller of the benches reaches no kernel module.
pub use crate::kernels::conv::{ConvAlgo, ConvPolicy};
pub use crate::kernels::gemm_f16::HalfKind;

pub mod conv;
pub mod gemm;
pub mod report;
pub mod train;

/// Why a benchmark did not run (a kernel that fails its check is a result, not an error).
#[derive(Debug)]
pub enum BenchError {
    Gpu(GpuError),
    Model(ModelError),
    Engine(EngineError),
    /// A setting out of range; names the field.
    Config(String),
    /// A tensor this adapter cannot hold, refused before anything is allocated.
    DoesNotFit {
        /// Which tensor ("the input batch", "operand A (m×k)", …).
        what: String,
        bytes: u64,
        limit: u64,
        adapter: String,
    },
    /// The run itself went wrong (a non-finite loss).
    Failed(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Gpu(e) => write!(f, "{e}"),
            BenchError::Model(e) => write!(f, "{e}"),
            BenchError::Engine(e) => write!(f, "{e}"),
            BenchError::Config(m) | BenchError::Failed(m) => f.write_str(m),
            BenchError::DoesNotFit {
                what,
                bytes,
                limit,
                adapter,
            } => write!(
                f,
                "{what} needs {bytes} bytes, more than this adapter's largest storage buffer \
                 ({limit} bytes, {adapter}); use a smaller size or batch"
            ),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Gpu(e) => Some(e),
            BenchError::Model(e) => Some(e),
            BenchError::Engine(e) => Some(e),
            _ => None,
        }
    }
}

impl From<GpuError> for BenchError {
    fn from(e: GpuError) -> BenchError {
        BenchError::Gpu(e)
    }
}

impl From<ModelError> for BenchError {
    fn from(e: ModelError) -> BenchError {
        BenchError::Model(e)
    }
}

impl From<EngineError> for BenchError {
    fn from(e: EngineError) -> BenchError {
        BenchError::Engine(e)
    }
}

/// Refuses, before anything is allocated, a tensor of `elements` f32 that this adapter could
/// not hold (the same test as [`Tensor`]'s allocation; such a tensor would first be built in
/// host memory, where a huge one aborts the process instead of failing cleanly).
pub fn check_fits(gpu: &Gpu, what: &str, elements: usize) -> Result<(), BenchError> {
    if !Tensor::fits(gpu, elements) {
        return Err(BenchError::DoesNotFit {
            what: what.to_string(),
            bytes: Tensor::padded_bytes(elements),
            limit: gpu.limits.max_storage_buffer_binding_size,
            adapter: gpu.summary.name.clone(),
        });
    }
    Ok(())
}

/// Wall time of one recorded submission, from submit to device idle (the device is idled
/// first, so earlier work is not counted).
pub fn time_submission(gpu: &Gpu, rec: Recorder<'_>) -> Result<Duration, GpuError> {
    gpu.wait()?;
    let t = Instant::now();
    rec.submit()?;
    gpu.wait()?;
    Ok(t.elapsed())
}

/// Median of timed samples (mean of the middle two for an even count); zero for none.
pub fn median_duration(v: &[Duration]) -> Duration {
    let secs: Vec<f64> = v.iter().map(Duration::as_secs_f64).collect();
    let m = median(&secs);
    if m.is_finite() {
        Duration::from_secs_f64(m)
    } else {
        Duration::ZERO
    }
}

/// Relative Frobenius error ‖got − want‖ / ‖want‖ and the worst absolute error.
pub fn errors(got: &[f32], want: &[f64]) -> (f64, f64) {
    let (mut num, mut den, mut worst) = (0.0f64, 0.0f64, 0.0f64);
    for (&g, &w) in got.iter().zip(want) {
        let d = f64::from(g) - w;
        num += d * d;
        den += w * w;
        worst = worst.max(d.abs());
    }
    ((num / den.max(f64::MIN_POSITIVE)).sqrt(), worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_durations() {
        let ms = Duration::from_millis;
        assert_eq!(median_duration(&[]), Duration::ZERO);
        assert_eq!(median_duration(&[ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(
            median_duration(&[ms(4), ms(1), ms(2), ms(3)]),
            ms(2) + ms(1) / 2
        );
    }

    #[test]
    fn relative_and_worst_errors() {
        let (rel, worst) = errors(&[1.0, 2.0, 2.0], &[1.0, 2.0, 4.0]);
        assert!((worst - 2.0).abs() < 1e-12);
        assert!((rel - (4.0f64 / 21.0).sqrt()).abs() < 1e-12, "{rel}");
        assert_eq!(errors(&[0.0], &[0.0]), (0.0, 0.0));
    }
}
