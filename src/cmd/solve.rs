//! `limpq solve`: pick per-layer bits for an indicator file under budgets.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use limpq_io::files;
use limpq_solver::{
    BitOpsBudget, Frontier, FrontierPoint, IndicatorSet, LayerBits, Problem, ResourceTable,
    SizeBudget, Solution, SolveOptions,
};
use serde::Serialize;

use super::out::{usage, Coded, OutputFormat, Status};

const COUNTING: &str = "\
Counting rules:
  BitOps = sum over searchable layers (every layer without `fixed` in the indicator file,
           pinned ones included) of MACs x weight bits x activation bits. Fixed layers
           (stem, classifier) are NOT in the budget nor in the reported BitOps; their BitOps
           at their fixed bits are reported separately. `w4a4` = BitOps of all searchable
           layers at 4-bit weights and 4-bit activations.
  size   = sum over ALL layers, fixed ones at their fixed weight bits, of params x weight
           bits. `cr:X` = 32-bit weights of every layer / X.
  objective = sum over searchable layers of act_scale[a] + alpha x weight_scale[w]
           (act term left out with --weight-only).

Resource files (--resource FILE --max X, RON or JSON):
  ResourceTable(name: \"latency_us\", layers: [
      (name: \"layer1.0.conv1\", costs: [(2, 2, 10.5), (2, 3, 11.0), ...]),  // (wbits, abits, value)
  ])
  Every searchable layer must list every (w, a) pair it may take; fixed layers may list
  their fixed pair (counted) or be left out (0).

Output:
  -o POLICY is written first (the policy file, or the frontier with --sweep, unchanged by
  --format); then stdout gets the table, or with --format json|ron a solve report: the
  policy file's fields plus per-layer MACs/params/BitOps, fixed BitOps, size and
  compression, each extra resource against its max, the proof (optimal, lower bound, gap,
  search states, backend) and the solve time. A policy reader reads the report as a policy.

Exit status: 0 solved and proven optimal; 1 error; 2 usage error; 3 no policy meets the
  budgets; 4 a policy was found, printed and written, but not proven optimal within
  --time-limit / --node-limit.";

/// The most points a sweep solves (each is a full policy kept in memory).
pub const MAX_SWEEP: usize = 100_000;

/// The widest the table's layer column grows; longer names run past it.
const MAX_NAME_COLUMN: usize = 48;

/// The default time limit of the microlp backend, seconds.
const DEFAULT_TIME_LIMIT: f64 = 600.0;

/// Solve the bit-width search for an indicator file under budgets.
#[derive(clap::Args)]
#[command(after_long_help = COUNTING)]
pub struct Args {
    /// Indicator file (RON, or JSON when the name ends in .json).
    pub indicators: PathBuf,
    /// BitOps budget: `w4a4` (every searchable layer at W4 A4) or a number of BitOps.
    /// Required unless --sweep is given (a sweep picks its own budgets).
    #[arg(long, value_parser = parse_bitops)]
    pub bitops: Option<BitOpsBudget>,
    /// Weight-size budget: `cr:X` (compression ratio against 32-bit weights of the whole
    /// model) or a number of bytes.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<SizeBudget>,
    /// Weight of the weight indicators in the objective.
    #[arg(long, default_value_t = 2.0)]
    pub alpha: f64,
    /// Search weight bits only; activations of searchable layers at BITS (default 8).
    #[arg(long, value_name = "BITS", num_args = 0..=1, default_missing_value = "8", require_equals = true)]
    pub weight_only: Option<u32>,
    /// Extra linear resource table (format below); give one --max per --resource, in order.
    #[arg(long, value_name = "FILE")]
    pub resource: Vec<PathBuf>,
    /// Maximum of the matching --resource.
    #[arg(long, value_name = "X")]
    pub max: Vec<f64>,
    /// Candidate weight bits, comma separated (default: the file's).
    #[arg(long, value_delimiter = ',')]
    pub weight_bits: Vec<u32>,
    /// Candidate activation bits, comma separated (default: the file's).
    #[arg(long, value_delimiter = ',')]
    pub act_bits: Vec<u32>,
    /// Hold a layer at given bits: `LAYER=W,A` (repeatable).
    #[arg(long, value_name = "LAYER=W,A")]
    pub pin: Vec<String>,
    /// Layers that must share weight bits, comma separated (repeatable).
    #[arg(long, value_name = "L1,L2,..")]
    pub tie_weights: Vec<String>,
    /// Layers that must share activation bits, e.g. convs reading the same tensor.
    #[arg(long, value_name = "L1,L2,..")]
    pub tie_acts: Vec<String>,
    /// Allow bit-widths whose indicator is smaller than at the next larger bit-width
    /// (by default such a non-monotone bit-width is forbidden for that layer).
    #[arg(long)]
    pub allow_non_monotone: bool,
    /// Solve for N BitOps budgets (1 to 100000) from the smallest feasible to
    /// all-highest-bits and print the frontier (budget, objective, BitOps, size); -o
    /// writes it. Exact backend only; not with --bitops.
    #[arg(long, value_name = "N")]
    pub sweep: Option<usize>,
    /// Which solver answers (both are exact; `microlp` is the general ILP peer).
    #[arg(long, value_enum, default_value_t = BackendArg::Exact)]
    pub backend: BackendArg,
    /// What to print on stdout: the table, or a solve report (the policy's fields and
    /// everything the table shows) in JSON or RON.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Write the policy (or the frontier with --sweep) here, atomically, before anything
    /// is printed; JSON if the name ends in .json, else RON.
    #[arg(short, long, value_name = "POLICY")]
    pub output: Option<PathBuf>,
    /// Time limit of the microlp backend in seconds (default 600); past it the best
    /// policy found is kept, not proven optimal (exit status 4). Only with --backend microlp.
    #[arg(long, value_name = "S")]
    pub time_limit: Option<f64>,
    /// Search states of the exact backend before it stops proving (default 20000000);
    /// past it the best policy found is kept, not proven optimal (exit status 4).
    #[arg(long, value_name = "N")]
    pub node_limit: Option<u64>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum BackendArg {
    /// Our own solver: Lagrangian bound, reduced-cost fixing, dynamic programming.
    Exact,
    /// The general ILP solver microlp.
    Microlp,
}

fn parse_bitops(s: &str) -> Result<BitOpsBudget, String> {
    let l = s.to_ascii_lowercase();
    if let Some(rest) = l.strip_prefix('w') {
        let (w, a) = rest
            .split_once('a')
            .ok_or_else(|| format!("`{s}`: expected wXaY, e.g. w4a4"))?;
        let w: u32 = w.parse().map_err(|_| format!("`{s}`: bad weight bits"))?;
        let a: u32 = a
            .parse()
            .map_err(|_| format!("`{s}`: bad activation bits"))?;
        if w == 0 || a == 0 || w > 32 || a > 32 {
            return Err(format!("`{s}`: bits must be in 1..=32"));
        }
        return Ok(BitOpsBudget::Uniform { weight: w, act: a });
    }
    let v: f64 = l
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{s}`: expected wXaY or a number"))?;
    if !v.is_finite() || v < 0.0 || v >= u64::MAX as f64 {
        return Err(format!("`{s}`: not a valid number of BitOps"));
    }
    Ok(BitOpsBudget::Absolute(v as u64))
}

fn parse_size(s: &str) -> Result<SizeBudget, String> {
    if let Some(r) = s.strip_prefix("cr:") {
        let r: f64 = r
            .parse()
            .map_err(|_| format!("`{s}`: bad compression ratio"))?;
        if !r.is_finite() || r <= 0.0 {
            return Err(format!("`{s}`: compression ratio must be positive"));
        }
        return Ok(SizeBudget::CompressionRatio(r));
    }
    let v: u64 = s
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{s}`: expected cr:X or a number of bytes"))?;
    Ok(SizeBudget::Bytes(v))
}

fn is_json(p: &Path) -> bool {
    files::Format::of(p) == files::Format::Json
}

/// A text file of at most [`files::MAX_TEXT`] bytes (so `/dev/zero` is refused after
/// 64 MiB, not read until memory runs out).
fn read_text(p: &Path) -> anyhow::Result<String> {
    Ok(files::read_text(p, files::MAX_TEXT)?)
}

/// Writes `text` to `path` with [`limpq_io::files::write_atomic`]; kept for the commands
/// that still call it here (new code calls `files::write_atomic` itself).
pub fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    Ok(files::write_atomic(path, text.as_bytes())?)
}

/// A `--pin LAYER=W,A`, parsed.
struct Pin {
    layer: String,
    weight: u32,
    act: u32,
}

fn parse_pin(pin: &str) -> anyhow::Result<Pin> {
    let bad = |what: &str| usage(format!("--pin `{pin}`: {what}; expected LAYER=W,A"));
    let (name, bits) = pin.rsplit_once('=').ok_or_else(|| bad("no `=`"))?;
    let (w, x) = bits.split_once(',').ok_or_else(|| bad("no `,`"))?;
    if name.is_empty() {
        return Err(bad("no layer name"));
    }
    let weight = w.trim().parse().map_err(|_| bad("bad weight bits"))?;
    let act = x.trim().parse().map_err(|_| bad("bad activation bits"))?;
    Ok(Pin {
        layer: name.to_string(),
        weight,
        act,
    })
}

/// Refuses, as usage errors (exit status 2), flags that are missing, malformed, or that
/// the chosen mode would ignore; returns the parsed pins. Runs before any file is read.
fn check_usage(a: &Args) -> anyhow::Result<Vec<Pin>> {
    match a.sweep {
        Some(_) if a.bitops.is_some() => {
            return Err(usage(
                "--sweep picks its own BitOps budgets: leave out --bitops (or --sweep)",
            ))
        }
        Some(_) if a.backend != BackendArg::Exact => {
            return Err(usage(
                "--sweep uses the exact backend only: leave out --backend microlp",
            ))
        }
        Some(n) if n == 0 || n > MAX_SWEEP => {
            return Err(usage(format!(
                "--sweep {n}: the number of budgets must be 1 to {MAX_SWEEP}"
            )))
        }
        None if a.bitops.is_none() => {
            return Err(usage(
                "--bitops is required (e.g. --bitops w4a4), unless --sweep N is given",
            ))
        }
        _ => {}
    }
    if a.resource.len() != a.max.len() {
        return Err(usage(format!(
            "{} --resource file(s) but {} --max value(s): give one --max per --resource",
            a.resource.len(),
            a.max.len()
        )));
    }
    if let Some(t) = a.time_limit {
        if a.backend != BackendArg::Microlp {
            return Err(usage(
                "--time-limit is the microlp backend's: add --backend microlp (the exact backend takes --node-limit)",
            ));
        }
        if !(t.is_finite() && t > 0.0) {
            return Err(usage(format!(
                "--time-limit {t}: expected a positive number of seconds"
            )));
        }
    }
    if let (Some(bits), false) = (a.weight_only, a.act_bits.is_empty()) {
        return Err(usage(format!(
            "--act-bits has no effect with --weight-only (activations stay at {bits} bits): leave out one"
        )));
    }
    if a.node_limit.is_some() && a.backend != BackendArg::Exact {
        return Err(usage(
            "--node-limit is the exact backend's: leave out --backend microlp (which takes --time-limit)",
        ));
    }
    a.pin.iter().map(|p| parse_pin(p)).collect()
}

fn build_problem(a: &Args, ind: IndicatorSet, pins: &[Pin]) -> anyhow::Result<Problem> {
    let mut p = Problem::new(ind)
        .alpha(a.alpha)
        .non_monotone_rule(!a.allow_non_monotone);
    if let Some(b) = a.bitops {
        p = p.bitops(b);
    }
    if let Some(s) = a.size {
        p = p.size(s);
    }
    if let Some(w) = a.weight_only {
        p = p.weight_only(w);
    }
    if !a.weight_bits.is_empty() {
        p = p.weight_bits(&a.weight_bits);
    }
    if !a.act_bits.is_empty() {
        p = p.act_bits(&a.act_bits);
    }
    for (f, &mx) in a.resource.iter().zip(&a.max) {
        let t = read_text(f)?;
        let r = if is_json(f) {
            ResourceTable::from_json_str(&t)
        } else {
            ResourceTable::from_ron_str(&t)
        };
        p = p.resource(r.with_context(|| format!("in {}", f.display()))?, mx);
    }
    for pin in pins {
        p = p.pin(&pin.layer, pin.weight, pin.act);
    }
    for t in &a.tie_weights {
        let names: Vec<&str> = t.split(',').map(str::trim).collect();
        p = p.tie_weights(&names);
    }
    for t in &a.tie_acts {
        let names: Vec<&str> = t.split(',').map(str::trim).collect();
        p = p.tie_acts(&names);
    }
    Ok(p)
}

fn solve_options(a: &Args) -> SolveOptions {
    let mut o = SolveOptions::default();
    if let Some(n) = a.node_limit {
        o.node_limit = n;
    }
    o
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let pins = check_usage(&a)?;
    let ind = limpq_io::documents::read_indicators(&a.indicators)?;
    let file = a.indicators.display().to_string();
    let p = build_problem(&a, ind, &pins)?;
    let opts = solve_options(&a);
    if let Some(n) = a.sweep {
        let t = Instant::now();
        let sols = p
            .sweep_with(n, &opts)
            .with_context(|| format!("solving {file}"))?;
        let dt = t.elapsed();
        let frontier = Frontier {
            model: p.indicators.model.clone(),
            points: sols
                .iter()
                .map(|s| FrontierPoint {
                    bitops_budget: s.policy.bitops_budget.unwrap_or(0),
                    objective: s.policy.objective,
                    bitops: s.policy.bitops,
                    weight_bits_total: s.policy.weight_bits_total,
                    optimal: s.proof.optimal,
                    layers: s.policy.layers.clone(),
                })
                .collect(),
        };
        if let Some(o) = &a.output {
            let text = if is_json(o) {
                frontier.to_json_string()
            } else {
                frontier.to_ron_string()
            };
            files::write_atomic(o, text.as_bytes())?;
        }
        let printed = a
            .format
            .print(&sweep_report(&a, &p, &frontier, &sols, dt), || {
                frontier_table(&p.indicators, &frontier, dt)
            });
        let unproven = frontier.points.iter().filter(|x| !x.optimal).count();
        if unproven > 0 {
            return Err(Coded::new(
                Status::NotOptimal,
                format!(
                    "{unproven} of {} frontier points are NOT proven optimal within --node-limit",
                    frontier.points.len()
                ),
            )
            .into());
        }
        return printed;
    }
    let t = Instant::now();
    let compiled = p.compile().with_context(|| format!("in {file}"))?;
    let sol = match a.backend {
        BackendArg::Exact => compiled.solve(&opts),
        BackendArg::Microlp => {
            let lim = a.time_limit.unwrap_or(DEFAULT_TIME_LIMIT);
            compiled.solve_microlp(Some(Duration::from_secs_f64(lim)))
        }
    }
    .with_context(|| format!("solving {file}"))?;
    let dt = t.elapsed();
    if let Some(o) = &a.output {
        let text = if is_json(o) {
            sol.policy.to_json_string()
        } else {
            sol.policy.to_ron_string()
        };
        files::write_atomic(o, text.as_bytes())?;
    }
    let printed = a
        .format
        .print(&solve_report(&a, &p, &sol, dt), || table(&p, &sol, dt));
    if !sol.proof.optimal {
        let limit = match a.backend {
            BackendArg::Exact => "--node-limit",
            BackendArg::Microlp => "--time-limit",
        };
        return Err(Coded::new(
            Status::NotOptimal,
            format!(
                "the policy is NOT proven optimal within {limit}: objective {:.6}, lower bound {:.6}, gap {:.3e}",
                sol.policy.objective, sol.proof.lower_bound, sol.proof.gap
            ),
        )
        .into());
    }
    printed
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

fn total_params(ind: &IndicatorSet) -> u64 {
    ind.layers
        .iter()
        .map(|l| l.params)
        .fold(0, u64::saturating_add)
}

/// Weights of the whole model at 32 bits over `bits`; `None` when a total overflowed.
fn compression(ind: &IndicatorSet, bits: u64) -> Option<f64> {
    let tp = total_params(ind);
    if saturated(tp) || saturated(bits) {
        return None;
    }
    Some(32.0 * tp as f64 / bits.max(1) as f64)
}

fn layer_bitops(macs: u64, b: &LayerBits) -> Option<u64> {
    macs.checked_mul(u64::from(b.weight))?
        .checked_mul(u64::from(b.act))
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

/// One layer of the solve report.
#[derive(Serialize)]
struct LayerReport<'a> {
    name: &'a str,
    weight: u32,
    act: u32,
    macs: u64,
    params: u64,
    /// MACs · W · A; `None` when it does not fit in 64 bits.
    bitops: Option<u64>,
    /// Held at the indicator file's fixed bits, not counted in `bitops`.
    fixed: bool,
    /// Held by `--pin`.
    pinned: bool,
}

/// Use of an extra resource against its `--max`.
#[derive(Serialize)]
struct ResourceUse<'a> {
    name: &'a str,
    used: f64,
    max: Option<f64>,
}

/// What the solver proved.
#[derive(Serialize)]
struct ProofReport {
    optimal: bool,
    lower_bound: f64,
    gap: f64,
    /// Search states explored.
    nodes: u64,
    backend: String,
}

/// What `solve --format json|ron` prints: the policy file's fields under the same names
/// (so a policy reader reads it as the policy) and everything the table shows.
#[derive(Serialize)]
struct SolveReport<'a> {
    model: &'a str,
    layers: Vec<LayerReport<'a>>,
    objective: f64,
    /// BitOps of the searchable layers.
    bitops: u64,
    /// Bits of all weights, fixed layers at their bits.
    weight_bits_total: u64,
    optimal: bool,
    bitops_budget: Option<u64>,
    size_budget_bits: Option<u64>,
    indicators: String,
    alpha: f64,
    candidate_weight_bits: &'a [u32],
    candidate_act_bits: &'a [u32],
    searchable_layers: usize,
    /// `bitops` as a percentage of `bitops_budget`.
    bitops_budget_percent: Option<f64>,
    /// BitOps of the fixed layers at their fixed bits (not in `bitops` nor the budget).
    fixed_bitops: u64,
    /// 32-bit weights of every layer over `weight_bits_total`.
    compression_ratio: Option<f64>,
    resources: Vec<ResourceUse<'a>>,
    proof: ProofReport,
    solve_seconds: f64,
    /// Totals that did not fit in 64 bits (their figures above are saturated).
    overflow: Vec<&'static str>,
    counting: &'static str,
}

const COUNTING_LINE: &str = "BitOps = Σ searchable MACs·W·A (fixed layers excluded, shown apart); size = Σ all layers params·W (fixed at their bits)";

fn proof_report(sol: &Solution) -> ProofReport {
    ProofReport {
        optimal: sol.proof.optimal,
        lower_bound: sol.proof.lower_bound,
        gap: sol.proof.gap,
        nodes: sol.proof.nodes,
        backend: format!("{:?}", sol.proof.backend),
    }
}

fn resources(sol: &Solution) -> Vec<ResourceUse<'_>> {
    sol.usage
        .iter()
        .skip(2)
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

fn solve_report<'a>(a: &Args, p: &'a Problem, sol: &'a Solution, dt: Duration) -> SolveReport<'a> {
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
                pinned: p.options.pinned.iter().any(|x| x.0 == l.name),
            })
            .collect(),
        objective: pol.objective,
        bitops: pol.bitops,
        weight_bits_total: pol.weight_bits_total,
        optimal: pol.optimal,
        bitops_budget: pol.bitops_budget,
        size_budget_bits: pol.size_budget_bits,
        indicators: a.indicators.display().to_string(),
        alpha: p.options.alpha,
        candidate_weight_bits: p.options.weight_bits.as_deref().unwrap_or(&ind.weight_bits),
        candidate_act_bits: p.options.act_bits.as_deref().unwrap_or(&ind.act_bits),
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

/// One point of the sweep report: the frontier file's fields and the rest of a solve.
#[derive(Serialize)]
struct PointReport<'a> {
    bitops_budget: u64,
    objective: f64,
    bitops: u64,
    weight_bits_total: u64,
    optimal: bool,
    layers: &'a [LayerBits],
    fixed_bitops: u64,
    compression_ratio: Option<f64>,
    resources: Vec<ResourceUse<'a>>,
    proof: ProofReport,
    overflow: Vec<&'static str>,
}

/// What `solve --sweep --format json|ron` prints: the frontier file's fields under the
/// same names and everything the table shows.
#[derive(Serialize)]
struct SweepReport<'a> {
    model: &'a str,
    points: Vec<PointReport<'a>>,
    indicators: String,
    alpha: f64,
    candidate_weight_bits: &'a [u32],
    candidate_act_bits: &'a [u32],
    solve_seconds: f64,
    counting: &'static str,
}

fn sweep_report<'a>(
    a: &Args,
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
        indicators: a.indicators.display().to_string(),
        alpha: p.options.alpha,
        candidate_weight_bits: p.options.weight_bits.as_deref().unwrap_or(&ind.weight_bits),
        candidate_act_bits: p.options.act_bits.as_deref().unwrap_or(&ind.act_bits),
        solve_seconds: dt.as_secs_f64(),
        counting: COUNTING_LINE,
    }
}

/// The human-readable report of one solve.
pub fn table(p: &Problem, sol: &Solution, dt: Duration) -> String {
    let ind = &p.indicators;
    let pol = &sol.policy;
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
        p.options.weight_bits.as_ref().unwrap_or(&ind.weight_bits),
        p.options.act_bits.as_ref().unwrap_or(&ind.act_bits),
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
        } else if p.options.pinned.iter().any(|x| x.0 == l.name) {
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
    let fixed: Vec<String> = ind
        .layers
        .iter()
        .filter_map(|l| l.fixed.map(|(w, a)| format!("{} at W{w}A{a}", l.name)))
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
        figure(sol.fixed_bitops),
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
    for u in sol.usage.iter().skip(2) {
        let _ = writeln!(
            s,
            "{:<13} {} of max {}",
            u.name,
            u.used,
            u.budget.map_or(String::from("none"), |b| b.to_string())
        );
    }
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

fn frontier_table(ind: &IndicatorSet, f: &Frontier, dt: Duration) -> String {
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
