//! The indicator and policy formats: the interface between the trainer and the solver.
//!
//! Field names are part of the file format (see `docs/FORMATS.md`); do not rename them.

use alloc::string::String;
use alloc::vec::Vec;

/// Learned importance indicators of a whole model: one LSQ step size per layer per
/// candidate bit-width, for weights and for activations.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct IndicatorSet {
    /// Model name, e.g. `"resnet20"`.
    pub model: String,
    /// Candidate weight bit-widths; `Layer::weight_scale` is aligned with it.
    pub weight_bits: Vec<u32>,
    /// Candidate activation bit-widths; `Layer::act_scale` is aligned with it.
    pub act_bits: Vec<u32>,
    /// Every quantizable layer, searchable or fixed.
    pub layers: Vec<Layer>,
    /// Free-form provenance (seed, data, settings) written by the trainer.
    #[cfg_attr(feature = "serde", serde(default))]
    pub meta: Vec<(String, String)>,
}

/// One quantizable layer's cost figures and indicators.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Layer {
    pub name: String,
    /// Multiply-accumulates of one forward pass of one input.
    pub macs: u64,
    /// Number of weights.
    pub params: u64,
    /// Learned weight step size at each of `IndicatorSet::weight_bits`.
    pub weight_scale: Vec<f64>,
    /// Learned activation step size at each of `IndicatorSet::act_bits`.
    pub act_scale: Vec<f64>,
    /// `Some((weight_bits, act_bits))` for a layer that is not searched (stem, classifier).
    #[cfg_attr(feature = "serde", serde(default))]
    pub fixed: Option<(u32, u32)>,
}

/// Bits chosen for one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LayerBits {
    pub name: String,
    pub weight: u32,
    pub act: u32,
}

/// A solved bit-width assignment: the solver's output and the finetuner's input.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Policy {
    pub model: String,
    /// Every layer, fixed ones included, in the indicator file's order.
    pub layers: Vec<LayerBits>,
    /// Objective value: Σ act_scale + α · weight_scale over searched layers.
    pub objective: f64,
    /// BitOps of the policy (MACs · weight bits · act bits), over the layers named in `bitops_counted`.
    pub bitops: u64,
    /// Weight storage of the whole model in bits, fixed layers at their fixed bits.
    pub weight_bits_total: u64,
    /// Whether the solver proved the policy optimal.
    pub optimal: bool,
    /// The BitOps budget the policy was solved under, if any.
    pub bitops_budget: Option<u64>,
    /// The weight-size budget in bits, if any.
    pub size_budget_bits: Option<u64>,
}
