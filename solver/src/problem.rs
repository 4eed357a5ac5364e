//! The search problem: a builder over an [`IndicatorSet`], validated and compiled into a
//! multiple-choice knapsack (one group per layer or tie component, one choice per allowed
//! bit combination, one row per budget).

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::error::{BudgetFloor, Error};
use crate::format::{IndicatorSet, ResourceTable};

/// The largest bit-width a layer may take (candidates, pins, fixed layers, `weight_only`):
/// every bit-width is in `1..=MAX_BITS`.
pub const MAX_BITS: u32 = 32;

/// A BitOps budget. BitOps = Σ over searchable (non-`fixed`) layers of MACs · wbits · abits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BitOpsBudget {
    /// An absolute number of BitOps.
    Absolute(u64),
    /// The BitOps of every searchable layer at `weight` and `act` bits ("uniform WxAy").
    Uniform { weight: u32, act: u32 },
}

/// A weight-storage budget. Size = Σ over every layer (fixed ones at their fixed bits)
/// of params · wbits.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum SizeBudget {
    Bytes(u64),
    /// 32-bit weights of the whole model divided by this ratio.
    CompressionRatio(f64),
}

impl BitOpsBudget {
    /// Parses `w4a4` (any case: every searchable layer at W4 A4) or a number of BitOps
    /// (`_` separators allowed, e.g. `1_500_000`). The one spelling of a BitOps budget
    /// everywhere: command lines, job files, pipeline files.
    pub fn parse(s: &str) -> Result<BitOpsBudget, ParseBudgetError> {
        let t = s.trim().to_ascii_lowercase();
        let err = |why: &str| ParseBudgetError(format!("BitOps budget `{s}`: {why}"));
        if let Some(rest) = t.strip_prefix('w') {
            let (w, a) = rest
                .split_once('a')
                .ok_or_else(|| err("expected wXaY, e.g. w4a4, or a number of BitOps"))?;
            let bits = |v: &str, what: &str| {
                v.parse::<u32>()
                    .ok()
                    .filter(|b| (1..=MAX_BITS).contains(b))
                    .ok_or_else(|| err(&format!("{what} bits `{v}` must be in 1..={MAX_BITS}")))
            };
            return Ok(BitOpsBudget::Uniform {
                weight: bits(w, "weight")?,
                act: bits(a, "activation")?,
            });
        }
        let digits: String = t.chars().filter(|&c| c != '_').collect();
        // Whole numbers in any notation (`1500000`, `1.5e6`).
        let whole = digits.parse::<u64>().ok().or_else(|| {
            digits
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 1.0 && *v < u64::MAX as f64)
                .filter(|v| *v == (*v as u64) as f64)
                .map(|v| v as u64)
        });
        // A whole number past what a 64-bit count holds (u64::MAX itself stands for "no
        // BitOps budget" inside a sweep).
        let too_large = whole == Some(u64::MAX)
            || (whole.is_none()
                && digits
                    .parse::<f64>()
                    .is_ok_and(|v| v.is_finite() && v >= u64::MAX as f64));
        if too_large {
            return Err(err(&format!(
                "more BitOps than a 64-bit count holds (at most {})",
                u64::MAX - 1
            )));
        }
        match whole {
            Some(v) if v > 0 => Ok(BitOpsBudget::Absolute(v)),
            _ => Err(err(
                "expected wXaY, e.g. w4a4, or a positive whole number of BitOps",
            )),
        }
    }
}

impl BitOpsBudget {
    /// This budget in BitOps for `ind`: the number itself, or Σ over `ind`'s searchable
    /// layers of MACs · weight · act bits (saturating). The one place a uniform budget
    /// becomes a number.
    pub fn bitops(&self, ind: &IndicatorSet) -> u64 {
        match *self {
            BitOpsBudget::Absolute(v) => v,
            BitOpsBudget::Uniform { weight, act } => ind
                .layers
                .iter()
                .filter(|l| l.fixed.is_none())
                .fold(0u64, |s, l| {
                    s.saturating_add(l.macs.saturating_mul(u64::from(weight) * u64::from(act)))
                }),
        }
    }

    /// The smallest BitOps any policy of `ind` can have: every searchable layer at the
    /// file's lowest weight and activation bits.
    pub fn floor(ind: &IndicatorSet) -> u64 {
        let w = ind.weight_bits.iter().copied().min().unwrap_or(0);
        let a = ind.act_bits.iter().copied().min().unwrap_or(0);
        BitOpsBudget::Uniform { weight: w, act: a }.bitops(ind)
    }
}

impl core::str::FromStr for BitOpsBudget {
    type Err = ParseBudgetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BitOpsBudget::parse(s)
    }
}

/// `w4a4` or the number: what [`BitOpsBudget::parse`] reads back.
impl core::fmt::Display for BitOpsBudget {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BitOpsBudget::Absolute(v) => write!(f, "{v}"),
            BitOpsBudget::Uniform { weight, act } => write!(f, "w{weight}a{act}"),
        }
    }
}

impl SizeBudget {
    /// Parses `cr:X` (a compression ratio against 32-bit weights of the whole model, X > 0)
    /// or a number of bytes (`_` separators allowed).
    pub fn parse(s: &str) -> Result<SizeBudget, ParseBudgetError> {
        let t = s.trim();
        let err = |why: &str| ParseBudgetError(format!("size budget `{s}`: {why}"));
        if let Some(r) = t.strip_prefix("cr:") {
            return match r.trim().parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 => Ok(SizeBudget::CompressionRatio(r)),
                _ => Err(err("the compression ratio must be a positive number")),
            };
        }
        let digits: String = t.chars().filter(|&c| c != '_').collect();
        // The budget is counted in bits: eight times the bytes must fit a 64-bit count.
        let most = u64::MAX / 8;
        match digits.parse::<u64>() {
            Ok(b) if b <= most => Ok(SizeBudget::Bytes(b)),
            Ok(_) => Err(err(&format!(
                "more bits than a 64-bit count holds (at most {most} bytes)"
            ))),
            Err(_) if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) => Err(err(
                &format!("more bits than a 64-bit count holds (at most {most} bytes)"),
            )),
            Err(_) => Err(err("expected cr:X or a whole number of bytes")),
        }
    }
}

impl core::str::FromStr for SizeBudget {
    type Err = ParseBudgetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SizeBudget::parse(s)
    }
}

/// `cr:X` or the number of bytes: what [`SizeBudget::parse`] reads back.
impl core::fmt::Display for SizeBudget {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SizeBudget::Bytes(b) => write!(f, "{b}"),
            // Rust prints an f64 without an exponent: `cr:1e-20` would be 24 digits.
            SizeBudget::CompressionRatio(r) if !(1e-4..1e16).contains(r) => write!(f, "cr:{r:e}"),
            SizeBudget::CompressionRatio(r) => write!(f, "cr:{r}"),
        }
    }
}

/// A budget that does not parse; the message quotes it and says what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseBudgetError(pub String);

impl core::fmt::Display for ParseBudgetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for ParseBudgetError {}

/// Budgets are written as their text (`"w4a4"`, `"cr:8"`) or, when a plain number, as the
/// number (`1500000`); text and numbers are read back either way.
#[cfg(feature = "serde")]
mod budget_serde {
    use super::{BitOpsBudget, SizeBudget};
    use alloc::string::{String, ToString};
    use core::fmt;
    use serde::de::{self, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    struct Text<T>(core::marker::PhantomData<T>);

    impl<T: core::str::FromStr<Err = super::ParseBudgetError>> Visitor<'_> for Text<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a budget: \"wXaY\", \"cr:X\" or a number")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(|e: super::ParseBudgetError| E::custom(e))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<T, E> {
            self.visit_str(&v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            if v < 0 {
                return Err(E::custom(alloc::format!("budget {v} is negative")));
            }
            self.visit_str(&v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            // Whole numbers written with a fraction or exponent (`1.5e6`) are read as such.
            if v.is_finite() && v >= 0.0 && v < u64::MAX as f64 && v == (v as u64) as f64 {
                self.visit_u64(v as u64)
            } else {
                Err(E::custom(alloc::format!("{v} is not a whole number")))
            }
        }
    }

    impl Serialize for BitOpsBudget {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                BitOpsBudget::Absolute(v) => s.serialize_u64(*v),
                BitOpsBudget::Uniform { .. } => s.collect_str(self),
            }
        }
    }
    impl<'de> Deserialize<'de> for BitOpsBudget {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Text(core::marker::PhantomData))
        }
    }
    impl Serialize for SizeBudget {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                SizeBudget::Bytes(b) => s.serialize_u64(*b),
                SizeBudget::CompressionRatio(_) => s.collect_str(self),
            }
        }
    }
    impl<'de> Deserialize<'de> for SizeBudget {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Text(core::marker::PhantomData))
        }
    }
}

/// An extra linear resource and its maximum.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub table: ResourceTable,
    pub max: f64,
}

/// Everything the search takes besides the indicators. Build through [`Problem`]'s methods.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Options {
    /// Weight of the weight indicators in the objective (Σ act + α · weight). Default 2.
    pub alpha: f64,
    /// Candidate weight bits; `None` = the indicator file's.
    pub weight_bits: Option<Vec<u32>>,
    /// Candidate activation bits; `None` = the indicator file's.
    pub act_bits: Option<Vec<u32>>,
    pub bitops: Option<BitOpsBudget>,
    pub size: Option<SizeBudget>,
    pub resources: Vec<Resource>,
    /// `Some(a)`: search weights only, every searchable layer's activations at `a` bits
    /// (activation indicators then do not enter the objective).
    pub weight_only: Option<u32>,
    /// Layers held at given (weight, act) bits.
    pub pinned: Vec<(String, u32, u32)>,
    /// Groups of layers that must take the same weight bits.
    pub tie_weight: Vec<Vec<String>>,
    /// Groups of layers that must take the same activation bits.
    pub tie_act: Vec<Vec<String>>,
    /// Forbid bit b for a layer whose indicator at b is smaller than at the next larger
    /// candidate (a non-monotone, unreliable indicator). Default on.
    pub non_monotone_rule: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            alpha: 2.0,
            weight_bits: None,
            act_bits: None,
            bitops: None,
            size: None,
            resources: Vec::new(),
            weight_only: None,
            pinned: Vec::new(),
            tie_weight: Vec::new(),
            tie_act: Vec::new(),
            non_monotone_rule: true,
        }
    }
}

/// The bit-width search for one model: build it, then [`Problem::solve`] or
/// [`Problem::compile`] once and solve many times.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub indicators: IndicatorSet,
    pub options: Options,
}

impl Problem {
    /// The search of `indicators` with the default options, α the file's own default
    /// ([`IndicatorSet::default_alpha`]: 1 for measured sensitivity, else 2), so every face
    /// (the CLI, C, Python, WebAssembly) searches a file alike.
    pub fn new(indicators: IndicatorSet) -> Self {
        let alpha = indicators.default_alpha();
        Problem {
            indicators,
            options: Options {
                alpha,
                ..Options::default()
            },
        }
    }
    pub fn with_options(indicators: IndicatorSet, options: Options) -> Self {
        Problem {
            indicators,
            options,
        }
    }
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.options.alpha = alpha;
        self
    }
    pub fn weight_bits(mut self, bits: &[u32]) -> Self {
        self.options.weight_bits = Some(bits.to_vec());
        self
    }
    pub fn act_bits(mut self, bits: &[u32]) -> Self {
        self.options.act_bits = Some(bits.to_vec());
        self
    }
    pub fn bitops(mut self, budget: BitOpsBudget) -> Self {
        self.options.bitops = Some(budget);
        self
    }
    pub fn size(mut self, budget: SizeBudget) -> Self {
        self.options.size = Some(budget);
        self
    }
    pub fn resource(mut self, table: ResourceTable, max: f64) -> Self {
        self.options.resources.push(Resource { table, max });
        self
    }
    pub fn weight_only(mut self, act_bits: u32) -> Self {
        self.options.weight_only = Some(act_bits);
        self
    }
    pub fn pin(mut self, layer: &str, weight: u32, act: u32) -> Self {
        self.options.pinned.push((String::from(layer), weight, act));
        self
    }
    pub fn tie_weights<S: AsRef<str>>(mut self, layers: &[S]) -> Self {
        let g = layers.iter().map(|s| String::from(s.as_ref())).collect();
        self.options.tie_weight.push(g);
        self
    }
    pub fn tie_acts<S: AsRef<str>>(mut self, layers: &[S]) -> Self {
        let g = layers.iter().map(|s| String::from(s.as_ref())).collect();
        self.options.tie_act.push(g);
        self
    }
    pub fn non_monotone_rule(mut self, on: bool) -> Self {
        self.options.non_monotone_rule = on;
        self
    }

    /// Validates and compiles the problem.
    pub fn compile(&self) -> Result<Compiled, Error> {
        compile(self, false)
    }

    /// [`Self::compile`] for a sweep ([`Compiled::sweep`]): a BitOps row that spans every
    /// budget (`u64::MAX`, which a caller's budget may not be), each point setting its own;
    /// a BitOps budget set on the problem is replaced.
    pub fn compile_for_sweep(&self) -> Result<Compiled, Error> {
        let mut p = self.clone();
        p.options.bitops = Some(BitOpsBudget::Absolute(u64::MAX));
        compile(&p, true)
    }
}

/// Kind of a budget row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowKind {
    BitOps,
    Size,
    Extra(usize),
}

/// One budget row of the compiled problem.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub kind: RowKind,
    pub name: String,
    /// Budget as the user gave it (fixed layers included where they count).
    pub budget: f64,
    /// Contribution of fixed layers (not searched) to the row.
    pub fixed_part: f64,
}

/// A validated problem as a multiple-choice knapsack: group `g` takes exactly one of its
/// choices; choice `c` costs `cost[c]` and uses `res[c * m + k]` of row `k`.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub(crate) model: String,
    pub(crate) layer_names: Vec<String>,
    pub(crate) macs: Vec<u64>,
    pub(crate) params: Vec<u64>,
    pub(crate) fixed: Vec<Option<(u32, u32)>>,
    /// Layers of each group (indices into the layer lists).
    pub(crate) group_layers: Vec<Vec<usize>>,
    /// Rows with a budget, in order: BitOps (if budgeted), size (if budgeted), extras.
    pub(crate) rows: Vec<Row>,
    /// Every allowed choice (before dominance removal), for the microlp backend.
    pub(crate) full: Choices,
    /// Non-dominated choices, for the exact solver.
    pub(crate) reduced: Choices,
    /// BitOps / size budgets as given (for the policy).
    pub(crate) bitops_budget: Option<u64>,
    pub(crate) size_budget_bits: Option<u64>,
    /// Extra resource tables, (layer, w, a) → value, for reporting.
    pub(crate) extra: Vec<Table>,
}

/// One layer's entries of a [`Table`].
#[derive(Clone, Copy)]
pub(crate) struct TableLayer<'a>(&'a [((usize, u32, u32), f64)]);

impl TableLayer<'_> {
    /// The value at (weight bits `w`, act bits `a`), or `None`.
    pub(crate) fn get(self, w: u32, a: u32) -> Option<f64> {
        let p = self.0.partition_point(|e| (e.0 .1, e.0 .2) < (w, a));
        self.0
            .get(p)
            .filter(|e| (e.0 .1, e.0 .2) == (w, a))
            .map(|e| e.1)
    }
}

/// An extra resource table as (layer, weight bits, act bits) → value: the entries sorted
/// by key, looked up by binary search. (A `BTreeMap` took ~1.1M of a three-row ResNet-50
/// compile's 2.0M instructions, building it and looking up every choice; a sorted list
/// is one sort.)
#[derive(Clone, Debug)]
pub(crate) struct Table {
    /// Entries by key; of equal keys, in the order given.
    entries: Vec<((usize, u32, u32), f64)>,
    /// Position given of each entry of `entries`.
    pos: Vec<usize>,
}

impl Table {
    fn new(given: Vec<((usize, u32, u32), f64)>) -> Table {
        let mut order: Vec<usize> = (0..given.len()).collect();
        // Stable: equal keys stay in the order given.
        order.sort_by_key(|&p| given[p].0);
        Table {
            entries: order.iter().map(|&p| given[p]).collect(),
            pos: order,
        }
    }

    /// The value at `key`, or `None` (of a key listed twice, the first given).
    pub(crate) fn get(&self, key: &(usize, u32, u32)) -> Option<f64> {
        self.layer(key.0).get(key.1, key.2)
    }

    /// Layer `i`'s entries: a lookup in them searches a few entries, not the table.
    pub(crate) fn layer(&self, i: usize) -> TableLayer<'_> {
        let lo = self.entries.partition_point(|e| e.0 .0 < i);
        let hi = lo + self.entries[lo..].partition_point(|e| e.0 .0 == i);
        TableLayer(&self.entries[lo..hi])
    }

    /// The first entry given (by its position) whose key an earlier entry has too.
    fn first_repeat(&self) -> Option<(usize, (usize, u32, u32))> {
        (1..self.entries.len())
            .filter(|&j| self.entries[j].0 == self.entries[j - 1].0)
            .map(|j| (self.pos[j], self.entries[j].0))
            .min()
    }
}

/// Choices of all groups; `bits[c]` holds (weight, act) per layer of the group.
#[derive(Clone, Debug, Default)]
pub(crate) struct Choices {
    pub start: Vec<usize>,
    pub cost: Vec<f64>,
    pub res: Vec<f64>,
    /// (weight, act) bits per layer of the group, all choices one after another:
    /// choice c's are `bits[bstart[c]..bstart[c + 1]]` (one allocation, not one per choice).
    pub bits: Vec<(u32, u32)>,
    /// Offsets into `bits`, one more than there are choices (empty when unused).
    pub bstart: Vec<usize>,
}

impl Choices {
    pub fn groups(&self) -> usize {
        self.start.len().saturating_sub(1)
    }
    /// Bits of choice c (empty if this set carries none).
    pub fn bits_of(&self, c: usize) -> &[(u32, u32)] {
        match (self.bstart.get(c), self.bstart.get(c + 1)) {
            (Some(&a), Some(&b)) => &self.bits[a..b],
            _ => &[],
        }
    }
}

fn check_bits(list: &[u32], field: &str) -> Result<(), Error> {
    if list.is_empty() {
        return Err(Error::input(None, field, "empty list of bit-widths"));
    }
    for (i, &b) in list.iter().enumerate() {
        if b == 0 || b > MAX_BITS {
            return Err(Error::input(
                None,
                field,
                format!("bit-width {b} is not in 1..={MAX_BITS}"),
            ));
        }
        if list[..i].contains(&b) {
            return Err(Error::input(
                None,
                field,
                format!("bit-width {b} is listed twice"),
            ));
        }
    }
    Ok(())
}

fn check_scales(layer: &str, field: &str, v: &[f64], n: usize, fixed: bool) -> Result<(), Error> {
    if v.len() != n && !(fixed && v.is_empty()) {
        return Err(Error::input(
            Some(layer),
            field,
            format!("has {} values but the bit list has {n}", v.len()),
        ));
    }
    for &x in v {
        // Finite and non-negative (NaN is in no range): two comparisons, fewer
        // instructions than `is_finite` (on `resnet50-real`, compile 404k → 396k).
        if !(0.0..=f64::MAX).contains(&x) {
            return Err(Error::input(
                Some(layer),
                field,
                format!("value {x} is not a finite non-negative number"),
            ));
        }
    }
    Ok(())
}

impl IndicatorSet {
    /// The checks a solve makes of the set itself, without a problem around it: the bit
    /// lists, each layer's scales (one finite, non-negative value per bit-width; none
    /// needed for a fixed layer), fixed bits in range, no layer name twice. For readers of
    /// indicator files that do not solve (`limpq compare`), so they refuse what the solver
    /// refuses, with the same words. The first problem in layer order is the error.
    pub fn check(&self) -> Result<(), Error> {
        check_bits(&self.weight_bits, "weight_bits")?;
        check_bits(&self.act_bits, "act_bits")?;
        let mut seen = alloc::collections::BTreeSet::new();
        for l in &self.layers {
            if !seen.insert(l.name.as_str()) {
                return Err(Error::input(Some(&l.name), "name", "duplicate layer name"));
            }
            check_layer(l, self)?;
        }
        Ok(())
    }
}

/// One layer of `ind`: its scales (one finite, non-negative value per bit-width of the set;
/// none needed for a fixed layer), then its fixed bits in range.
// Inlined into compile's loop over layers, as the checks were before they were shared:
// called, it cost 0.3% more of a compile's instructions (callgrind, `compile_time
// resnet50 200`: 69.38M against 69.15M; inlined, 69.18M).
#[inline(always)]
fn check_layer(l: &crate::format::Layer, ind: &IndicatorSet) -> Result<(), Error> {
    let fixed = l.fixed.is_some();
    let (nw, na) = (ind.weight_bits.len(), ind.act_bits.len());
    check_scales(&l.name, "weight_scale", &l.weight_scale, nw, fixed)?;
    check_scales(&l.name, "act_scale", &l.act_scale, na, fixed)?;
    if let Some((w, a)) = l.fixed {
        if w == 0 || a == 0 || w > MAX_BITS || a > MAX_BITS {
            return Err(Error::input(
                Some(&l.name),
                "fixed",
                format!("({w}, {a}) bits are not in 1..={MAX_BITS}"),
            ));
        }
    }
    Ok(())
}

struct Uf(Vec<usize>);
impl Uf {
    fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] != x {
            self.0[x] = self.0[self.0[x]];
            x = self.0[x];
        }
        x
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}

/// Largest number of joint choices a tie component may have.
pub const MAX_COMPONENT_CHOICES: usize = 4096;

fn compile(p: &Problem, sweep: bool) -> Result<Compiled, Error> {
    let ind = &p.indicators;
    let o = &p.options;
    check_bits(&ind.weight_bits, "weight_bits")?;
    check_bits(&ind.act_bits, "act_bits")?;
    if !o.alpha.is_finite() || o.alpha < 0.0 {
        return Err(Error::input(
            None,
            "alpha",
            format!("{} is not a finite non-negative number", o.alpha),
        ));
    }
    let cand = |given: &Option<Vec<u32>>, file: &[u32], field: &str| -> Result<Vec<u32>, Error> {
        let mut v = match given {
            None => file.to_vec(),
            Some(g) => {
                check_bits(g, field)?;
                for b in g {
                    if !file.contains(b) {
                        return Err(Error::input(
                            None,
                            field,
                            format!("candidate {b} bits has no indicator in the file"),
                        ));
                    }
                }
                g.clone()
            }
        };
        v.sort_unstable();
        Ok(v)
    };
    let wcand = cand(&o.weight_bits, &ind.weight_bits, "weight_bits")?;
    let acand = cand(&o.act_bits, &ind.act_bits, "act_bits")?;
    if ind.layers.is_empty() {
        return Err(Error::input(
            None,
            "layers",
            "the indicator set has no layers",
        ));
    }
    // Layer names sorted (then by position) for lookups by name; the first layer whose
    // name an earlier layer has is reported, at its place in the checks below (as a map
    // filled in layer order would find it).
    let mut index: Vec<(&str, usize)> = ind
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name.as_str(), i))
        .collect();
    index.sort_unstable();
    let first_dup = index
        .windows(2)
        .filter(|p| p[0].0 == p[1].0)
        .map(|p| p[1].1)
        .min();
    let by_name = |name: &str| -> Option<usize> {
        let k = index.partition_point(|e| e.0 < name);
        index.get(k).filter(|e| e.0 == name).map(|e| e.1)
    };
    for (i, l) in ind.layers.iter().enumerate() {
        if first_dup == Some(i) {
            return Err(Error::input(Some(&l.name), "name", "duplicate layer name"));
        }
        check_layer(l, ind)?;
    }
    if let Some(a) = o.weight_only {
        if a == 0 || a > MAX_BITS {
            return Err(Error::input(
                None,
                "weight_only",
                format!("{a} activation bits are not in 1..={MAX_BITS}"),
            ));
        }
        if o.act_bits.is_some() {
            return Err(Error::input(
                None,
                "act_bits",
                format!(
                    "candidate activation bits have no effect with weight_only (activations \
                     stay at {a} bits): give one of the two"
                ),
            ));
        }
    }
    let lookup = |name: &str, field: &str| -> Result<usize, Error> {
        let i = by_name(name)
            .ok_or_else(|| Error::input(Some(name), field, "no such layer in the indicator set"))?;
        if ind.layers[i].fixed.is_some() {
            return Err(Error::input(
                Some(name),
                field,
                "layer is fixed in the indicator set and is not searched",
            ));
        }
        Ok(i)
    };
    let n = ind.layers.len();
    let mut pinned: Vec<Option<(u32, u32)>> = vec![None; n];
    for (name, w, a) in &o.pinned {
        let i = lookup(name, "pinned")?;
        if *w == 0 || *a == 0 || *w > MAX_BITS || *a > MAX_BITS {
            return Err(Error::input(
                Some(name),
                "pinned",
                format!("({w}, {a}) bits are not in 1..={MAX_BITS}"),
            ));
        }
        if pinned[i].replace((*w, *a)).is_some() {
            return Err(Error::input(Some(name), "pinned", "layer pinned twice"));
        }
    }

    // Allowed (bits, indicator) per searchable layer.
    let scale_at = |scales: &[f64], bits: &[u32], b: u32| -> f64 {
        bits.iter()
            .position(|&x| x == b)
            .and_then(|i| scales.get(i).copied())
            .unwrap_or(0.0)
    };
    // Position of each candidate bit-width in the file's list (found once, not per layer).
    let wpos: Vec<Option<usize>> = wcand
        .iter()
        .map(|b| ind.weight_bits.iter().position(|x| x == b))
        .collect();
    let apos: Vec<Option<usize>> = acand
        .iter()
        .map(|b| ind.act_bits.iter().position(|x| x == b))
        .collect();
    let allowed =
        |scales: &[f64], pos: &[Option<usize>], cand: &[u32], out: &mut Vec<(u32, f64)>| {
            // Each candidate's indicator read once, then compared with the next one's.
            let mut at = cand
                .iter()
                .zip(pos)
                .map(|(&b, p)| (b, p.and_then(|p| scales.get(p).copied()).unwrap_or(0.0)));
            let mut next = at.next();
            while let Some((b, s)) = next {
                next = at.next();
                if o.non_monotone_rule && next.is_some_and(|n| s < n.1) {
                    continue;
                }
                out.push((b, s));
            }
        };
    // Allowed (bits, indicator) of every layer, one list after another.
    let mut wflat: Vec<(u32, f64)> = Vec::with_capacity(n * wcand.len());
    let mut aflat: Vec<(u32, f64)> = Vec::with_capacity(n * acand.len());
    let mut wrange = vec![0..0; n];
    let mut arange = vec![0..0; n];
    for (i, l) in ind.layers.iter().enumerate() {
        if l.fixed.is_some() {
            continue;
        }
        let (w0, a0) = (wflat.len(), aflat.len());
        if let Some((w, a)) = pinned[i] {
            wflat.push((w, scale_at(&l.weight_scale, &ind.weight_bits, w)));
            let s = if o.weight_only.is_some() {
                0.0
            } else {
                scale_at(&l.act_scale, &ind.act_bits, a)
            };
            aflat.push((a, s));
        } else {
            allowed(&l.weight_scale, &wpos, &wcand, &mut wflat);
            match o.weight_only {
                Some(a) => aflat.push((a, 0.0)),
                None => allowed(&l.act_scale, &apos, &acand, &mut aflat),
            }
        }
        wrange[i] = w0..wflat.len();
        arange[i] = a0..aflat.len();
    }
    let wopts: Vec<&[(u32, f64)]> = wrange.iter().map(|r| &wflat[r.clone()]).collect();
    let aopts: Vec<&[(u32, f64)]> = arange.iter().map(|r| &aflat[r.clone()]).collect();

    // Tie classes and components.
    let mut wuf = Uf((0..n).collect());
    let mut auf = Uf((0..n).collect());
    let mut cuf = Uf((0..n).collect());
    for (groups, uf, field) in [
        (&o.tie_weight, &mut wuf, "tie_weight"),
        (&o.tie_act, &mut auf, "tie_act"),
    ] {
        for g in groups {
            let mut first = None;
            for name in g {
                let i = lookup(name, field)?;
                if let Some(f) = first {
                    uf.union(f, i);
                    cuf.union(f, i);
                } else {
                    first = Some(i);
                }
            }
        }
    }

    // Budget rows.
    let searchable: Vec<usize> = (0..n).filter(|&i| ind.layers[i].fixed.is_none()).collect();
    if searchable.is_empty() {
        return Err(Error::input(
            None,
            "layers",
            "every layer is fixed: nothing to search",
        ));
    }
    let mut rows = Vec::new();
    let mut bitops_budget = None;
    if let Some(b) = o.bitops {
        let v = match b {
            // u64::MAX stands for "no budget" in a sweep's row and in the policy written.
            BitOpsBudget::Absolute(v) if v == u64::MAX && !sweep => {
                return Err(Error::input(
                    None,
                    "bitops",
                    format!(
                        "a BitOps budget of {v} is more than a 64-bit count holds (at most {})",
                        u64::MAX - 1
                    ),
                ))
            }
            BitOpsBudget::Absolute(v) => v,
            BitOpsBudget::Uniform { weight, act } => {
                if weight == 0 || act == 0 || weight > MAX_BITS || act > MAX_BITS {
                    return Err(Error::input(
                        None,
                        "bitops",
                        format!("uniform budget W{weight}A{act}: bits must be in 1..={MAX_BITS}"),
                    ));
                }
                b.bitops(ind)
            }
        };
        bitops_budget = Some(v);
        rows.push(Row {
            kind: RowKind::BitOps,
            name: String::from("BitOps"),
            budget: v as f64,
            fixed_part: 0.0,
        });
    }
    let fixed_size: u64 = ind
        .layers
        .iter()
        .filter_map(|l| l.fixed.map(|(w, _)| l.params.saturating_mul(u64::from(w))))
        .fold(0, u64::saturating_add);
    let mut size_budget_bits = None;
    if let Some(s) = o.size {
        let bits = match s {
            SizeBudget::Bytes(b) if b > u64::MAX / 8 => {
                return Err(Error::input(
                    None,
                    "size",
                    format!(
                        "{b} bytes is more bits than a 64-bit count holds (at most {} bytes)",
                        u64::MAX / 8
                    ),
                ))
            }
            SizeBudget::Bytes(b) => b * 8,
            SizeBudget::CompressionRatio(r) => {
                if !r.is_finite() || r <= 0.0 {
                    return Err(Error::input(
                        None,
                        "size",
                        format!("compression ratio {r} is not a finite positive number"),
                    ));
                }
                let total: u64 = ind
                    .layers
                    .iter()
                    .map(|l| l.params)
                    .fold(0, u64::saturating_add);
                let bits = total as f64 * 32.0 / r;
                // `as u64` would saturate: a tiny ratio is refused, not taken as no budget.
                if bits >= u64::MAX as f64 {
                    return Err(Error::input(
                        None,
                        "size",
                        format!(
                            "compression ratio {r:e} gives more bits than a 64-bit count \
                             holds (the model's weights at 32 bits are {total} × 32 bits)"
                        ),
                    ));
                }
                bits as u64
            }
        };
        size_budget_bits = Some(bits);
        rows.push(Row {
            kind: RowKind::Size,
            name: String::from("size"),
            budget: bits as f64,
            fixed_part: fixed_size as f64,
        });
    }
    let mut extra = Vec::new();
    for (ri, r) in o.resources.iter().enumerate() {
        let rname = &r.table.name;
        let field = format!("resource `{rname}`");
        // Every report keys a budget's use by its name (Python's `usage` is a dict): a
        // resource must not take the name of a built-in budget or of another resource.
        let taken = ["BitOps", "size"].contains(&rname.as_str())
            || o.resources[..ri].iter().any(|q| q.table.name == *rname);
        if taken {
            return Err(Error::input(
                None,
                &field,
                "the name is taken (by BitOps, size or another resource): give each resource \
                 its own name",
            ));
        }
        if !r.max.is_finite() || r.max < 0.0 {
            return Err(Error::input(
                None,
                &field,
                format!("max {} is not a finite non-negative number", r.max),
            ));
        }
        // The entries in file order; the first problem in that order is the error.
        let mut entries: Vec<((usize, u32, u32), f64)> = Vec::new();
        let mut first_err = None;
        'layers: for rl in &r.table.layers {
            let Some(i) = by_name(rl.name.as_str()) else {
                first_err = Some((
                    entries.len(),
                    Error::input(Some(&rl.name), &field, "no such layer in the indicator set"),
                ));
                break;
            };
            for &(w, a, v) in &rl.costs {
                if !v.is_finite() || v < 0.0 {
                    first_err = Some((
                        entries.len(),
                        Error::input(
                            Some(&rl.name),
                            &field,
                            format!("value {v} at ({w}, {a}) is not a finite non-negative number"),
                        ),
                    ));
                    break 'layers;
                }
                entries.push(((i, w, a), v));
            }
        }
        let table = Table::new(entries);
        // An entry listed twice before the first other problem is the error instead.
        if let Some((pos, (i, w, a))) = table.first_repeat() {
            if first_err.as_ref().is_none_or(|e| pos < e.0) {
                return Err(Error::input(
                    Some(&ind.layers[i].name),
                    &field,
                    format!("({w}, {a}) listed twice"),
                ));
            }
        }
        if let Some((_, e)) = first_err {
            return Err(e);
        }
        let mut fixed_part = 0.0;
        // Σ of every searchable layer's largest value, and the layer with the largest.
        let (mut most, mut top) = (0.0, (f64::NEG_INFINITY, 0));
        for (i, l) in ind.layers.iter().enumerate() {
            let t = table.layer(i);
            if let Some((w, a)) = l.fixed {
                fixed_part += t.get(w, a).unwrap_or(0.0);
            } else {
                let mut lmax = 0.0;
                for &(w, _) in wopts[i] {
                    for &(a, _) in aopts[i] {
                        let Some(v) = t.get(w, a) else {
                            return Err(Error::input(
                                Some(&l.name),
                                &field,
                                format!("no value for weight {w} bits, act {a} bits"),
                            ));
                        };
                        lmax = if v > lmax { v } else { lmax };
                    }
                }
                most += lmax;
                if lmax > top.0 {
                    top = (lmax, i);
                }
            }
        }
        // Values finite one by one may not be together: every row sum would then be
        // infinite, and every policy look as light as any other.
        if !(most + fixed_part).is_finite() {
            return Err(Error::input(
                Some(&ind.layers[top.1].name),
                &field,
                "the values of the layers' largest choices add up past the largest finite \
                 number",
            ));
        }
        rows.push(Row {
            kind: RowKind::Extra(ri),
            name: rname.clone(),
            budget: r.max,
            fixed_part,
        });
        extra.push(table);
    }
    check_totals(
        ind,
        &searchable,
        (&wopts, &aopts),
        fixed_size,
        &rows,
        o.alpha,
    )?;
    let m = rows.len();

    // Groups: one per component, choices = product of its tie classes' common bits.
    // Components in the order of their root, layers in `searchable` order within each
    // (what a map from root to a list of layers gives, without a map): a stable sort of
    // (root, layer) by root, then one exactly sized list per run of equal roots.
    // ((root, position in `searchable`) is unique, so an unstable sort is that stable one.)
    let mut by_root: Vec<(usize, usize)> = searchable
        .iter()
        .enumerate()
        .map(|(pos, &i)| (cuf.find(i), pos))
        .collect();
    by_root.sort_unstable();
    let comp_layers = by_root
        .chunk_by(|a, b| a.0 == b.0)
        .map(|run| run.iter().map(|p| searchable[p.1]).collect::<Vec<usize>>());
    let mut full = Choices {
        start: vec![0],
        bstart: vec![0],
        ..Default::default()
    };
    let mut res = vec![0.0; m];
    let guess = searchable.len() * wcand.len() * acand.len().max(1);
    full.cost.reserve(guess);
    full.res.reserve(guess * m);
    full.bits.reserve(guess);
    full.bstart.reserve(guess);
    let mut group_layers = Vec::with_capacity(searchable.len());
    // Per tie root (weights, acts), its class's index in the component being built, or
    // `usize::MAX`: one lookup per layer instead of a walk of the component's classes (a
    // component of k classes took time in k², 0.12 s for 20,000). Entries set for a
    // component are cleared after it. Made at the first tie component: most problems have
    // none.
    let mut class_of: Option<[Vec<usize>; 2]> = None;
    for layers in comp_layers {
        if let [i] = layers[..] {
            // A layer in no tie (the usual case): its choices are its allowed weight bits
            // × act bits, weight bits varying fastest, with the same values, in the same
            // order, as the general odometer below gives them, without its allocations.
            // Rows are filled one row at a time (one match per row, not per choice).
            let l = &ind.layers[i];
            let (ao, wo) = (aopts[i], wopts[i]);
            let r0 = full.res.len();
            let b0 = full.bits.len();
            for &(a, as_) in ao {
                for &(w, ws) in wo {
                    let mut cost = 0.0;
                    cost += as_ + o.alpha * ws;
                    full.bits.push((w, a));
                    full.cost.push(cost);
                }
            }
            let nc = ao.len() * wo.len();
            full.bstart.extend(b0 + 1..=b0 + nc);
            full.res.resize(r0 + nc * m, 0.0);
            let out = &mut full.res[r0..];
            let bits = &full.bits[b0..];
            // Row k of every choice, by `value(weight bits, act bits)`: generic, so that
            // the match on the row's kind is taken once per row, not per choice (on
            // `resnet50-real` seed 0, compile less `remove_dominated` 246k → 210k
            // instructions), in one loop over the choices' bits (compile 410k → 404k).
            fn fill(
                out: &mut [f64],
                (k, m): (usize, usize),
                bits: &[(u32, u32)],
                value: impl Fn(u32, u32) -> f64,
            ) {
                for (r, &(w, a)) in out.chunks_exact_mut(m).zip(bits) {
                    r[k] = 0.0 + value(w, a);
                }
            }
            let (macs, params) = (l.macs as f64, l.params as f64);
            for (k, row) in rows.iter().enumerate() {
                match row.kind {
                    RowKind::BitOps => {
                        fill(out, (k, m), bits, |w, a| macs * f64::from(w) * f64::from(a))
                    }
                    RowKind::Size => fill(out, (k, m), bits, |w, _| params * f64::from(w)),
                    RowKind::Extra(e) => {
                        let t = extra[e].layer(i);
                        fill(out, (k, m), bits, |w, a| t.get(w, a).unwrap_or(0.0))
                    }
                }
            }
            full.start.push(full.cost.len());
            group_layers.push(layers);
            continue;
        }
        // Tie classes (weight and act) of the component with their common allowed bits.
        let mut wclass: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut aclass: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut lw = Vec::new();
        let mut la = Vec::new();
        let [wclass_of, aclass_of] =
            class_of.get_or_insert_with(|| [vec![usize::MAX; n], vec![usize::MAX; n]]);
        for &i in &layers {
            for (uf, opts, classes, idx, field, class_of) in [
                (
                    &mut wuf,
                    wopts[i],
                    &mut wclass,
                    &mut lw,
                    "tie_weight",
                    &mut *wclass_of,
                ),
                (
                    &mut auf,
                    aopts[i],
                    &mut aclass,
                    &mut la,
                    "tie_act",
                    &mut *aclass_of,
                ),
            ] {
                let root = uf.find(i);
                let bits: Vec<u32> = opts.iter().map(|x| x.0).collect();
                match Some(class_of[root]).filter(|&k| k != usize::MAX) {
                    Some(k) => {
                        classes[k].1.retain(|b| bits.contains(b));
                        if classes[k].1.is_empty() {
                            return Err(Error::input(Some(&ind.layers[i].name), field, "tied layers have no allowed bit-width in common (pins or the non-monotone rule exclude all)"));
                        }
                        idx.push(k);
                    }
                    None => {
                        class_of[root] = classes.len();
                        idx.push(classes.len());
                        classes.push((root, bits));
                    }
                }
            }
        }
        for (c, of) in [(&wclass, &mut *wclass_of), (&aclass, &mut *aclass_of)] {
            for &(root, _) in c.iter() {
                of[root] = usize::MAX;
            }
        }
        let doms: Vec<&Vec<u32>> = wclass.iter().chain(aclass.iter()).map(|c| &c.1).collect();
        let total = doms.iter().try_fold(1usize, |t, d| {
            t.checked_mul(d.len())
                .filter(|&t| t <= MAX_COMPONENT_CHOICES)
        });
        if total.is_none() {
            return Err(Error::input(Some(&ind.layers[layers[0]].name), "tie_weight/tie_act", format!("tie component of {} layers has more than {MAX_COMPONENT_CHOICES} joint choices", layers.len())));
        }
        let nw = wclass.len();
        let mut digit = vec![0usize; doms.len()];
        loop {
            let mut cost = 0.0;
            res.iter_mut().for_each(|r| *r = 0.0);
            for (j, &i) in layers.iter().enumerate() {
                let w = doms[lw[j]][digit[lw[j]]];
                let a = doms[nw + la[j]][digit[nw + la[j]]];
                let ws = wopts[i].iter().find(|x| x.0 == w).map_or(0.0, |x| x.1);
                let as_ = aopts[i].iter().find(|x| x.0 == a).map_or(0.0, |x| x.1);
                cost += as_ + o.alpha * ws;
                let l = &ind.layers[i];
                for (k, row) in rows.iter().enumerate() {
                    res[k] += match row.kind {
                        RowKind::BitOps => (l.macs as f64) * f64::from(w) * f64::from(a),
                        RowKind::Size => (l.params as f64) * f64::from(w),
                        RowKind::Extra(e) => extra[e].get(&(i, w, a)).unwrap_or(0.0),
                    };
                }
                full.bits.push((w, a));
            }
            full.cost.push(cost);
            full.res.extend_from_slice(&res);
            full.bstart.push(full.bits.len());
            // Next joint assignment (odometer).
            let mut d = 0;
            while d < digit.len() {
                digit[d] += 1;
                if digit[d] < doms[d].len() {
                    break;
                }
                digit[d] = 0;
                d += 1;
            }
            if d == digit.len() {
                break;
            }
        }
        full.start.push(full.cost.len());
        group_layers.push(layers);
    }
    let reduced = remove_dominated(&full, m);
    let c = Compiled {
        model: ind.model.clone(),
        layer_names: ind.layers.iter().map(|l| l.name.clone()).collect(),
        macs: ind.layers.iter().map(|l| l.macs).collect(),
        params: ind.layers.iter().map(|l| l.params).collect(),
        fixed: ind.layers.iter().map(|l| l.fixed).collect(),
        group_layers,
        rows,
        full,
        reduced,
        bitops_budget,
        size_budget_bits,
        extra,
    };
    Ok(c)
}

/// A layer's allowed (bits, indicator) pairs.
type Opts<'a> = &'a [(u32, f64)];

/// Refuses a problem the solver's arithmetic cannot carry (extra tables are checked
/// where they are read): an integral row (BitOps, size) that can reach 2^53, whose sums
/// would round, so that a policy over its budget by a few units could pass for one within
/// it; or an objective whose largest choices add up past the largest finite number. Each
/// layer counts at its largest allowed bits and indicators (a tie component's choices
/// count no more than their layers' largest), and the error names the layer with the
/// largest share. One walk over the layers' allowed bits, not over every choice (that
/// walk added 15% to a ResNet-50 compile).
fn check_totals(
    ind: &IndicatorSet,
    searchable: &[usize],
    (wopts, aopts): (&[Opts<'_>], &[Opts<'_>]),
    fixed_size: u64,
    rows: &[Row],
    alpha: f64,
) -> Result<(), Error> {
    let has = |kind| rows.iter().any(|r| r.kind == kind);
    let largest = |opts: &[(u32, f64)]| {
        opts.iter().fold((0u32, 0.0f64), |(b, s), &(ob, os)| {
            (b.max(ob), if os > s { os } else { s })
        })
    };
    // (total, (layer's share, layer)) of BitOps, weight bits and the objective.
    let (mut bitops, mut size, mut cost) = ((0u128, (0, 0)), (0u128, (0, 0)), (0.0, (0.0, 0)));
    for &i in searchable {
        let l = &ind.layers[i];
        let ((w, ws), (a, as_)) = (largest(wopts[i]), largest(aopts[i]));
        let b = u128::from(l.macs) * u128::from(w) * u128::from(a);
        let z = u128::from(l.params) * u128::from(w);
        let c = as_ + alpha * ws;
        bitops.0 += b;
        size.0 += z;
        cost.0 += c;
        if b > bitops.1 .0 {
            bitops.1 = (b, i);
        }
        if z > size.1 .0 {
            size.1 = (z, i);
        }
        if c > cost.1 .0 {
            cost.1 = (c, i);
        }
    }
    // The fixed layers' weight bits, as compile summed them: saturated at u64::MAX only
    // far past 2^53, so the refusal is the same as with the exact sum.
    size.0 += u128::from(fixed_size);
    let limit = 1u128 << 53;
    for (kind, (total, (_, i)), field, what) in [
        (RowKind::BitOps, bitops, "macs", "BitOps"),
        (RowKind::Size, size, "params", "weight bits"),
    ] {
        if has(kind) && total >= limit {
            return Err(Error::input(
                Some(&ind.layers[i].name),
                field,
                format!(
                    "the model's {what} at its largest bits add up to {total}, at or past \
                     2^53 (about 9.0e15), beyond which the solver cannot count them exactly"
                ),
            ));
        }
    }
    if !cost.0.is_finite() {
        return Err(Error::input(
            Some(&ind.layers[cost.1 .1].name),
            "weight_scale/act_scale",
            format!(
                "act_scale + alpha ({alpha}) · weight_scale of the layers' largest choices \
                 add up past the largest finite number"
            ),
        ));
    }
    Ok(())
}

/// `x` as an unsigned integer in `f64::total_cmp`'s order.
pub(crate) fn total_order_key(x: f64) -> u64 {
    let b = x.to_bits() as i64;
    ((b ^ ((((b >> 63) as u64) >> 1) as i64)) as u64) ^ (1 << 63)
}

/// (`x`, `i`) packed in one integer that sorts by `x` (`f64::total_cmp`'s order), then by
/// `i`: one integer comparison per pair when sorting.
pub(crate) fn keyed_index(x: f64, i: usize) -> u128 {
    (u128::from(total_order_key(x)) << 64) | i as u128
}

/// Drops choices that another choice of the same group matches or beats in cost and in
/// every budget row (keeping the first of exact duplicates).
pub(crate) fn remove_dominated(ch: &Choices, m: usize) -> Choices {
    let n = ch.cost.len();
    let mut out = Choices {
        start: Vec::with_capacity(ch.start.len()),
        bstart: Vec::with_capacity(n + 1),
        cost: Vec::with_capacity(n),
        res: Vec::with_capacity(n * m),
        bits: Vec::with_capacity(ch.bits.len()),
    };
    out.start.push(0);
    out.bstart.push(0);
    // Per group, each choice's cost key with its low bits replaced by the choice's place
    // in the group: one u64 per choice, sorted by one integer comparison per pair (107k
    // instructions as (key, index) u128 pairs by `sort_unstable` on `resnet50-real` seed
    // 0, 55k as u64 keys, 32k by the insertion sort below).
    let mut keys: Vec<u64> = Vec::new();
    // With two rows, the least rows of the group's kept choices, `stairs[..len]`: steps
    // none of which is at or below another in both rows (compiled rows are finite, so
    // `<=` orders them). Every kept choice is at or above a step, so a choice is
    // dominated iff a step is at or below it in both rows: a few steps to read, not every
    // kept choice (on `resnet50-real` seed 0, 18 of 25 choices a group are kept, against
    // one to three steps).
    let mut stairs: Vec<(f64, f64)> = Vec::new();
    for g in 0..ch.groups() {
        let (s, e) = (ch.start[g], ch.start[g + 1]);
        let cost = &ch.cost[s..e];
        let res = &ch.res[s * m..e * m];
        let low = u64::MAX >> (e - s).leading_zeros().min(63);
        // Sort by cost, then by resources, then by index, so a dominator comes before
        // what it dominates: first by the keys (f64::total_cmp's order of the costs but
        // for their lowest bits, then by index), then runs whose keys differ only in the
        // place by the whole comparison (rare: costs equal or a few units in the last
        // place apart).
        //
        // A layer's choices come with bits rising, and its indicators mostly fall as
        // bits rise: in reverse, its keys are sorted or nearly, and an insertion sort
        // takes few moves (on `resnet50-real` seed 0, 2 per key). Larger groups (tie
        // components) keep `sort_unstable`: an insertion sort's worst case grows with
        // the square of the size.
        keys.clear();
        keys.extend(
            cost.iter()
                .enumerate()
                .rev()
                .map(|(i, &x)| (total_order_key(x) & !low) | i as u64),
        );
        if keys.len() <= 64 {
            for i in 1..keys.len() {
                let x = keys[i];
                let mut j = i;
                while j > 0 && keys[j - 1] > x {
                    keys[j] = keys[j - 1];
                    j -= 1;
                }
                keys[j] = x;
            }
        } else {
            keys.sort_unstable();
        }
        if keys.windows(2).any(|p| p[0] ^ p[1] <= low) {
            let full_cmp = |&a: &u64, &b: &u64| {
                let (a, b) = ((a & low) as usize, (b & low) as usize);
                cost[a]
                    .total_cmp(&cost[b])
                    .then_with(|| {
                        for k in 0..m {
                            let o = res[a * m + k].total_cmp(&res[b * m + k]);
                            if o.is_ne() {
                                return o;
                            }
                        }
                        core::cmp::Ordering::Equal
                    })
                    .then(a.cmp(&b))
            };
            for run in keys.chunk_by_mut(|a, b| a ^ b <= low) {
                if run.len() > 1 {
                    run.sort_unstable_by(full_cmp);
                }
            }
        }
        // The kept choices' keys move to the front of `keys`, in order, and their rows
        // to `out` (with more than two rows, they are the group's part of `out.res` that
        // later choices are tested against).
        let r0 = out.res.len();
        let mut kept = 0;
        if m == 2 {
            // Two rows (the common case): the rows go in place into `out.res`, sized for
            // every choice of the group and cut to the kept ones after.
            stairs.resize(stairs.len().max(e - s), (0.0, 0.0));
            out.res.resize(r0 + 2 * (e - s), 0.0);
            let kept_res = &mut out.res[r0..];
            let mut len = 0;
            for j in 0..keys.len() {
                let k = keys[j];
                let i = 2 * (k & low) as usize;
                let (a, b) = (res[i], res[i + 1]);
                // One pass: dominated by a step, or else the steps at or above it go
                // (none goes before a step that dominates it is met: that step would be
                // at or below the one that went).
                let mut dominated = false;
                let mut w = 0;
                for r in 0..len {
                    let t = stairs[r];
                    if t.0 <= a && t.1 <= b {
                        dominated = true;
                        break;
                    }
                    if !(a <= t.0 && b <= t.1) {
                        stairs[w] = t;
                        w += 1;
                    }
                }
                if dominated {
                    continue;
                }
                stairs[w] = (a, b);
                len = w + 1;
                keys[kept] = k;
                kept_res[2 * kept] = a;
                kept_res[2 * kept + 1] = b;
                kept += 1;
            }
            out.res.truncate(r0 + 2 * kept);
        } else {
            for j in 0..keys.len() {
                let k = keys[j];
                let i = (k & low) as usize;
                let rc = &res[i * m..(i + 1) * m];
                let dominated = match m {
                    0 => kept > 0,
                    _ => out.res[r0..]
                        .chunks_exact(m)
                        .any(|d| d.iter().zip(rc).all(|(x, y)| x <= y)),
                };
                if dominated {
                    continue;
                }
                out.res.extend_from_slice(rc);
                keys[kept] = k;
                kept += 1;
            }
        }
        keys.truncate(kept);
        // The kept choices' costs and bits, in bulk (no capacity test per choice).
        out.cost
            .extend(keys.iter().map(|&k| cost[(k & low) as usize]));
        // A choice has a (weight, act) pair per layer of its group, at least one: where
        // the group's pairs are as many as its choices, each has one, and the kept ones'
        // pairs and offsets go in bulk too (on `resnet50-real` seed 0, 26k instructions
        // less than a push per choice).
        let b0 = out.bits.len();
        if ch.bstart[e] - ch.bstart[s] == e - s {
            debug_assert!(ch.bstart[s..=e].windows(2).all(|p| p[1] == p[0] + 1));
            let pairs = &ch.bits[ch.bstart[s]..ch.bstart[e]];
            out.bits
                .extend(keys.iter().map(|&k| pairs[(k & low) as usize]));
            out.bstart.extend(b0 + 1..=b0 + keys.len());
        } else {
            for &k in &keys {
                out.bits
                    .extend_from_slice(ch.bits_of(s + (k & low) as usize));
                out.bstart.push(out.bits.len());
            }
        }
        out.start.push(out.cost.len());
    }
    out
}

impl Compiled {
    /// Number of budget rows.
    pub(crate) fn m(&self) -> usize {
        self.rows.len()
    }

    /// Capacities left for searchable layers.
    pub(crate) fn caps(&self) -> Vec<f64> {
        self.rows.iter().map(|r| r.budget - r.fixed_part).collect()
    }

    /// Each row's feasibility tolerance ([`tol`]) at capacities `caps`.
    pub(crate) fn tols(&self, caps: &[f64]) -> Vec<f64> {
        self.rows
            .iter()
            .zip(caps)
            .map(|(r, &c)| tol(r.kind, c))
            .collect()
    }

    /// The infeasibility error for these capacities.
    pub(crate) fn infeasible(&self, caps: &[f64]) -> Error {
        let m = self.m();
        let ch = &self.reduced;
        let mut floors = Vec::new();
        let mut binding = None;
        for (k, row) in self.rows.iter().enumerate() {
            let mut s = row.fixed_part;
            for g in 0..ch.groups() {
                let mn = (ch.start[g]..ch.start[g + 1])
                    .map(|c| ch.res[c * m + k])
                    .fold(f64::INFINITY, f64::min);
                s += mn;
            }
            let unit = match row.kind {
                RowKind::Size => "bits",
                _ => "",
            };
            if binding.is_none() && s > caps[k] + row.fixed_part + tol(row.kind, caps[k]) {
                binding = Some(format!(
                    "the {} budget {} is below the smallest achievable {}",
                    row.name,
                    crate::error::WithUnit(row.budget, unit),
                    crate::error::WithUnit(s, unit)
                ));
            }
            floors.push(BudgetFloor {
                name: row.name.clone(),
                budget: row.budget,
                smallest: s,
                unit,
            });
        }
        let binding = binding
            .unwrap_or_else(|| String::from("each budget can be met alone but not all together"));
        Error::Infeasible { binding, floors }
    }

    /// Number of searchable groups (layers or tie components).
    pub fn groups(&self) -> usize {
        self.group_layers.len()
    }

    /// Total number of allowed choices, before and after dominance removal.
    pub fn choices(&self) -> (usize, usize) {
        (self.full.cost.len(), self.reduced.cost.len())
    }

    /// The problem as a 0-1 ILP, for handing to another solver (the model
    /// `solve_microlp` builds): one binary per allowed choice (dominated ones included),
    /// one "exactly one" equality per group, one `≤ capacity` row per budget. Its optimal
    /// objective is the solver's `Policy::objective`.
    pub fn ilp(&self) -> Ilp {
        let ch = &self.full;
        Ilp {
            groups: self
                .group_layers
                .iter()
                .map(|ls| ls.iter().map(|&l| self.layer_names[l].clone()).collect())
                .collect(),
            start: ch.start.clone(),
            cost: ch.cost.clone(),
            bits: (0..ch.cost.len()).map(|c| ch.bits_of(c).to_vec()).collect(),
            rows: self.rows.iter().map(|r| r.name.clone()).collect(),
            coef: ch.res.clone(),
            capacity: self.caps(),
        }
    }
}

/// A compiled problem as a 0-1 ILP ([`Compiled::ilp`]): minimise `Σ cost[c]·x[c]` over
/// binaries `x` subject to `Σ x[c] = 1` over `start[g]..start[g + 1]` for every group `g`
/// and `Σ coef[c * rows.len() + k]·x[c] ≤ capacity[k]` for every budget row `k`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Ilp {
    /// Layers of each group, in model order (one layer unless layers are tied).
    pub groups: Vec<Vec<String>>,
    /// Choices of group `g` are `start[g]..start[g + 1]` (`groups.len() + 1` entries).
    pub start: Vec<usize>,
    /// Objective coefficient of each choice: Σ act indicator + α · weight indicator.
    pub cost: Vec<f64>,
    /// (weight bits, act bits) of each choice, per layer of its group.
    pub bits: Vec<Vec<(u32, u32)>>,
    /// Budget rows, in order: "BitOps" (BitOps), "size" (weight bits), then extras.
    pub rows: Vec<String>,
    /// What choice `c` uses of row `k`: `coef[c * rows.len() + k]`.
    pub coef: Vec<f64>,
    /// What each row leaves to the searchable layers: the budget less the fixed layers'
    /// part.
    pub capacity: Vec<f64>,
}

/// Absolute feasibility tolerance of a row of `kind` with capacity `cap`.
///
/// An integral row (BitOps, bits) is counted exactly: compile refuses one that can reach
/// 2^53, so its values and every sum of them are exact integers, and the exact search
/// scales rows by powers of two, which keeps them exact. It needs no tolerance. (A
/// tolerance relative to the budget, as extra rows have, let a policy over a budget of
/// 4e14 BitOps by one through; half a unit did above 2^52, where an odd budget plus a half
/// rounds up to the next integer.)
///
/// An extra row's values are any reals: its tolerance is above f64 round-off of a sum.
pub(crate) fn tol(kind: RowKind, cap: f64) -> f64 {
    match kind {
        RowKind::BitOps | RowKind::Size => 0.0,
        RowKind::Extra(_) => {
            let a = if cap < 0.0 { -cap } else { cap };
            1e-9 + a * 1e-12
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resource table's errors name the layer and the entry, the first problem in the
    /// order the table gives its entries; a valid table prices the layers it lists.
    #[test]
    fn resource_table_errors_come_in_the_order_given() {
        use crate::format::{IndicatorSet, Layer, ResourceLayer, ResourceTable};
        let ind = IndicatorSet {
            model: String::from("t"),
            weight_bits: vec![2, 4],
            act_bits: vec![2, 4],
            layers: (0..6u32)
                .map(|i| Layer {
                    name: format!("l{i}"),
                    macs: 1000 * u64::from(i + 1),
                    params: 100 * u64::from(i + 1),
                    weight_scale: vec![0.3, 0.1],
                    act_scale: vec![0.6, 0.2 + 0.01 * f64::from(i)],
                    fixed: (i == 0).then_some((8, 8)),
                })
                .collect(),
            meta: Vec::new(),
        };
        let full = |name: &str| ResourceLayer {
            name: String::from(name),
            costs: vec![
                (2, 2, 1.0),
                (2, 4, 2.0),
                (4, 2, 3.0),
                (4, 4, 4.0),
                (8, 8, 5.0),
            ],
        };
        let table = |layers: Vec<ResourceLayer>| ResourceTable {
            name: String::from("lat"),
            layers,
        };
        let names: Vec<String> = ind.layers.iter().map(|l| l.name.clone()).collect();
        let err = |layers: Vec<ResourceLayer>| {
            Problem::new(ind.clone())
                .resource(table(layers), 100.0)
                .compile()
                .err()
                .map(|e| format!("{e}"))
                .unwrap_or_default()
        };
        let all = || names.iter().map(|n| full(n)).collect::<Vec<_>>();
        assert_eq!(err(all()), "");
        let mut t = all();
        t[2].costs.push((2, 4, 9.0));
        t[4].costs[1].2 = f64::NAN;
        assert_eq!(
            err(t.clone()),
            format!(
                "layer `{}`, field `resource `lat``: (2, 4) listed twice",
                names[2]
            )
        );
        t[1].costs[0].2 = -1.0;
        assert_eq!(
            err(t.clone()),
            format!(
                "layer `{}`, field `resource `lat``: value -1 at (2, 2) is not a finite non-negative number",
                names[1]
            )
        );
        let mut t = all();
        t.insert(3, full("nope"));
        t[5].costs.push((4, 4, 1.0));
        assert_eq!(
            err(t),
            "layer `nope`, field `resource `lat``: no such layer in the indicator set"
        );
        let mut t = all();
        t[3].costs.retain(|c| (c.0, c.1) != (4, 2));
        assert_eq!(
            err(t),
            format!(
                "layer `{}`, field `resource `lat``: no value for weight 4 bits, act 2 bits",
                names[3]
            )
        );
        // Priced as given: the fixed layer at its bits, the others at the policy's.
        let p = Problem::new(ind.clone()).resource(table(all()), 100.0);
        let layers = ind.uniform_policy(2, 4);
        let fixed = ind.layers.iter().filter(|l| l.fixed.is_some()).count() as f64;
        let e = p.evaluate(&layers).expect("valid");
        assert_eq!(e.usage[2].used, 5.0 * fixed + 2.0 * (6.0 - fixed));
    }

    /// `remove_dominated` against its definition: a choice goes iff one before it in
    /// (cost, rows, index) order is at or below it in every row; the kept ones stay in
    /// that order. Small integer values, so that ties of every kind occur.
    #[test]
    fn remove_dominated_matches_definition() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rnd = |k: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % k
        };
        for _ in 0..3000 {
            let m = rnd(4) as usize;
            let mut ch = Choices {
                start: vec![0],
                bstart: vec![0],
                ..Default::default()
            };
            let vals = 1 + rnd(6);
            for _ in 0..1 + rnd(3) {
                for _ in 0..rnd(30) {
                    // A cost one unit in the last place above another now and then.
                    let ulp = if rnd(4) == 0 { 1.0 + f64::EPSILON } else { 1.0 };
                    ch.cost.push(rnd(vals) as f64 * ulp);
                    ch.res.extend((0..m).map(|_| rnd(vals) as f64));
                    for _ in 0..1 + rnd(2) {
                        ch.bits.push((rnd(8) as u32, rnd(8) as u32));
                    }
                    ch.bstart.push(ch.bits.len());
                }
                ch.start.push(ch.cost.len());
            }
            let out = remove_dominated(&ch, m);
            let mut want = Choices {
                start: vec![0],
                bstart: vec![0],
                ..Default::default()
            };
            for g in 0..ch.groups() {
                let row = |c: usize| &ch.res[c * m..(c + 1) * m];
                let mut order: Vec<usize> = (ch.start[g]..ch.start[g + 1]).collect();
                order.sort_by(|&a, &b| {
                    ch.cost[a]
                        .total_cmp(&ch.cost[b])
                        .then_with(|| row(a).partial_cmp(row(b)).unwrap())
                        .then(a.cmp(&b))
                });
                for (i, &c) in order.iter().enumerate() {
                    let below = |&d: &usize| row(d).iter().zip(row(c)).all(|(x, y)| x <= y);
                    if !order[..i].iter().any(below) {
                        want.cost.push(ch.cost[c]);
                        want.res.extend_from_slice(row(c));
                        want.bits.extend_from_slice(ch.bits_of(c));
                        want.bstart.push(want.bits.len());
                    }
                }
                want.start.push(want.cost.len());
            }
            assert_eq!(out.start, want.start);
            assert_eq!(out.cost, want.cost);
            assert_eq!(out.res, want.res);
            assert_eq!(out.bits, want.bits);
            assert_eq!(out.bstart, want.bstart);
        }
    }
}
