//! `limpq solve`: pick per-layer bits for an indicator file under budgets.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use limpq_io::documents;
use limpq_solver::{
    report, BitOpsBudget, IndicatorSet, Problem, SizeBudget, SolveOptions, MAX_SWEEP_POINTS,
};

use super::num;
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

Exit status: 0 solved and proven optimal (with --price: the policy meets the budgets);
  1 error; 2 usage error; 3 no policy meets the budgets (with --price: this one does
  not); 4 a policy was found, printed and written, but not proven optimal within
  --time-limit / --node-limit; 5 that limit was reached before any policy meeting the
  budgets was found (nothing written; a larger limit may find one).";

/// The default time limit of the microlp backend, seconds.
const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(600);

/// Solve the bit-width search for an indicator file under budgets.
#[derive(clap::Args)]
#[command(after_long_help = COUNTING)]
pub struct Args {
    /// Indicator file (RON, or JSON when the name ends in .json).
    pub indicators: PathBuf,
    /// BitOps budget: `w4a4` (every searchable layer at W4 A4) or a number of BitOps.
    /// Required unless --sweep is given (a sweep picks its own budgets).
    #[arg(long, value_parser = BitOpsBudget::parse)]
    pub bitops: Option<BitOpsBudget>,
    /// Weight-size budget: `cr:X` (compression ratio against 32-bit weights of the whole
    /// model) or a number of bytes.
    #[arg(long, value_parser = SizeBudget::parse)]
    pub size: Option<SizeBudget>,
    /// Weight of the weight indicators in the objective. Default 2 (learned step sizes),
    /// or 1 for a file whose meta says `source: sensitivity` (`limpq sensitivity`: weights
    /// and activations are loss increases alike).
    #[arg(long, value_parser = num::non_negative, allow_negative_numbers = true)]
    pub alpha: Option<f64>,
    /// Search weight bits only; activations of searchable layers at BITS (default 8).
    #[arg(long, value_name = "BITS", num_args = 0..=1, default_missing_value = "8", require_equals = true, value_parser = num::bits)]
    pub weight_only: Option<u32>,
    /// Extra linear resource table (format below); give one --max per --resource, in order.
    #[arg(long, value_name = "FILE")]
    pub resource: Vec<PathBuf>,
    /// Maximum of the matching --resource.
    #[arg(long, value_name = "X", value_parser = num::non_negative, allow_negative_numbers = true)]
    pub max: Vec<f64>,
    /// Candidate weight bits, comma separated (default: the file's).
    #[arg(long, value_delimiter = ',', value_parser = num::bits)]
    pub weight_bits: Vec<u32>,
    /// Candidate activation bits, comma separated (default: the file's).
    #[arg(long, value_delimiter = ',', value_parser = num::bits)]
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
    /// writes it. Exact backend only; not with --bitops. A sweep that runs over a second
    /// shows its progress on stderr when stderr is a terminal.
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
    #[arg(long, value_name = "S", value_parser = num::positive_seconds, allow_negative_numbers = true)]
    pub time_limit: Option<Duration>,
    /// Search states of the exact backend before it stops proving (default 20000000);
    /// past it the best policy found is kept, not proven optimal (exit status 4).
    #[arg(long, value_name = "N")]
    pub node_limit: Option<u64>,
    /// Price this policy file instead of searching: its objective and its use of every
    /// budget under the same flags, counted as a search counts them, and whether it meets
    /// the budgets and the layer rules (pins, ties, candidate bits, the non-monotone rule).
    /// --bitops is optional; writes nothing. Exit status 3 when it does not meet them, each
    /// reason on stderr.
    #[arg(long, value_name = "POLICY")]
    pub price: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum BackendArg {
    /// Our own solver: Lagrangian bound, reduced-cost fixing, dynamic programming.
    Exact,
    /// The general ILP solver microlp.
    Microlp,
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
    let bits = |v: &str, what: &str| {
        num::bits(v).map_err(|e| usage(format!("--pin `{pin}`: {what} bits `{v}`: {e}")))
    };
    let weight = bits(w, "weight")?;
    let act = bits(x, "activation")?;
    Ok(Pin {
        layer: name.to_string(),
        weight,
        act,
    })
}

/// Refuses, as usage errors (exit status 2), flags that are missing, malformed, or that
/// the chosen mode would ignore; returns the parsed pins. Runs before any file is read.
fn check_usage(a: &Args) -> anyhow::Result<Vec<Pin>> {
    if a.price.is_some() {
        let searching = [
            (a.sweep.is_some(), "--sweep"),
            (a.backend != BackendArg::Exact, "--backend"),
            (a.time_limit.is_some(), "--time-limit"),
            (a.node_limit.is_some(), "--node-limit"),
            (a.output.is_some(), "-o"),
        ];
        if let Some((_, flag)) = searching.iter().find(|(given, _)| *given) {
            return Err(usage(format!(
                "--price prices a given policy and searches nothing: leave out {flag}"
            )));
        }
    }
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
        Some(n) if n == 0 || n > MAX_SWEEP_POINTS => {
            return Err(usage(format!(
                "--sweep {n}: the number of budgets must be 1 to {MAX_SWEEP_POINTS}"
            )))
        }
        None if a.bitops.is_none() && a.price.is_none() => {
            return Err(usage(
                "--bitops is required (e.g. --bitops w4a4), unless --sweep N or --price is given",
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
    if a.time_limit.is_some() && a.backend != BackendArg::Microlp {
        return Err(usage(
            "--time-limit is the microlp backend's: add --backend microlp (the exact backend takes --node-limit)",
        ));
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
    for (flag, lists) in [
        ("--tie-weights", &a.tie_weights),
        ("--tie-acts", &a.tie_acts),
    ] {
        if let Some(t) = lists
            .iter()
            .find(|t| t.split(',').any(|n| n.trim().is_empty()))
        {
            return Err(usage(format!(
                "{flag} `{t}`: an empty layer name; expected L1,L2,.."
            )));
        }
    }
    a.pin.iter().map(|p| parse_pin(p)).collect()
}

/// A solver error with its context: `{verb} {file}`, or, for an error in an extra resource
/// table (its field is `resource `NAME``), the --resource file that table came from, which
/// the error is about. `p` holds the tables as read, in --resource order.
fn blame(a: &Args, p: &Problem, file: &str, verb: &str, e: limpq_solver::Error) -> anyhow::Error {
    let table = match &e {
        limpq_solver::Error::InvalidInput { field, .. } => field
            .strip_prefix("resource `")
            .and_then(|r| r.strip_suffix('`')),
        _ => None,
    };
    let path = table.and_then(|name| {
        a.resource
            .iter()
            .zip(&p.options.resources)
            .find(|(_, r)| r.table.name == name)
            .map(|(f, _)| f)
    });
    // A budget the parser took but the model cannot (a `cr:X` so small that the bits pass
    // a 64-bit count) is the flag's fault, not the file's.
    let flag = match (&e, a.size) {
        (limpq_solver::Error::InvalidInput { field, .. }, Some(s)) if field == "size" => {
            Some(format!("--size {s}"))
        }
        _ => None,
    };
    let context = match (path, flag) {
        (Some(path), _) => format!("in {} (--resource) for {file}", path.display()),
        (None, Some(flag)) => format!("{flag} for {file}"),
        (None, None) => format!("{verb} {file}"),
    };
    anyhow::Error::new(e).context(context)
}

fn build_problem(a: &Args, ind: IndicatorSet, pins: &[Pin]) -> anyhow::Result<Problem> {
    let alpha = a.alpha.unwrap_or_else(|| ind.default_alpha());
    let mut p = Problem::new(ind)
        .alpha(alpha)
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
        p = p.resource(documents::read_resource_table(f)?, mx);
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

/// A sweep's progress on stderr, `sweep: K/N points, T s`, redrawn at most five times a
/// second once the sweep has run for a second, and only when stderr is a terminal: a short
/// sweep, or one whose stderr is a file or a pipe, prints nothing.
struct SweepProgress {
    points: usize,
    start: Instant,
    next: Instant,
    on: bool,
    drawn: bool,
}

impl SweepProgress {
    fn new(points: usize, start: Instant) -> Self {
        SweepProgress {
            points,
            start,
            next: start + Duration::from_secs(1),
            on: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    fn solved(&mut self, k: usize) {
        let now = Instant::now();
        if !self.on || now < self.next {
            return;
        }
        self.next = now + Duration::from_millis(200);
        let secs = (now - self.start).as_secs_f64();
        // Best effort: a progress line that cannot be written is not worth stopping for.
        let _ = write!(
            std::io::stderr(),
            "\rsweep: {k}/{} points, {secs:.1} s",
            self.points
        );
        self.drawn = true;
    }

    /// Clears the line, so the table or an error starts on a clean one.
    fn finish(&self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
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
    let mut inputs = vec![("the indicator file", Some(a.indicators.as_path()))];
    inputs.extend(a.resource.iter().map(|r| ("--resource", Some(r.as_path()))));
    super::out::distinct_outputs(&[("-o", a.output.as_deref())], &inputs)?;
    let ind = limpq_io::documents::read_indicators(&a.indicators)?;
    let file = a.indicators.display().to_string();
    let p = build_problem(&a, ind, &pins)?;
    if let Some(given) = &a.price {
        return price(&a, &p, &file, given);
    }
    let opts = solve_options(&a);
    if let Some(n) = a.sweep {
        let t = Instant::now();
        let mut progress = SweepProgress::new(n, t);
        let sols = p.sweep_reporting(n, &opts, &mut |k| progress.solved(k));
        progress.finish();
        let sols = sols.map_err(|e| blame(&a, &p, &file, "solving", e))?;
        let dt = t.elapsed();
        let frontier = report::frontier(&p.indicators.model, &sols);
        if let Some(o) = &a.output {
            documents::write_frontier(o, &frontier)?;
        }
        let printed = a.format.print(
            &report::sweep_report(&file, &p, &frontier, &sols, dt),
            || report::frontier_table(&p.indicators, &frontier, dt),
        );
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
    let compiled = p.compile().map_err(|e| blame(&a, &p, &file, "in", e))?;
    let sol = match a.backend {
        BackendArg::Exact => compiled.solve(&opts),
        BackendArg::Microlp => {
            compiled.solve_microlp(Some(a.time_limit.unwrap_or(DEFAULT_TIME_LIMIT)))
        }
    }
    .with_context(|| format!("solving {file}"))?;
    let dt = t.elapsed();
    if let Some(o) = &a.output {
        documents::write_policy(o, &sol.policy)?;
    }
    let printed = a
        .format
        .print(&report::solve_report(&file, &p, &sol, dt), || {
            report::table(&p, &sol, dt)
        });
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

/// `--price POLICY`: the policy file's layers priced under the problem.
fn price(a: &Args, p: &Problem, file: &str, given: &std::path::Path) -> anyhow::Result<()> {
    let policy = documents::read_policy(given)?;
    // A policy for another model is refused (as `limpq finetune` refuses one): layers of
    // the same names would be priced against another network's indicators.
    let e = p
        .evaluate_policy(&policy)
        .map_err(|e| blame(a, p, file, &format!("pricing {} under", given.display()), e))?;
    a.format
        .print(&report::evaluation_report(file, p, &e), || {
            report::evaluation_table(p, &e)
        })?;
    if e.feasible {
        return Ok(());
    }
    Err(Coded::new(
        Status::Infeasible,
        format!(
            "{} does not meet the budgets and rules: {}",
            given.display(),
            e.violations.join("; ")
        ),
    )
    .into())
}
