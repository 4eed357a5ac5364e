//! The solve report: what a solve or a sweep found, with everything a reader needs to
//! judge it (per-layer MACs, params and BitOps, fixed BitOps, size and compression, each
//! extra resource against its max, the proof and the solve time), as a value to serialise
//! (`Serialize` with the `serde` feature) and as the text table `limpq solve` prints.
//!
//! The CLI, the C ABI and the Python package return this same report, so it lives with
//! the solver. The serialised report carries the policy file's fields under the same
//! names (a policy reader reads a [`SolveReport`] as the policy, a frontier reader a
//! [`SweepReport`] as the frontier) and everything the table shows.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::time::Duration;

use crate::evaluate::Evaluation;
use crate::format::{Frontier, FrontierPoint, IndicatorSet, LayerBits, Policy};
use crate::problem::Problem;
use crate::solve::{Solution, Usage};

/// The counting rules in one line, as the table's last line and the report's `counting`.
pub const COUNTING_LINE: &str = "BitOps = Σ searchable MACs·W·A (fixed layers excluded, shown apart); size = Σ all layers params·W (fixed at their bits)";

/// The widest the table's layer column grows; longer names run past it.
const MAX_NAME_COLUMN: usize = 48;

/// One layer of the solve report.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LayerReport<'a> {
    pub name: &'a str,
    pub weight: u32,
    pub act: u32,
    pub macs: u64,
    pub params: u64,
    /// MACs · W · A; `None` when it does not fit in 64 bits.
    pub bitops: Option<u64>,
    /// Held at the indicator file's fixed bits, not counted in `bitops`.
    pub fixed: bool,
    /// Held by a pin.
    pub pinned: bool,
}

/// Use of an extra resource against its max.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ResourceUse<'a> {
    pub name: &'a str,
    pub used: f64,
    pub max: Option<f64>,
}

/// What the solver proved.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ProofReport {
    pub optimal: bool,
    pub lower_bound: f64,
    pub gap: f64,
    /// Search states explored.
    pub nodes: u64,
    pub backend: String,
}

/// The report of one solve: the policy file's fields under the same names and everything
/// [`table`] shows.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SolveReport<'a> {
    pub model: &'a str,
    pub layers: Vec<LayerReport<'a>>,
    pub objective: f64,
    /// BitOps of the searchable layers.
    pub bitops: u64,
    /// Bits of all weights, fixed layers at their bits.
    pub weight_bits_total: u64,
    pub optimal: bool,
    pub bitops_budget: Option<u64>,
    pub size_budget_bits: Option<u64>,
    /// Where the indicators came from (the file name).
    pub indicators: &'a str,
    pub alpha: f64,
    pub candidate_weight_bits: &'a [u32],
    pub candidate_act_bits: &'a [u32],
    pub searchable_layers: usize,
    /// `bitops` as a percentage of `bitops_budget`.
    pub bitops_budget_percent: Option<f64>,
    /// BitOps of the fixed layers at their fixed bits (not in `bitops` nor the budget).
    pub fixed_bitops: u64,
    /// 32-bit weights of every layer over `weight_bits_total`.
    pub compression_ratio: Option<f64>,
    pub resources: Vec<ResourceUse<'a>>,
    pub proof: ProofReport,
    pub solve_seconds: f64,
    /// Totals that did not fit in 64 bits (their figures above are saturated).
    pub overflow: Vec<&'static str>,
    pub counting: &'static str,
}

/// The report of a given policy priced under a problem (`limpq solve --price`): the policy
/// file's fields under the same names (`optimal` false: nothing was proven), so a policy
/// reader reads it as a policy, then its use of every budget and whether it meets them.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct EvaluationReport<'a> {
    pub model: &'a str,
    pub layers: &'a [LayerBits],
    pub objective: f64,
    pub bitops: u64,
    pub weight_bits_total: u64,
    pub optimal: bool,
    pub bitops_budget: Option<u64>,
    pub size_budget_bits: Option<u64>,
    /// Where the indicators came from (the file name).
    pub indicators: &'a str,
    pub alpha: f64,
    /// BitOps of the fixed layers at their fixed bits (not in `bitops` nor the budget).
    pub fixed_bitops: u64,
    /// 32-bit weights of every layer over `weight_bits_total`.
    pub compression_ratio: Option<f64>,
    /// BitOps, size, then each extra resource, against its budget or max.
    pub usage: Vec<ResourceUse<'a>>,
    /// Every budget met and every layer at a choice the search allows.
    pub feasible: bool,
    /// Why not, one sentence each.
    pub violations: &'a [String],
    /// Totals that did not fit in 64 bits (their figures above are saturated).
    pub overflow: Vec<&'static str>,
    pub counting: &'static str,
}

/// The report of `e`, a policy priced under `p`; `indicators` names the indicators'
/// source (a file name).
pub fn evaluation_report<'a>(
    indicators: &'a str,
    p: &'a Problem,
    e: &'a Evaluation,
) -> EvaluationReport<'a> {
    let pol = &e.policy;
    EvaluationReport {
        model: &pol.model,
        layers: &pol.layers,
        objective: pol.objective,
        bitops: pol.bitops,
        weight_bits_total: pol.weight_bits_total,
        optimal: pol.optimal,
        bitops_budget: pol.bitops_budget,
        size_budget_bits: pol.size_budget_bits,
        indicators,
        alpha: p.options.alpha,
        fixed_bitops: e.fixed_bitops,
        compression_ratio: compression(&p.indicators, pol.weight_bits_total),
        usage: uses(e.usage.iter()),
        feasible: e.feasible,
        violations: &e.violations,
        overflow: overflowed(&[
            ("bitops", pol.bitops),
            ("weight_bits_total", pol.weight_bits_total),
            ("fixed_bitops", e.fixed_bitops),
        ]),
        counting: COUNTING_LINE,
    }
}

/// One point of the sweep report: the frontier file's fields and the rest of a solve.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PointReport<'a> {
    pub bitops_budget: u64,
    pub objective: f64,
    pub bitops: u64,
    pub weight_bits_total: u64,
    pub optimal: bool,
    pub layers: &'a [LayerBits],
    pub fixed_bitops: u64,
    pub compression_ratio: Option<f64>,
    pub resources: Vec<ResourceUse<'a>>,
    pub proof: ProofReport,
    pub overflow: Vec<&'static str>,
}

/// The report of a sweep: the frontier file's fields under the same names and everything
/// [`frontier_table`] shows.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SweepReport<'a> {
    pub model: &'a str,
    pub points: Vec<PointReport<'a>>,
    /// Where the indicators came from (the file name).
    pub indicators: &'a str,
    pub alpha: f64,
    pub candidate_weight_bits: &'a [u32],
    pub candidate_act_bits: &'a [u32],
    pub solve_seconds: f64,
    pub counting: &'static str,
}

/// The frontier file of a sweep's solutions (`Problem::sweep`, `Compiled::sweep`).
pub fn frontier(model: &str, sols: &[Solution]) -> Frontier {
    frontier_of(model, sols.iter().map(|s| (&s.policy, s.proof.optimal)))
}

/// The frontier file of a sweep's points given as (policy, proven optimal), in budget
/// order: what [`frontier`] writes, for a caller that keeps its points' policies
/// elsewhere than in [`Solution`]s (the C ABI's sweep handle).
pub fn frontier_of<'a>(
    model: &str,
    points: impl IntoIterator<Item = (&'a Policy, bool)>,
) -> Frontier {
    Frontier {
        model: String::from(model),
        points: points
            .into_iter()
            .map(|(p, optimal)| FrontierPoint {
                bitops_budget: p.bitops_budget.unwrap_or(0),
                objective: p.objective,
                bitops: p.bitops,
                weight_bits_total: p.weight_bits_total,
                optimal,
                layers: p.layers.clone(),
            })
            .collect(),
    }
}

/// The report of `sol`, a solution of `p` solved in `dt`; `indicators` names the
/// indicators' source (a file name).
pub fn solve_report<'a>(
    indicators: &'a str,
    p: &'a Problem,
    sol: &'a Solution,
    dt: Duration,
) -> SolveReport<'a> {
    let ind = &p.indicators;
    let pol = &sol.policy;
    SolveReport {
        model: &pol.model,
        layers: ind
            .layers
            .iter()
            .zip(&pol.layers)
            .map(|(l, b)| LayerReport {
                name: &b.name,
                weight: b.weight,
                act: b.act,
                macs: l.macs,
                params: l.params,
                bitops: layer_bitops(l.macs, b),
                fixed: l.fixed.is_some(),
                pinned: is_pinned(p, &l.name),
            })
            .collect(),
        objective: pol.objective,
        bitops: pol.bitops,
        weight_bits_total: pol.weight_bits_total,
        optimal: pol.optimal,
        bitops_budget: pol.bitops_budget,
        size_budget_bits: pol.size_budget_bits,
        indicators,
        alpha: p.options.alpha,
        candidate_weight_bits: candidate_weight_bits(p),
        candidate_act_bits: candidate_act_bits(p),
        searchable_layers: ind.layers.iter().filter(|l| l.fixed.is_none()).count(),
        bitops_budget_percent: pol
            .bitops_budget
            .filter(|_| !saturated(pol.bitops))
            .map(|b| 100.0 * pol.bitops as f64 / b.max(1) as f64),
        fixed_bitops: sol.fixed_bitops,
        compression_ratio: compression(ind, pol.weight_bits_total),
        resources: resources(sol),
        proof: proof_report(sol),
        solve_seconds: dt.as_secs_f64(),
        overflow: overflowed(&[
            ("bitops", pol.bitops),
            ("weight_bits_total", pol.weight_bits_total),
            ("fixed_bitops", sol.fixed_bitops),
        ]),
        counting: COUNTING_LINE,
    }
}

/// The report of a sweep of `p`: `f` is [`frontier`] of `sols`, solved in `dt`.
pub fn sweep_report<'a>(
    indicators: &'a str,
    p: &'a Problem,
    f: &'a Frontier,
    sols: &'a [Solution],
    dt: Duration,
) -> SweepReport<'a> {
    let ind = &p.indicators;
    SweepReport {
        model: &f.model,
        points: f
            .points
            .iter()
            .zip(sols)
            .map(|(x, s)| PointReport {
                bitops_budget: x.bitops_budget,
                objective: x.objective,
                bitops: x.bitops,
                weight_bits_total: x.weight_bits_total,
                optimal: x.optimal,
                layers: &x.layers,
                fixed_bitops: s.fixed_bitops,
                compression_ratio: compression(ind, x.weight_bits_total),
                resources: resources(s),
                proof: proof_report(s),
                overflow: overflowed(&[
                    ("bitops", x.bitops),
                    ("weight_bits_total", x.weight_bits_total),
                    ("fixed_bitops", s.fixed_bitops),
                ]),
            })
            .collect(),
        indicators,
        alpha: p.options.alpha,
        candidate_weight_bits: candidate_weight_bits(p),
        candidate_act_bits: candidate_act_bits(p),
        solve_seconds: dt.as_secs_f64(),
        counting: COUNTING_LINE,
    }
}

/// The human-readable report of one solve.
pub fn table(p: &Problem, sol: &Solution, dt: Duration) -> String {
    let mut s = policy_table(p, &sol.policy, &sol.usage, sol.fixed_bitops);
    let pr = &sol.proof;
    let _ = writeln!(
        s,
        "solve time    {:.3} ms ({:?} backend, parse excluded)",
        dt.as_secs_f64() * 1e3,
        pr.backend
    );
    let _ = writeln!(
        s,
        "proof         {}; lower bound {:.6}, gap {:.3e}, {} search states",
        if pr.optimal {
            "optimal (proven)"
        } else {
            "NOT proven optimal"
        },
        pr.lower_bound,
        pr.gap,
        pr.nodes
    );
    let _ = writeln!(s, "counting      {COUNTING_LINE}");
    s
}

/// The table's layers and totals, which a solve and a priced policy share: `pol` with its
/// `usage` (BitOps, size, then each extra resource) and its fixed layers' BitOps.
fn policy_table(p: &Problem, pol: &Policy, usage: &[Usage], fixed_bitops: u64) -> String {
    let ind = &p.indicators;
    let mut s = String::new();
    // Capped: a format width must fit in 16 bits, and a huge name must not widen every row.
    let w = ind
        .layers
        .iter()
        .map(|l| l.name.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, MAX_NAME_COLUMN);
    let _ = writeln!(
        s,
        "model {}: {} layers, candidate W {:?} A {:?}, alpha {}",
        ind.model,
        ind.layers.len(),
        candidate_weight_bits(p),
        candidate_act_bits(p),
        p.options.alpha
    );
    let _ = writeln!(
        s,
        "{:<w$}  {:>3} {:>3}  {:>14} {:>11} {:>16}",
        "layer", "W", "A", "MACs", "params", "BitOps"
    );
    for (l, b) in ind.layers.iter().zip(&pol.layers) {
        let note = if l.fixed.is_some() {
            "fixed (not counted in BitOps)"
        } else if is_pinned(p, &l.name) {
            "pinned"
        } else {
            ""
        };
        let bo = layer_bitops(l.macs, b).map_or(String::from("overflow"), |v| v.to_string());
        let _ = writeln!(
            s,
            "{:<w$}  {:>3} {:>3}  {:>14} {:>11} {:>16}  {note}",
            l.name, b.weight, b.act, l.macs, l.params, bo
        );
    }
    let searchable = ind.layers.iter().filter(|l| l.fixed.is_none()).count();
    // The bits counted are the policy's; a priced policy may hold a fixed layer elsewhere
    // (it is then infeasible, and the rule's line says so).
    let fixed: Vec<String> = ind
        .layers
        .iter()
        .zip(&pol.layers)
        .filter_map(|(l, b)| {
            let (w, a) = l.fixed?;
            let at = format!("{} at W{}A{}", l.name, b.weight, b.act);
            Some(if (b.weight, b.act) == (w, a) {
                at
            } else {
                format!("{at} (fixed at W{w}A{a})")
            })
        })
        .collect();
    let _ = writeln!(s);
    let _ = writeln!(s, "objective     {:.6}", pol.objective);
    let budget = pol.bitops_budget.map_or(String::from("none"), |b| {
        if saturated(pol.bitops) {
            format!("{b}")
        } else {
            format!("{b} ({:.2}%)", 100.0 * pol.bitops as f64 / b.max(1) as f64)
        }
    });
    let _ = writeln!(
        s,
        "BitOps        {} of budget {budget}  [{searchable} searchable layers]",
        figure(pol.bitops)
    );
    let _ = writeln!(
        s,
        "fixed BitOps  {}  [{}; not in the budget]",
        figure(fixed_bitops),
        if fixed.is_empty() {
            String::from("no fixed layers")
        } else {
            fixed.join(", ")
        }
    );
    let cr = compression(ind, pol.weight_bits_total)
        .map_or(String::from("overflow"), |c| format!("{c:.2}x"));
    let sb = pol.size_budget_bits.map_or(String::from("none"), |b| {
        format!("{} ({} bits)", fmt_bytes(b), b)
    });
    let size = if saturated(pol.weight_bits_total) {
        String::from("overflow")
    } else {
        format!(
            "{} ({} bits)",
            fmt_bytes(pol.weight_bits_total),
            pol.weight_bits_total
        )
    };
    let _ = writeln!(
        s,
        "size          {size} of budget {sb}, compression {cr} vs 32-bit  [all {} layers, fixed at their bits]",
        ind.layers.len()
    );
    for u in usage.iter().skip(2) {
        let _ = writeln!(
            s,
            "{:<13} {} of max {}",
            u.name,
            u.used,
            u.budget.map_or(String::from("none"), |b| b.to_string())
        );
    }
    s
}

/// The human-readable report of a given policy priced under `p` ([`Problem::evaluate`]):
/// the solve's table, then whether it meets the budgets and rules and why not.
pub fn evaluation_table(p: &Problem, e: &Evaluation) -> String {
    let mut s = policy_table(p, &e.policy, &e.usage, e.fixed_bitops);
    if e.feasible {
        let _ = writeln!(
            s,
            "feasible      yes: every budget met, every layer at a choice the search allows"
        );
    } else {
        let _ = writeln!(s, "feasible      NO:");
        for v in &e.violations {
            let _ = writeln!(s, "  - {v}");
        }
    }
    let _ = writeln!(s, "counting      {COUNTING_LINE}");
    s
}

/// The human-readable report of a sweep: one row per frontier point.
pub fn frontier_table(ind: &IndicatorSet, f: &Frontier, dt: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Pareto frontier of {}: {} BitOps budgets (searchable layers only), solved in {:.3} ms",
        ind.model,
        f.points.len(),
        dt.as_secs_f64() * 1e3
    );
    let _ = writeln!(
        s,
        "{:>4}  {:>16}  {:>12}  {:>16}  {:>14}  {:>7}  optimal",
        "#", "budget", "objective", "BitOps", "size (bytes)", "CR"
    );
    for (i, p) in f.points.iter().enumerate() {
        let size = if saturated(p.weight_bits_total) {
            String::from("overflow")
        } else {
            (p.weight_bits_total / 8).to_string()
        };
        let cr = compression(ind, p.weight_bits_total)
            .map_or(String::from("overflow"), |c| format!("{c:.2}"));
        let _ = writeln!(
            s,
            "{:>4}  {:>16}  {:>12.6}  {:>16}  {:>14}  {:>7}  {}",
            i,
            figure(p.bitops_budget),
            p.objective,
            figure(p.bitops),
            size,
            cr,
            if p.optimal { "yes" } else { "NO" }
        );
    }
    let _ = writeln!(s, "counting: BitOps = Σ searchable MACs·W·A (fixed layers excluded); size = Σ all layers params·W (fixed at their bits)");
    s
}

/// Weights of the whole model at 32 bits over `bits`; `None` when a total overflowed.
pub fn compression(ind: &IndicatorSet, bits: u64) -> Option<f64> {
    let tp = ind
        .layers
        .iter()
        .map(|l| l.params)
        .fold(0, u64::saturating_add);
    if saturated(tp) || saturated(bits) {
        return None;
    }
    Some(32.0 * tp as f64 / bits.max(1) as f64)
}

/// A figure the solver summed with saturating arithmetic: `u64::MAX` means the true sum
/// did not fit, so it is no figure at all.
fn saturated(v: u64) -> bool {
    v == u64::MAX
}

fn figure(v: u64) -> String {
    if saturated(v) {
        String::from("overflow")
    } else {
        v.to_string()
    }
}

fn layer_bitops(macs: u64, b: &LayerBits) -> Option<u64> {
    macs.checked_mul(u64::from(b.weight))?
        .checked_mul(u64::from(b.act))
}

fn is_pinned(p: &Problem, layer: &str) -> bool {
    p.options.pinned.iter().any(|x| x.0 == layer)
}

fn candidate_weight_bits(p: &Problem) -> &[u32] {
    p.options
        .weight_bits
        .as_deref()
        .unwrap_or(&p.indicators.weight_bits)
}

fn candidate_act_bits(p: &Problem) -> &[u32] {
    p.options
        .act_bits
        .as_deref()
        .unwrap_or(&p.indicators.act_bits)
}

fn fmt_bytes(bits: u64) -> String {
    if saturated(bits) {
        return String::from("overflow");
    }
    let b = bits as f64 / 8.0;
    if b >= 1e6 {
        format!("{:.3} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.3} kB", b / 1e3)
    } else {
        format!("{b} B")
    }
}

fn proof_report(sol: &Solution) -> ProofReport {
    ProofReport {
        optimal: sol.proof.optimal,
        lower_bound: sol.proof.lower_bound,
        gap: sol.proof.gap,
        nodes: sol.proof.nodes,
        backend: format!("{:?}", sol.proof.backend),
    }
}

/// The extra resources of a solution (its usage past BitOps and size).
fn resources(sol: &Solution) -> Vec<ResourceUse<'_>> {
    uses(sol.usage.iter().skip(2))
}

fn uses<'a>(usage: impl Iterator<Item = &'a Usage>) -> Vec<ResourceUse<'a>> {
    usage
        .map(|u| ResourceUse {
            name: &u.name,
            used: u.used,
            max: u.budget,
        })
        .collect()
}

fn overflowed(pairs: &[(&'static str, u64)]) -> Vec<&'static str> {
    pairs
        .iter()
        .filter(|(_, v)| saturated(*v))
        .map(|(n, _)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BitOpsBudget, Layer};
    use alloc::vec;

    fn problem() -> Problem {
        let layer = |name: &str, macs, fixed| Layer {
            name: name.into(),
            macs,
            params: macs / 10,
            weight_scale: vec![0.1, 0.05, 0.03],
            act_scale: vec![0.5, 0.3, 0.2],
            fixed,
        };
        let ind = IndicatorSet {
            model: "toy".into(),
            weight_bits: vec![2, 4, 8],
            act_bits: vec![2, 4, 8],
            layers: vec![
                layer("stem", 500, Some((8, 8))),
                layer("a", 1000, None),
                layer("b", 4000, None),
            ],
            meta: vec![],
        };
        Problem::new(ind)
            .bitops(BitOpsBudget::Uniform { weight: 4, act: 4 })
            .pin("a", 4, 4)
    }

    /// The report and the table state the same figures.
    #[test]
    fn report_and_table_agree() {
        let p = problem();
        let sol = p.solve().unwrap();
        let dt = Duration::from_millis(3);
        let r = solve_report("toy.ron", &p, &sol, dt);
        let t = table(&p, &sol, dt);
        assert_eq!(r.layers.len(), 3);
        assert!(r.layers[0].fixed && r.layers[1].pinned && !r.layers[2].pinned);
        assert_eq!(r.layers[0].bitops, Some(500 * 64));
        assert_eq!(r.fixed_bitops, 500 * 64);
        assert_eq!(r.searchable_layers, 2);
        assert_eq!(r.bitops, sol.policy.bitops);
        assert!(
            t.contains(&format!("BitOps        {} of budget", r.bitops)),
            "{t}"
        );
        assert!(
            t.contains(&format!("fixed BitOps  {}", r.fixed_bitops)),
            "{t}"
        );
        assert!(t.contains("stem at W8A8"), "{t}");
        assert!(t.contains("pinned"), "{t}");
        let cr = r.compression_ratio.unwrap();
        assert!(t.contains(&format!("compression {cr:.2}x")), "{t}");
        assert_eq!(r.proof.backend, "Exact");
        assert_eq!(r.solve_seconds, 0.003);
        assert!(r.overflow.is_empty());
    }

    /// A priced policy that holds a fixed layer at other bits: the fixed BitOps line names
    /// the bits it counted (the policy's) and the ones the set fixes.
    #[test]
    fn a_priced_fixed_layer_is_named_at_the_bits_counted() {
        let p = problem();
        let mut pol = p.solve().unwrap().policy;
        pol.layers[0].weight = 4;
        let e = p.evaluate(&pol.layers).unwrap();
        assert!(!e.feasible);
        assert_eq!(e.fixed_bitops, 500 * 4 * 8);
        let t = evaluation_table(&p, &e);
        assert!(
            t.contains(&format!(
                "fixed BitOps  {}  [stem at W4A8 (fixed at W8A8); not in the budget]",
                500 * 4 * 8
            )),
            "{t}"
        );
    }

    #[test]
    fn sweep_report_follows_the_frontier() {
        let p = problem();
        let sols = p.sweep(4).unwrap();
        let f = frontier("toy", &sols);
        assert_eq!(f.points.len(), sols.len());
        let r = sweep_report("toy.ron", &p, &f, &sols, Duration::ZERO);
        for (x, s) in r.points.iter().zip(&sols) {
            assert_eq!(x.bitops, s.policy.bitops);
            assert_eq!(x.fixed_bitops, s.fixed_bitops);
        }
        let t = frontier_table(&p.indicators, &f, Duration::ZERO);
        assert_eq!(t.lines().count(), 3 + f.points.len(), "{t}");
    }

    #[test]
    fn overflow_is_no_figure() {
        assert_eq!(figure(u64::MAX), "overflow");
        assert_eq!(fmt_bytes(8_000), "1.000 kB");
        assert_eq!(fmt_bytes(u64::MAX), "overflow");
        assert_eq!(overflowed(&[("x", u64::MAX), ("y", 3)]), vec!["x"]);
    }
}
