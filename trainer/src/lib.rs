//! GPU trainer for limpq: WGSL compute kernels through wgpu, model descriptions, data
//! loading, LSQ joint indicator training, finetuning, the pipeline and the daemon.
//!
//! Without the default `gpu` feature only the model descriptions ([`model`], [`shapes`])
//! and the comparison of indicator files ([`analysis`]) are built: what a solver-only
//! `limpq` needs, with no wgpu.

pub mod analysis;
#[cfg(feature = "gpu")]
pub mod bench;
#[cfg(feature = "gpu")]
pub mod checkpoint;
#[cfg(feature = "gpu")]
pub mod daemon;
#[cfg(feature = "gpu")]
pub mod data;
#[cfg(feature = "gpu")]
pub mod dist;
#[cfg(feature = "gpu")]
pub mod engine;
#[cfg(feature = "gpu")]
pub mod gpu;
#[cfg(feature = "gpu")]
pub mod import;
#[cfg(feature = "gpu")]
pub mod interrupt;
#[cfg(feature = "gpu")]
pub mod kernels;
#[cfg(feature = "gpu")]
pub mod method;
pub mod model;
#[cfg(feature = "gpu")]
pub mod pipeline;
#[cfg(feature = "gpu")]
pub mod reference;
#[cfg(feature = "gpu")]
pub mod rng;
#[cfg(feature = "gpu")]
pub mod schedule;
pub mod shapes;
#[cfg(feature = "gpu")]
pub mod train;
#[cfg(feature = "gpu")]
pub mod weights;

/// What several modules' unit tests build alike.
#[cfg(all(test, feature = "gpu"))]
pub(crate) mod test_support {
    use limpq_solver::{LayerBits, Policy};

    /// A policy of `model` at `(layer, weight bits, act bits)`, its summary figures zero:
    /// for tests that read only the bits.
    pub(crate) fn policy(model: &str, layers: &[(&str, u32, u32)]) -> Policy {
        Policy {
            model: model.into(),
            layers: layers
                .iter()
                .map(|&(n, w, a)| LayerBits {
                    name: n.into(),
                    weight: w,
                    act: a,
                })
                .collect(),
            objective: 0.0,
            bitops: 0,
            weight_bits_total: 0,
            optimal: true,
            bitops_budget: None,
            size_budget_bits: None,
        }
    }
}
