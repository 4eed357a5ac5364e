//! Do two indicator files rank the layers alike? (`limpq compare`, docs/METHOD.md "Do the
//! indicators know which layers matter?")
//!
//! The search compares, layer against layer, how much one more bit lowers a layer's
//! indicator: the **increment** `s(b) − s(b')` between consecutive candidate bit-widths
//! `b < b'`. Two sources of indicators (the joint run's step sizes, measured sensitivity,
//! a longer joint run) agree on what matters when they order the layers' increments alike,
//! whatever their scales. So the comparison is Spearman's rank correlation over the
//! searchable layers: per side (weights, activations), per bit step, and over every step
//! at once (the pooled increments: the search trades bits across layers and across steps).
//!
//! Plain arithmetic on two [`IndicatorSet`]s: no GPU, so a solver-only build has it too.

use limpq_solver::format::Layer;
use limpq_solver::IndicatorSet;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// Two-sided 95 % quantile of Student's t with `df` degrees of freedom (exact to three
/// decimals up to 30; beyond, `1.96 + 2.5/df`, within 0.002 of the true value).
pub fn t95(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => T[df - 1],
        _ => 1.96 + 2.5 / df as f64,
    }
}

/// Ranks 1..=n of `v`, ties sharing the mean of the ranks they span.
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && v[order[j]] == v[order[i]] {
            j += 1;
        }
        // Positions i..j (0-based) hold equal values: ranks i+1..=j, mean (i+1+j)/2.
        let r = (i + 1 + j) as f64 / 2.0;
        for &k in &order[i..j] {
            ranks[k] = r;
        }
        i = j;
    }
    ranks
}

/// Pearson's correlation of `x` and `y` (same length); `None` with fewer than two values or
/// where either does not vary.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len();
    if n < 2 || y.len() != n {
        return None;
    }
    let mx = x.iter().sum::<f64>() / n as f64;
    let my = y.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// Spearman's rank correlation: Pearson's on the average ranks (ties handled).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// The |ρ| above which a rank correlation of `n` pairs differs from zero at the 5 % level,
/// two-sided (the t approximation `t / sqrt(n − 2 + t²)`, t the 95 % quantile with n − 2
/// degrees of freedom); `None` below three pairs.
pub fn critical_rho(n: usize) -> Option<f64> {
    if n < 3 {
        return None;
    }
    let t = t95(n - 2);
    Some(t / ((n - 2) as f64 + t * t).sqrt())
}

/// One line of a comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgreementRow {
    /// `weight` or `act`.
    pub side: &'static str,
    /// `"2-3"` for the increment from 2 to 3 bits, `"all"` for every step pooled.
    pub step: String,
    /// Pairs compared (layers, or layers × steps for `all`).
    pub n: usize,
    /// Spearman's ρ; `None` where one side's values do not vary (nothing to rank).
    pub rho: Option<f64>,
    /// |ρ| above this differs from zero at 5 % (two-sided).
    pub critical: Option<f64>,
}

/// How alike two indicator sets rank the searchable layers' increments.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Agreement {
    /// The searchable layers compared, in the first set's order.
    pub layers: Vec<String>,
    pub rows: Vec<AgreementRow>,
}

impl Agreement {
    /// The table `limpq compare` prints.
    pub fn to_text(&self) -> String {
        let mut o = format!(
            "Spearman's rank correlation of the indicator increments s(b) - s(b') over {} \
             searchable layers\n(|rho| above 'critical' differs from 0 at the 5 % level, \
             two-sided)\n\n",
            self.layers.len()
        );
        o.push_str(&format!(
            "{:<7} {:<6} {:>5} {:>8} {:>9}\n",
            "side", "step", "n", "rho", "critical"
        ));
        let f = |v: Option<f64>| v.map_or("n/a".to_string(), |x| format!("{x:.3}"));
        for r in &self.rows {
            o.push_str(&format!(
                "{:<7} {:<6} {:>5} {:>8} {:>9}\n",
                r.side,
                r.step,
                r.n,
                f(r.rho),
                f(r.critical)
            ));
        }
        o
    }
}

/// The first layer of each name, as a search from the start would find it.
fn by_name(s: &IndicatorSet) -> HashMap<&str, &Layer> {
    let mut map = HashMap::with_capacity(s.layers.len());
    for l in &s.layers {
        map.entry(l.name.as_str()).or_insert(l);
    }
    map
}

/// Compares `a` and `b` layer by layer (matched by name; both must have the same
/// searchable layers) on the bit-widths both offer, per side.
pub fn compare_indicators(a: &IndicatorSet, b: &IndicatorSet) -> Result<Agreement, String> {
    let searchable = |s: &IndicatorSet| -> Vec<String> {
        s.layers
            .iter()
            .filter(|l| l.fixed.is_none())
            .map(|l| l.name.clone())
            .collect()
    };
    let names = searchable(a);
    let names_b = searchable(b);
    // Sets and maps by name, so that files of many layers compare in time linear in their
    // layers (a search per name took a minute for two files of 100,000 layers).
    let set_a: HashSet<&str> = names.iter().map(String::as_str).collect();
    let set_b: HashSet<&str> = names_b.iter().map(String::as_str).collect();
    for n in &names {
        if !set_b.contains(n.as_str()) {
            return Err(format!(
                "searchable layer '{n}' of the first file is not a searchable layer of the second"
            ));
        }
    }
    for n in &names_b {
        if !set_a.contains(n.as_str()) {
            return Err(format!(
                "searchable layer '{n}' of the second file is not a searchable layer of the first"
            ));
        }
    }
    if names.len() < 3 {
        return Err(format!(
            "{} searchable layers: a rank correlation needs at least 3",
            names.len()
        ));
    }
    let (layers_a, layers_b) = (by_name(a), by_name(b));
    let mut rows = Vec::new();
    for side in ["weight", "act"] {
        let bits_of = |s: &IndicatorSet| {
            if side == "weight" {
                s.weight_bits.clone()
            } else {
                s.act_bits.clone()
            }
        };
        let (bits_a, bits_b) = (bits_of(a), bits_of(b));
        let mut common: Vec<u32> = bits_a
            .iter()
            .copied()
            .filter(|x| bits_b.contains(x))
            .collect();
        common.sort_unstable();
        common.dedup();
        if common.len() < 2 {
            return Err(format!(
                "the two files share {} {side} bit-width(s) ({common:?}): increments need two",
                common.len()
            ));
        }
        // increments[step][layer] for each file.
        let increments =
            |layers: &HashMap<&str, &Layer>, bits: &[u32]| -> Result<Vec<Vec<f64>>, String> {
                let mut out = vec![Vec::with_capacity(names.len()); common.len() - 1];
                for n in &names {
                    let l = layers
                        .get(n.as_str())
                        .ok_or_else(|| format!("layer '{n}' missing"))?;
                    let scale = if side == "weight" {
                        &l.weight_scale
                    } else {
                        &l.act_scale
                    };
                    let at = |bit: u32| -> Result<f64, String> {
                        let i = bits.iter().position(|&x| x == bit).unwrap_or(usize::MAX);
                        scale.get(i).copied().ok_or_else(|| {
                            format!("layer '{n}' has no {side} indicator at {bit} bits")
                        })
                    };
                    for (k, w) in common.windows(2).enumerate() {
                        out[k].push(at(w[0])? - at(w[1])?);
                    }
                }
                Ok(out)
            };
        let (inc_a, inc_b) = (
            increments(&layers_a, &bits_a)?,
            increments(&layers_b, &bits_b)?,
        );
        for (k, w) in common.windows(2).enumerate() {
            rows.push(AgreementRow {
                side,
                step: format!("{}-{}", w[0], w[1]),
                n: names.len(),
                rho: spearman(&inc_a[k], &inc_b[k]),
                critical: critical_rho(names.len()),
            });
        }
        if common.len() > 2 {
            let pooled_a: Vec<f64> = inc_a.concat();
            let pooled_b: Vec<f64> = inc_b.concat();
            rows.push(AgreementRow {
                side,
                step: "all".to_string(),
                n: pooled_a.len(),
                rho: spearman(&pooled_a, &pooled_b),
                critical: critical_rho(pooled_a.len()),
            });
        }
    }
    Ok(Agreement {
        layers: names,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use limpq_solver::format::Layer;

    #[test]
    fn ranks_share_ties() {
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 2.0]),
            vec![3.5, 1.0, 3.5, 2.0]
        );
    }

    #[test]
    fn spearman_matches_the_textbook_formula_without_ties() {
        // rho = 1 - 6 sum d^2 / (n (n^2 - 1)).
        let x = [1.0, 5.0, 2.0, 9.0, 7.0, 3.0];
        let y = [2.0, 4.0, 1.0, 8.0, 9.0, 6.0];
        let (rx, ry) = (average_ranks(&x), average_ranks(&y));
        let d2: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - b) * (a - b)).sum();
        let n = x.len() as f64;
        let want = 1.0 - 6.0 * d2 / (n * (n * n - 1.0));
        assert!((spearman(&x, &y).unwrap() - want).abs() < 1e-12);
        // Monotone transforms do not change it; reversing one side negates it.
        let y_exp: Vec<f64> = y.iter().map(|v: &f64| v.exp()).collect();
        assert!((spearman(&x, &y_exp).unwrap() - want).abs() < 1e-12);
        let y_neg: Vec<f64> = y.iter().map(|v| -v).collect();
        assert!((spearman(&x, &y_neg).unwrap() + want).abs() < 1e-12);
        assert_eq!(spearman(&x, &[1.0; 6]), None);
    }

    #[test]
    fn critical_values_match_tables() {
        // Published two-sided 5 % critical values of Spearman's rho (t approximation):
        // n = 10: 0.632, n = 20: 0.444.
        assert!((critical_rho(10).unwrap() - 0.632).abs() < 0.002);
        assert!((critical_rho(20).unwrap() - 0.444).abs() < 0.002);
        assert_eq!(critical_rho(2), None);
    }

    fn set(scales: &[(&str, [f64; 3], [f64; 3])], fixed_first: bool) -> IndicatorSet {
        let mut layers = Vec::new();
        if fixed_first {
            layers.push(Layer {
                name: "stem".into(),
                macs: 1,
                params: 1,
                weight_scale: vec![1.0, 0.5, 0.25],
                act_scale: vec![1.0, 0.5, 0.25],
                fixed: Some((8, 8)),
            });
        }
        for (n, w, a) in scales {
            layers.push(Layer {
                name: (*n).into(),
                macs: 10,
                params: 10,
                weight_scale: w.to_vec(),
                act_scale: a.to_vec(),
                fixed: None,
            });
        }
        IndicatorSet {
            model: "m".into(),
            weight_bits: vec![2, 3, 4],
            act_bits: vec![2, 3, 4],
            layers,
            meta: vec![],
        }
    }

    #[test]
    fn increments_are_compared_by_layer_name() {
        // Increments of a (weights): 2-3: [0.5, 0.2, 0.9, 0.1]; 3-4: [0.1, 0.3, 0.2, 0.05].
        let a = set(
            &[
                ("l1", [1.0, 0.5, 0.4], [1.0, 0.9, 0.8]),
                ("l2", [1.0, 0.8, 0.5], [1.0, 0.8, 0.7]),
                ("l3", [2.0, 1.1, 0.9], [1.0, 0.7, 0.6]),
                ("l4", [1.0, 0.9, 0.85], [1.0, 0.6, 0.5]),
            ],
            true,
        );
        // b: the same layers in another order, weight increments scaled and monotonely
        // transformed (same ranks), activation increments reversed in rank.
        let b = set(
            &[
                ("l4", [10.0, 9.0, 8.5], [1.0, 0.9, 0.8]),
                ("l3", [20.0, 11.0, 9.0], [1.0, 0.8, 0.7]),
                ("l1", [10.0, 5.0, 4.0], [1.0, 0.7, 0.6]),
                ("l2", [10.0, 8.0, 5.0], [1.0, 0.6, 0.5]),
            ],
            false,
        );
        let g = compare_indicators(&a, &b).unwrap();
        assert_eq!(g.layers, ["l1", "l2", "l3", "l4"]);
        let row = |side: &str, step: &str| {
            g.rows
                .iter()
                .find(|r| r.side == side && r.step == step)
                .unwrap()
                .clone()
        };
        assert!((row("weight", "2-3").rho.unwrap() - 1.0).abs() < 1e-12);
        assert!((row("weight", "3-4").rho.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(row("weight", "all").n, 8);
        // a's act 2-3 increments by layer: [0.1, 0.2, 0.3, 0.4]; b's: l1 0.3, l2 0.4,
        // l3 0.2, l4 0.1 -> ranks [3, 4, 2, 1] against [1, 2, 3, 4]: rho = -0.8.
        assert!((row("act", "2-3").rho.unwrap() + 0.8).abs() < 1e-12);
        assert!(g.to_text().contains("weight  2-3"));
    }

    /// Files of many layers compare in time linear in their layers: two files of 100,000
    /// layers, in opposite orders, within a deadline (with a search per name they took a
    /// minute in release).
    #[test]
    fn large_files_compare_within_a_deadline() {
        let n = 100_000;
        let layer = |i: usize| {
            let f = i as f64 / n as f64;
            Layer {
                name: format!("l{i}"),
                macs: 10,
                params: 10,
                weight_scale: vec![1.0 + f, 0.5 + f / 2.0, 0.25 + f / 4.0],
                act_scale: vec![1.0 - f / 2.0, 0.5, 0.25],
                fixed: None,
            }
        };
        let of = |layers: Vec<Layer>| IndicatorSet {
            model: "m".into(),
            weight_bits: vec![2, 3, 4],
            act_bits: vec![2, 3, 4],
            layers,
            meta: vec![],
        };
        let a = of((0..n).map(layer).collect());
        let b = of((0..n).rev().map(layer).collect());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(compare_indicators(&a, &b)));
        let g = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("compared within 20 s")
            .unwrap();
        assert_eq!(g.layers.len(), n);
        let weight = g
            .rows
            .iter()
            .find(|r| r.side == "weight" && r.step == "2-3");
        assert!((weight.unwrap().rho.unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn mismatched_files_are_refused_by_name() {
        let a = set(
            &[
                ("l1", [1.0, 0.5, 0.4], [1.0, 0.9, 0.8]),
                ("l2", [1.0, 0.8, 0.5], [1.0, 0.8, 0.7]),
                ("l3", [2.0, 1.1, 0.9], [1.0, 0.7, 0.6]),
            ],
            false,
        );
        let mut b = a.clone();
        b.layers[1].name = "other".into();
        let e = compare_indicators(&a, &b).unwrap_err();
        assert!(e.contains("'l2'"), "{e}");
        let mut c = a.clone();
        c.weight_bits = vec![5, 6, 7];
        let e = compare_indicators(&a, &c).unwrap_err();
        assert!(e.contains("weight bit-width"), "{e}");
    }
}
