//! An independent brute-force check of the exact solver: random small instances (every
//! feature: pins, ties, weight-only, fixed layers, extra resources, candidate bits, counts
//! near 2^53, indicators from 1e-12 to 1e12), every policy enumerated and priced from the
//! inputs alone, compared with the solver's answer, proof, usage, `evaluate` and sweeps.
//! It shares no code with the solver or its tests beyond the public input/output types.
//!
//!   cargo run --release -p limpq-solver --example brute_check -- main START COUNT
//!   cargo run --release -p limpq-solver --example brute_check -- one SEED      (verbose)
//!   cargo run --release -p limpq-solver --example brute_check -- hostile START COUNT
//!
//! Every instance is rebuilt from its seed alone (`one SEED`).
#![allow(
    clippy::too_many_lines,
    clippy::type_complexity,
    clippy::too_many_arguments
)]

use limpq_solver::{
    BitOpsBudget, Error, IndicatorSet, Layer, LayerBits, Problem, ResourceLayer, ResourceTable,
    SizeBudget, Solution, SolveOptions,
};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

// ---------------------------------------------------------------- rng
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    /// With probability `p` one of `from`, else any bit-width 1..=`hi` (maybe not a
    /// candidate).
    fn pick_or_any(&mut self, from: &[u32], p: f64, hi: u64) -> u32 {
        if self.chance(p) {
            self.pick(from)
        } else {
            self.range(1, hi) as u32
        }
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------- features
#[derive(Default, Clone, Debug)]
struct Feat {
    fixed: bool,
    pin: bool,
    tie: bool,
    weight_only: bool,
    extra: bool,
    cand: bool,
    rule_off: bool,
    tiny: bool,
    small: bool,
    huge: bool,
    alpha0: bool,
    alpha_big: bool,
}
impl Feat {
    fn key(&self) -> String {
        let mut s = Vec::new();
        for (on, n) in [
            (self.fixed, "fixed"),
            (self.pin, "pin"),
            (self.tie, "tie"),
            (self.weight_only, "wonly"),
            (self.extra, "extra"),
            (self.cand, "cand"),
            (self.rule_off, "ruleoff"),
            (self.tiny, "tiny"),
            (self.small, "small"),
            (self.huge, "huge"),
            (self.alpha0, "a0"),
            (self.alpha_big, "abig"),
        ] {
            if on {
                s.push(n);
            }
        }
        if s.is_empty() {
            "plain".into()
        } else {
            s.join("+")
        }
    }
}

// ---------------------------------------------------------------- generation
fn gen_bits(r: &mut Rng) -> Vec<u32> {
    let k = [1usize, 2, 2, 3, 3, 3, 4, 4, 5][r.below(9) as usize];
    let pool: Vec<u32> = match r.below(10) {
        0..=6 => vec![2, 3, 4, 5, 6, 8],
        7 | 8 => (1..=8).collect(),
        _ => vec![1, 2, 4, 8, 16, 32],
    };
    let mut p = pool.clone();
    r.shuffle(&mut p);
    p.truncate(k);
    p
}

fn gen_scales(r: &mut Rng, bits: &[u32], mag: f64, mode: u64) -> Vec<f64> {
    let n = bits.len();
    match mode {
        // few distinct values: many ties
        0 => (0..n).map(|_| r.below(4) as f64 * 0.5 * mag).collect(),
        // decreasing in bits (monotone, like real indicators)
        1 => {
            let mut v: Vec<f64> = (0..n).map(|_| r.unit() * mag).collect();
            v.sort_by(|a, b| b.partial_cmp(a).unwrap());
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|&i| bits[i]);
            let mut out = vec![0.0; n];
            for (rank, &i) in order.iter().enumerate() {
                out[i] = v[rank];
            }
            out
        }
        _ => (0..n).map(|_| r.unit() * mag).collect(),
    }
}

struct Gen {
    p: Problem,
    feat: Feat,
    /// which budgets to draw after enumeration
    bitops_mode: u64,
    size_mode: u64,
    res_modes: Vec<u64>,
}

fn generate(seed: u64) -> Gen {
    let mut r = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x1234_5678);
    let mut feat = Feat::default();
    let wb = gen_bits(&mut r);
    let ab = gen_bits(&mut r);
    let maxl: u64 = std::env::var("MAXL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let ns = r.range(1, maxl) as usize;
    let nf = if r.chance(0.3) {
        r.range(1, 2) as usize
    } else {
        0
    };
    feat.fixed = nf > 0;
    // magnitudes
    let mag_mode = r.below(20);
    let (scale_mag, per_layer_mag) = match mag_mode {
        0 | 1 => {
            feat.tiny = true;
            (1e-12, false)
        }
        2 => {
            feat.huge = true;
            (1e12, false)
        }
        3 | 4 => (1.0, true),
        5 | 6 => {
            feat.small = true;
            (10f64.powi(-(r.range(3, 9) as i32)), false)
        }
        _ => (1.0, false),
    };
    let ind_mode = r.below(3);
    let macs_mode = r.below(12);
    let params_mode = r.below(12);
    let maxb = wb.iter().chain(&ab).copied().max().unwrap() as u64;
    let mut layers = Vec::new();
    let total = ns + nf;
    let mut fixed_pos: Vec<usize> = Vec::new();
    while fixed_pos.len() < nf {
        let p = r.below(total as u64) as usize;
        if !fixed_pos.contains(&p) {
            fixed_pos.push(p);
        }
    }
    for i in 0..total {
        let fixed = fixed_pos.contains(&i);
        let mag = if per_layer_mag {
            10f64.powi(r.range(0, 24) as i32 - 12)
        } else {
            scale_mag
        };
        let macs = match macs_mode {
            0 | 1 => r.range(0, 6),
            2 => {
                feat.huge = true;
                1_000_000_000_000 + r.range(0, 5)
            }
            3 => {
                feat.huge = true;
                r.range(1, 1u64 << 40)
            }
            // near the 2^53 limit: the total at the largest bits lands around 2^53
            4 => {
                feat.huge = true;
                let per = (1u64 << 53) / (maxb * maxb * ns as u64);
                per + r.range(0, 3) - 1
            }
            _ => r.range(1, 5000),
        };
        let params = match params_mode {
            0 | 1 => r.range(0, 6),
            2 => {
                feat.huge = true;
                1_000_000_000_000 + r.range(0, 5)
            }
            3 => {
                feat.huge = true;
                let per = (1u64 << 53) / (maxb * total as u64);
                per + r.range(0, 3) - 1
            }
            _ => r.range(1, 300),
        };
        let (ws, as_, fx) = if fixed {
            let fw = r.pick_or_any(&wb, 0.6, 8);
            let fa = r.pick_or_any(&ab, 0.6, 8);
            if r.chance(0.5) {
                (vec![], vec![], Some((fw, fa)))
            } else {
                (
                    gen_scales(&mut r, &wb, mag, ind_mode),
                    gen_scales(&mut r, &ab, mag, ind_mode),
                    Some((fw, fa)),
                )
            }
        } else {
            (
                gen_scales(&mut r, &wb, mag, ind_mode),
                gen_scales(&mut r, &ab, mag, ind_mode),
                None,
            )
        };
        layers.push(Layer {
            name: format!("L{i}"),
            macs,
            params,
            weight_scale: ws,
            act_scale: as_,
            fixed: fx,
        });
    }
    // duplicate a searchable layer's figures now and then (objective ties)
    if ns >= 2 && r.chance(0.2) {
        let s: Vec<usize> = (0..total).filter(|&i| layers[i].fixed.is_none()).collect();
        let (a, b) = (s[0], s[1]);
        let src = layers[a].clone();
        layers[b].weight_scale = src.weight_scale;
        layers[b].act_scale = src.act_scale;
        if r.chance(0.5) {
            layers[b].macs = src.macs;
            layers[b].params = src.params;
        }
    }
    let sensitivity = r.chance(0.1);
    let ind = IndicatorSet {
        model: "check".into(),
        weight_bits: wb.clone(),
        act_bits: ab.clone(),
        layers,
        meta: if sensitivity {
            vec![("source".into(), "sensitivity".into())]
        } else {
            vec![]
        },
    };
    let searchable: Vec<usize> = (0..total)
        .filter(|&i| ind.layers[i].fixed.is_none())
        .collect();
    let mut p = Problem::new(ind.clone());
    if !sensitivity || r.chance(0.3) {
        let a = [0.0, 0.5, 1.0, 2.0, 2.0, 3.0, 1e6, 1e-6, 0.3][r.below(9) as usize];
        feat.alpha0 = a == 0.0;
        feat.alpha_big = a >= 1e6;
        p = p.alpha(a);
    }
    if r.chance(0.12) {
        feat.weight_only = true;
        let a = r.pick_or_any(&ab, 0.5, 8);
        p = p.weight_only(a);
    }
    if r.chance(0.2) {
        feat.cand = true;
        let mut s = wb.clone();
        r.shuffle(&mut s);
        s.truncate(r.range(1, wb.len() as u64) as usize);
        p = p.weight_bits(&s);
    }
    if !feat.weight_only && r.chance(0.2) {
        feat.cand = true;
        let mut s = ab.clone();
        r.shuffle(&mut s);
        s.truncate(r.range(1, ab.len() as u64) as usize);
        p = p.act_bits(&s);
    }
    if r.chance(0.25) {
        let np = if r.chance(0.2) && searchable.len() >= 2 {
            2
        } else {
            1
        };
        let mut s = searchable.clone();
        r.shuffle(&mut s);
        for &li in s.iter().take(np) {
            feat.pin = true;
            let w = r.pick_or_any(&wb, 0.7, 9);
            let a = r.pick_or_any(&ab, 0.7, 9);
            p = p.pin(&format!("L{li}"), w, a);
        }
    }
    if searchable.len() >= 2 {
        for kind in 0..2 {
            let ngroups = if r.chance(0.3) { r.range(1, 2) } else { 0 };
            for _ in 0..ngroups {
                feat.tie = true;
                let k = r.range(2, searchable.len().min(4) as u64) as usize;
                let mut s = searchable.clone();
                r.shuffle(&mut s);
                let names: Vec<String> = s[..k].iter().map(|i| format!("L{i}")).collect();
                p = if kind == 0 {
                    p.tie_weights(&names)
                } else {
                    p.tie_acts(&names)
                };
            }
        }
    }
    if r.chance(0.25) {
        feat.rule_off = true;
        p = p.non_monotone_rule(false);
    }
    // extra resources: complete tables over 1..=33 bits (values for any pair a layer may take)
    let nres = match r.below(10) {
        0..=5 => 0,
        6..=8 => 1,
        _ => 2,
    };
    let mut res_modes = Vec::new();
    for k in 0..nres {
        feat.extra = true;
        let vmode = r.below(4);
        let rmag = match r.below(8) {
            0 => 1e-6,
            1 => 1e9,
            _ => 1.0,
        };
        let mut tl = Vec::new();
        let mut allbits: Vec<u32> = wb.iter().chain(&ab).copied().collect();
        allbits.extend(1..=9);
        allbits.sort();
        allbits.dedup();
        for (i, l) in ind.layers.iter().enumerate() {
            if l.fixed.is_some() && r.chance(0.5) {
                continue;
            }
            let mut costs = Vec::new();
            for &w in &allbits {
                for &a in &allbits {
                    let v = match vmode {
                        0 => r.below(8) as f64 * 0.25 * rmag,
                        1 => (w * a) as f64 * (1 + i) as f64 * rmag,
                        _ => r.unit() * 10.0 * rmag,
                    };
                    costs.push((w, a, v));
                }
            }
            r.shuffle(&mut costs);
            tl.push(ResourceLayer {
                name: l.name.clone(),
                costs,
            });
        }
        p = p.resource(
            ResourceTable {
                name: format!("res{k}"),
                layers: tl,
            },
            0.0,
        );
        res_modes.push(r.below(10));
    }
    Gen {
        p,
        feat,
        bitops_mode: r.below(20),
        size_mode: r.below(10),
        res_modes,
    }
}

// ---------------------------------------------------------------- brute force model
fn scale_of(scales: &[f64], file: &[u32], b: u32) -> Option<f64> {
    file.iter()
        .position(|&x| x == b)
        .and_then(|i| scales.get(i).copied())
}

/// The bits a searchable layer may take for weights (or acts) by the documented rules.
fn rule_bits(scales: &[f64], file: &[u32], cand: &[u32], rule: bool) -> Vec<u32> {
    let mut c = cand.to_vec();
    c.sort();
    let mut out = Vec::new();
    for i in 0..c.len() {
        if rule && i + 1 < c.len() {
            let here = scale_of(scales, file, c[i]).unwrap();
            let next = scale_of(scales, file, c[i + 1]).unwrap();
            if here < next {
                continue;
            }
        }
        out.push(c[i]);
    }
    out
}

struct Model {
    n: usize,
    /// per layer allowed (w, a): fixed layers their fixed pair
    allowed: Vec<Vec<(u32, u32)>>,
    /// per layer allowed weight bits / act bits (for the 2^53 check)
    wmax: Vec<u32>,
    amax: Vec<u32>,
    /// pairs (i, j) that must share weight / act bits
    tie_w: Vec<(usize, usize)>,
    tie_a: Vec<(usize, usize)>,
    /// joint-choice counts per tie component (the solver refuses more than 4096)
    max_component: u128,
    empty_class: bool,
}

fn model(p: &Problem) -> Model {
    let ind = &p.indicators;
    let o = &p.options;
    let n = ind.layers.len();
    let idx = |s: &str| ind.layers.iter().position(|l| l.name == s).unwrap();
    let wc = o
        .weight_bits
        .clone()
        .unwrap_or_else(|| ind.weight_bits.clone());
    let ac = o.act_bits.clone().unwrap_or_else(|| ind.act_bits.clone());
    let mut allowed = Vec::new();
    let mut wl = Vec::new();
    let mut al = Vec::new();
    for l in &ind.layers {
        if let Some(f) = l.fixed {
            allowed.push(vec![f]);
            wl.push(vec![f.0]);
            al.push(vec![f.1]);
            continue;
        }
        let (w, a) = if let Some(&(_, w, a)) = o.pinned.iter().find(|x| x.0 == l.name) {
            (vec![w], vec![a])
        } else {
            let w = rule_bits(&l.weight_scale, &ind.weight_bits, &wc, o.non_monotone_rule);
            let a = match o.weight_only {
                Some(a) => vec![a],
                None => rule_bits(&l.act_scale, &ind.act_bits, &ac, o.non_monotone_rule),
            };
            (w, a)
        };
        let mut v = Vec::new();
        for &x in &w {
            for &y in &a {
                v.push((x, y));
            }
        }
        allowed.push(v);
        wl.push(w);
        al.push(a);
    }
    let mut tie_w = Vec::new();
    let mut tie_a = Vec::new();
    for g in &o.tie_weight {
        for s in &g[1..] {
            tie_w.push((idx(&g[0]), idx(s)));
        }
    }
    for g in &o.tie_act {
        for s in &g[1..] {
            tie_a.push((idx(&g[0]), idx(s)));
        }
    }
    // classes (naive union-find) and components
    let mut cw: Vec<usize> = (0..n).collect();
    let mut ca: Vec<usize> = (0..n).collect();
    let mut cc: Vec<usize> = (0..n).collect();
    fn root(v: &[usize], mut x: usize) -> usize {
        while v[x] != x {
            x = v[x];
        }
        x
    }
    for &(i, j) in &tie_w {
        let (a, b) = (root(&cw, i), root(&cw, j));
        cw[a.max(b)] = a.min(b);
        let (a, b) = (root(&cc, i), root(&cc, j));
        cc[a.max(b)] = a.min(b);
    }
    for &(i, j) in &tie_a {
        let (a, b) = (root(&ca, i), root(&ca, j));
        ca[a.max(b)] = a.min(b);
        let (a, b) = (root(&cc, i), root(&cc, j));
        cc[a.max(b)] = a.min(b);
    }
    let mut max_component = 1u128;
    let mut empty_class = false;
    for comp in 0..n {
        let members: Vec<usize> = (0..n)
            .filter(|&i| ind.layers[i].fixed.is_none() && root(&cc, i) == comp)
            .collect();
        if members.len() < 2 {
            continue;
        }
        let mut prod = 1u128;
        for (cls, lists) in [(&cw, &wl), (&ca, &al)] {
            let mut roots: Vec<usize> = members.iter().map(|&i| root(cls, i)).collect();
            roots.sort();
            roots.dedup();
            for r0 in roots {
                let mut inter: Option<Vec<u32>> = None;
                for &i in members.iter().filter(|&&i| root(cls, i) == r0) {
                    inter = Some(match inter {
                        None => lists[i].clone(),
                        Some(v) => v.into_iter().filter(|b| lists[i].contains(b)).collect(),
                    });
                }
                let k = inter.unwrap().len() as u128;
                if k == 0 {
                    empty_class = true;
                }
                prod *= k.max(1);
            }
        }
        max_component = max_component.max(prod);
    }
    Model {
        n,
        wmax: wl.iter().map(|v| *v.iter().max().unwrap()).collect(),
        amax: al.iter().map(|v| *v.iter().max().unwrap()).collect(),
        allowed,
        tie_w,
        tie_a,
        max_component,
        empty_class,
    }
}

#[derive(Clone, Debug)]
struct Price {
    obj: f64,
    bitops: u128,
    size: u128,
    fixed_bitops: u128,
    /// weight bits of the fixed layers (part of `size`)
    fixed_size: u128,
    extra: Vec<f64>,
}

/// Prices a full assignment from the inputs (objective: indicator at the bits, 0 for a bit
/// the file does not list, act term dropped with weight-only).
fn price(p: &Problem, bits: &[(u32, u32)]) -> Price {
    let ind = &p.indicators;
    let o = &p.options;
    let mut obj = 0.0;
    let (mut bitops, mut size, mut fb, mut fs) = (0u128, 0u128, 0u128, 0u128);
    for (l, &(w, a)) in ind.layers.iter().zip(bits) {
        let b = l.macs as u128 * w as u128 * a as u128;
        size += l.params as u128 * w as u128;
        if l.fixed.is_some() {
            fb += b;
            fs += l.params as u128 * w as u128;
            continue;
        }
        bitops += b;
        let ws = scale_of(&l.weight_scale, &ind.weight_bits, w).unwrap_or(0.0);
        let as_ = if o.weight_only.is_some() {
            0.0
        } else {
            scale_of(&l.act_scale, &ind.act_bits, a).unwrap_or(0.0)
        };
        obj += as_ + o.alpha * ws;
    }
    let extra = o
        .resources
        .iter()
        .map(|r| {
            let mut s = 0.0;
            for (l, &(w, a)) in ind.layers.iter().zip(bits) {
                if let Some(rl) = r.table.layers.iter().find(|x| x.name == l.name) {
                    if let Some(c) = rl.costs.iter().find(|c| c.0 == w && c.1 == a) {
                        s += c.2;
                    }
                }
            }
            s
        })
        .collect();
    Price {
        obj,
        bitops,
        size,
        fixed_bitops: fb,
        fixed_size: fs,
        extra,
    }
}

fn rule_valid(m: &Model, bits: &[(u32, u32)]) -> bool {
    bits.len() == m.n
        && (0..m.n).all(|i| m.allowed[i].contains(&bits[i]))
        && m.tie_w.iter().all(|&(i, j)| bits[i].0 == bits[j].0)
        && m.tie_a.iter().all(|&(i, j)| bits[i].1 == bits[j].1)
}

fn product(m: &Model) -> u128 {
    m.allowed.iter().map(|v| v.len() as u128).product()
}

/// Every rule-valid assignment, priced.
fn enumerate(p: &Problem, m: &Model) -> Vec<(Vec<(u32, u32)>, Price)> {
    let mut out = Vec::new();
    let mut digit = vec![0usize; m.n];
    loop {
        let bits: Vec<(u32, u32)> = (0..m.n).map(|i| m.allowed[i][digit[i]]).collect();
        if rule_valid(m, &bits) {
            let pr = price(p, &bits);
            out.push((bits, pr));
        }
        let mut d = 0;
        while d < m.n {
            digit[d] += 1;
            if digit[d] < m.allowed[d].len() {
                break;
            }
            digit[d] = 0;
            d += 1;
        }
        if d == m.n {
            return out;
        }
    }
}

#[derive(Clone, Debug)]
struct Budgets {
    bitops: Option<u128>,
    size: Option<u128>,
    extra: Vec<f64>,
}

fn budgets(p: &Problem) -> Budgets {
    let ind = &p.indicators;
    let o = &p.options;
    let bitops = o.bitops.map(|b| match b {
        BitOpsBudget::Absolute(v) => v as u128,
        BitOpsBudget::Uniform { weight, act } => ind
            .layers
            .iter()
            .filter(|l| l.fixed.is_none())
            .map(|l| l.macs as u128 * weight as u128 * act as u128)
            .sum(),
        _ => unreachable!(),
    });
    let size = o.size.map(|s| match s {
        SizeBudget::Bytes(b) => b as u128 * 8,
        SizeBudget::CompressionRatio(r) => {
            let t: u128 = ind.layers.iter().map(|l| l.params as u128).sum();
            (t as f64 * 32.0 / r) as u128
        }
        _ => unreachable!(),
    });
    Budgets {
        bitops,
        size,
        extra: o.resources.iter().map(|r| r.max).collect(),
    }
}

/// The documented tolerance of an extra row, doubled (rounding of sums in another order).
fn extra_slack(max: f64) -> f64 {
    2.0 * (1e-9 + max.abs() * 1e-12)
}

/// 0 = within every budget exactly, 1 = only within the documented extra-row tolerance,
/// 2 = over a budget.
fn feas(b: &Budgets, pr: &Price) -> u8 {
    if b.bitops.is_some_and(|x| pr.bitops > x) || b.size.is_some_and(|x| pr.size > x) {
        return 2;
    }
    let mut worst = 0;
    for (&mx, &u) in b.extra.iter().zip(&pr.extra) {
        if u > mx + extra_slack(mx) {
            return 2;
        }
        if u > mx {
            worst = 1;
        }
    }
    worst
}

/// (best objective within the budgets exactly, best within the tolerance)
fn optimum(all: &[(Vec<(u32, u32)>, Price)], b: &Budgets) -> (Option<f64>, Option<f64>) {
    let (mut strict, mut loose): (Option<f64>, Option<f64>) = (None, None);
    for (_, pr) in all {
        match feas(b, pr) {
            0 => {
                strict = Some(strict.map_or(pr.obj, |s| s.min(pr.obj)));
                loose = Some(loose.map_or(pr.obj, |s| s.min(pr.obj)));
            }
            1 => loose = Some(loose.map_or(pr.obj, |s| s.min(pr.obj))),
            _ => {}
        }
    }
    (strict, loose)
}

/// Over a budget only by one unit of an integral row whose (odd) budget is at or above 2^52,
/// where budget + 0.5 rounds up to budget + 1 in f64.
fn only_rounding_over(b: &Budgets, pr: &Price) -> bool {
    let big = 1u128 << 52;
    let mut any = false;
    // the capacity left to the searchable layers (BitOps: no fixed part)
    for (x, u, f) in [(b.bitops, pr.bitops, 0), (b.size, pr.size, pr.fixed_size)] {
        if let Some(x) = x {
            if u > x {
                // (the capacity left to the searchable layers, or partial sums of the
                // search such as capacity + fixed-by-bound use, at or past 2^52)
                let _cap = x.wrapping_sub(f);
                if u == x + 1 && u >= big {
                    any = true;
                } else {
                    return false;
                }
            }
        }
    }
    for (&mx, &u) in b.extra.iter().zip(&pr.extra) {
        if u > mx + extra_slack(mx) {
            return false;
        }
    }
    any
}

fn r52(kind: &str, yes: bool) -> String {
    if yes {
        format!("{kind}(+1 above 2^52)")
    } else {
        kind.to_string()
    }
}

fn rel_close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + 1e-300
}

// ---------------------------------------------------------------- checks
#[derive(Default)]
struct Stats {
    by_feat: BTreeMap<String, [u64; 4]>, // solved, infeasible, refused, skipped
    sweeps: u64,
    sweep_points: u64,
    evals: u64,
    alt_solves: u64,
    limited: u64,
    issues: BTreeMap<String, (u64, u64)>, // kind -> (count, first seed)
    /// largest relative excess of a proven-optimal objective over the optimum, by magnitude class
    worst: BTreeMap<String, (f64, u64)>,
}

impl Stats {
    fn issue(&mut self, kind: &str, seed: u64, detail: String, verbose: bool) {
        let e = self.issues.entry(kind.to_string()).or_insert((0, seed));
        e.0 += 1;
        if e.0 <= 3 || verbose || std::env::var("ALL").is_ok() {
            println!("ISSUE [{kind}] seed {seed}: {detail}");
        }
    }
}

fn layer_bits(p: &Problem, bits: &[(u32, u32)]) -> Vec<LayerBits> {
    p.indicators
        .layers
        .iter()
        .zip(bits)
        .map(|(l, &(w, a))| LayerBits {
            name: l.name.clone(),
            weight: w,
            act: a,
        })
        .collect()
}

/// Checks a solution's policy, usage and reported figures against our own pricing.
/// Returns the recomputed price.
fn check_solution(
    p: &Problem,
    m: &Model,
    b: &Budgets,
    s: &Solution,
    seed: u64,
    st: &mut Stats,
    ctx: &str,
    v: bool,
) -> Option<Price> {
    let ind = &p.indicators;
    if s.policy.layers.len() != ind.layers.len()
        || s.policy
            .layers
            .iter()
            .zip(&ind.layers)
            .any(|(a, l)| a.name != l.name)
    {
        st.issue(
            "policy-layers",
            seed,
            format!("{ctx}: layer list differs"),
            v,
        );
        return None;
    }
    let bits: Vec<(u32, u32)> = s.policy.layers.iter().map(|l| (l.weight, l.act)).collect();
    if !rule_valid(m, &bits) {
        st.issue(
            "rule-violation",
            seed,
            format!("{ctx}: bits {bits:?} break a rule"),
            v,
        );
    }
    let pr = price(p, &bits);
    if feas(b, &pr) == 2 {
        st.issue(
            &r52("over-budget", only_rounding_over(b, &pr)),
            seed,
            format!("{ctx}: bits {bits:?} price {pr:?} budgets {b:?}"),
            v,
        );
    }
    if !rel_close(pr.obj, s.policy.objective, 1e-9) {
        st.issue(
            "reported-objective",
            seed,
            format!(
                "{ctx}: reported {} recomputed {}",
                s.policy.objective, pr.obj
            ),
            v,
        );
    }
    if pr.bitops != s.policy.bitops as u128 {
        st.issue(
            "reported-bitops",
            seed,
            format!("{ctx}: {} vs {}", s.policy.bitops, pr.bitops),
            v,
        );
    }
    if pr.size != s.policy.weight_bits_total as u128 {
        st.issue(
            "reported-size",
            seed,
            format!("{ctx}: {} vs {}", s.policy.weight_bits_total, pr.size),
            v,
        );
    }
    if pr.fixed_bitops != s.fixed_bitops as u128 {
        st.issue(
            "reported-fixed-bitops",
            seed,
            format!("{ctx}: {} vs {}", s.fixed_bitops, pr.fixed_bitops),
            v,
        );
    }
    check_usage(p, b, &pr, &s.usage, seed, st, ctx, v);
    if s.policy.size_budget_bits.map(u128::from) != b.size {
        st.issue(
            "reported-size-budget",
            seed,
            format!("{ctx}: {:?} vs {:?}", s.policy.size_budget_bits, b.size),
            v,
        );
    }
    // proof fields
    let pf = &s.proof;
    if pf.lower_bound > s.policy.objective * (1.0 + 1e-12) + 1e-300
        || (pf.gap - (s.policy.objective - pf.lower_bound)).abs()
            > 1e-12 * s.policy.objective.abs() + 1e-300
    {
        st.issue(
            "proof-fields",
            seed,
            format!("{ctx}: {pf:?} obj {}", s.policy.objective),
            v,
        );
    }
    if pf.optimal && pf.gap != 0.0 {
        st.issue(
            "proof-fields",
            seed,
            format!("{ctx}: optimal with gap {}", pf.gap),
            v,
        );
    }
    Some(pr)
}

fn check_usage(
    p: &Problem,
    b: &Budgets,
    pr: &Price,
    usage: &[limpq_solver::Usage],
    seed: u64,
    st: &mut Stats,
    ctx: &str,
    v: bool,
) {
    let o = &p.options;
    let mut want: Vec<(String, f64, Option<f64>)> = vec![
        (
            "BitOps".into(),
            pr.bitops as f64,
            b.bitops.map(|x| x as f64),
        ),
        ("size".into(), pr.size as f64, b.size.map(|x| x as f64)),
    ];
    for (k, r) in o.resources.iter().enumerate() {
        want.push((r.table.name.clone(), pr.extra[k], Some(b.extra[k])));
    }
    let ok = usage.len() == want.len()
        && usage.iter().zip(&want).all(|(u, w)| {
            u.name == w.0
                && (u.used == w.1 || rel_close(u.used, w.1, 1e-12))
                && match (u.budget, w.2) {
                    (None, None) => true,
                    (Some(x), Some(y)) => x == y || rel_close(x, y, 1e-15),
                    _ => false,
                }
        });
    if !ok {
        // A BitOps budget within 2^11 of u64::MAX (up to the documented most,
        // 18446744073709551614) reported as no budget: a kind of its own.
        let dropped = usage.len() == want.len()
            && usage[0].budget.is_none()
            && want[0].2.is_some_and(|x| x >= 18446744073709549568.0)
            && usage
                .iter()
                .zip(&want)
                .skip(1)
                .all(|(u, w)| u.name == w.0 && u.budget == w.2);
        let kind = if dropped {
            "usage-bitops-budget-dropped"
        } else {
            "usage"
        };
        st.issue(kind, seed, format!("{ctx}: got {usage:?} want {want:?}"), v);
    }
}

fn expected_refusal(p: &Problem, m: &Model, with_bitops_row: bool) -> Option<&'static str> {
    let ind = &p.indicators;
    let lim = 1u128 << 53;
    let mut bo = 0u128;
    let mut sz = 0u128;
    for (i, l) in ind.layers.iter().enumerate() {
        match l.fixed {
            Some((w, _)) => sz += l.params as u128 * w as u128,
            None => {
                bo += l.macs as u128 * m.wmax[i] as u128 * m.amax[i] as u128;
                sz += l.params as u128 * m.wmax[i] as u128;
            }
        }
    }
    if with_bitops_row && bo >= lim {
        return Some("macs");
    }
    if p.options.size.is_some() && sz >= lim {
        return Some("params");
    }
    if m.max_component > 4096 {
        return Some("tie_weight/tie_act");
    }
    if m.empty_class {
        return Some("tie");
    }
    None
}

fn field_ok(field: &str, want: &str) -> bool {
    if want == "tie" {
        field == "tie_weight" || field == "tie_act"
    } else {
        field == want
    }
}

thread_local! {
    /// The last instance `run_one` built, budgets included (for the shrinker).
    static LAST: std::cell::RefCell<Option<Problem>> = const { std::cell::RefCell::new(None) };
}

fn run_one(seed: u64, st: &mut Stats, v: bool) {
    let g = generate(seed);
    let mut p = g.p;
    let feat = g.feat;
    let key = feat.key();
    let m = model(&p);
    let maxp: u128 = std::env::var("MAXP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    if product(&m) > maxp {
        st.by_feat.entry(key).or_default()[3] += 1;
        return;
    }
    let all = enumerate(&p, &m);
    let mut r = Rng(seed ^ 0xA5A5_5A5A_DEAD_BEEF);
    // ---- budgets, drawn from the priced assignments
    let pick = |r: &mut Rng| -> Option<&Price> {
        if all.is_empty() {
            None
        } else {
            Some(&all[r.below(all.len() as u64) as usize].1)
        }
    };
    let (bmin, bmax) = all.iter().fold((u128::MAX, 0u128), |(lo, hi), (_, pr)| {
        (lo.min(pr.bitops), hi.max(pr.bitops))
    });
    let clamp = |x: u128| -> u64 { x.min(u64::MAX as u128 - 1) as u64 };
    p.options.bitops = match g.bitops_mode {
        0..=2 => None,
        3..=7 => pick(&mut r).map(|pr| BitOpsBudget::Absolute(clamp(pr.bitops))),
        8 => pick(&mut r).map(|pr| BitOpsBudget::Absolute(clamp(pr.bitops.saturating_sub(1)))),
        9 => pick(&mut r).map(|pr| BitOpsBudget::Absolute(clamp(pr.bitops + 1))),
        10..=13 if !all.is_empty() => Some(BitOpsBudget::Absolute(clamp(
            bmin + ((bmax - bmin) as f64 * r.unit()) as u128,
        ))),
        14 if !all.is_empty() => Some(BitOpsBudget::Absolute(clamp(bmin.saturating_sub(1)))),
        15 => Some(BitOpsBudget::Absolute(u64::MAX - 1)),
        16 => Some(BitOpsBudget::Absolute(0)),
        _ => Some(BitOpsBudget::Uniform {
            weight: r.range(1, 8) as u32,
            act: r.range(1, 8) as u32,
        }),
    };
    let total_params: u128 = p.indicators.layers.iter().map(|l| l.params as u128).sum();
    p.options.size = match g.size_mode {
        0..=4 => None,
        5 | 6 => pick(&mut r).map(|pr| {
            if r.chance(0.5) {
                SizeBudget::Bytes((pr.size / 8) as u64)
            } else {
                SizeBudget::Bytes(pr.size.div_ceil(8) as u64)
            }
        }),
        7 => pick(&mut r).map(|pr| {
            // the ratio giving exactly that size (as far as f64 goes)
            if pr.size == 0 {
                SizeBudget::CompressionRatio(1.0)
            } else {
                SizeBudget::CompressionRatio(total_params as f64 * 32.0 / pr.size as f64)
            }
        }),
        _ => Some(SizeBudget::CompressionRatio(1.0 + 40.0 * r.unit())),
    };
    for (k, &mode) in g.res_modes.iter().enumerate() {
        let (lo, hi) = all
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), (_, pr)| {
                (lo.min(pr.extra[k]), hi.max(pr.extra[k]))
            });
        let mx = match mode {
            0..=4 => pick(&mut r).map_or(1.0, |pr| pr.extra[k]),
            5 if lo.is_finite() => lo * 0.999,
            _ if lo.is_finite() => lo + (hi - lo) * r.unit(),
            _ => 1.0,
        };
        p.options.resources[k].max = mx;
    }
    LAST.with(|l| *l.borrow_mut() = Some(p.clone()));
    let b = budgets(&p);
    let refusal = expected_refusal(&p, &m, p.options.bitops.is_some());
    let (strict, loose) = optimum(&all, &b);
    let eps = 1e-9;

    // ---- solve
    let got = catch_unwind(AssertUnwindSafe(|| p.solve()));
    let slot = st.by_feat.entry(key.clone()).or_default();
    match &got {
        Ok(Ok(_)) => slot[0] += 1,
        Ok(Err(Error::Infeasible { .. })) => slot[1] += 1,
        _ => slot[2] += 1,
    }
    if v {
        println!("problem: {p:#?}");
        println!(
            "brute force: strict {strict:?} loose {loose:?}, {} assignments",
            all.len()
        );
        println!("solver: {got:#?}");
    }
    match got {
        Err(_) => {
            st.issue("panic", seed, "solve panicked".into(), v);
            return;
        }
        Ok(Err(Error::InvalidInput { field, reason, .. })) => {
            match refusal {
                Some(w) if field_ok(&field, w) => {}
                _ => st.issue(
                    "wrong-refusal",
                    seed,
                    format!("refused {field}: {reason}; expected {refusal:?}"),
                    v,
                ),
            }
            return;
        }
        Ok(res) => {
            if let Some(w) = refusal {
                st.issue(
                    "missing-refusal",
                    seed,
                    format!("expected refusal {w}, got {res:?}"),
                    v,
                );
                return;
            }
            match res {
                Ok(s) => {
                    let spr = check_solution(&p, &m, &b, &s, seed, st, "solve", v);
                    let rnd = spr.as_ref().is_some_and(|x| only_rounding_over(&b, x));
                    match loose {
                        None => st.issue(
                            &r52("solution-for-infeasible", rnd),
                            seed,
                            format!("solver objective {}", s.policy.objective),
                            v,
                        ),
                        Some(lo) => {
                            let o = s.policy.objective;
                            let hi = strict.unwrap_or(f64::INFINITY);
                            if o > hi && !rel_close(o, hi, eps) {
                                let class = if feat.tiny {
                                    "tiny(1e-12)"
                                } else if feat.small {
                                    "small(1e-9..1e-3)"
                                } else {
                                    "other"
                                };
                                let w = st.worst.entry(class.into()).or_insert((0.0, 0));
                                if (o - hi) / hi > w.0 {
                                    *w = ((o - hi) / hi, seed);
                                }
                                let tiny = (o - hi).abs() <= 1e-9 * (1.0 + o.abs().max(hi.abs()));
                                st.issue(
                                    if tiny {
                                        "non-optimal(within-solver-abs-slack)"
                                    } else {
                                        "non-optimal"
                                    },
                                    seed,
                                    format!(
                                        "solver {o:e} (optimal flag {}) brute force {hi:e} [{}]",
                                        s.proof.optimal, key
                                    ),
                                    v,
                                );
                            }
                            if o < lo && !rel_close(o, lo, eps) {
                                st.issue(
                                    &r52("below-optimum", rnd),
                                    seed,
                                    format!("solver {o} brute {lo}"),
                                    v,
                                );
                            }
                            if let Some(h) = strict {
                                if s.proof.lower_bound > h
                                    && !rel_close(s.proof.lower_bound, h, eps)
                                {
                                    st.issue(
                                        "lower-bound-above-optimum",
                                        seed,
                                        format!("{:?} vs {h}", s.proof),
                                        v,
                                    );
                                }
                            }
                        }
                    }
                    if !s.proof.optimal {
                        st.issue("unproven", seed, format!("{:?}", s.proof), v);
                    }
                    if s.policy.bitops_budget.map(u128::from) != b.bitops {
                        st.issue(
                            "reported-bitops-budget",
                            seed,
                            format!("{:?} vs {:?}", s.policy.bitops_budget, b.bitops),
                            v,
                        );
                    }
                    // evaluate the solver's policy
                    eval_check(&p, &m, &b, &s.policy.layers, seed, st, v, "eval(solution)");
                }
                Err(Error::Infeasible { floors, .. }) => {
                    if let Some(x) = strict {
                        st.issue(
                            "wrong-infeasible",
                            seed,
                            format!("brute force finds {x}"),
                            v,
                        );
                    }
                    // floors: row minima over rule-valid assignments
                    let mut want: Vec<(String, f64)> = Vec::new();
                    if b.bitops.is_some() {
                        want.push((
                            "BitOps".into(),
                            all.iter()
                                .map(|x| x.1.bitops as f64)
                                .fold(f64::INFINITY, f64::min),
                        ));
                    }
                    if b.size.is_some() {
                        want.push((
                            "size".into(),
                            all.iter()
                                .map(|x| x.1.size as f64)
                                .fold(f64::INFINITY, f64::min),
                        ));
                    }
                    for (k, r) in p.options.resources.iter().enumerate() {
                        want.push((
                            r.table.name.clone(),
                            all.iter()
                                .map(|x| x.1.extra[k])
                                .fold(f64::INFINITY, f64::min),
                        ));
                    }
                    let ok = floors.len() == want.len()
                        && floors
                            .iter()
                            .zip(&want)
                            .all(|(f, w)| f.name == w.0 && rel_close(f.smallest, w.1, 1e-9));
                    if !ok {
                        st.issue("floors", seed, format!("got {floors:?} want {want:?}"), v);
                    }
                }
                Err(e) => st.issue("unexpected-error", seed, format!("{e:?}"), v),
            }
        }
    }

    // ---- the same with other search configurations
    let c = match p.compile() {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut probes = SolveOptions::default();
    probes.first_pass_states = 0;
    probes.coarse_first_min_groups = 0;
    probes.partner_min_states = 0;
    probes.surrogate_min_candidates = 0;
    probes.surrogate_back_min_candidates = 0;
    let mut configs = vec![("probes", probes.clone())];
    if r.chance(0.3) {
        let mut o = SolveOptions::default();
        o.first_pass_states = u64::MAX;
        o.cold_first_pass_states = u64::MAX;
        o.first_pass_max_groups = usize::MAX;
        o.first_pass_max_combinations = u64::MAX;
        configs.push(("uncut-first-pass", o));
    }
    if r.chance(0.3) {
        let mut o = probes.clone();
        o.node_limit = r.range(0, 40);
        configs.push(("node-limit", o));
    }
    for (name, o) in configs {
        st.alt_solves += 1;
        let got = catch_unwind(AssertUnwindSafe(|| c.solve(&o)));
        let ctx = format!("solve[{name}]");
        match got {
            Err(_) => st.issue("panic", seed, format!("{ctx} panicked"), v),
            Ok(Ok(s)) => {
                let spr = check_solution(&p, &m, &b, &s, seed, st, &ctx, v);
                let rnd = spr.as_ref().is_some_and(|x| only_rounding_over(&b, x));
                let oo = s.policy.objective;
                match (strict, loose) {
                    (_, None) => st.issue(
                        &r52("solution-for-infeasible", rnd),
                        seed,
                        ctx.to_string(),
                        v,
                    ),
                    (hi, Some(lo)) => {
                        let hi = hi.unwrap_or(f64::INFINITY);
                        if s.proof.optimal && oo > hi && !rel_close(oo, hi, eps) {
                            let tiny = (oo - hi).abs() <= 1e-9 * (1.0 + oo.abs().max(hi.abs()));
                            st.issue(
                                if tiny {
                                    "non-optimal(within-solver-abs-slack)"
                                } else {
                                    "non-optimal"
                                },
                                seed,
                                format!("{ctx}: solver {oo:e} brute {hi:e} [{key}]"),
                                v,
                            );
                        }
                        if oo < lo && !rel_close(oo, lo, eps) {
                            st.issue(
                                &r52("below-optimum", rnd),
                                seed,
                                format!("{ctx}: {oo} < {lo}"),
                                v,
                            );
                        }
                        if s.proof.lower_bound > hi && !rel_close(s.proof.lower_bound, hi, eps) {
                            st.issue(
                                "lower-bound-above-optimum",
                                seed,
                                format!("{ctx}: {:?} vs {hi}", s.proof),
                                v,
                            );
                        }
                        if name != "node-limit" && !s.proof.optimal {
                            st.issue("unproven", seed, format!("{ctx}: {:?}", s.proof), v);
                        }
                        if name == "node-limit" && !s.proof.optimal {
                            st.limited += 1;
                        }
                    }
                }
            }
            Ok(Err(Error::Infeasible { .. })) => {
                if strict.is_some() {
                    st.issue("wrong-infeasible", seed, ctx.to_string(), v);
                }
            }
            Ok(Err(Error::LimitReached { .. })) if name == "node-limit" => st.limited += 1,
            Ok(Err(e)) => st.issue("unexpected-error", seed, format!("{ctx}: {e:?}"), v),
        }
    }

    // ---- evaluate random assignments
    for _ in 0..2 {
        let bits: Vec<(u32, u32)> = if !all.is_empty() && r.chance(0.6) {
            all[r.below(all.len() as u64) as usize].0.clone()
        } else {
            // each layer at file bits (rule-valid or not)
            let ind = &p.indicators;
            ind.layers
                .iter()
                .map(|l| match l.fixed {
                    Some(f) if r.chance(0.9) => f,
                    _ => (r.pick(&ind.weight_bits), r.pick(&ind.act_bits)),
                })
                .collect()
        };
        let lb = layer_bits(&p, &bits);
        eval_check(&p, &m, &b, &lb, seed, st, v, "eval(random)");
    }

    // ---- sweeps
    if r.chance(0.35) {
        let points = [1usize, 2, 3, 4, 5, 7, 12][r.below(7) as usize];
        sweep_check(&p, &m, &all, points, seed, st, v);
    }
}

fn eval_check(
    p: &Problem,
    m: &Model,
    b: &Budgets,
    layers: &[LayerBits],
    seed: u64,
    st: &mut Stats,
    v: bool,
    ctx: &str,
) {
    st.evals += 1;
    let bits: Vec<(u32, u32)> = layers.iter().map(|l| (l.weight, l.act)).collect();
    let got = catch_unwind(AssertUnwindSafe(|| p.evaluate(layers)));
    let e = match got {
        Err(_) => {
            st.issue("panic", seed, format!("{ctx} panicked"), v);
            return;
        }
        Ok(Err(e)) => {
            // only refusable: a searchable layer at bits with no indicator, or a problem refusal
            st.issue("eval-error", seed, format!("{ctx}: {e:?} bits {bits:?}"), v);
            return;
        }
        Ok(Ok(e)) => e,
    };
    let pr = price(p, &bits);
    let valid = rule_valid(m, &bits);
    let f = feas(b, &pr);
    if f != 1 {
        let want = valid && f == 0;
        if e.feasible != want {
            st.issue(
                &r52("eval-feasible", e.feasible && only_rounding_over(b, &pr)),
                seed,
                format!("{ctx}: says {} ({:?}), brute force {want} (rules {valid}, budgets {f}) bits {bits:?}", e.feasible, e.violations),
                v,
            );
        }
    }
    if !rel_close(e.policy.objective, pr.obj, 1e-9) {
        st.issue(
            "eval-objective",
            seed,
            format!("{ctx}: {} vs {}", e.policy.objective, pr.obj),
            v,
        );
    }
    if e.policy.bitops as u128 != pr.bitops || e.policy.weight_bits_total as u128 != pr.size {
        st.issue("eval-figures", seed, format!("{ctx}: {:?}", e.policy), v);
    }
    check_usage(p, b, &pr, &e.usage, seed, st, ctx, v);
}

fn sweep_check(
    p: &Problem,
    m: &Model,
    all: &[(Vec<(u32, u32)>, Price)],
    points: usize,
    seed: u64,
    st: &mut Stats,
    v: bool,
) {
    st.sweeps += 1;
    let mut q = p.clone();
    q.options.bitops = None;
    let b0 = budgets(&q);
    let refusal = expected_refusal(&q, m, true);
    let got = catch_unwind(AssertUnwindSafe(|| p.sweep(points)));
    let got = match got {
        Err(_) => {
            st.issue("panic", seed, "sweep panicked".into(), v);
            return;
        }
        Ok(g) => g,
    };
    if let Some(w) = refusal {
        match &got {
            Err(Error::InvalidInput { field, .. }) if field_ok(field, w) => {}
            other => st.issue("sweep-refusal", seed, format!("expected {w}: {other:?}"), v),
        }
        return;
    }
    // lo: least BitOps within the other budgets; hi: most BitOps of any rule-valid policy
    let mut lo_strict: Option<u128> = None;
    let mut lo_loose: Option<u128> = None;
    for (_, pr) in all {
        match feas(&b0, pr) {
            0 => {
                lo_strict = Some(lo_strict.map_or(pr.bitops, |x| x.min(pr.bitops)));
                lo_loose = Some(lo_loose.map_or(pr.bitops, |x| x.min(pr.bitops)));
            }
            1 => lo_loose = Some(lo_loose.map_or(pr.bitops, |x| x.min(pr.bitops))),
            _ => {}
        }
    }
    let hi_all = all.iter().map(|x| x.1.bitops).max().unwrap_or(0);
    let pts = match got {
        Err(Error::Infeasible { .. }) => {
            if lo_strict.is_some() {
                st.issue("sweep-wrong-infeasible", seed, String::new(), v);
            }
            return;
        }
        Err(e) => {
            st.issue("sweep-error", seed, format!("{e:?}"), v);
            return;
        }
        Ok(pts) => pts,
    };
    let Some(lo) = lo_loose else {
        let rnd = pts.iter().all(|s| {
            let bits: Vec<(u32, u32)> = s.policy.layers.iter().map(|l| (l.weight, l.act)).collect();
            let mut bb = b0.clone();
            bb.bitops = s.policy.bitops_budget.map(u128::from);
            only_rounding_over(&bb, &price(p, &bits))
        });
        st.issue(
            &r52("sweep-solution-for-infeasible", rnd),
            seed,
            String::new(),
            v,
        );
        return;
    };
    if pts.len() != points {
        st.issue(
            "sweep-len",
            seed,
            format!("{} points for {points}", pts.len()),
            v,
        );
        return;
    }
    let exact_lo = lo_strict == lo_loose;
    let hi = hi_all.max(lo);
    for (i, s) in pts.iter().enumerate() {
        st.sweep_points += 1;
        let budget = s.policy.bitops_budget.map(u128::from);
        if exact_lo {
            let want = if points == 1 {
                hi
            } else {
                lo + (hi - lo) * i as u128 / (points as u128 - 1)
            };
            if budget != Some(want) {
                let rnd = budget == Some(want + 1) && lo >= 1 << 52 && lo % 2 == 1;
                st.issue(
                    &r52("sweep-budget", rnd),
                    seed,
                    format!(
                        "point {i}/{points}: budget {budget:?}, expected {want} (lo {lo}, hi {hi})"
                    ),
                    v,
                );
            }
        }
        let Some(bud) = budget else {
            st.issue("sweep-budget", seed, format!("point {i}: no budget"), v);
            continue;
        };
        let mut bb = b0.clone();
        bb.bitops = Some(bud);
        let ctx = format!("sweep point {i}/{points} (budget {bud})");
        let spr = check_solution(p, m, &bb, s, seed, st, &ctx, v);
        let rnd = spr.as_ref().is_some_and(|x| only_rounding_over(&bb, x));
        let (strict, loose) = optimum(all, &bb);
        let o = s.policy.objective;
        if let Some(hi) = strict {
            if o > hi && !rel_close(o, hi, 1e-9) {
                let tiny = (o - hi).abs() <= 1e-9 * (1.0 + o.abs().max(hi.abs()));
                st.issue(
                    if tiny {
                        "sweep-non-optimal(within-solver-abs-slack)"
                    } else {
                        "sweep-non-optimal"
                    },
                    seed,
                    format!(
                        "{ctx}: solver {o:e} (optimal {}) brute {hi:e}",
                        s.proof.optimal
                    ),
                    v,
                );
            }
        }
        if let Some(lo) = loose {
            if o < lo && !rel_close(o, lo, 1e-9) {
                st.issue(
                    &r52("sweep-below-optimum", rnd),
                    seed,
                    format!("{ctx}: {o} < {lo}"),
                    v,
                );
            }
        }
        if !s.proof.optimal {
            st.issue("sweep-unproven", seed, format!("{ctx}: {:?}", s.proof), v);
        }
    }
}

// ---------------------------------------------------------------- hostile input
fn hostile_one(seed: u64, st: &mut Stats, v: bool) {
    let g = generate(seed);
    let mut p = g.p;
    let mut r = Rng(seed ^ 0x0BAD_F00D);
    if p.options.bitops.is_none() && r.chance(0.7) {
        p.options.bitops = Some(BitOpsBudget::Uniform { weight: 4, act: 4 });
    }
    if r.chance(0.5) {
        p.options.size = Some(SizeBudget::CompressionRatio(8.0));
    }
    for res in &mut p.options.resources {
        res.max = 1e6;
    }
    let bad_f = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -1.0,
        -0.0,
        f64::MAX,
        5e-324,
        f64::MIN_POSITIVE,
    ];
    let x = r.pick(&bad_f);
    let must_refuse = x.is_nan() || x.is_infinite() || x < 0.0;
    let n = p.indicators.layers.len();
    let li = r.below(n as u64) as usize;
    let what = r.below(14);
    let mut refuse = must_refuse;
    match what {
        0 => {
            let l = &mut p.indicators.layers[li];
            if !l.weight_scale.is_empty() {
                let k = r.below(l.weight_scale.len() as u64) as usize;
                l.weight_scale[k] = x;
            } else {
                refuse = false;
            }
        }
        1 => {
            let l = &mut p.indicators.layers[li];
            if !l.act_scale.is_empty() {
                let k = r.below(l.act_scale.len() as u64) as usize;
                l.act_scale[k] = x;
            } else {
                refuse = false;
            }
        }
        2 => p.options.alpha = x,
        3 => {
            if let Some(res) = p.options.resources.first_mut() {
                res.max = x;
            } else {
                refuse = false;
            }
        }
        4 => {
            if let Some(res) = p.options.resources.first_mut() {
                let rl = &mut res.table.layers[0];
                let k = r.below(rl.costs.len() as u64) as usize;
                rl.costs[k].2 = x;
            } else {
                refuse = false;
            }
        }
        5 => {
            p.options.size = Some(SizeBudget::CompressionRatio(x));
            let t: u128 = p.indicators.layers.iter().map(|l| l.params as u128).sum();
            refuse = !(x.is_finite() && x > 0.0) || t as f64 * 32.0 / x >= u64::MAX as f64;
        }
        6 => {
            p.indicators.layers[li].macs =
                r.pick(&[u64::MAX, u64::MAX / 2, 1 << 53, (1 << 53) - 1]);
            refuse = false;
        }
        7 => {
            p.indicators.layers[li].params =
                r.pick(&[u64::MAX, u64::MAX / 2, 1 << 53, (1 << 53) - 1]);
            refuse = false;
        }
        8 => {
            let bad = r.pick(&[0u32, 33, u32::MAX]);
            match r.below(6) {
                0 => p.indicators.weight_bits[0] = bad,
                1 => p.options.weight_only = Some(bad),
                2 => p
                    .options
                    .pinned
                    .push((p.indicators.layers[li].name.clone(), bad, 4)),
                3 => {
                    p.options.bitops = Some(BitOpsBudget::Uniform {
                        weight: bad,
                        act: 2,
                    })
                }
                4 => {
                    let l = &mut p.indicators.layers[li];
                    l.fixed = Some((bad, 8));
                }
                _ => p.options.act_bits = Some(vec![bad]),
            }
            refuse = true;
        }
        9 => {
            // empty or duplicated lists
            match r.below(3) {
                0 => p.options.weight_bits = Some(vec![]),
                1 => {
                    let b = p.indicators.act_bits[0];
                    p.indicators.act_bits.push(b);
                    for l in &mut p.indicators.layers {
                        if !l.act_scale.is_empty() {
                            l.act_scale.push(0.1);
                        }
                    }
                }
                _ => p.indicators.weight_bits.clear(),
            }
            refuse = true;
        }
        10 => {
            // unknown names / duplicate names / a scale list of the wrong length
            refuse = match r.below(4) {
                0 => {
                    p.options.pinned.push(("nope".into(), 2, 2));
                    true
                }
                1 => {
                    p.options.tie_weight.push(vec!["L0".into(), "nope".into()]);
                    true
                }
                2 => {
                    let name = p.indicators.layers[0].name.clone();
                    p.indicators.layers[n - 1].name = name;
                    n > 1
                }
                _ => {
                    let nw = p.indicators.weight_bits.len();
                    let l = &mut p.indicators.layers[li];
                    l.weight_scale.push(0.5);
                    !(l.fixed.is_some() && l.weight_scale.len() == 1 && nw == 1)
                }
            };
        }
        11 => {
            p.options.bitops = Some(BitOpsBudget::Absolute(r.pick(&[
                u64::MAX,
                u64::MAX - 1,
                0,
                1,
            ])));
            refuse = p.options.bitops == Some(BitOpsBudget::Absolute(u64::MAX));
        }
        12 => {
            p.options.size = Some(SizeBudget::Bytes(r.pick(&[
                u64::MAX,
                u64::MAX / 8,
                u64::MAX / 8 + 1,
                0,
            ])));
            refuse = matches!(p.options.size, Some(SizeBudget::Bytes(b)) if b > u64::MAX / 8);
        }
        _ => {
            // f64::MAX-ish indicators with a large alpha: objective overflow
            for l in &mut p.indicators.layers {
                for s in l.weight_scale.iter_mut() {
                    *s = f64::MAX / 2.0;
                }
            }
            p.options.alpha = 4.0;
            let (ind, o) = (&p.indicators, &p.options);
            refuse = ind.layers.iter().any(|l| {
                l.fixed.is_none()
                    && o.pinned
                        .iter()
                        .find(|x| x.0 == l.name)
                        .is_none_or(|x| ind.weight_bits.contains(&x.1))
            });
        }
    }
    st.by_feat.entry(format!("hostile-{what}")).or_default()[0] += 1;
    let m_ok = catch_unwind(AssertUnwindSafe(|| {
        let r1 = p.solve();
        let r2 = p.sweep(3);
        let r3 = p.compile().map(|_| ());
        let lb: Vec<LayerBits> = p
            .indicators
            .layers
            .iter()
            .map(|l| LayerBits {
                name: l.name.clone(),
                weight: l.fixed.map_or(
                    p.indicators.weight_bits.first().copied().unwrap_or(2),
                    |f| f.0,
                ),
                act: l
                    .fixed
                    .map_or(p.indicators.act_bits.first().copied().unwrap_or(2), |f| f.1),
            })
            .collect();
        let r4 = p.evaluate(&lb);
        (r1, r2, r3, r4)
    }));
    match m_ok {
        Err(_) => st.issue("hostile-panic", seed, format!("case {what} value {x:?}"), v),
        Ok((r1, r2, r3, _r4)) => {
            if v {
                println!("{p:#?}\n{r1:#?}\n{r3:?}");
            }
            if refuse {
                let refused = |e: &Result<_, Error>| matches!(e, Err(Error::InvalidInput { .. }));
                if !refused(&r3.clone().map(|_| ())) {
                    st.issue(
                        "hostile-not-refused",
                        seed,
                        format!(
                            "case {what} value {x:?}: compile {r3:?} solve {:?}",
                            r1.as_ref().map(|s| s.policy.objective)
                        ),
                        v,
                    );
                }
            }
            // an answer must be within its own budgets (recomputed)
            if let Ok(s) = &r1 {
                if r3.is_ok() {
                    let m = model(&p);
                    let b = budgets(&p);
                    let bits: Vec<(u32, u32)> =
                        s.policy.layers.iter().map(|l| (l.weight, l.act)).collect();
                    let pr = price(&p, &bits);
                    if !rule_valid(&m, &bits) || feas(&b, &pr) == 2 {
                        st.issue(
                            "hostile-bad-answer",
                            seed,
                            format!("case {what}: {bits:?} {pr:?} {b:?}"),
                            v,
                        );
                    }
                }
            }
            if let Ok(pts) = &r2 {
                let m = model(&p);
                let mut b = budgets(&p);
                for s in pts {
                    b.bitops = s.policy.bitops_budget.map(u128::from);
                    let bits: Vec<(u32, u32)> =
                        s.policy.layers.iter().map(|l| (l.weight, l.act)).collect();
                    let pr = price(&p, &bits);
                    if !rule_valid(&m, &bits) || feas(&b, &pr) == 2 {
                        st.issue(
                            "hostile-bad-sweep",
                            seed,
                            format!("case {what}: {bits:?}"),
                            v,
                        );
                    }
                }
            }
        }
    }
}

fn main() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("panic: {info}");
    }));
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("main");
    let start: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let count: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let mut st = Stats::default();
    let t = std::time::Instant::now();
    match mode {
        "one" => run_one(start, &mut st, true),
        "hone" => hostile_one(start, &mut st, true),
        "shrink-sweep" => shrink_sweep(start, false),
        "shrink-over" => shrink_sweep(start, true),
        "hostile" => {
            for s in start..start + count {
                hostile_one(s, &mut st, false);
            }
        }
        _ => {
            for s in start..start + count {
                run_one(s, &mut st, false);
                if (s - start + 1) % 50_000 == 0 {
                    eprintln!("{} done, {:?}", s - start + 1, t.elapsed());
                }
            }
        }
    }
    println!(
        "== {mode} seeds {start}..{} in {:?}",
        start + count,
        t.elapsed()
    );
    println!("per feature (instances having it): [solved, infeasible, refused, skipped(too big)]");
    let mut tot = [0u64; 4];
    let mut per: BTreeMap<String, [u64; 4]> = BTreeMap::new();
    for (k, c) in &st.by_feat {
        if std::env::var("COMBOS").is_ok() {
            println!("  combo {k}: {c:?}");
        }
        for f in k.split('+') {
            let e = per.entry(f.to_string()).or_default();
            for i in 0..4 {
                e[i] += c[i];
            }
        }
        for i in 0..4 {
            tot[i] += c[i];
        }
    }
    for (k, c) in &per {
        println!("  {k}: {c:?}");
    }
    println!("distinct feature combinations: {}", st.by_feat.len());
    println!("total {tot:?}; alt-config solves {}, node-limited {}, evaluations {}, sweeps {} ({} points)",
        st.alt_solves, st.limited, st.evals, st.sweeps, st.sweep_points);
    for (k, (x, s)) in &st.worst {
        println!("worst relative excess over the optimum, {k}: {x:.3e} (seed {s})");
    }
    if st.issues.is_empty() {
        println!("NO ISSUES");
    }
    for (k, (c, s)) in &st.issues {
        println!("ISSUE SUMMARY {k}: {c} (first seed {s})");
    }
    if !st.issues.is_empty() {
        std::process::exit(1);
    }
}

/// The sweep's first budget against the least BitOps within the other budgets (brute force).
fn sweep_floor_wrong(p: &Problem) -> Option<(u64, u128)> {
    let m = model(p);
    if product(&m) > 200_000 {
        return None;
    }
    let all = enumerate(p, &m);
    let mut q = p.clone();
    q.options.bitops = None;
    let b0 = budgets(&q);
    let lo = all
        .iter()
        .filter(|x| feas(&b0, &x.1) == 0)
        .map(|x| x.1.bitops)
        .min()?;
    if all.iter().any(|x| feas(&b0, &x.1) == 1) {
        return None;
    }
    let pts = catch_unwind(AssertUnwindSafe(|| p.sweep(1))).ok()?.ok()?;
    let _ = pts;
    let pts = p.sweep(2).ok()?;
    let got = pts[0].policy.bitops_budget?;
    (got as u128 != lo).then_some((got, lo))
}

/// Greedy shrinking of an instance whose sweep starts above the least BitOps.
/// The solver's policy over a budget (recomputed) while every cap is below 2^52.
fn solve_over(p: &Problem) -> Option<(u128, u128)> {
    let s = catch_unwind(AssertUnwindSafe(|| p.solve())).ok()?.ok()?;
    let bits: Vec<(u32, u32)> = s.policy.layers.iter().map(|l| (l.weight, l.act)).collect();
    let pr = price(p, &bits);
    let b = budgets(p);
    let big = 1u128 << 52;
    if let Some(x) = b.size {
        if pr.size > x && x - pr.fixed_size < big {
            return Some((pr.size, x));
        }
    }
    if let Some(x) = b.bitops {
        if pr.bitops > x && x < big {
            return Some((pr.bitops, x));
        }
    }
    None
}

fn shrink_sweep(seed: u64, over: bool) {
    let pred = |p: &Problem| -> Option<(u128, u128)> {
        if over {
            solve_over(p)
        } else {
            sweep_floor_wrong(p).map(|(a, b)| (a as u128, b))
        }
    };
    let mut st = Stats::default();
    run_one(seed, &mut st, false);
    let mut p = LAST.with(|l| l.borrow().clone()).expect("an instance");
    if !over {
        p.options.bitops = None;
    }
    println!("start: {:?}", pred(&p));
    loop {
        let mut changed = false;
        // drop a layer
        for i in 0..p.indicators.layers.len() {
            if p.indicators.layers.len() == 1 {
                break;
            }
            let mut q = p.clone();
            let name = q.indicators.layers.remove(i).name;
            q.options.pinned.retain(|x| x.0 != name);
            for g in q
                .options
                .tie_weight
                .iter_mut()
                .chain(q.options.tie_act.iter_mut())
            {
                g.retain(|x| *x != name);
            }
            q.options.tie_weight.retain(|g| g.len() >= 2);
            q.options.tie_act.retain(|g| g.len() >= 2);
            for r in &mut q.options.resources {
                r.table.layers.retain(|l| l.name != name);
            }
            if q.indicators.layers.iter().all(|l| l.fixed.is_some()) {
                continue;
            }
            if pred(&q).is_some() {
                p = q;
                changed = true;
                break;
            }
        }
        if changed {
            continue;
        }
        // drop a resource, the size budget, ties, pins, candidates
        let mut tries: Vec<Problem> = Vec::new();
        for k in 0..p.options.resources.len() {
            let mut q = p.clone();
            q.options.resources.remove(k);
            tries.push(q);
        }
        for f in 0..8 {
            let mut q = p.clone();
            match f {
                0 => q.options.size = None,
                6 => q.options.bitops = None,
                7 => q.options.non_monotone_rule = true,
                1 => q.options.tie_weight.clear(),
                2 => q.options.tie_act.clear(),
                3 => q.options.pinned.clear(),
                4 => q.options.weight_bits = None,
                _ => q.options.act_bits = None,
            }
            if q != p {
                tries.push(q);
            }
        }
        // drop resource entries for bits no layer may take
        for t in tries {
            if pred(&t).is_some() {
                p = t;
                changed = true;
                break;
            }
        }
        if !changed {
            break;
        }
    }
    // keep only the table entries for allowed pairs
    let m = model(&p);
    for r in &mut p.options.resources {
        for rl in &mut r.table.layers {
            let i = p
                .indicators
                .layers
                .iter()
                .position(|l| l.name == rl.name)
                .unwrap();
            rl.costs.retain(|c| m.allowed[i].contains(&(c.0, c.1)));
        }
    }
    println!("end: {:?}\n{p:?}", pred(&p));
}
