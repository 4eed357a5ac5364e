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

/// α of a search with measured sensitivity (the default search, the `sensitivity` control):
/// the solver's [`IndicatorSet::SENSITIVITY_ALPHA`].
pub const SENSITIVITY_ALPHA: f64 = IndicatorSet::SENSITIVITY_ALPHA;

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
    // Drawn so far, for the repeat test in one lookup rather than a walk of every draw.
    let mut seen: std::collections::HashSet<Vec<(u32, u32)>> = Default::default();
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
            if seen.contains(&bits) {
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
        seen.insert(bits.clone());
        drawn.push(bits);
    }
    drawn
        .iter()
        .map(|bits| policy_from_bits(ind, alpha, bits, Some(bitops_budget)))
        .collect()
}

/// Sets a meta entry, replacing an earlier one of the same key.
fn set_meta(ind: &mut IndicatorSet, key: &str, value: String) {
    ind.meta.retain(|(k, _)| k != key);
    ind.meta.push((key.to_string(), value));
}

/// The MACs-only control: every searchable layer gets the same indicator profile, `2^-b`
/// at `b` bits for weights and activations alike (the shape of an LSQ init step as bits
/// rise), so the search sees nothing of a layer but its MACs and parameters: it raises the
/// bits of the layers that are cheapest to raise. Fixed layers are kept as they are.
pub fn macs_only_indicators(ind: &IndicatorSet) -> IndicatorSet {
    let profile =
        |bits: &[u32]| -> Vec<f64> { bits.iter().map(|&b| (-(b as f64)).exp2()).collect() };
    let mut out = ind.clone();
    for l in out.layers.iter_mut().filter(|l| l.fixed.is_none()) {
        l.weight_scale = profile(&ind.weight_bits);
        l.act_scale = profile(&ind.act_bits);
    }
    set_meta(&mut out, "source", "macs-only control".into());
    out
}

/// The shuffled control: the searchable layers' indicator rows (a layer's weight and
/// activation values together) permuted among the searchable layers with a draw seeded by
/// `seed`, so the search keeps the indicators' values but not which layer has which. MACs,
/// parameters and fixed layers stay where they are.
pub fn shuffled_indicators(ind: &IndicatorSet, seed: u64) -> IndicatorSet {
    let idx = searchable(ind);
    let mut order = idx.clone();
    SeededRng::new(seed ^ 0x5_4FF1_ED5E_ED00).shuffle(&mut order);
    let mut out = ind.clone();
    for (&to, &from) in idx.iter().zip(&order) {
        out.layers[to].weight_scale = ind.layers[from].weight_scale.clone();
        out.layers[to].act_scale = ind.layers[from].act_scale.clone();
    }
    set_meta(&mut out, "source", "shuffled control".into());
    set_meta(&mut out, "shuffle_seed", seed.to_string());
    out
}

#[cfg(test)]
mod control_tests {
    use super::*;
    use limpq_solver::Layer;

    fn layer(name: &str, macs: u64, w: [f64; 2], a: [f64; 2], fixed: bool) -> Layer {
        Layer {
            name: name.into(),
            macs,
            params: macs / 10,
            weight_scale: w.to_vec(),
            act_scale: a.to_vec(),
            fixed: fixed.then_some((8, 8)),
        }
    }

    /// stem (fixed), three searchable layers of 100, 10 and 1 MACs, classifier (fixed);
    /// bits 2 and 4; indicators that favour raising the BIG layer.
    fn set() -> IndicatorSet {
        IndicatorSet {
            model: "m".into(),
            weight_bits: vec![2, 4],
            act_bits: vec![2, 4],
            layers: vec![
                layer("stem", 50, [1.0, 1.0], [1.0, 1.0], true),
                layer("big", 100, [9.0, 0.1], [9.0, 0.1], false),
                layer("mid", 10, [0.2, 0.1], [0.2, 0.1], false),
                layer("small", 1, [0.3, 0.1], [0.3, 0.1], false),
                layer("fc", 5, [1.0, 1.0], [1.0, 1.0], true),
            ],
            meta: vec![("source".into(), "test".into())],
        }
    }

    fn bits_of(p: &Policy, name: &str) -> (u32, u32) {
        let l = p.layers.iter().find(|l| l.name == name).unwrap();
        (l.weight, l.act)
    }

    #[test]
    fn the_macs_only_search_raises_the_layers_cheapest_to_raise() {
        let ind = set();
        // All searchable at W2A2: 4·111 = 444 BitOps, and 400 more. The indicators spend
        // them on `big` at W4A2 (α = 2: a weight raise counts double), which costs all 400.
        // With the same profile everywhere, raising `mid` (+120) and `small` (+12) to W4A4
        // gains three times what `big` at W4A2 does, and the 268 left raise nothing of `big`.
        let budget = 444 + 400;
        let (learned, _) = searched_policy(&ind, 2.0, budget).unwrap();
        assert_eq!(
            bits_of(&learned, "big"),
            (4, 2),
            "the indicators' own choice"
        );
        assert_eq!(bits_of(&learned, "mid"), (2, 2));
        let control = macs_only_indicators(&ind);
        let (p, _) = searched_policy(&control, 2.0, budget).unwrap();
        assert_eq!(bits_of(&p, "big"), (2, 2));
        assert_eq!(bits_of(&p, "mid"), (4, 4));
        assert_eq!(bits_of(&p, "small"), (4, 4));
        assert_eq!(control.layers[0], ind.layers[0], "fixed layers untouched");
        assert_eq!(control.layers[1].weight_scale, vec![0.25, 0.0625]);
        assert!(control
            .meta
            .contains(&("source".into(), "macs-only control".into())));
        assert_eq!(
            control.meta.iter().filter(|(k, _)| k == "source").count(),
            1
        );
    }

    #[test]
    fn the_shuffled_control_permutes_whole_rows_among_searchable_layers() {
        let ind = set();
        let rows = |s: &IndicatorSet| -> Vec<(Vec<f64>, Vec<f64>)> {
            s.layers
                .iter()
                .map(|l| (l.weight_scale.clone(), l.act_scale.clone()))
                .collect()
        };
        let mut moved = 0;
        for seed in 0..8 {
            let s = shuffled_indicators(&ind, seed);
            assert_eq!(s, shuffled_indicators(&ind, seed), "seeded");
            for (a, b) in s.layers.iter().zip(&ind.layers) {
                assert_eq!(
                    (&a.name, a.macs, a.params, a.fixed),
                    (&b.name, b.macs, b.params, b.fixed)
                );
            }
            assert_eq!(s.layers[0], ind.layers[0]);
            assert_eq!(s.layers[4], ind.layers[4]);
            let (mut got, mut want) = (rows(&s)[1..4].to_vec(), rows(&ind)[1..4].to_vec());
            got.sort_by(|x, y| x.partial_cmp(y).unwrap());
            want.sort_by(|x, y| x.partial_cmp(y).unwrap());
            assert_eq!(got, want, "the same rows");
            moved += usize::from(rows(&s) != rows(&ind));
        }
        assert!(moved >= 6, "only {moved} of 8 seeds moved a row");
    }
}
