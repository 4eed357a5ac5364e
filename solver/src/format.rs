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

/// An extra linear resource (latency, energy, ...): a value per layer per
/// (weight bits, act bits) choice. Its budget is given next to it (`Problem::resource`).
///
/// Every searchable layer must list every (weight, act) pair it may take; a fixed layer
/// may list its fixed pair (counted into the total) or be left out (counted as 0).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ResourceTable {
    /// Name used in reports and errors, e.g. `"latency_us"`.
    pub name: String,
    pub layers: Vec<ResourceLayer>,
}

/// One layer's row of a [`ResourceTable`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ResourceLayer {
    pub name: String,
    /// `(weight_bits, act_bits, value)` triples.
    pub costs: Vec<(u32, u32, f64)>,
}

/// One point of a Pareto sweep over BitOps budgets.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FrontierPoint {
    pub bitops_budget: u64,
    pub objective: f64,
    pub bitops: u64,
    pub weight_bits_total: u64,
    pub optimal: bool,
    pub layers: Vec<LayerBits>,
}

/// The optimal policies for a range of BitOps budgets (output of `limpq solve --sweep`).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Frontier {
    pub model: String,
    pub points: Vec<FrontierPoint>,
}

#[cfg(feature = "serde")]
mod text {
    //! RON and JSON reading and writing. Writing files (atomically) is the caller's job.
    use super::{Frontier, IndicatorSet, Policy, ResourceTable};
    use crate::Error;
    use alloc::format;
    use alloc::string::String;

    fn ron_options() -> ron::Options {
        ron::Options::default()
    }

    macro_rules! text_io {
        ($ty:ty, $what:literal) => {
            impl $ty {
                #[doc = concat!("Parses ", $what, " from RON text.")]
                pub fn from_ron_str(s: &str) -> Result<Self, Error> {
                    ron_options().from_str(s).map_err(|e| Error::Parse {
                        what: String::from(concat!("RON ", $what)),
                        message: format!("{e}"),
                    })
                }
                #[doc = concat!("Parses ", $what, " from JSON text.")]
                pub fn from_json_str(s: &str) -> Result<Self, Error> {
                    serde_json::from_str(s).map_err(|e| Error::Parse {
                        what: String::from(concat!("JSON ", $what)),
                        message: format!("{e}"),
                    })
                }
                /// Pretty RON text.
                pub fn to_ron_string(&self) -> String {
                    ron_options()
                        .to_string_pretty(self, ron::ser::PrettyConfig::default())
                        .unwrap_or_else(|e| format!("// serialisation failed: {e}\n"))
                }
                /// Pretty JSON text.
                pub fn to_json_string(&self) -> String {
                    serde_json::to_string_pretty(self)
                        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
                }
            }
        };
    }
    text_io!(IndicatorSet, "indicator set");
    text_io!(Policy, "policy");
    text_io!(ResourceTable, "resource table");
    text_io!(Frontier, "frontier");
}
