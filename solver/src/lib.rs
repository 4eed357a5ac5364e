//! Exact mixed-precision bit-width search from learned layer-wise importance.
//!
//! The indicator file ([`IndicatorSet`]) holds, for every quantizable layer, the LSQ step
//! sizes learned at every candidate bit-width. The search picks one (weight bits,
//! activation bits) pair per layer minimising the summed indicators under BitOps, size and
//! other linear budgets, and proves the choice optimal.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod format;

pub use format::{IndicatorSet, Layer, LayerBits, Policy};
