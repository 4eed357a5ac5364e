//! Exact mixed-precision bit-width search from learned layer-wise importance.
//!
//! The indicator file ([`IndicatorSet`]) holds, for every quantizable layer, the LSQ step
//! sizes learned at every candidate bit-width. The search picks one (weight bits,
//! activation bits) pair per layer minimising the summed indicators under BitOps, size and
//! other linear budgets, and proves the choice optimal.
//!
//! ```
//! use limpq_solver::{BitOpsBudget, IndicatorSet, Layer, Problem};
//! let layer = |name: &str, macs| Layer {
//!     name: name.into(), macs, params: macs / 10,
//!     weight_scale: vec![0.1, 0.05, 0.03], act_scale: vec![0.5, 0.3, 0.2], fixed: None,
//! };
//! let ind = IndicatorSet {
//!     model: "toy".into(), weight_bits: vec![2, 4, 8], act_bits: vec![2, 4, 8],
//!     layers: vec![layer("a", 1000), layer("b", 4000)], meta: vec![],
//! };
//! let sol = Problem::new(ind).bitops(BitOpsBudget::Uniform { weight: 4, act: 4 }).solve().unwrap();
//! assert!(sol.proof.optimal);
//! assert!(sol.policy.bitops <= 5000 * 16);
//! ```
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod error;
mod evaluate;
mod exact;
pub mod format;
#[cfg(feature = "std")]
pub mod gen;
#[cfg(feature = "microlp")]
mod milp;
mod options;
pub mod problem;
pub mod report;
pub mod solve;

pub use error::{BudgetFloor, Error};
pub use evaluate::Evaluation;
pub use format::{
    Frontier, FrontierPoint, IndicatorSet, Layer, LayerBits, Policy, ResourceLayer, ResourceTable,
};
pub use problem::{
    BitOpsBudget, Compiled, Ilp, Options, ParseBudgetError, Problem, Resource, SizeBudget, MAX_BITS,
};
pub use report::{EvaluationReport, SolveReport, SweepReport};
pub use solve::{Backend, Proof, Solution, SolveOptions, Usage, MAX_SWEEP_POINTS};
