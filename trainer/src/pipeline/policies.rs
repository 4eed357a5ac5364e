//! The policies compared at a budget: the searched one (exact solver), the uniform one, and
//! random ones drawn at the same BitOps.
//!
//! Random policy rule (documented in docs/PIPELINE.md): every searchable layer draws its
//! weight and activation bits uniformly from the candidates; while the policy is over the
//! budget, a random layer that can still go lower drops its larger bit-width (either one on a
//! tie) by one candidate step; then, while some single one-step raise of one layer's weight
//! or activation bits still fits the budget, one such raise is picked uniformly and applied.
//! The draw is accepted when its BitOps reach at least [`RANDOM_FLOOR`] of the budget and it
//! differs from the earlier draws at that budget; otherwise it is redrawn (at most
//! [`RANDOM_ATTEMPTS`] times per policy, after which a repeat is accepted, and failing the
//! floor altogether is an error). The generator is seeded from the run's seed and the budget.

use limpq_solver::{BitOpsBudget, Error as SolverError, IndicatorSet, LayerBits, Policy, Problem};

use crate::rng::SeededRng;

/// A random policy must use at least this fraction of its BitOps budget.
pub const RANDOM_FLOOR: f64 = 0.9;
/// Redraws allowed per random policy.
pub const RANDOM_ATTEMPTS: usize = 2000;

/// Indices of the searchable (not `fixed`) layers.
pub fn searchable(ind: &IndicatorSet) -> Vec<usize> {
    (0..ind.layers.len())
        .filter(|&i| ind.layers[i].fixed.is_none())
        .collect()
}

/// MACs of the searchable layers, in order.
pub fn searchable_macs(ind: &IndicatorSet) -> Vec<u64> {
    searchable(ind)
        .into_iter()
        .map(|i| ind.layers[i].macs)
        .collect()
}

/// A full policy from the searchable layers' `(weight, act)` bits, fixed layers at their
/// fixed bits, with the objective, BitOps and size the solver's [`Problem::evaluate`] gives
/// it under the BitOps budget.
pub fn policy_from_bits(
    ind: &IndicatorSet,
    alpha: f64,
    searchable_bits: &[(u32, u32)],
    bitops_budget: Option<u64>,
) -> Result<Policy, String> {
    let idx = searchable(ind);
    if idx.len() != searchable_bits.len() {
        return Err(format!(
            "{} searchable layers but {} bit pairs",
            idx.len(),
            searchable_bits.len()
        ));
    }
    let mut bits = searchable_bits.iter();
    let layers: Vec<LayerBits> = ind
        .layers
        .iter()
        .map(|l| {
            let (weight, act) = match l.fixed {
                Some(f) => f,
                None => *bits.next().unwrap_or(&(0, 0)),
            };
            LayerBits {
                name: l.name.clone(),
                weight,
                act,
            }
        })
        .collect();
    let mut problem = Problem::new(ind.clone()).alpha(alpha);
    if let Some(b) = bitops_budget {
        problem = problem.bitops(BitOpsBudget::Absolute(b));
    }
    problem
        .evaluate(&layers)
        .map(|e| e.policy)
        .map_err(|e| e.to_string())
}

/// Every searchable layer at `weight`/`act` bits.
pub fn uniform_policy(
    ind: &IndicatorSet,
    alpha: f64,
    weight: u32,
    act: u32,
    bitops_budget: u64,
) -> Result<Policy, String> {
    let n = searchable(ind).len();
    policy_from_bits(ind, alpha, &vec![(weight, act); n], Some(bitops_budget))
}

/// The searched policy: the exact solver under the BitOps budget. When the non-monotone
/// rule makes the budget infeasible, solves again with the rule off and says so in the
/// returned note.
pub fn searched_policy(
    ind: &IndicatorSet,
    alpha: f64,
    bitops_budget: u64,
) -> Result<(Policy, Option<String>), SolverError> {
    let problem = Problem::new(ind.clone())
        .alpha(alpha)
        .bitops(BitOpsBudget::Absolute(bitops_budget));
    match problem.solve() {
        Ok(s) => Ok((s.policy, None)),
        Err(SolverError::Infeasible { binding, .. }) => {
            let s = problem.non_monotone_rule(false).solve()?;
            Ok((
                s.policy,
                Some(format!(
                    "infeasible with the non-monotone rule ({binding}); solved without it"
                )),
            ))
        }
        Err(e) => Err(e),
    }
}

/// The generator of the random policies of one run seed at one budget.
pub fn random_rng(seed: u64, bitops_budget: u64) -> SeededRng {
    SeededRng::new(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ bitops_budget.rotate_left(17) ^ 0x5EED_4A4D,
    )
}

/// One random draw by the module's rule, before the acceptance test: searchable layers'
/// `(weight, act)` bits. `None` when even the lowest bits exceed the budget.
pub fn draw_random_bits(
    macs: &[u64],
    weight_bits: &[u32],
    act_bits: &[u32],
    bitops_budget: u64,
    rng: &mut SeededRng,
) -> Option<Vec<(u32, u32)>> {
    let mut wb = weight_bits.to_vec();
    wb.sort_unstable();
    let mut ab = act_bits.to_vec();
    ab.sort_unstable();
    if wb.is_empty() || ab.is_empty() {
        return None;
    }
    // Indices into the sorted candidate lists.
    let mut wi: Vec<usize> = macs.iter().map(|_| rng.below(wb.len())).collect();
    let mut ai: Vec<usize> = macs.iter().map(|_| rng.below(ab.len())).collect();
    let cost = |l: usize, w: usize, a: usize| -> u128 {
        u128::from(macs[l]) * u128::from(wb[w]) * u128::from(ab[a])
    };
    let mut total: u128 = (0..macs.len()).map(|l| cost(l, wi[l], ai[l])).sum();
    let budget = u128::from(bitops_budget);
    // Lower until within the budget.
    while total > budget {
        let lowerable: Vec<usize> = (0..macs.len())
            .filter(|&l| wi[l] > 0 || ai[l] > 0)
            .collect();
        if lowerable.is_empty() {
            return None;
        }
        let l = lowerable[rng.below(lowerable.len())];
        let before = cost(l, wi[l], ai[l]);
        let lower_w = if wi[l] == 0 {
            false
        } else if ai[l] == 0 {
            true
        } else if wb[wi[l]] != ab[ai[l]] {
            wb[wi[l]] > ab[ai[l]]
        } else {
            rng.below(2) == 0
        };
        if lower_w {
            wi[l] -= 1;
        } else {
            ai[l] -= 1;
        }
        total = total - before + cost(l, wi[l], ai[l]);
    }
    // Raise while some one-step raise fits: the draw ends maximal.
    loop {
        let mut raises = Vec::new();
        for l in 0..macs.len() {
            let here = cost(l, wi[l], ai[l]);
            if wi[l] + 1 < wb.len() && total - here + cost(l, wi[l] + 1, ai[l]) <= budget {
                raises.push((l, true));
            }
            if ai[l] + 1 < ab.len() && total - here + cost(l, wi[l], ai[l] + 1) <= budget {
                raises.push((l, false));
            }
        }
        if raises.is_empty() {
            break;
        }
        let (l, raise_w) = raises[rng.below(raises.len())];
        let before = cost(l, wi[l], ai[l]);
        if raise_w {
            wi[l] += 1;
        } else {
            ai[l] += 1;
        }
        total = total - before + cost(l, wi[l], ai[l]);
    }
    Some((0..macs.len()).map(|l| (wb[wi[l]], ab[ai[l]])).collect())
}

/// `count` random policies at the budget by the module's rule.
pub fn random_policies(
    ind: &IndicatorSet,
    alpha: f64,
    bitops_budget: u64,
    count: usize,
    seed: u64,
) -> Result<Vec<Policy>, String> {
    let macs = searchable_macs(ind);
    let mut rng = random_rng(seed, bitops_budget);
    let floor = (bitops_budget as f64 * RANDOM_FLOOR).ceil() as u64;
    let mut drawn: Vec<Vec<(u32, u32)>> = Vec::new();
    for k in 0..count {
        let mut fallback = None;
        let mut picked = None;
        for _ in 0..RANDOM_ATTEMPTS {
            let Some(bits) = draw_random_bits(
                &macs,
                &ind.weight_bits,
                &ind.act_bits,
                bitops_budget,
                &mut rng,
            ) else {
                return Err(format!(
                    "no policy fits {bitops_budget} BitOps (the lowest bits exceed it)"
                ));
            };
            let b: u64 = macs
                .iter()
                .zip(&bits)
                .map(|(m, (w, a))| m * u64::from(*w) * u64::from(*a))
                .sum();
            if b < floor {
                continue;
            }
            if drawn.contains(&bits) {
                fallback.get_or_insert(bits);
                continue;
            }
            picked = Some(bits);
            break;
        }
        let bits = picked.or(fallback).ok_or_else(|| {
            format!(
                "random policy {k}: no draw reached {:.0}% of {bitops_budget} BitOps in \
                 {RANDOM_ATTEMPTS} attempts",
                RANDOM_FLOOR * 100.0
            )
        })?;
        drawn.push(bits);
    }
    drawn
        .iter()
        .map(|bits| policy_from_bits(ind, alpha, bits, Some(bitops_budget)))
        .collect()
}
