//! The one error type of the solver crate.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The smallest value a budgeted resource can reach, each budget taken on its own.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetFloor {
    /// `"BitOps"`, `"size"` or the name of an extra resource.
    pub name: String,
    /// The budget as given (BitOps, bits of weights, or the resource's unit).
    pub budget: f64,
    /// The smallest achievable value under the layer rules (pins, ties, non-monotone rule).
    pub smallest: f64,
    /// The unit both values are in, for messages: `"bits"` for the size budget, empty for
    /// BitOps and extra resources (whose unit is their table's).
    pub unit: &'static str,
}

/// `v` with its unit: `545920 bits (68240 bytes)` for bits, else the number alone.
pub(crate) struct WithUnit(pub f64, pub &'static str);

impl fmt::Display for WithUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            "bits" => write!(f, "{} bits ({} bytes)", Num(self.0), Num(self.0 / 8.0)),
            "" => write!(f, "{}", Num(self.0)),
            u => write!(f, "{} {u}", Num(self.0)),
        }
    }
}

/// Everything that can go wrong building or solving a [`crate::Problem`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// Malformed input: NaN, negative, inconsistent lengths, unknown or duplicate names.
    /// `layer` is `None` when the field is not a layer's (for example `weight_bits`).
    InvalidInput {
        layer: Option<String>,
        field: String,
        reason: String,
    },
    /// No policy meets every budget. `binding` names the budget that cannot be met
    /// (or says that the budgets only conflict jointly); `floors` gives, for every
    /// budget, the smallest value it can reach on its own.
    Infeasible {
        binding: String,
        floors: Vec<BudgetFloor>,
    },
    /// The search stopped at its limit (the exact solver's `SolveOptions::node_limit`,
    /// the microlp backend's time limit) before it found any policy that meets every
    /// budget. Unlike [`Error::Infeasible`] this proves nothing: a larger limit may find
    /// one. `limit` names the limit as it was set (`"node limit of 1000 states"`).
    LimitReached { limit: String },
    /// A text file could not be parsed (`what` names the format and file kind).
    Parse { what: String, message: String },
    /// The microlp backend failed or returned something unusable.
    Backend(String),
}

impl Error {
    pub(crate) fn input(layer: Option<&str>, field: &str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            layer: layer.map(String::from),
            field: String::from(field),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidInput {
                layer: Some(l),
                field,
                reason,
            } => write!(f, "layer `{l}`, field `{field}`: {reason}"),
            Error::InvalidInput {
                layer: None,
                field,
                reason,
            } => write!(f, "field `{field}`: {reason}"),
            Error::Infeasible { binding, floors } => {
                write!(f, "infeasible: {binding}; smallest achievable values:")?;
                for (i, fl) in floors.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    let u = if fl.unit.is_empty() { "" } else { " " };
                    write!(
                        f,
                        "{sep}{} {}{u}{} (budget {}{u}{})",
                        fl.name,
                        Num(fl.smallest),
                        fl.unit,
                        Num(fl.budget),
                        fl.unit
                    )?;
                }
                Ok(())
            }
            Error::LimitReached { limit } => write!(
                f,
                "the {limit} was reached before any policy meeting every budget was found \
                 (none is proven to exist or not: raise the limit)"
            ),
            Error::Parse { what, message } => write!(f, "cannot parse {what}: {message}"),
            Error::Backend(m) => write!(f, "microlp backend: {m}"),
        }
    }
}

impl core::error::Error for Error {}

/// Prints integral values without a fractional part (BitOps, bits), others as given.
pub(crate) struct Num(pub f64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.is_finite() && v == (v as i64) as f64 && (v as i64).unsigned_abs() < (1u64 << 53) {
            write!(f, "{}", v as i64)
        } else {
            write!(f, "{v}")
        }
    }
}
