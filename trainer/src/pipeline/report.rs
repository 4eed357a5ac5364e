//! The pipeline's report: `report.md` (a table per budget), `accuracy_vs_bitops.svg` and a
//! per-layer bit chart `bits_<budget>.svg` of each searched policy. The SVG is written by
//! hand: a few rectangles, lines, markers and text, readable in any browser.

use std::fmt::Write as _;

use limpq_solver::LayerBits;
use serde::{Deserialize, Serialize};

/// One finetuned policy's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyResult {
    /// BitOps of the searchable layers.
    pub bitops: u64,
    /// Test accuracy in [0, 1].
    pub accuracy: f64,
    pub loss: f64,
    /// Every layer's bits (fixed layers included).
    pub layers: Vec<LayerBits>,
}

/// A control search's finetuned policy (`macs_only`, `shuffled`, `sensitivity`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControlResult {
    pub kind: String,
    pub result: PolicyResult,
}

/// One seed's results at one budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    pub seed: u64,
    pub uniform: Option<PolicyResult>,
    pub searched: PolicyResult,
    pub random: Vec<PolicyResult>,
    /// The control searches the job asked for, in its order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<ControlResult>,
}

/// Everything measured at one budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetResult {
    /// `w2a3` or the number.
    pub label: String,
    pub bitops_budget: u64,
    /// Empty when the budget was skipped (see `skipped`).
    pub seeds: Vec<SeedResult>,
    /// Why the budget was not run (e.g. it admits only the all-lowest-bits policy).
    pub skipped: Option<String>,
}

/// A whole run, as the report shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub model: String,
    /// e.g. `fashion-mnist`.
    pub data: String,
    pub train_images: usize,
    pub test_images: usize,
    /// FP32 test accuracy per seed, in [0, 1].
    pub fp32: Vec<(u64, f64)>,
    pub budgets: Vec<BudgetResult>,
    /// One line per setting (epochs, lr, ...), shown under the table.
    pub settings: Vec<String>,
    /// Warnings and facts worth reading next to the numbers.
    pub notes: Vec<String>,
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Median (mean of the middle two for an even count); NaN for none.
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// `12.3M`-style BitOps.
pub fn human(n: f64) -> String {
    let a = n.abs();
    if a >= 1e12 {
        format!("{:.3}T", n / 1e12)
    } else if a >= 1e9 {
        format!("{:.3}G", n / 1e9)
    } else if a >= 1e6 {
        format!("{:.3}M", n / 1e6)
    } else if a >= 1e3 {
        format!("{:.3}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// Accuracies (fractions) as `93.42` or `93.42 ± 0.10` (percent).
fn pct(v: &[f64]) -> String {
    match v.len() {
        0 => "–".into(),
        1 => format!("{:.2}", v[0] * 100.0),
        _ => {
            let (m, s) = mean_std(v);
            format!("{:.2} ± {:.2}", m * 100.0, s * 100.0)
        }
    }
}

/// Per-seed series of one budget: (uniform, searched, random medians, all random values).
struct Series {
    uniform: Vec<f64>,
    searched: Vec<f64>,
    random_median: Vec<f64>,
    random_all: Vec<f64>,
    searched_bitops: Vec<f64>,
    random_bitops: Vec<f64>,
}

fn series(b: &BudgetResult) -> Series {
    let mut s = Series {
        uniform: Vec::new(),
        searched: Vec::new(),
        random_median: Vec::new(),
        random_all: Vec::new(),
        searched_bitops: Vec::new(),
        random_bitops: Vec::new(),
    };
    for r in &b.seeds {
        if let Some(u) = &r.uniform {
            s.uniform.push(u.accuracy);
        }
        s.searched.push(r.searched.accuracy);
        s.searched_bitops.push(r.searched.bitops as f64);
        let acc: Vec<f64> = r.random.iter().map(|p| p.accuracy).collect();
        if !acc.is_empty() {
            s.random_median.push(median(&acc));
        }
        s.random_all.extend(&acc);
        s.random_bitops
            .extend(r.random.iter().map(|p| p.bitops as f64));
    }
    s
}

/// The results table alone (markdown), as `report.md` and `limpq demo` show it.
pub fn table(r: &Results) -> String {
    let mut o = String::new();
    let fp: Vec<f64> = r.fp32.iter().map(|x| x.1).collect();
    let _ = writeln!(
        o,
        "| budget | BitOps budget | searched BitOps | uniform | searched | random median | random (each) | FP32 |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---|---:|");
    for b in &r.budgets {
        if let Some(why) = &b.skipped {
            let _ = writeln!(
                o,
                "| {} | {} | – | – | – | – | skipped: {why} | {} |",
                b.label,
                human(b.bitops_budget as f64),
                pct(&fp)
            );
            continue;
        }
        let s = series(b);
        let each: Vec<String> = s
            .random_all
            .iter()
            .map(|a| format!("{:.2}", a * 100.0))
            .collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            b.label,
            human(b.bitops_budget as f64),
            human(mean_std(&s.searched_bitops).0),
            pct(&s.uniform),
            pct(&s.searched),
            pct(&s.random_median),
            each.join(", "),
            pct(&fp)
        );
    }
    o
}

/// Seed by seed, the searched policy's accuracy minus the uniform one's and minus the
/// random median, in points, with their mean ± sample std over seeds: the paired view of
/// the table (each seed's three policies share its pretraining and indicators, so the
/// differences vary less than the accuracies).
fn paired(r: &Results) -> String {
    let seeds: Vec<u64> = r.fp32.iter().map(|(s, _)| *s).collect();
    let mut o = String::new();
    let mut head = String::from("| budget |");
    let mut rule = String::from("|---|");
    for s in &seeds {
        let _ = write!(head, " seed {s} |");
        rule.push_str("---:|");
    }
    let _ = writeln!(
        o,
        "{head} mean − uniform | mean − random median |\n{rule}---:|---:|"
    );
    let signed = |v: &[f64]| match v.len() {
        0 => "–".to_string(),
        1 => format!("{:+.2}", v[0] * 100.0),
        _ => {
            let (m, sd) = mean_std(v);
            format!("{:+.2} ± {:.2}", m * 100.0, sd * 100.0)
        }
    };
    for b in r.budgets.iter().filter(|b| b.skipped.is_none()) {
        let _ = write!(o, "| {} |", b.label);
        let (mut du, mut dr) = (Vec::new(), Vec::new());
        for s in &seeds {
            let Some(x) = b.seeds.iter().find(|x| x.seed == *s) else {
                o.push_str(" – |");
                continue;
            };
            let acc: Vec<f64> = x.random.iter().map(|p| p.accuracy).collect();
            let u = x.uniform.as_ref().map(|u| x.searched.accuracy - u.accuracy);
            let m = (!acc.is_empty()).then(|| x.searched.accuracy - median(&acc));
            du.extend(u);
            dr.extend(m);
            let cell =
                |d: Option<f64>| d.map_or("–".to_string(), |d| format!("{:+.2}", d * 100.0));
            let _ = write!(o, " {} / {} |", cell(u), cell(m));
        }
        let _ = writeln!(o, " {} | {} |", signed(&du), signed(&dr));
    }
    o
}

pub use crate::analysis::t95;

/// Mean, standard error and the 95 % confidence interval (Student's t) of paired
/// differences; `None` for fewer than two.
pub fn mean_se_ci(d: &[f64]) -> Option<(f64, f64, f64, f64)> {
    if d.len() < 2 {
        return None;
    }
    let (m, sd) = mean_std(d);
    let se = sd / (d.len() as f64).sqrt();
    let h = t95(d.len() - 1) * se;
    Some((m, se, m - h, m + h))
}

/// The kinds compared in the confidence section: `searched`, then each control, with each
/// seed's accuracy (NaN where a seed lacks it).
fn kinds(b: &BudgetResult) -> Vec<(String, Vec<(u64, f64)>)> {
    let mut out = vec![(
        "searched".to_string(),
        b.seeds
            .iter()
            .map(|x| (x.seed, x.searched.accuracy))
            .collect(),
    )];
    for x in &b.seeds {
        for c in &x.controls {
            let at = match out.iter().position(|(k, _)| *k == c.kind) {
                Some(i) => i,
                None => {
                    out.push((c.kind.clone(), Vec::new()));
                    out.len() - 1
                }
            };
            out[at].1.push((x.seed, c.result.accuracy));
        }
    }
    out
}

/// Per budget and kind (searched and every control), the paired differences to uniform, to
/// the random median and (controls) to the searched policy over seeds: mean, standard
/// error and 95 % confidence interval in points; and each control's mean accuracy.
fn confidence(r: &Results) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "| budget | kind | accuracy | − uniform: mean ± SE [95% CI] | − random median: mean ± SE [95% CI] | − searched: mean ± SE [95% CI] |"
    );
    let _ = writeln!(o, "|---|---|---:|---|---|---|");
    let cell = |d: &[f64]| match mean_se_ci(d) {
        Some((m, se, lo, hi)) => format!(
            "{:+.2} ± {:.2} [{:+.2}, {:+.2}] (n={})",
            m * 100.0,
            se * 100.0,
            lo * 100.0,
            hi * 100.0,
            d.len()
        ),
        None if d.len() == 1 => format!("{:+.2} (n=1)", d[0] * 100.0),
        None => "–".into(),
    };
    for b in r.budgets.iter().filter(|b| b.skipped.is_none()) {
        for (kind, accs) in kinds(b) {
            let (mut du, mut dr, mut ds) = (Vec::new(), Vec::new(), Vec::new());
            for &(seed, acc) in &accs {
                let Some(x) = b.seeds.iter().find(|x| x.seed == seed) else {
                    continue;
                };
                if let Some(u) = &x.uniform {
                    du.push(acc - u.accuracy);
                }
                if kind != "searched" {
                    ds.push(acc - x.searched.accuracy);
                }
                let rand: Vec<f64> = x.random.iter().map(|p| p.accuracy).collect();
                if !rand.is_empty() {
                    dr.push(acc - median(&rand));
                }
            }
            let a: Vec<f64> = accs.iter().map(|x| x.1).collect();
            let _ = writeln!(
                o,
                "| {} | {kind} | {} | {} | {} | {} |",
                b.label,
                pct(&a),
                cell(&du),
                cell(&dr),
                cell(&ds)
            );
        }
    }
    o
}

/// Per budget, the test loss of every kind (uniform, searched, the random median and each
/// control) over seeds, and its paired differences to the same seed's uniform policy and
/// (controls) searched policy: mean, standard error and 95 % confidence interval.
fn losses(r: &Results) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "| budget | kind | test loss | − uniform: mean ± SE [95% CI] | − searched: mean ± SE \
         [95% CI] |\n|---|---|---:|---|---|"
    );
    let num = |v: &[f64]| match v.len() {
        0 => "–".to_string(),
        1 => format!("{:.4}", v[0]),
        _ => {
            let (m, sd) = mean_std(v);
            format!("{m:.4} ± {sd:.4}")
        }
    };
    let cell = |d: &[f64]| match mean_se_ci(d) {
        Some((m, se, lo, hi)) => {
            format!("{m:+.4} ± {se:.4} [{lo:+.4}, {hi:+.4}] (n={})", d.len())
        }
        None if d.len() == 1 => format!("{:+.4} (n=1)", d[0]),
        None => "–".into(),
    };
    for b in r.budgets.iter().filter(|b| b.skipped.is_none()) {
        // Per kind, per seed: the loss, that seed's uniform loss (if any) and its searched
        // policy's loss (for the controls).
        type Losses = Vec<(f64, Option<f64>, Option<f64>)>;
        let mut rows: Vec<(String, Losses)> = Vec::new();
        let mut add = |kind: &str, at: (f64, Option<f64>, Option<f64>)| {
            if let Some((_, v)) = rows.iter_mut().find(|(k, _)| k == kind) {
                v.push(at);
            } else {
                rows.push((kind.to_string(), vec![at]));
            }
        };
        for x in &b.seeds {
            let u = x.uniform.as_ref().map(|p| p.loss);
            if let Some(u) = u {
                add("uniform", (u, None, None));
            }
            add("searched", (x.searched.loss, u, None));
            let rand: Vec<f64> = x.random.iter().map(|p| p.loss).collect();
            if !rand.is_empty() {
                add("random median", (median(&rand), u, None));
            }
            for c in &x.controls {
                add(&c.kind, (c.result.loss, u, Some(x.searched.loss)));
            }
        }
        for (kind, v) in rows {
            let l: Vec<f64> = v.iter().map(|x| x.0).collect();
            let du: Vec<f64> = v.iter().filter_map(|&(l, u, _)| Some(l - u?)).collect();
            let ds: Vec<f64> = v.iter().filter_map(|&(l, _, s)| Some(l - s?)).collect();
            let _ = writeln!(
                o,
                "| {} | {kind} | {} | {} | {} |",
                b.label,
                num(&l),
                cell(&du),
                cell(&ds)
            );
        }
    }
    o
}

/// `report.md`.
pub fn markdown(r: &Results) -> String {
    let mut o = String::new();
    let nseeds = r.fp32.len();
    let _ = writeln!(
        o,
        "# limpq pipeline: {} on {} ({} train / {} test images)\n",
        r.model, r.data, r.train_images, r.test_images
    );
    let seeds: Vec<String> = r.fp32.iter().map(|(s, _)| s.to_string()).collect();
    if nseeds > 1 {
        let _ = writeln!(
            o,
            "Test accuracy in %, mean ± sample standard deviation over {nseeds} seeds ({}). \
             The random column is the median of the random policies of each seed (then \
             averaged over seeds); every random value follows.\n",
            seeds.join(", ")
        );
    } else {
        let _ = writeln!(
            o,
            "Test accuracy in %, seed {}. The random column is the median of the random \
             policies drawn at the budget; every random value follows.\n",
            seeds.join(", ")
        );
    }
    o.push_str(&table(r));
    o.push_str("\n![accuracy against BitOps](accuracy_vs_bitops.svg)\n");
    if nseeds > 1 && r.budgets.iter().any(|b| b.skipped.is_none()) {
        o.push_str("\n## Searched minus uniform / minus random median, seed by seed (points)\n\n");
        o.push_str(&paired(r));
    }
    let controls = r
        .budgets
        .iter()
        .any(|b| b.seeds.iter().any(|x| !x.controls.is_empty()));
    if (nseeds > 1 || controls) && r.budgets.iter().any(|b| b.skipped.is_none()) {
        o.push_str(
            "\n## How sure: paired differences over seeds (points)\n\nEach kind's accuracy \
             minus the same seed's uniform policy, random median and (for the controls) \
             searched policy: mean ± standard error and the 95 % confidence interval of the \
             mean (Student's t, n − 1 degrees of freedom). An interval that holds 0 does not \
             tell the two apart.\n\n",
        );
        o.push_str(&confidence(r));
        o.push_str(
            "\n## Test loss (mean ± sample standard deviation over seeds; paired differences \
             as above)\n\n",
        );
        o.push_str(&losses(r));
    }
    // Per-layer bits of the searched policies (first seed).
    let run: Vec<&BudgetResult> = r.budgets.iter().filter(|b| !b.seeds.is_empty()).collect();
    if let Some(first) = run.first() {
        let _ = writeln!(
            o,
            "\n## Searched policies (seed {}), weight/activation bits per layer\n",
            first.seeds[0].seed
        );
        let mut head = String::from("| layer |");
        let mut rule = String::from("|---|");
        for b in &run {
            let _ = write!(head, " {} |", b.label);
            rule.push_str("---|");
        }
        let _ = writeln!(o, "{head}\n{rule}");
        for (i, l) in first.seeds[0].searched.layers.iter().enumerate() {
            let _ = write!(o, "| {} |", l.name);
            for b in &run {
                match b.seeds[0].searched.layers.get(i) {
                    Some(x) => {
                        let _ = write!(o, " W{}A{} |", x.weight, x.act);
                    }
                    None => o.push_str(" – |"),
                }
            }
            o.push('\n');
        }
        o.push('\n');
        for b in &run {
            let _ = writeln!(o, "![bits at {0}](bits_{0}.svg)", b.label);
        }
    }
    if !r.settings.is_empty() {
        o.push_str("\n## Settings\n\n");
        for s in &r.settings {
            let _ = writeln!(o, "- {s}");
        }
    }
    if !r.notes.is_empty() {
        o.push_str("\n## Notes\n\n");
        for s in &r.notes {
            let _ = writeln!(o, "- {s}");
        }
    }
    o
}

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Round tick step for a span: 1, 2 or 5 times a power of ten, about `n` ticks.
fn nice_step(span: f64, n: usize) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / n.max(1) as f64;
    let p = 10f64.powf(raw.log10().floor());
    let f = raw / p;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * p
}

/// Ticks covering [lo, hi] (extended to whole steps).
fn ticks(lo: f64, hi: f64, n: usize) -> (f64, f64, Vec<f64>) {
    let step = nice_step(hi - lo, n);
    let a = (lo / step).floor() * step;
    let b = (hi / step).ceil() * step;
    let mut t = Vec::new();
    let mut k = 0;
    while k < 100 {
        let v = a + step * k as f64;
        if v > b + step * 1e-9 {
            break;
        }
        t.push(v);
        k += 1;
    }
    (a, b, t)
}

/// Tick label without float noise.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil() as usize
    };
    format!("{v:.decimals$}")
}

const SERIES: [(&str, &str); 3] = [
    ("uniform", "#1f77b4"),
    ("searched", "#d62728"),
    ("random median", "#2ca02c"),
];

/// `accuracy_vs_bitops.svg`: BitOps (linear) against test accuracy, one line per series,
/// every random policy as a grey dot, FP32 as a dashed line; error bars (± std over seeds)
/// with several seeds.
pub fn accuracy_svg(r: &Results) -> String {
    let (w, h) = (760.0, 480.0);
    let (ml, mr, mt, mb) = (70.0, 20.0, 78.0, 58.0);
    let (pw, ph) = (w - ml - mr, h - mt - mb);
    // (bitops, mean acc, std) per series, in %.
    let mut pts: [Vec<(f64, f64, f64)>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut dots: Vec<(f64, f64)> = Vec::new();
    for b in r.budgets.iter().filter(|b| !b.seeds.is_empty()) {
        let s = series(b);
        let put = |v: &[f64], x: f64, out: &mut Vec<(f64, f64, f64)>| {
            if !v.is_empty() {
                let (m, sd) = mean_std(v);
                out.push((x, m * 100.0, sd * 100.0));
            }
        };
        put(&s.uniform, b.bitops_budget as f64, &mut pts[0]);
        put(&s.searched, mean_std(&s.searched_bitops).0, &mut pts[1]);
        let rx = if s.random_bitops.is_empty() {
            b.bitops_budget as f64
        } else {
            median(&s.random_bitops)
        };
        put(&s.random_median, rx, &mut pts[2]);
        for rs in &b.seeds {
            for p in &rs.random {
                dots.push((p.bitops as f64, p.accuracy * 100.0));
            }
        }
    }
    let fp = mean_std(&r.fp32.iter().map(|x| x.1 * 100.0).collect::<Vec<_>>()).0;
    let xs: Vec<f64> = pts
        .iter()
        .flatten()
        .map(|p| p.0)
        .chain(dots.iter().map(|d| d.0))
        .collect();
    let ys: Vec<f64> = pts
        .iter()
        .flatten()
        .flat_map(|p| [p.1 - p.2, p.1 + p.2])
        .chain(dots.iter().map(|d| d.1))
        .chain(fp.is_finite().then_some(fp))
        .collect();
    let (mut x0, mut x1) = min_max(&xs).unwrap_or((0.0, 1.0));
    let pad = ((x1 - x0) * 0.06).max(x1.abs() * 0.02).max(1.0);
    x0 = (x0 - pad).max(0.0);
    x1 += pad;
    let (mut y0, mut y1) = min_max(&ys).unwrap_or((0.0, 100.0));
    let ypad = ((y1 - y0) * 0.08).max(0.25);
    y0 -= ypad;
    y1 += ypad;
    // x in units of the largest power of 1000 below x1.
    let (unit, uname) = if x1 >= 1e9 {
        (1e9, "GBitOps")
    } else if x1 >= 1e6 {
        (1e6, "MBitOps")
    } else if x1 >= 1e3 {
        (1e3, "kBitOps")
    } else {
        (1.0, "BitOps")
    };
    let (xa, xb, xt) = ticks(x0 / unit, x1 / unit, 6);
    let (ya, yb, yt) = ticks(y0, y1, 6);
    let xstep = nice_step(x1 / unit - x0 / unit, 6);
    let ystep = nice_step(y1 - y0, 6);
    let px = |x: f64| ml + (x / unit - xa) / (xb - xa) * pw;
    let py = |y: f64| mt + (1.0 - (y - ya) / (yb - ya)) * ph;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="Helvetica, Arial, sans-serif" font-size="13">"#
    );
    let _ = writeln!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let title = format!(
        "{} on {} ({} train / {} test images): accuracy vs BitOps",
        r.model, r.data, r.train_images, r.test_images
    );
    let _ = writeln!(
        o,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        w / 2.0,
        esc(&title)
    );
    // Grid and ticks.
    for &t in &xt {
        let x = ml + (t - xa) / (xb - xa) * pw;
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{mt}" x2="{x:.1}" y2="{:.1}" stroke="#e3e3e3"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            mt + ph,
            mt + ph + 18.0,
            tick_label(t, xstep)
        );
    }
    for &t in &yt {
        let y = mt + (1.0 - (t - ya) / (yb - ya)) * ph;
        let _ = writeln!(
            o,
            r##"<line x1="{ml}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            ml + pw,
            ml - 6.0,
            y + 4.0,
            tick_label(t, ystep)
        );
    }
    let _ = writeln!(
        o,
        r#"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">BitOps of the searchable layers ({uname}, linear)</text>"#,
        ml + pw / 2.0,
        h - 14.0
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">test accuracy (%)</text>"#,
        mt + ph / 2.0
    );
    // FP32 reference line.
    if fp.is_finite() {
        let y = py(fp);
        let _ = writeln!(
            o,
            r##"<line x1="{ml}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#555" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">FP32 {fp:.2}%</text>"##,
            ml + pw,
            ml + pw - 4.0,
            y - 5.0
        );
    }
    // Budget labels along the top of the plot.
    for b in r.budgets.iter().filter(|b| !b.seeds.is_empty()) {
        let x = px(b.bitops_budget as f64);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{mt}" x2="{x:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="2 3"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#777" font-size="11">{}</text>"##,
            mt + ph,
            mt - 4.0,
            esc(&b.label)
        );
    }
    for &(x, y) in &dots {
        let _ = writeln!(
            o,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#999" fill-opacity="0.6"/>"##,
            px(x),
            py(y)
        );
    }
    for (k, (_, color)) in SERIES.iter().enumerate() {
        let mut p = pts[k].clone();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        if p.len() > 1 {
            let path: Vec<String> = p
                .iter()
                .map(|q| format!("{:.1},{:.1}", px(q.0), py(q.1)))
                .collect();
            let _ = writeln!(
                o,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                path.join(" ")
            );
        }
        for q in &p {
            let (x, y) = (px(q.0), py(q.1));
            if q.2 > 0.0 {
                // Shifted a few pixels per series so that bars at one budget stay apart.
                let ex = x + (k as f64 - 1.0) * 5.0;
                let _ = writeln!(
                    o,
                    r#"<line x1="{ex:.1}" y1="{:.1}" x2="{ex:.1}" y2="{:.1}" stroke="{color}" stroke-width="1.5"/>"#,
                    py(q.1 - q.2),
                    py(q.1 + q.2)
                );
            }
            o.push_str(&marker(k, x, y, color));
        }
    }
    // Legend above the plot.
    let mut lx = ml;
    let ly = 46.0;
    for (k, (name, color)) in SERIES.iter().enumerate() {
        o.push_str(&marker(k, lx + 8.0, ly, color));
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}">{name}</text>"#,
            lx + 18.0,
            ly + 4.5
        );
        lx += 30.0 + 7.5 * name.len() as f64;
    }
    let _ = writeln!(
        o,
        r##"<circle cx="{:.1}" cy="{ly}" r="3" fill="#999"/><text x="{:.1}" y="{:.1}">each random policy</text>"##,
        lx + 8.0,
        lx + 18.0,
        ly + 4.5
    );
    lx += 30.0 + 7.5 * 18.0;
    let _ = writeln!(
        o,
        r##"<line x1="{lx:.1}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="#555" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}">FP32</text>"##,
        lx + 22.0,
        lx + 28.0,
        ly + 4.5
    );
    if r.fp32.len() > 1 {
        let _ = writeln!(
            o,
            r##"<text x="8" y="{:.1}" font-size="11" fill="#555">error bars: ± std over {} seeds</text>"##,
            h - 14.0,
            r.fp32.len()
        );
    }
    o.push_str("</svg>\n");
    o
}

fn min_max(v: &[f64]) -> Option<(f64, f64)> {
    let f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if f.is_empty() {
        return None;
    }
    let lo = f.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = f.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if hi - lo < 1e-12 {
        Some((lo - 0.5, hi + 0.5))
    } else {
        Some((lo, hi))
    }
}

/// Square (uniform), circle (searched) or triangle (random median).
fn marker(kind: usize, x: f64, y: f64, color: &str) -> String {
    match kind {
        0 => {
            format!(
                r#"<rect x="{:.1}" y="{:.1}" width="9" height="9" fill="{color}"/>"#,
                x - 4.5,
                y - 4.5
            ) + "\n"
        }
        1 => format!(r#"<circle cx="{x:.1}" cy="{y:.1}" r="5" fill="{color}"/>"#) + "\n",
        _ => {
            format!(
                r#"<polygon points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{color}"/>"#,
                x,
                y - 6.0,
                x - 5.5,
                y + 4.5,
                x + 5.5,
                y + 4.5
            ) + "\n"
        }
    }
}

/// `bits_<budget>.svg`: weight and activation bits of every layer of a searched policy as
/// paired bars; fixed layers (not searched) drawn pale.
pub fn bits_svg(title: &str, layers: &[LayerBits], fixed: &[bool]) -> String {
    let n = layers.len().max(1) as f64;
    let max_bits = layers
        .iter()
        .flat_map(|l| [l.weight, l.act])
        .max()
        .unwrap_or(8)
        .max(1) as f64;
    let slot = 34.0f64.max(560.0 / n);
    let (ml, mr, mt, mb) = (50.0, 20.0, 60.0, 120.0);
    let pw = slot * n;
    let ph = 240.0;
    // Wide enough for the title too (about 8 px per character at 14 px bold).
    let w = (ml + pw + mr).max(8.0 * title.chars().count() as f64 + 20.0);
    let h = mt + ph + mb;
    let py = |b: f64| mt + ph - b / max_bits * ph;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{w:.0}" height="{h:.0}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    for b in 0..=(max_bits as u32) {
        let y = py(f64::from(b));
        let _ = writeln!(
            o,
            r##"<line x1="{ml}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{:.1}" y="{:.1}" text-anchor="end">{b}</text>"##,
            ml + pw,
            ml - 6.0,
            y + 4.0
        );
    }
    let bw = (slot - 8.0) / 2.0;
    for (i, l) in layers.iter().enumerate() {
        let x = ml + slot * i as f64 + 4.0;
        let is_fixed = fixed.get(i).copied().unwrap_or(false);
        let op = if is_fixed { "0.35" } else { "1" };
        for (k, (bits, color)) in [(l.weight, "#1f77b4"), (l.act, "#ff7f0e")]
            .iter()
            .enumerate()
        {
            let bx = x + bw * k as f64;
            let y = py(f64::from(*bits));
            let _ = writeln!(
                o,
                r#"<rect x="{bx:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{color}" fill-opacity="{op}"/>"#,
                bw - 1.0,
                mt + ph - y
            );
            if bw >= 9.0 {
                let _ = writeln!(
                    o,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{bits}</text>"#,
                    bx + bw / 2.0 - 0.5,
                    y - 3.0
                );
            }
        }
        let lx = x + slot / 2.0 - 4.0;
        let ly = mt + ph + 10.0;
        let name = if is_fixed {
            format!("{} (fixed)", l.name)
        } else {
            l.name.clone()
        };
        let _ = writeln!(
            o,
            r#"<text transform="translate({lx:.1} {ly:.1}) rotate(-50)" text-anchor="end">{}</text>"#,
            esc(&name)
        );
    }
    let _ = writeln!(
        o,
        r#"<line x1="{ml}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
        mt + ph,
        ml + pw,
        mt + ph
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">bits</text>"#,
        mt + ph / 2.0
    );
    let ly = 40.0;
    let _ = writeln!(
        o,
        r##"<rect x="{ml}" y="{:.1}" width="12" height="12" fill="#1f77b4"/><text x="{:.1}" y="{:.1}">weight bits</text><rect x="{:.1}" y="{:.1}" width="12" height="12" fill="#ff7f0e"/><text x="{:.1}" y="{:.1}">activation bits</text>"##,
        ly - 10.0,
        ml + 17.0,
        ly,
        ml + 110.0,
        ly - 10.0,
        ml + 127.0,
        ly
    );
    o.push_str("</svg>\n");
    o
}
