//! Seeded instance generators for tests and `limpq bench-solver`: ResNet-18/50 layer
//! shapes at 224×224 and random many-layer models, with synthetic indicators shaped like
//! learned LSQ step sizes (weights ∝ 2^(1-b), activations ∝ 1/√(2^b-1), with noise).

use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use crate::format::{IndicatorSet, Layer};

/// SplitMix64: small, seedable, good enough for instance generation.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform integer in [lo, hi].
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// A layer's name, MACs, params and whether it is kept at 8 bits (stem, classifier).
#[derive(Clone, Debug)]
pub struct Shape {
    pub name: String,
    pub macs: u64,
    pub params: u64,
    pub fixed: bool,
}

#[allow(clippy::too_many_arguments)]
fn conv(
    out: &mut Vec<Shape>,
    name: String,
    cin: u64,
    cout: u64,
    k: u64,
    stride: u64,
    pad: u64,
    hin: u64,
) -> u64 {
    let hout = (hin + 2 * pad - k) / stride + 1;
    out.push(Shape {
        name,
        macs: cin * cout * k * k * hout * hout,
        params: cin * cout * k * k,
        fixed: false,
    });
    hout
}

fn stem(out: &mut Vec<Shape>) -> u64 {
    let h = conv(out, String::from("conv1"), 3, 64, 7, 2, 3, 224);
    out[0].fixed = true;
    (h + 2 - 3) / 2 + 1 // 3×3/2 max pool, padding 1
}

fn fc(out: &mut Vec<Shape>, cin: u64) {
    out.push(Shape {
        name: String::from("fc"),
        macs: cin * 1000,
        params: cin * 1000,
        fixed: true,
    });
}

/// torchvision ResNet-18 at 224×224: 20 convs (stem fixed) and the classifier (fixed).
pub fn resnet18() -> Vec<Shape> {
    let mut v = Vec::new();
    let mut h = stem(&mut v);
    let mut cin = 64;
    for (li, &w) in [64u64, 128, 256, 512].iter().enumerate() {
        for b in 0..2 {
            let s = if li > 0 && b == 0 { 2 } else { 1 };
            let p = format!("layer{}.{b}", li + 1);
            let hin = h;
            h = conv(&mut v, format!("{p}.conv1"), cin, w, 3, s, 1, hin);
            conv(&mut v, format!("{p}.conv2"), w, w, 3, 1, 1, h);
            if s != 1 || cin != w {
                conv(&mut v, format!("{p}.downsample"), cin, w, 1, s, 0, hin);
            }
            cin = w;
        }
    }
    fc(&mut v, 512);
    v
}

/// torchvision ResNet-50 (v1.5, stride on the 3×3) at 224×224: 53 convs, 52 searchable.
pub fn resnet50() -> Vec<Shape> {
    let mut v = Vec::new();
    let mut h = stem(&mut v);
    let mut cin = 64;
    for (li, (&w, &n)) in [64u64, 128, 256, 512].iter().zip(&[3, 4, 6, 3]).enumerate() {
        for b in 0..n {
            let s = if li > 0 && b == 0 { 2 } else { 1 };
            let p = format!("layer{}.{b}", li + 1);
            let hin = h;
            conv(&mut v, format!("{p}.conv1"), cin, w, 1, 1, 0, hin);
            h = conv(&mut v, format!("{p}.conv2"), w, w, 3, s, 1, hin);
            conv(&mut v, format!("{p}.conv3"), w, 4 * w, 1, 1, 0, h);
            if b == 0 {
                conv(&mut v, format!("{p}.downsample"), cin, 4 * w, 1, s, 0, hin);
            }
            cin = 4 * w;
        }
    }
    fc(&mut v, 2048);
    v
}

/// `n` searchable layers with log-uniform MACs (1e5..1e9) and params (1e3..1e6).
pub fn random_shapes(n: usize, rng: &mut Rng) -> Vec<Shape> {
    (0..n)
        .map(|i| {
            let macs = 10f64.powf(5.0 + 4.0 * rng.uniform()) as u64 + 1;
            let params = 10f64.powf(3.0 + 3.0 * rng.uniform()) as u64 + 1;
            Shape {
                name: format!("l{i}"),
                macs,
                params,
                fixed: false,
            }
        })
        .collect()
}

/// Synthetic indicators for `shapes`: monotone in the bits unless `non_monotone` > 0,
/// the chance per layer and list that two neighbouring values are swapped.
pub fn indicators(
    model: &str,
    shapes: &[Shape],
    weight_bits: &[u32],
    act_bits: &[u32],
    non_monotone: f64,
    rng: &mut Rng,
) -> IndicatorSet {
    let mut layers = Vec::with_capacity(shapes.len());
    for s in shapes {
        let sigma = 0.02 + 0.1 * rng.uniform();
        let mu = 0.3 + 1.5 * rng.uniform();
        let mut ws: Vec<f64> = weight_bits
            .iter()
            .map(|&b| sigma * 2f64.powi(1 - b as i32) * (1.0 + 0.3 * rng.uniform()))
            .collect();
        let mut acts: Vec<f64> = act_bits
            .iter()
            .map(|&b| mu * 2.0 / ((2f64.powi(b as i32) - 1.0).sqrt()) * (1.0 + 0.3 * rng.uniform()))
            .collect();
        for v in [&mut ws, &mut acts] {
            if v.len() > 1 && rng.uniform() < non_monotone {
                let i = rng.range(0, v.len() as u64 - 2) as usize;
                v.swap(i, i + 1);
            }
        }
        let fixed = s.fixed;
        layers.push(Layer {
            name: s.name.clone(),
            macs: s.macs,
            params: s.params,
            weight_scale: if fixed { Vec::new() } else { ws },
            act_scale: if fixed { Vec::new() } else { acts },
            fixed: if fixed { Some((8, 8)) } else { None },
        });
    }
    IndicatorSet {
        model: String::from(model),
        weight_bits: weight_bits.to_vec(),
        act_bits: act_bits.to_vec(),
        layers,
        meta: Vec::new(),
    }
}

/// Indicators shaped like those of real LIMPQ runs (learned LSQ step sizes), for `shapes`.
///
/// What real indicator sets look like (`examples/resnet20.indicators.ron`, the indicator
/// files the pipeline writes): per layer, a weight and an activation scale that fall
/// roughly geometrically with the bits (each extra bit multiplies the step size by
/// 0.45–0.65), with a level that varies from layer to layer by about ±40% but does *not*
/// follow the layer's size, and weight and activation scales of the same order (weights
/// 0.2–0.45 at 2 bits, activations 0.4–0.9), so with α = 2 both halves of a choice matter.
/// The synthetic [`indicators`] instead draw activation levels 10–100× the weight ones and
/// independent noise per bit, which makes most layers' choices easy to rank.
///
/// Here: per layer a level `exp(N(ln 0.3, 0.25))` (weights) and `exp(N(ln 0.65, 0.25))`
/// (activations), a decay per bit drawn from U(0.45, 0.65) per layer and list, and
/// per-value noise `exp(N(0, 0.08))` (so a list is occasionally not monotone, as in real
/// files; the non-monotone rule handles it). Fixed layers get placeholder scales 1.0.
pub fn real_like_indicators(
    model: &str,
    shapes: &[Shape],
    weight_bits: &[u32],
    act_bits: &[u32],
    rng: &mut Rng,
) -> IndicatorSet {
    fn normal(rng: &mut Rng) -> f64 {
        // Box–Muller, one value per call.
        let u1 = 1.0 - rng.uniform();
        let u2 = rng.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * core::f64::consts::PI * u2).cos()
    }
    let list = |bits: &[u32], level: f64, rng: &mut Rng| -> Vec<f64> {
        let decay = 0.45 + 0.2 * rng.uniform();
        let b0 = bits.first().copied().unwrap_or(2) as i32;
        bits.iter()
            .map(|&b| level * decay.powi(b as i32 - b0) * (0.08 * normal(rng)).exp())
            .collect()
    };
    let mut layers = Vec::with_capacity(shapes.len());
    for s in shapes {
        let (ws, acts) = if s.fixed {
            (vec![1.0; weight_bits.len()], vec![1.0; act_bits.len()])
        } else {
            let lw = (0.3f64.ln() + 0.25 * normal(rng)).exp();
            let la = (0.65f64.ln() + 0.25 * normal(rng)).exp();
            (list(weight_bits, lw, rng), list(act_bits, la, rng))
        };
        layers.push(Layer {
            name: s.name.clone(),
            macs: s.macs,
            params: s.params,
            weight_scale: ws,
            act_scale: acts,
            fixed: if s.fixed { Some((8, 8)) } else { None },
        });
    }
    IndicatorSet {
        model: String::from(model),
        weight_bits: weight_bits.to_vec(),
        act_bits: act_bits.to_vec(),
        layers,
        meta: Vec::new(),
    }
}

/// The kinds [`bench_problem`] knows, in the benchmark's order.
pub const BENCH_KINDS: &[&str] = &[
    "resnet18",
    "resnet50",
    "resnet18-real",
    "resnet50-real",
    "random200",
    "random1000",
];

/// Kinds with a third budget: a [`BENCH_KINDS`] kind and a latency-like resource table
/// ([`latency_like_table`]) limited to 95% of its value at uniform W4A4. [`bench_problem`]
/// knows them too; the benchmark times them after [`BENCH_KINDS`].
pub const BENCH_KINDS_LATENCY: &[&str] = &["resnet50+lat", "resnet50-real+lat"];

/// A latency-like resource table for `ind` (an illustration, not a measured device): per
/// layer and (weight, act) bits, `MACs · max(w, a)^0.8 · 10⁻⁹ + params · w · 2·10⁻⁸ +
/// 0.01`. Compute runs at the wider of the two bit-widths and gains less than linearly
/// from fewer bits, weights cost memory traffic by their size, and every layer has a
/// fixed overhead; so the table is neither BitOps nor size, as a table profiled on a
/// device would not be. Fixed layers get their row at their fixed bits.
pub fn latency_like_table(ind: &IndicatorSet) -> crate::format::ResourceTable {
    use crate::format::{ResourceLayer, ResourceTable};
    let value = |l: &Layer, w: u32, a: u32| {
        l.macs as f64 * f64::from(w.max(a)).powf(0.8) * 1e-9
            + l.params as f64 * f64::from(w) * 2e-8
            + 0.01
    };
    let layers = ind
        .layers
        .iter()
        .map(|l| {
            let costs = match l.fixed {
                Some((w, a)) => vec![(w, a, value(l, w, a))],
                None => ind
                    .weight_bits
                    .iter()
                    .flat_map(|&w| ind.act_bits.iter().map(move |&a| (w, a)))
                    .map(|(w, a)| (w, a, value(l, w, a)))
                    .collect(),
            };
            ResourceLayer {
                name: l.name.clone(),
                costs,
            }
        })
        .collect();
    ResourceTable {
        name: String::from("latency"),
        layers,
    }
}

/// A benchmark instance: name and problem.
pub fn bench_problem(kind: &str, seed: u64) -> Option<crate::Problem> {
    if let Some(base) = kind.strip_suffix("+lat") {
        if !BENCH_KINDS_LATENCY.contains(&kind) {
            return None;
        }
        let p = bench_problem(base, seed)?;
        let table = latency_like_table(&p.indicators);
        // 95% of the table's value with every searchable layer at W4A4 (the table has
        // a row per layer, in the indicator set's order).
        let w4a4: f64 = table
            .layers
            .iter()
            .zip(&p.indicators.layers)
            .map(|(row, l)| {
                let (w, a) = l.fixed.unwrap_or((4, 4));
                row.costs
                    .iter()
                    .find(|c| (c.0, c.1) == (w, a))
                    .map_or(0.0, |c| c.2)
            })
            .sum();
        return Some(p.resource(table, 0.95 * w4a4));
    }
    let mut rng = Rng(seed);
    let b25: &[u32] = &[2, 3, 4, 5, 6];
    let b36: &[u32] = &[2, 3, 4, 5, 6, 8];
    let r = &mut rng;
    let ind = match kind {
        "resnet18" => indicators("resnet18", &resnet18(), b25, b25, 0.0, r),
        "resnet50" => indicators("resnet50", &resnet50(), b25, b25, 0.0, r),
        "resnet18-real" => real_like_indicators("resnet18", &resnet18(), b25, b25, r),
        "resnet50-real" => real_like_indicators("resnet50", &resnet50(), b25, b25, r),
        "random200" => {
            let shapes = random_shapes(200, r);
            indicators("random200", &shapes, b36, b36, 0.0, r)
        }
        "random1000" => {
            let shapes = random_shapes(1000, r);
            indicators("random1000", &shapes, b36, b36, 0.0, r)
        }
        _ => return None,
    };
    Some(bench_budgets(ind))
}

/// The indicator files `limpq bench solver` and the `bench` example time when given none
/// (paths from the repository root; those missing are skipped): the shipped example, and
/// files our own runs wrote under docs/results — resnet20_lite's learned indicators after 2
/// and 8 joint epochs and its measured sensitivity, a ResNet-50 at 64×64 near its init
/// (docs/results/resnet50_64/make.sh), the same ResNet-50 trained on a GPU (3 epochs in
/// full precision, 1 joint: docs/results/resnet50_64_trained/make.sh), and the hardest of
/// the twenty files of the 3–6-bit control run (docs/results/controls/bits3to6: seed 8's
/// measured sensitivity, 1,452 states under the bench's budgets, where the others take
/// 10–873) — and the LIMPQ authors' ImageNet ResNet-50 indicators
/// (docs/results/reference_resnet50), under the bench's budgets and under the budgets of
/// their own search. An entry `PATH@BITOPS,SIZE` is timed under those budgets instead of
/// the bench's (see [`bench_entry`]).
pub const BENCH_FILES: &[&str] = &[
    "examples/resnet20.indicators.ron",
    "docs/results/indicator_probe/indicators_e2_recipe2.ron",
    "docs/results/indicator_probe/indicators_e8_recipe2.ron",
    "docs/results/indicator_probe/sensitivity_1024.ron",
    "docs/results/resnet50_64/resnet50_64.indicators.ron",
    "docs/results/resnet50_64_trained/resnet50_64_trained.indicators.ron",
    "docs/results/controls/bits3to6/seed8/sensitivity.ron",
    "docs/results/reference_resnet50/reference_resnet50.indicators.ron",
    "docs/results/reference_resnet50/reference_resnet50.indicators.ron@w3a4,cr:12.2",
];

/// Splits a benchmark file entry into its path and the budgets it names: `PATH` (the
/// bench's budgets, [`bench_budgets`]) or `PATH@BITOPS,SIZE`, the budgets as `limpq solve
/// --bitops BITOPS --size SIZE` spells them (e.g. `@w3a4,cr:12.2`). Only the last `@`
/// counts, so a path may hold one.
pub fn bench_entry(entry: &str) -> (&str, Option<&str>) {
    match entry.rsplit_once('@') {
        Some((path, budgets)) if budgets.contains(',') => (path, Some(budgets)),
        _ => (entry, None),
    }
}

/// The name a benchmark row gives a file entry: the file's name, with `@BITOPS,SIZE` when
/// the entry names budgets (`docs/x.ron@w3a4,cr:12.2` → `x.ron@w3a4,cr:12.2`).
pub fn entry_name(entry: &str) -> String {
    let (path, budgets) = bench_entry(entry);
    let name = std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned());
    match budgets {
        Some(b) => format!("{name}@{b}"),
        None => name,
    }
}

/// The entries of [`BENCH_FILES`] whose file exists (paths from the current directory: the
/// repository root).
pub fn present_bench_files() -> Vec<String> {
    BENCH_FILES
        .iter()
        .filter(|e| std::path::Path::new(bench_entry(e).0).exists())
        .map(|e| e.to_string())
        .collect()
}

/// The problem a benchmark file entry times: `ind` under [`bench_budgets`], or under the
/// `BITOPS,SIZE` budgets [`bench_entry`] split off.
pub fn entry_problem(
    ind: IndicatorSet,
    budgets: Option<&str>,
) -> Result<crate::Problem, crate::ParseBudgetError> {
    use crate::{BitOpsBudget, Problem, SizeBudget};
    let Some(b) = budgets else {
        return Ok(bench_budgets(ind));
    };
    let (bitops, size) = b.split_once(',').unwrap_or((b, ""));
    Ok(Problem::new(ind)
        .bitops(BitOpsBudget::parse(bitops)?)
        .size(SizeBudget::parse(size)?))
}

/// The benchmark's budgets on any indicator set: BitOps of uniform W4A4 and weights at
/// 3.5 bits on average (4.5 when the file has 6 or more weight bit-widths), fixed layers
/// counted at their bits; on the generated kinds both rows bind.
pub fn bench_budgets(ind: IndicatorSet) -> crate::Problem {
    use crate::{BitOpsBudget, Problem, SizeBudget};
    let avg = if ind.weight_bits.len() <= 5 { 3.5 } else { 4.5 };
    Problem::new(ind)
        .bitops(BitOpsBudget::Uniform { weight: 4, act: 4 })
        .size(SizeBudget::CompressionRatio(32.0 / avg))
}

/// Settings of [`bench`](fn@bench).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BenchOptions {
    /// Seeded instances per kind.
    pub instances: u64,
    /// Timed exact solves per instance.
    pub repeats: usize,
    /// Time limit of one microlp solve.
    pub microlp_limit: std::time::Duration,
    /// Total time microlp may spend per instance kind (later instances are skipped).
    pub microlp_budget: std::time::Duration,
    /// Points of the ResNet-50 sweep.
    pub sweep_points: usize,
    /// Indicator files (name, problem with the benchmark's budgets, see [`bench_budgets`])
    /// timed after the generated kinds, one row each.
    pub files: Vec<(String, crate::Problem)>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            instances: 5,
            repeats: 20,
            microlp_limit: std::time::Duration::from_secs(10),
            microlp_budget: std::time::Duration::from_secs(30),
            sweep_points: 100,
            files: Vec::new(),
        }
    }
}

/// One line of the benchmark.
#[derive(Clone, Debug)]
pub struct BenchRow {
    pub name: String,
    pub groups: usize,
    pub choices: usize,
    /// Median wall time of compile + exact solve (or the whole sweep).
    pub exact_median: std::time::Duration,
    /// Median wall time of `Problem::compile` alone, and of the exact solve alone
    /// (`Compiled::solve`), over the same runs (zero for the sweep row).
    pub compile_median: std::time::Duration,
    pub solve_median: std::time::Duration,
    pub exact_runs: usize,
    /// Every exact run proved optimality.
    pub exact_all_optimal: bool,
    /// Instances (sweep: points) whose exact solve proved optimality.
    pub exact_proven: usize,
    pub exact_max_nodes: u64,
    /// Median of microlp's compile + solve over the instances it ran on.
    pub microlp_median: Option<std::time::Duration>,
    /// Instances microlp ran on, of `instances`; how many it proved optimal.
    pub microlp_runs: usize,
    pub microlp_optimal: usize,
    pub instances: usize,
    /// Instances where both proved optimality and the objectives differ (must be 0).
    pub disagreements: usize,
}

/// The benchmark's table (`limpq bench solver`): a row per instance kind, then what each
/// column means under `o`.
pub fn bench_table(rows: &[BenchRow], o: &BenchOptions) -> String {
    use std::fmt::Write as _;
    let ms = |d: std::time::Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    let us = |d: std::time::Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6);
    // The name column fits the longest name (indicator files' names can be long).
    let w = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(28);
    let mut s = format!(
        "{:<w$} {:>6} {:>8} {:>11} {:>11} {:>11} {:>8} {:>10} {:>16} {:>15} {:>6}\n",
        "instance",
        "groups",
        "choices",
        "compile",
        "solve",
        "total",
        "proven",
        "max states",
        "microlp median",
        "microlp ran",
        "agree"
    );
    for r in rows {
        let sweep = r.compile_median.is_zero() && r.solve_median.is_zero();
        let (c, sv) = if sweep {
            (String::from("-"), String::from("-"))
        } else {
            (us(r.compile_median), us(r.solve_median))
        };
        let total = if r.exact_median.as_secs_f64() < 1e-2 {
            us(r.exact_median)
        } else {
            ms(r.exact_median)
        };
        let _ = writeln!(
            s,
            "{:<w$} {:>6} {:>8} {:>11} {:>11} {:>11} {:>8} {:>10} {:>16} {:>15} {:>6}",
            r.name,
            r.groups,
            r.choices,
            c,
            sv,
            total,
            format!("{}/{}", r.exact_proven, r.instances),
            r.exact_max_nodes,
            r.microlp_median.map_or(String::from("-"), ms),
            format!(
                "{}/{} ({} opt)",
                r.microlp_runs, r.instances, r.microlp_optimal
            ),
            if r.disagreements == 0 {
                String::from("yes")
            } else {
                format!("{} NO", r.disagreements)
            },
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "compile, solve, total: medians over {} instances × {} repeats of Problem::compile, Compiled::solve and both together, in-process (once if a solve takes > 100 ms; a file is one instance; sweep: whole sweep, up to 10 repeats).", o.instances, o.repeats);
    let _ = writeln!(s, "proven: instances (sweep: points) whose exact solve proved optimality within the default budget of {} DP states; max states: the most any one solve used.", crate::SolveOptions::default().node_limit);
    let _ = writeln!(s, "microlp: one solve per instance, each capped at {} s, at most {} s per kind (later instances skipped); the sweep row scales microlp's per-point time to all points if it stopped early. 'agree' compares objectives where both proved optimality.", o.microlp_limit.as_secs_f64(), o.microlp_budget.as_secs_f64());
    s
}

#[cfg(feature = "microlp")]
fn median(mut v: Vec<std::time::Duration>) -> std::time::Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Runs the solver benchmark: exact vs microlp on the same seeded instances.
#[cfg(feature = "microlp")]
pub fn bench(
    o: &BenchOptions,
    mut progress: impl FnMut(&str),
) -> Result<Vec<BenchRow>, crate::Error> {
    use std::time::Instant;
    let mut rows = Vec::new();
    let mut instances: Vec<(String, Vec<crate::Problem>)> = Vec::new();
    for kind in BENCH_KINDS.iter().chain(BENCH_KINDS_LATENCY) {
        let ps = (0..o.instances)
            .map(|seed| {
                bench_problem(kind, seed)
                    .ok_or_else(|| crate::Error::input(None, "kind", "unknown"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        instances.push((String::from(*kind), ps));
    }
    for (name, p) in &o.files {
        instances.push((name.clone(), vec![p.clone()]));
    }
    for (kind, problems) in &instances {
        progress(kind);
        let mut ex = Vec::new();
        let mut tc = Vec::new();
        let mut ts = Vec::new();
        let mut ml = Vec::new();
        let mut row = BenchRow {
            name: kind.clone(),
            groups: 0,
            choices: 0,
            exact_median: Default::default(),
            compile_median: Default::default(),
            solve_median: Default::default(),
            exact_runs: 0,
            exact_all_optimal: true,
            exact_proven: 0,
            exact_max_nodes: 0,
            microlp_median: None,
            microlp_runs: 0,
            microlp_optimal: 0,
            instances: problems.len(),
            disagreements: 0,
        };
        let mut ml_spent = std::time::Duration::ZERO;
        for p in problems {
            let mut sol = None;
            for _ in 0..o.repeats {
                let t = Instant::now();
                let c = p.compile()?;
                let t1 = Instant::now();
                let s = c.solve(&Default::default())?;
                let t2 = Instant::now();
                let dt = t2 - t;
                ex.push(dt);
                tc.push(t1 - t);
                ts.push(t2 - t1);
                let slow = dt > std::time::Duration::from_millis(100);
                row.exact_all_optimal &= s.proof.optimal;
                row.exact_max_nodes = row.exact_max_nodes.max(s.proof.nodes);
                sol = Some(s);
                if slow {
                    break; // one timing is enough for a slow instance
                }
            }
            if sol.as_ref().is_some_and(|s| s.proof.optimal) {
                row.exact_proven += 1;
            }
            let c = p.compile()?;
            row.groups = c.groups();
            row.choices = c.choices().0;
            if ml_spent < o.microlp_budget {
                let t = Instant::now();
                let r = c.solve_microlp(Some(o.microlp_limit));
                let dt = t.elapsed();
                ml_spent += dt;
                ml.push(dt);
                row.microlp_runs += 1;
                if let (Ok(m), Some(s)) = (r, &sol) {
                    if m.proof.optimal {
                        row.microlp_optimal += 1;
                        let (a, b) = (m.policy.objective, s.policy.objective);
                        if s.proof.optimal && (a - b).abs() > 1e-7 * (1.0 + a.abs()) {
                            row.disagreements += 1;
                        }
                    }
                }
            }
        }
        row.exact_runs = ex.len();
        row.exact_median = median(ex);
        row.compile_median = median(tc);
        row.solve_median = median(ts);
        if !ml.is_empty() {
            row.microlp_median = Some(median(ml));
        }
        rows.push(row);
    }
    // The sweep.
    progress("sweep");
    let mut p =
        bench_problem("resnet50", 0).ok_or_else(|| crate::Error::input(None, "kind", "unknown"))?;
    p.options.bitops = None;
    let mut times = Vec::new();
    let mut all_opt = true;
    let mut nodes = 0;
    let mut pts = Vec::new();
    for _ in 0..o.repeats.clamp(1, 10) {
        let t = Instant::now();
        pts = p.sweep(o.sweep_points)?;
        times.push(t.elapsed());
        all_opt &= pts.iter().all(|s| s.proof.optimal);
        nodes = pts.iter().map(|s| s.proof.nodes).max().unwrap_or(0);
    }
    // microlp on the same budgets, one solve per point, within its time budget.
    let mut ml_total = std::time::Duration::ZERO;
    let mut ml_runs = 0;
    let mut ml_opt = 0;
    let mut dis = 0;
    for s in &pts {
        if ml_total >= o.microlp_budget {
            break;
        }
        let mut q = p.clone();
        q.options.bitops = s.policy.bitops_budget.map(crate::BitOpsBudget::Absolute);
        let t = Instant::now();
        let r = q.compile()?.solve_microlp(Some(o.microlp_limit));
        ml_total += t.elapsed();
        ml_runs += 1;
        if let Ok(m) = r {
            if m.proof.optimal {
                ml_opt += 1;
                if (m.policy.objective - s.policy.objective).abs()
                    > 1e-7 * (1.0 + s.policy.objective.abs())
                {
                    dis += 1;
                }
            }
        }
    }
    let c = p.compile_for_sweep()?;
    rows.push(BenchRow {
        name: format!("resnet50 sweep ×{}", o.sweep_points),
        groups: c.groups(),
        choices: c.choices().0,
        exact_runs: times.len(),
        exact_median: median(times),
        compile_median: Default::default(),
        solve_median: Default::default(),
        exact_all_optimal: all_opt,
        exact_proven: pts.iter().filter(|s| s.proof.optimal).count(),
        exact_max_nodes: nodes,
        // Whole-sweep time: microlp's per-point total scaled to all points if it stopped early.
        microlp_median: (ml_runs > 0).then(|| ml_total * o.sweep_points as u32 / ml_runs as u32),
        microlp_runs: ml_runs,
        microlp_optimal: ml_opt,
        instances: pts.len(),
        disagreements: dis,
    });
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file entry's row name is its file's name, with the budgets it names; a path may
    /// hold an `@` of its own.
    #[test]
    fn entry_names() {
        assert_eq!(entry_name("docs/x/a.ron"), "a.ron");
        assert_eq!(
            entry_name("docs/x/a.ron@w3a4,cr:12.2"),
            "a.ron@w3a4,cr:12.2"
        );
        assert_eq!(entry_name("d@v/a.ron"), "a.ron");
        assert_eq!(entry_name("d@v/a.ron@w4a4,4"), "a.ron@w4a4,4");
    }

    /// The latency kinds add a third row that binds: uniform W4A4 (the BitOps budget's own
    /// policy) breaks it, and the optimum keeps all three budgets.
    #[test]
    fn latency_kinds_bind_a_third_budget() {
        assert!(
            bench_problem("resnet18+lat", 0).is_none(),
            "not a listed kind"
        );
        for kind in BENCH_KINDS_LATENCY {
            let p = bench_problem(kind, 0).expect("a listed kind");
            let e = p
                .evaluate(&p.indicators.uniform_policy(4, 4))
                .expect("a valid policy");
            assert_eq!(e.usage.len(), 3, "{kind}");
            let lat = &e.usage[2];
            assert!(lat.used > lat.budget.expect("a budget"), "{kind}: {lat:?}");
            let s = p.solve().expect("feasible");
            assert!(s.proof.optimal, "{kind}");
            let e = p.evaluate(&s.policy.layers).expect("a valid policy");
            assert!(e.feasible, "{kind}: {:?}", e.violations);
        }
    }
}
