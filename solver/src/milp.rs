//! The general ILP backend: the same knapsack handed to microlp, one binary per allowed
//! choice (dominated ones included), one equality per group, one row per budget.

// Index loops mirror the formulas over rows and layers.
#![allow(clippy::needless_range_loop)]

use std::time::Duration;
use std::vec::Vec;

use crate::error::Error;
use crate::problem::{tol, Compiled};
use crate::solve::{Backend, Solution};

impl Compiled {
    /// Solves with microlp. `time_limit`: give up after this long (the best policy found
    /// is returned, unproven). Its result is re-checked against every budget.
    pub fn solve_microlp(&self, time_limit: Option<Duration>) -> Result<Solution, Error> {
        use microlp::{ComparisonOp, OptimizationDirection, SolveOutcome};
        let ch = &self.full;
        let m = self.m();
        let caps = self.caps();
        let mut p = microlp::Problem::new(OptimizationDirection::Minimize);
        let vars: Vec<_> = ch.cost.iter().map(|&c| p.add_binary_var(c)).collect();
        for g in 0..ch.groups() {
            let terms: Vec<_> = (ch.start[g]..ch.start[g + 1])
                .map(|c| (vars[c], 1.0))
                .collect();
            p.add_constraint(terms.as_slice(), ComparisonOp::Eq, 1.0);
        }
        // Rows scaled so that their largest possible use is about 1 (microlp's tolerances
        // are absolute).
        for k in 0..m {
            let mut mx = 0.0f64;
            for g in 0..ch.groups() {
                mx += (ch.start[g]..ch.start[g + 1])
                    .map(|c| ch.res[c * m + k])
                    .fold(0.0, f64::max);
            }
            let s = if mx > 0.0 { mx } else { 1.0 };
            let terms: Vec<_> = (0..ch.cost.len())
                .filter(|&c| ch.res[c * m + k] != 0.0)
                .map(|c| (vars[c], ch.res[c * m + k] / s))
                .collect();
            p.add_constraint(terms.as_slice(), ComparisonOp::Le, caps[k] / s);
        }
        let mut opts = microlp::SolveOptions::default();
        opts.time_limit = time_limit;
        let outcome = match p.solve_with(opts) {
            Ok(o) => o,
            Err(microlp::Error::Infeasible) => return Err(self.infeasible(&caps)),
            Err(e) => return Err(Error::Backend(format!("{e}"))),
        };
        let sol = match outcome {
            SolveOutcome::Solution(s) => s,
            SolveOutcome::Interrupted(_) => {
                return Err(Error::LimitReached {
                    limit: match time_limit {
                        Some(t) => std::format!("microlp time limit of {} s", t.as_secs_f64()),
                        None => String::from("microlp time limit"),
                    },
                })
            }
        };
        let optimal = sol.status() == microlp::SolutionStatus::Optimal;
        let mut choice = Vec::with_capacity(ch.groups());
        for g in 0..ch.groups() {
            let c = (ch.start[g]..ch.start[g + 1])
                .max_by(|&a, &b| sol.var_value(vars[a]).total_cmp(&sol.var_value(vars[b])))
                .ok_or_else(|| Error::Backend(String::from("empty group")))?;
            choice.push(c);
        }
        for k in 0..m {
            let used: f64 = choice.iter().map(|&c| ch.res[c * m + k]).sum();
            if used > caps[k] + tol(self.rows[k].kind, caps[k]) {
                return Err(Error::Backend(format!(
                    "rounded solution exceeds the {} budget ({used} > {})",
                    self.rows[k].name,
                    caps[k] + self.rows[k].fixed_part
                )));
            }
        }
        let stats = sol.stats();
        let lb = if optimal {
            sol.objective()
        } else {
            stats.best_bound.unwrap_or(f64::NEG_INFINITY)
        };
        Ok(self.solution(
            ch,
            &choice,
            optimal,
            lb,
            stats.nodes_solved,
            Backend::Microlp,
        ))
    }
}
