//! Solving a compiled problem: the exact solver, the microlp backend, the Pareto sweep,
//! and turning a choice per group into a [`Policy`] with its resource usage.

// Index loops mirror the formulas over rows and layers.
#![allow(clippy::needless_range_loop)]

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::error::Error;
use crate::exact::{self, Exact};
use crate::format::{LayerBits, Policy};
/// The exact solver's options live in their own module, which the exact search imports
/// without importing this one; `limpq_solver::solve::SolveOptions` stays a public path.
pub use crate::options::SolveOptions;
use crate::problem::{Choices, Compiled, Problem, RowKind};

/// The most points a sweep takes: each is a solve, and a larger count is a mistake that
/// would otherwise ask for memory ahead of the first (every face of the solver refuses
/// it the same way: the CLI's `--sweep`, Python's `Problem.sweep`, the C ABI, WebAssembly).
pub const MAX_SWEEP_POINTS: usize = 100_000;

/// Which backend produced a solution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    Exact,
    Microlp,
}

/// What the solver can say about optimality.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Proof {
    pub optimal: bool,
    /// A proven lower bound on the objective of every feasible policy.
    pub lower_bound: f64,
    /// objective − lower_bound (0 when optimal).
    pub gap: f64,
    /// Branch-and-bound nodes explored.
    pub nodes: u64,
    pub backend: Backend,
}

/// Use of one resource by a policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Usage {
    /// `"BitOps"` (searchable layers only), `"size"` (bits of all weights, fixed layers
    /// included) or an extra resource's name (fixed layers' listed values included).
    pub name: String,
    pub used: f64,
    pub budget: Option<f64>,
}

/// A solved problem.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Solution {
    pub policy: Policy,
    /// BitOps, size, then each extra resource.
    pub usage: Vec<Usage>,
    /// BitOps of the fixed (not searched) layers at their fixed bits; not in `policy.bitops`.
    pub fixed_bitops: u64,
    pub proof: Proof,
}

impl Problem {
    /// Compiles and solves with the exact solver.
    pub fn solve(&self) -> Result<Solution, Error> {
        self.solve_with(&SolveOptions::default())
    }

    /// Compiles and solves with the exact solver under `opts` (a node limit, say).
    pub fn solve_with(&self, opts: &SolveOptions) -> Result<Solution, Error> {
        self.compile()?.solve(opts)
    }

    /// Optimal policies for `points` BitOps budgets spread evenly from the smallest
    /// feasible BitOps (under the other budgets) to the BitOps of every layer at its
    /// highest allowed bits. Any BitOps budget set on the problem is ignored. More than
    /// [`MAX_SWEEP_POINTS`] points is an [`Error::InvalidInput`]; none, an empty list.
    pub fn sweep(&self, points: usize) -> Result<Vec<Solution>, Error> {
        self.sweep_with(points, &SolveOptions::default())
    }

    /// [`Problem::sweep`] with the exact solver under `opts`.
    pub fn sweep_with(&self, points: usize, opts: &SolveOptions) -> Result<Vec<Solution>, Error> {
        self.sweep_reporting(points, opts, &mut |_| {})
    }

    /// [`Problem::sweep_with`], calling `solved(k)` once each point is solved (k = 1, 2, …,
    /// `points`, in order), e.g. to show the progress of a long sweep.
    pub fn sweep_reporting(
        &self,
        points: usize,
        opts: &SolveOptions,
        solved: &mut dyn FnMut(usize),
    ) -> Result<Vec<Solution>, Error> {
        // The compiled BitOps row spans every budget; each point sets its own.
        self.compile_for_sweep()?
            .sweep_reporting(points, opts, solved)
    }
}

/// The error of a search cut at `opts.node_limit` before it found any policy.
fn limit_reached(opts: &SolveOptions) -> Error {
    Error::LimitReached {
        limit: alloc::format!("node limit of {} states", opts.node_limit),
    }
}

impl Compiled {
    /// Solves with the exact solver.
    pub fn solve(&self, opts: &SolveOptions) -> Result<Solution, Error> {
        let caps = self.caps();
        let tols = self.tols(&caps);
        match exact::solve(&self.reduced, self.m(), &caps, &tols, None, None, opts) {
            Exact::Infeasible => Err(self.infeasible(&caps)),
            Exact::Unfinished => Err(limit_reached(opts)),
            Exact::Solved(o) => Ok(self.solution(
                &self.reduced,
                &o.choice,
                o.optimal,
                o.lower_bound,
                o.nodes,
                Backend::Exact,
            )),
        }
    }

    /// The sweep over BitOps budgets (the problem must have a BitOps row; see
    /// [`Problem::sweep`]).
    pub fn sweep(&self, points: usize, opts: &SolveOptions) -> Result<Vec<Solution>, Error> {
        self.sweep_reporting(points, opts, &mut |_| {})
    }

    /// [`Compiled::sweep`], calling `solved(k)` once each point is solved (see
    /// [`Problem::sweep_reporting`]).
    pub fn sweep_reporting(
        &self,
        points: usize,
        opts: &SolveOptions,
        solved: &mut dyn FnMut(usize),
    ) -> Result<Vec<Solution>, Error> {
        let m = self.m();
        let Some(kb) = self.rows.iter().position(|r| r.kind == RowKind::BitOps) else {
            return Err(Error::input(None, "bitops", "a sweep needs a BitOps row"));
        };
        if points == 0 || points > MAX_SWEEP_POINTS {
            return Err(Error::input(
                None,
                "points",
                alloc::format!("a sweep takes 1 to {MAX_SWEEP_POINTS} points, not {points}"),
            ));
        }
        let caps = self.caps();
        // Smallest feasible BitOps: the same knapsack with BitOps as the cost.
        let others: Vec<usize> = (0..m).filter(|&k| k != kb).collect();
        let ch = &self.reduced;
        let mut by_bitops = Choices {
            start: ch.start.clone(),
            ..Default::default()
        };
        for c in 0..ch.cost.len() {
            by_bitops.cost.push(ch.res[c * m + kb]);
            for &k in &others {
                by_bitops.res.push(ch.res[c * m + k]);
            }
        }
        let ocaps: Vec<f64> = others.iter().map(|&k| caps[k]).collect();
        let tols = self.tols(&caps);
        let otols: Vec<f64> = others.iter().map(|&k| tols[k]).collect();
        let lo = match exact::solve(&by_bitops, others.len(), &ocaps, &otols, None, None, opts) {
            Exact::Infeasible => return Err(self.infeasible(&caps)),
            Exact::Unfinished => return Err(limit_reached(opts)),
            // An exact integer (sums of integers below 2^53): adding a half before the
            // cast rounded an odd sum above 2^52 up to the next even one.
            Exact::Solved(o) => o.objective as u64,
        };
        let full = &self.full;
        let mut hi = 0u64;
        for g in 0..full.groups() {
            let mx = (full.start[g]..full.start[g + 1])
                .map(|c| full.res[c * m + kb])
                .fold(0.0, f64::max);
            // Compile keeps a BitOps row below 2^53; saturating all the same (this sum once
            // overflowed on MACs near u64::MAX).
            hi = hi.saturating_add(mx as u64);
        }
        let hi = hi.max(lo);
        let mut out = Vec::with_capacity(points);
        let mut warm: Option<(Vec<f64>, Vec<usize>)> = None;
        let mut gap_hint: Option<f64> = None;
        for i in 0..points {
            let budget = if points == 1 {
                hi
            } else {
                lo + ((u128::from(hi - lo) * i as u128) / (points as u128 - 1)) as u64
            };
            let mut c = caps.clone();
            c[kb] = budget as f64;
            let w = warm.as_ref().map(|(l, x)| (l.as_slice(), x.as_slice()));
            // Only the BitOps row's capacity moves, and its tolerance (integral) does not
            // depend on it: the tolerances of `caps` hold for every point.
            match exact::solve(ch, m, &c, &tols, w, gap_hint, opts) {
                Exact::Infeasible => return Err(self.infeasible(&c)),
                Exact::Unfinished => return Err(limit_reached(opts)),
                Exact::Solved(o) => {
                    let mut s = self.solution(
                        ch,
                        &o.choice,
                        o.optimal,
                        o.lower_bound,
                        o.nodes,
                        Backend::Exact,
                    );
                    s.policy.bitops_budget = Some(budget);
                    if let Some(u) = s.usage.iter_mut().find(|u| u.name == "BitOps") {
                        u.budget = Some(budget as f64);
                    }
                    out.push(s);
                    solved(out.len());
                    // The next point's first pass looks for a policy within this
                    // point's gap (times SWEEP_GAP_MARGIN) of its own bound.
                    gap_hint = (o.optimal && o.objective > o.root_lb)
                        .then_some(SWEEP_GAP_MARGIN * (o.objective - o.root_lb));
                    warm = Some((o.lambda, o.choice));
                }
            }
        }
        Ok(out)
    }

    /// Builds the solution for one choice (input indices of `ch`) per group.
    pub(crate) fn solution(
        &self,
        ch: &Choices,
        choice: &[usize],
        optimal: bool,
        lower_bound: f64,
        nodes: u64,
        backend: Backend,
    ) -> Solution {
        let n = self.layer_names.len();
        let mut bits: Vec<(u32, u32)> = vec![(0, 0); n];
        let mut objective = 0.0;
        for (g, &c) in choice.iter().enumerate() {
            objective += ch.cost[c];
            for (j, &l) in self.group_layers[g].iter().enumerate() {
                if let Some(&b) = ch.bits_of(c).get(j) {
                    bits[l] = b;
                }
            }
        }
        for l in 0..n {
            if let Some(f) = self.fixed[l] {
                bits[l] = f;
            }
        }
        let (policy, usage, fixed_bitops) = self.account(&bits, objective, optimal);
        let lb = if optimal {
            objective
        } else {
            lower_bound.min(objective)
        };
        Solution {
            policy,
            usage,
            fixed_bitops,
            proof: Proof {
                optimal,
                lower_bound: lb,
                gap: objective - lb,
                nodes,
                backend,
            },
        }
    }

    /// The policy of per-layer `bits` (every layer, fixed ones included) with its
    /// objective, and its use of every budget: BitOps (searchable layers), size (all
    /// layers), then each extra resource (fixed layers' listed values included). Also the
    /// BitOps of the fixed layers. The one accounting behind [`Solution`] and
    /// [`Evaluation`](crate::Evaluation).
    pub(crate) fn account(
        &self,
        bits: &[(u32, u32)],
        objective: f64,
        optimal: bool,
    ) -> (Policy, Vec<Usage>, u64) {
        let n = self.layer_names.len();
        let mut bitops = 0u64;
        let mut fixed_bitops = 0u64;
        let mut size = 0u64;
        for l in 0..n {
            let (w, a) = bits[l];
            let b = self.macs[l].saturating_mul(u64::from(w) * u64::from(a));
            if self.fixed[l].is_some() {
                fixed_bitops = fixed_bitops.saturating_add(b);
            } else {
                bitops = bitops.saturating_add(b);
            }
            size = size.saturating_add(self.params[l].saturating_mul(u64::from(w)));
        }
        let budget_of = |kind: RowKind| self.rows.iter().find(|r| r.kind == kind).map(|r| r.budget);
        let mut usage = vec![
            Usage {
                name: String::from("BitOps"),
                used: bitops as f64,
                // The policy's budget, as a number: from the f64 row, a budget within 1024 of
                // u64::MAX rounded to 2^64 and was dropped as "none".
                budget: self
                    .bitops_budget
                    .filter(|&b| b != u64::MAX)
                    .map(|b| b as f64),
            },
            Usage {
                name: String::from("size"),
                used: size as f64,
                budget: budget_of(RowKind::Size),
            },
        ];
        for (e, table) in self.extra.iter().enumerate() {
            let row = self.rows.iter().find(|r| r.kind == RowKind::Extra(e));
            let used: f64 = (0..n)
                .map(|l| table.get(&(l, bits[l].0, bits[l].1)).unwrap_or(0.0))
                .sum();
            usage.push(Usage {
                name: row.map(|r| r.name.clone()).unwrap_or_default(),
                used,
                budget: row.map(|r| r.budget),
            });
        }
        let layers = (0..n)
            .map(|l| LayerBits {
                name: self.layer_names[l].clone(),
                weight: bits[l].0,
                act: bits[l].1,
            })
            .collect();
        let policy = Policy {
            model: self.model.clone(),
            layers,
            objective,
            bitops,
            weight_bits_total: size,
            optimal,
            bitops_budget: self.bitops_budget.filter(|&b| b != u64::MAX),
            size_budget_bits: self.size_budget_bits,
        };
        (policy, usage, fixed_bitops)
    }
}

/// A sweep point's first pass looks this many times the previous point's gap above its
/// Lagrangian bound (see `exact::solve`'s `gap_hint`).
const SWEEP_GAP_MARGIN: f64 = 1.0;
