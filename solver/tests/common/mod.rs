//! Test support: seeded random problems, a brute-force oracle and a feasibility checker
//! that share no code with the solver (only the public input/output types).
#![allow(dead_code)]

use limpq_solver::gen::{indicators, random_shapes, Rng};
use limpq_solver::{
    BitOpsBudget, IndicatorSet, Policy, Problem, ResourceLayer, ResourceTable, SizeBudget,
};

const BIT_SETS: &[&[u32]] = &[&[2, 3, 4], &[2, 4, 8], &[2, 3, 4, 5, 6], &[4, 8], &[3]];

/// A random problem: `max_layers` searchable layers at most, sometimes a fixed stem,
/// random budgets (sometimes infeasible), resources, weight-only mode, pins and ties.
pub fn random_problem(seed: u64, max_layers: u64, bit_sets: Option<&[&[u32]]>) -> Problem {
    let mut rng = Rng(seed);
    let n = rng.range(1, max_layers) as usize;
    let mut shapes = random_shapes(n, &mut rng);
    for s in &mut shapes {
        s.macs = rng.range(1, 5000);
        s.params = rng.range(1, 300);
    }
    let with_stem = rng.uniform() < 0.5;
    if with_stem {
        let mut stem = random_shapes(1, &mut rng).remove(0);
        stem.name = "stem".into();
        stem.macs = rng.range(1, 5000);
        stem.params = rng.range(1, 300);
        stem.fixed = true;
        shapes.insert(0, stem);
    }
    let sets = bit_sets.unwrap_or(BIT_SETS);
    let wb = sets[rng.range(0, sets.len() as u64 - 1) as usize];
    let ab = sets[rng.range(0, sets.len() as u64 - 1) as usize];
    let ind = indicators("rand", &shapes, wb, ab, 0.3, &mut rng);
    let searchable: Vec<String> = ind
        .layers
        .iter()
        .filter(|l| l.fixed.is_none())
        .map(|l| l.name.clone())
        .collect();
    let alphas = [0.5, 1.0, 2.0, 3.0];
    let mut p = Problem::new(ind.clone()).alpha(alphas[rng.range(0, 3) as usize]);
    if rng.uniform() < 0.15 {
        p = p.weight_only(8);
    }
    // BitOps budget between all-lowest and all-highest of the file's bits.
    let (wlo, whi) = (*wb.iter().min().unwrap(), *wb.iter().max().unwrap());
    let (alo, ahi) = if p.options.weight_only.is_some() {
        (8, 8)
    } else {
        (*ab.iter().min().unwrap(), *ab.iter().max().unwrap())
    };
    let macs: u64 = ind
        .layers
        .iter()
        .filter(|l| l.fixed.is_none())
        .map(|l| l.macs)
        .sum();
    let lo = macs * u64::from(wlo * alo);
    let hi = macs * u64::from(whi * ahi);
    let f = rng.uniform();
    p = p.bitops(BitOpsBudget::Absolute(lo + ((hi - lo) as f64 * f) as u64));
    if rng.uniform() < 0.5 {
        let params: u64 = ind
            .layers
            .iter()
            .map(|l| l.params * u64::from(l.fixed.map_or(whi, |f| f.0)))
            .sum();
        let pmin: u64 = ind
            .layers
            .iter()
            .map(|l| l.params * u64::from(l.fixed.map_or(wlo, |f| f.0)))
            .sum();
        let bits = pmin + ((params - pmin) as f64 * (0.2 + 0.9 * rng.uniform())) as u64;
        p = p.size(SizeBudget::Bytes(bits.div_ceil(8)));
    }
    if rng.uniform() < 0.3 {
        let mut layers = Vec::new();
        let mut total_max = 0.0;
        for l in &ind.layers {
            let mut costs = Vec::new();
            let mut mx: f64 = 0.0;
            for w in 1..=8 {
                for a in 1..=8 {
                    let v = (rng.uniform() * 10.0 * f64::from(w + a)).floor() / 4.0;
                    mx = mx.max(v);
                    costs.push((w, a, v));
                }
            }
            total_max += mx;
            layers.push(ResourceLayer {
                name: l.name.clone(),
                costs,
            });
        }
        p = p.resource(
            ResourceTable {
                name: "latency".into(),
                layers,
            },
            total_max * (0.3 + 0.7 * rng.uniform()),
        );
    }
    if rng.uniform() < 0.2 {
        let l = &searchable[rng.range(0, searchable.len() as u64 - 1) as usize];
        let w = if rng.uniform() < 0.2 {
            7
        } else {
            wb[rng.range(0, wb.len() as u64 - 1) as usize]
        };
        let a = ab[rng.range(0, ab.len() as u64 - 1) as usize];
        p = p.pin(l, w, a);
    }
    if searchable.len() >= 2 {
        for kind in 0..2 {
            if rng.uniform() < 0.3 {
                let k = rng.range(2, searchable.len().min(3) as u64) as usize;
                let mut names: Vec<String> = Vec::new();
                while names.len() < k {
                    let l = searchable[rng.range(0, searchable.len() as u64 - 1) as usize].clone();
                    if !names.contains(&l) {
                        names.push(l);
                    }
                }
                p = if kind == 0 {
                    p.tie_weights(&names)
                } else {
                    p.tie_acts(&names)
                };
            }
        }
    }
    if rng.uniform() < 0.2 {
        p = p.non_monotone_rule(false);
    }
    p
}

fn scale_at(scales: &[f64], bits: &[u32], b: u32) -> f64 {
    bits.iter().position(|&x| x == b).map_or(0.0, |i| scales[i])
}

/// Bits a layer may take under the non-monotone rule (re-implemented here).
fn allowed(scales: &[f64], file_bits: &[u32], cand: &[u32], rule: bool) -> Vec<u32> {
    let mut c = cand.to_vec();
    c.sort();
    (0..c.len())
        .filter(|&i| {
            !(rule
                && i + 1 < c.len()
                && scale_at(scales, file_bits, c[i]) < scale_at(scales, file_bits, c[i + 1]))
        })
        .map(|i| c[i])
        .collect()
}

/// Per-layer (w, a) options (fixed layers: their fixed pair).
fn options_of(p: &Problem) -> Vec<Vec<(u32, u32)>> {
    let ind = &p.indicators;
    let o = &p.options;
    let wc = o.weight_bits.clone().unwrap_or(ind.weight_bits.clone());
    let ac = o.act_bits.clone().unwrap_or(ind.act_bits.clone());
    ind.layers
        .iter()
        .map(|l| {
            if let Some(f) = l.fixed {
                return vec![f];
            }
            if let Some(&(_, w, a)) = o.pinned.iter().find(|x| x.0 == l.name) {
                return vec![(w, a)];
            }
            let ws = allowed(&l.weight_scale, &ind.weight_bits, &wc, o.non_monotone_rule);
            let as_ = match o.weight_only {
                Some(a) => vec![a],
                None => allowed(&l.act_scale, &ind.act_bits, &ac, o.non_monotone_rule),
            };
            ws.iter()
                .flat_map(|&w| as_.iter().map(move |&a| (w, a)))
                .collect()
        })
        .collect()
}

/// Objective of an assignment, recomputed from the indicator file.
pub fn objective(p: &Problem, bits: &[(u32, u32)]) -> f64 {
    let ind = &p.indicators;
    let mut s = 0.0;
    for (l, &(w, a)) in ind.layers.iter().zip(bits) {
        if l.fixed.is_some() {
            continue;
        }
        s += p.options.alpha * scale_at(&l.weight_scale, &ind.weight_bits, w);
        if p.options.weight_only.is_none() {
            s += scale_at(&l.act_scale, &ind.act_bits, a);
        }
    }
    s
}

/// Checks an assignment against every rule and budget; Err says which and why.
pub fn check(p: &Problem, bits: &[(u32, u32)]) -> Result<(), String> {
    check_with(p, &options_of(p), bits)
}

fn check_with(p: &Problem, opts: &[Vec<(u32, u32)>], bits: &[(u32, u32)]) -> Result<(), String> {
    let ind = &p.indicators;
    let o = &p.options;
    for ((l, b), allowed) in ind.layers.iter().zip(bits).zip(opts) {
        if !allowed.contains(b) {
            return Err(format!(
                "layer {} takes {:?}, allowed {:?}",
                l.name, b, allowed
            ));
        }
    }
    let idx = |n: &str| ind.layers.iter().position(|l| l.name == n).unwrap();
    for g in &o.tie_weight {
        if g.iter().any(|n| bits[idx(n)].0 != bits[idx(&g[0])].0) {
            return Err(format!("weight tie {g:?} broken"));
        }
    }
    for g in &o.tie_act {
        if g.iter().any(|n| bits[idx(n)].1 != bits[idx(&g[0])].1) {
            return Err(format!("act tie {g:?} broken"));
        }
    }
    let bitops: u128 = ind
        .layers
        .iter()
        .zip(bits)
        .filter(|(l, _)| l.fixed.is_none())
        .map(|(l, &(w, a))| l.macs as u128 * w as u128 * a as u128)
        .sum();
    let budget = match o.bitops {
        Some(BitOpsBudget::Absolute(b)) => Some(b as u128),
        Some(BitOpsBudget::Uniform { weight, act }) => Some(
            ind.layers
                .iter()
                .filter(|l| l.fixed.is_none())
                .map(|l| l.macs as u128 * weight as u128 * act as u128)
                .sum(),
        ),
        Some(_) => panic!("unknown budget kind"),
        None => None,
    };
    if let Some(b) = budget {
        if bitops > b {
            return Err(format!("BitOps {bitops} > budget {b}"));
        }
    }
    let size: u128 = ind
        .layers
        .iter()
        .zip(bits)
        .map(|(l, &(w, _))| l.params as u128 * w as u128)
        .sum();
    let sb = match o.size {
        Some(SizeBudget::Bytes(b)) => Some(b as u128 * 8),
        Some(SizeBudget::CompressionRatio(r)) => Some(
            (ind.layers
                .iter()
                .map(|l| u128::from(l.params))
                .sum::<u128>() as f64
                * 32.0
                / r) as u128,
        ),
        Some(_) => panic!("unknown size kind"),
        None => None,
    };
    if let Some(b) = sb {
        if size > b {
            return Err(format!("size {size} bits > budget {b}"));
        }
    }
    for r in &o.resources {
        let mut used = 0.0;
        for (l, &(w, a)) in ind.layers.iter().zip(bits) {
            if let Some(rl) = r.table.layers.iter().find(|x| x.name == l.name) {
                used += rl
                    .costs
                    .iter()
                    .find(|c| c.0 == w && c.1 == a)
                    .map_or(0.0, |c| c.2);
            }
        }
        if used > r.max * (1.0 + 1e-12) + 1e-9 {
            return Err(format!("resource {} {used} > max {}", r.table.name, r.max));
        }
    }
    Ok(())
}

/// Checks a returned policy: layer names/order, rules and budgets, reported figures.
pub fn check_policy(p: &Problem, pol: &Policy) -> Result<(), String> {
    let ind = &p.indicators;
    if pol.layers.len() != ind.layers.len()
        || pol
            .layers
            .iter()
            .zip(&ind.layers)
            .any(|(a, b)| a.name != b.name)
    {
        return Err("policy layers differ from the indicator file".into());
    }
    let bits: Vec<(u32, u32)> = pol.layers.iter().map(|l| (l.weight, l.act)).collect();
    check(p, &bits)?;
    let obj = objective(p, &bits);
    if (obj - pol.objective).abs() > 1e-9 * (1.0 + obj.abs()) {
        return Err(format!(
            "reported objective {} but recomputed {obj}",
            pol.objective
        ));
    }
    // Exact, then saturated at u64::MAX as the policy reports it.
    let bitops: u128 = ind
        .layers
        .iter()
        .zip(&bits)
        .filter(|(l, _)| l.fixed.is_none())
        .map(|(l, &(w, a))| l.macs as u128 * w as u128 * a as u128)
        .sum();
    let bitops = bitops.min(u64::MAX.into()) as u64;
    if bitops != pol.bitops {
        return Err(format!(
            "reported BitOps {} but recomputed {bitops}",
            pol.bitops
        ));
    }
    let size: u128 = ind
        .layers
        .iter()
        .zip(&bits)
        .map(|(l, &(w, _))| l.params as u128 * w as u128)
        .sum();
    let size = size.min(u64::MAX.into()) as u64;
    if size != pol.weight_bits_total {
        return Err(format!(
            "reported size {} but recomputed {size}",
            pol.weight_bits_total
        ));
    }
    Ok(())
}

/// Number of assignments the oracle would enumerate.
pub fn oracle_size(p: &Problem) -> usize {
    options_of(p).iter().map(|o| o.len()).product()
}

/// Brute force over every assignment: the optimal objective, or None if infeasible.
pub fn oracle(p: &Problem) -> Option<f64> {
    let opts = options_of(p);
    let n = opts.len();
    if opts.iter().any(|o| o.is_empty()) {
        return None;
    }
    let mut digit = vec![0usize; n];
    let mut best: Option<f64> = None;
    loop {
        let bits: Vec<(u32, u32)> = (0..n).map(|i| opts[i][digit[i]]).collect();
        if check_with(p, &opts, &bits).is_ok() {
            let v = objective(p, &bits);
            if best.is_none_or(|b| v < b) {
                best = Some(v);
            }
        }
        let mut d = 0;
        while d < n {
            digit[d] += 1;
            if digit[d] < opts[d].len() {
                break;
            }
            digit[d] = 0;
            d += 1;
        }
        if d == n {
            return best;
        }
    }
}

pub fn describe(ind: &IndicatorSet) -> String {
    format!(
        "{} layers, W {:?} A {:?}",
        ind.layers.len(),
        ind.weight_bits,
        ind.act_bits
    )
}
