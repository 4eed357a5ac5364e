//! Pricing a given policy against a problem: its objective, its use of every budget, and
//! whether it is one the search could have returned — with the solver's own accounting, so
//! nothing outside the solver recomputes BitOps, size or the objective.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::error::Error;
use crate::format::{LayerBits, Policy};
use crate::problem::{tol, Problem, RowKind};
use crate::solve::Usage;

/// What a policy costs under a [`Problem`] and whether it meets it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Evaluation {
    /// The policy in the indicator file's layer order, with its objective, BitOps, size and
    /// the problem's budgets filled in as the solver fills them (`optimal` is false: nothing
    /// was proven).
    pub policy: Policy,
    /// BitOps, size, then each extra resource, against their budgets.
    pub usage: Vec<Usage>,
    /// BitOps of the fixed layers at the policy's bits; not in `policy.bitops`.
    pub fixed_bitops: u64,
    /// Every budget met and every layer at a choice the search allows.
    pub feasible: bool,
    /// Why the policy is not feasible, one sentence each; empty when it is.
    pub violations: Vec<String>,
}

impl Problem {
    /// Prices a policy file's policy: [`Self::evaluate`] of its layers, after checking that
    /// it is a policy for this problem's model (its `model` is the indicator set's). The
    /// file's own objective and usage are not read: they are computed anew. What
    /// `limpq solve --price` and the C ABI's policy-file entry points use.
    pub fn evaluate_policy(&self, policy: &Policy) -> Result<Evaluation, Error> {
        if policy.model != self.indicators.model {
            return Err(Error::input(
                None,
                "model",
                format!(
                    "the policy is for model '{}', the indicators are of '{}' (if they are the \
                     same network, make the policy's `model` say so)",
                    policy.model, self.indicators.model
                ),
            ));
        }
        self.evaluate(&policy.layers)
    }

    /// Prices `layers` (one entry per layer of the indicator set, any order) under this
    /// problem: the objective as the search counts it (Σ act indicator + α · weight
    /// indicator over searchable layers; the act term left out with weight-only), BitOps
    /// of the searchable layers, size of all layers, each extra resource, and feasibility:
    /// every budget met, fixed layers at their fixed bits, and every searchable layer (or
    /// tie group) at a choice the search allows (candidate bits, pins, ties, weight-only,
    /// the non-monotone rule).
    ///
    /// Errors when the problem itself is invalid, when the policy names a layer twice,
    /// misses one or names one the indicator set lacks, or puts a searchable layer at bits
    /// that have no indicator in the file (its objective is then undefined).
    pub fn evaluate(&self, layers: &[LayerBits]) -> Result<Evaluation, Error> {
        let c = self.compile()?;
        let ind = &self.indicators;
        let n = ind.layers.len();
        let index: BTreeMap<&str, usize> = ind
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.as_str(), i))
            .collect();
        let mut bits: Vec<Option<(u32, u32)>> = vec![None; n];
        for lb in layers {
            let &i = index.get(lb.name.as_str()).ok_or_else(|| {
                Error::input(
                    Some(&lb.name),
                    "policy",
                    "no such layer in the indicator set",
                )
            })?;
            if bits[i].replace((lb.weight, lb.act)).is_some() {
                return Err(Error::input(Some(&lb.name), "policy", "layer listed twice"));
            }
        }
        let mut all = Vec::with_capacity(n);
        for (l, b) in ind.layers.iter().zip(&bits) {
            all.push(b.ok_or_else(|| {
                Error::input(Some(&l.name), "policy", "layer missing from the policy")
            })?);
        }

        let mut violations = Vec::new();
        for (l, &(w, a)) in ind.layers.iter().zip(&all) {
            if let Some((fw, fa)) = l.fixed {
                if (w, a) != (fw, fa) {
                    violations.push(format!(
                        "layer `{}` is fixed at W{fw}A{fa} in the indicator set, the policy has W{w}A{a}",
                        l.name
                    ));
                }
            }
        }

        // The objective: each group's cost as the compiled problem holds it when the
        // group's bits are an allowed choice, else from the indicators directly.
        let o = &self.options;
        let mut objective = 0.0;
        for (g, group) in c.group_layers.iter().enumerate() {
            let want: Vec<(u32, u32)> = group.iter().map(|&l| all[l]).collect();
            let full = &c.full;
            let found = (full.start[g]..full.start[g + 1]).find(|&ch| full.bits_of(ch) == want);
            match found {
                Some(ch) => objective += full.cost[ch],
                None => {
                    let names: Vec<&str> =
                        group.iter().map(|&l| ind.layers[l].name.as_str()).collect();
                    let got: Vec<String> = want.iter().map(|(w, a)| format!("W{w}A{a}")).collect();
                    violations.push(format!(
                        "{} `{}` at {}: not a choice the search allows (candidate bits, pins, ties, weight-only or the non-monotone rule exclude it)",
                        if names.len() == 1 { "layer" } else { "tied layers" },
                        names.join("`, `"),
                        got.join(", ")
                    ));
                    let mut cost = 0.0;
                    for &l in group {
                        let layer = &ind.layers[l];
                        let (w, a) = all[l];
                        let ws = scale(&layer.weight_scale, &ind.weight_bits, w)
                            .ok_or_else(|| no_indicator(&layer.name, "weight_scale", w))?;
                        let as_ = if o.weight_only.is_some() {
                            0.0
                        } else {
                            scale(&layer.act_scale, &ind.act_bits, a)
                                .ok_or_else(|| no_indicator(&layer.name, "act_scale", a))?
                        };
                        cost += as_ + o.alpha * ws;
                    }
                    objective += cost;
                }
            }
        }

        let (policy, usage, fixed_bitops) = c.account(&all, objective, false);
        // `account` lists BitOps, size, then the extra resources in order.
        let kinds = [RowKind::BitOps, RowKind::Size]
            .into_iter()
            .chain((0..).map(RowKind::Extra));
        for (u, kind) in usage.iter().zip(kinds) {
            if let Some(b) = u.budget {
                if u.used > b + tol(kind, b) {
                    violations.push(format!(
                        "{} {} is over its budget {}",
                        u.name,
                        crate::error::Num(u.used),
                        crate::error::Num(b)
                    ));
                }
            }
        }
        Ok(Evaluation {
            policy,
            usage,
            fixed_bitops,
            feasible: violations.is_empty(),
            violations,
        })
    }
}

fn scale(scales: &[f64], bits: &[u32], b: u32) -> Option<f64> {
    bits.iter()
        .position(|&x| x == b)
        .and_then(|i| scales.get(i).copied())
}

fn no_indicator(layer: &str, field: &str, b: u32) -> Error {
    Error::input(
        Some(layer),
        field,
        format!("the indicator file has no value at {b} bits"),
    )
}
