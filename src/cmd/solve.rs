//! `limpq solve`: pick per-layer bits for an indicator file under budgets.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use limpq_solver::{
    BitOpsBudget, Frontier, FrontierPoint, IndicatorSet, Problem, ResourceTable, SizeBudget,
    Solution,
};

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
  their fixed pair (counted) or be left out (0).";

/// Solve the bit-width search for an indicator file under budgets.
#[derive(clap::Args)]
#[command(after_long_help = COUNTING)]
pub struct Args {
    /// Indicator file (RON, or JSON when the name ends in .json).
    pub indicators: PathBuf,
    /// BitOps budget: `w4a4` (every searchable layer at W4 A4) or a number of BitOps.
    /// Required unless --sweep is given.
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
    /// Solve for N BitOps budgets from the smallest feasible to all-highest-bits and print
    /// the frontier (budget, objective, BitOps, size); -o writes it.
    #[arg(long, value_name = "N")]
    pub sweep: Option<usize>,
    /// Which solver answers (both are exact; `microlp` is the general ILP peer).
    #[arg(long, value_enum, default_value_t = BackendArg::Exact)]
    pub backend: BackendArg,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    pub format: FormatArg,
    /// Write the policy (or the frontier with --sweep) here, atomically; JSON if the name
    /// ends in .json, else RON.
    #[arg(short, long, value_name = "POLICY")]
    pub output: Option<PathBuf>,
    /// Time limit of the microlp backend, seconds.
    #[arg(long, default_value_t = 600.0)]
    pub time_limit: f64,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum BackendArg {
    /// Our own solver: Lagrangian bound, reduced-cost fixing, dynamic programming.
    Exact,
    /// The general ILP solver microlp.
    Microlp,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum FormatArg {
    Table,
    Ron,
    Json,
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
    p.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

fn read_text(p: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
}

/// Writes `text` to `path` atomically: a temporary file beside it, then a rename.
pub fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()));
    }
    Ok(())
}

fn build_problem(a: &Args, ind: IndicatorSet) -> anyhow::Result<Problem> {
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
    if a.resource.len() != a.max.len() {
        bail!(
            "{} --resource file(s) but {} --max value(s): give one --max per --resource",
            a.resource.len(),
            a.max.len()
        );
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
    for pin in &a.pin {
        let (name, bits) = pin
            .rsplit_once('=')
            .with_context(|| format!("--pin `{pin}`: expected LAYER=W,A"))?;
        let (w, x) = bits
            .split_once(',')
            .with_context(|| format!("--pin `{pin}`: expected LAYER=W,A"))?;
        let w: u32 = w
            .trim()
            .parse()
            .with_context(|| format!("--pin `{pin}`: bad weight bits"))?;
        let x: u32 = x
            .trim()
            .parse()
            .with_context(|| format!("--pin `{pin}`: bad activation bits"))?;
        p = p.pin(name, w, x);
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

pub fn run(a: Args) -> anyhow::Result<()> {
    let ind = limpq_io::documents::read_indicators(&a.indicators)?;
    let file = a.indicators.display().to_string();
    if a.sweep.is_none() && a.bitops.is_none() {
        bail!("--bitops is required (e.g. --bitops w4a4), unless --sweep N is given");
    }
    let p = build_problem(&a, ind.clone())?;
    if let Some(n) = a.sweep {
        if a.backend != BackendArg::Exact {
            bail!("--sweep uses the exact backend only");
        }
        let t = Instant::now();
        let pts = p.sweep(n).with_context(|| format!("solving {file}"))?;
        let dt = t.elapsed();
        let frontier = Frontier {
            model: ind.model.clone(),
            points: pts
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
        match a.format {
            FormatArg::Table => print!("{}", frontier_table(&ind, &frontier, dt)),
            FormatArg::Ron => println!("{}", frontier.to_ron_string()),
            FormatArg::Json => println!("{}", frontier.to_json_string()),
        }
        if let Some(o) = &a.output {
            let text = if is_json(o) {
                frontier.to_json_string()
            } else {
                frontier.to_ron_string()
            };
            write_atomic(o, &text)?;
        }
        return Ok(());
    }
    let t = Instant::now();
    let compiled = p.compile().with_context(|| format!("in {file}"))?;
    let sol = match a.backend {
        BackendArg::Exact => compiled.solve(&Default::default()),
        BackendArg::Microlp => {
            let lim = if a.time_limit.is_finite() && a.time_limit > 0.0 {
                Some(Duration::from_secs_f64(a.time_limit))
            } else {
                None
            };
            compiled.solve_microlp(lim)
        }
    }
    .with_context(|| format!("solving {file}"))?;
    let dt = t.elapsed();
    match a.format {
        FormatArg::Table => print!("{}", table(&p, &sol, dt)),
        FormatArg::Ron => println!("{}", sol.policy.to_ron_string()),
        FormatArg::Json => println!("{}", sol.policy.to_json_string()),
    }
    if let Some(o) = &a.output {
        let text = if is_json(o) {
            sol.policy.to_json_string()
        } else {
            sol.policy.to_ron_string()
        };
        write_atomic(o, &text)?;
    }
    Ok(())
}

fn total_params(ind: &IndicatorSet) -> u64 {
    ind.layers.iter().map(|l| l.params).sum()
}

fn fmt_bytes(bits: u64) -> String {
    let b = bits as f64 / 8.0;
    if b >= 1e6 {
        format!("{:.3} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.3} kB", b / 1e3)
    } else {
        format!("{b} B")
    }
}

/// The human-readable report of one solve.
pub fn table(p: &Problem, sol: &Solution, dt: Duration) -> String {
    let ind = &p.indicators;
    let pol = &sol.policy;
    let mut s = String::new();
    let w = ind
        .layers
        .iter()
        .map(|l| l.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
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
        let bo = l.macs * u64::from(b.weight) * u64::from(b.act);
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
        format!("{b} ({:.2}%)", 100.0 * pol.bitops as f64 / b.max(1) as f64)
    });
    let _ = writeln!(
        s,
        "BitOps        {} of budget {budget}  [{searchable} searchable layers]",
        pol.bitops
    );
    let _ = writeln!(
        s,
        "fixed BitOps  {}  [{}; not in the budget]",
        sol.fixed_bitops,
        if fixed.is_empty() {
            String::from("no fixed layers")
        } else {
            fixed.join(", ")
        }
    );
    let cr = 32.0 * total_params(ind) as f64 / pol.weight_bits_total.max(1) as f64;
    let sb = pol.size_budget_bits.map_or(String::from("none"), |b| {
        format!("{} ({} bits)", fmt_bytes(b), b)
    });
    let _ = writeln!(s, "size          {} ({} bits) of budget {sb}, compression {cr:.2}x vs 32-bit  [all {} layers, fixed at their bits]", fmt_bytes(pol.weight_bits_total), pol.weight_bits_total, ind.layers.len());
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
    let _ = writeln!(s, "counting      BitOps = Σ searchable MACs·W·A (fixed layers excluded, shown apart); size = Σ all layers params·W (fixed at their bits)");
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
    let tp = total_params(ind) as f64;
    for (i, p) in f.points.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:>4}  {:>16}  {:>12.6}  {:>16}  {:>14}  {:>7.2}  {}",
            i,
            p.bitops_budget,
            p.objective,
            p.bitops,
            p.weight_bits_total / 8,
            32.0 * tp / p.weight_bits_total.max(1) as f64,
            if p.optimal { "yes" } else { "NO" }
        );
    }
    let _ = writeln!(s, "counting: BitOps = Σ searchable MACs·W·A (fixed layers excluded); size = Σ all layers params·W (fixed at their bits)");
    s
}
