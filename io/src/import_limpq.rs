//! The PyTorch reference code's indicator pickle turned into an [`IndicatorSet`]: the
//! pickle gives every searched layer's learned step size at each candidate bit-width, a
//! layer table (rows of name, MACs, params, fixed bits) gives what the pickle lacks. The
//! pickle is read by the plain-data reader of [`crate::pickle`], which never runs code.
//! See `docs/IMPORT.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use limpq_solver::format::versioned::ron_from_str;
use limpq_solver::{IndicatorSet, Layer};

use crate::files;
use crate::pickle::{self, Value};

/// Bits at which table layers the pickle lacks (stem, classifier) are kept by default.
pub const DEFAULT_FIXED_BITS: (u32, u32) = (8, 8);

/// Why an import failed; the message names the file, the layer and the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportError(String);

impl ImportError {
    fn new(message: impl Into<String>) -> ImportError {
        ImportError(message.into())
    }

    fn context(self, what: impl fmt::Display) -> ImportError {
        ImportError(format!("{what}: {}", self.0))
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ImportError {}

impl From<String> for ImportError {
    fn from(s: String) -> ImportError {
        ImportError(s)
    }
}

macro_rules! bail {
    ($($t:tt)*) => {
        return Err(ImportError::new(format!($($t)*)))
    };
}

type Result<T, E = ImportError> = std::result::Result<T, E>;

/// One layer of the model, in model order.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct TableRow {
    pub name: String,
    pub macs: u64,
    pub params: u64,
    /// `Some((weight_bits, act_bits))` for a layer that is never searched.
    #[serde(default)]
    pub fixed: Option<(u32, u32)>,
}

/// The reference code's naming under `nn.DataParallel` prefixes every module with `module.`.
pub fn normalize_name(name: &str) -> &str {
    name.strip_prefix("module.").unwrap_or(name)
}

/// Reads and converts `pickle` against the layer table `rows` (in model order) into an
/// indicator set named `model`; `table` (the table's name as the user gave it) is recorded
/// in the set's `meta`. `fix_missing` keeps every table layer the pickle lacks fixed at
/// [`DEFAULT_FIXED_BITS`], not only the first and last and those the table marks fixed.
pub fn import(
    pickle_path: &Path,
    rows: &[TableRow],
    table: &str,
    model: &str,
    fix_missing: bool,
) -> Result<IndicatorSet> {
    let (value, proto) = read_pickle(pickle_path)?;
    let indicators = Indicators::from_value(&value)
        .map_err(|e| e.context(format!("indicator pickle {}", pickle_path.display())))?;
    let mut set = convert(&indicators, rows, model, fix_missing).map_err(|e| {
        e.context(format!(
            "matching {} against layer table {table}",
            pickle_path.display()
        ))
    })?;
    set.meta = vec![
        ("source".into(), pickle_path.display().to_string()),
        (
            "source_format".into(),
            match proto {
                Some(p) => format!("LIMPQ reference pickle, protocol {p}"),
                None => "LIMPQ reference pickle, protocol 0 or 1".into(),
            },
        ),
        ("layers_table".into(), table.to_string()),
        (
            "importer".into(),
            format!("limpq import-limpq {}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    Ok(set)
}

/// Reads a pickle of plain data of at most [`pickle::MAX_INPUT_BYTES`]; returns the value
/// and the protocol its PROTO opcode declares.
pub fn read_pickle(path: &Path) -> Result<(Value, Option<u8>)> {
    let bytes = files::read_bounded(path, pickle::MAX_INPUT_BYTES as u64)
        .map_err(|e| ImportError::new(e.to_string()))?;
    pickle::parse(&bytes).map_err(|e| ImportError::new(format!("reading {}: {e}", path.display())))
}

/// The pickle's content, checked: layer order, and per layer the step size at each bit.
#[derive(Debug)]
pub struct Indicators {
    pub layer_names: Vec<String>,
    pub weight: HashMap<String, BTreeMap<u32, f64>>,
    pub act: HashMap<String, BTreeMap<u32, f64>>,
}

impl Indicators {
    pub fn from_value(root: &Value) -> Result<Indicators> {
        if !matches!(root, Value::Dict(_)) {
            bail!("the pickle holds a {}, expected a dict", root.type_name());
        }
        let Some(names) = root.get("layer_name") else {
            bail!("the pickle's dict has no 'layer_name' key");
        };
        let items = match names {
            Value::List(v) | Value::Tuple(v) => v,
            other => bail!("'layer_name' is a {}, expected a list", other.type_name()),
        };
        let mut layer_names = Vec::with_capacity(items.len());
        let mut seen = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            let Value::Str(s) = item else {
                bail!("layer_name[{i}] is a {}, expected a str", item.type_name());
            };
            if !seen.insert(normalize_name(s).to_string()) {
                bail!("layer_name lists {s:?} twice");
            }
            layer_names.push(s.clone());
        }
        if layer_names.is_empty() {
            bail!("'layer_name' is empty");
        }
        let weight = per_layer(root, "weight", &layer_names)?;
        let act = per_layer(root, "act", &layer_names)?;
        Ok(Indicators {
            layer_names,
            weight,
            act,
        })
    }
}

/// `root[key]`: layer name → {bit: step size}, covering exactly the names in `layer_name`.
fn per_layer(
    root: &Value,
    key: &str,
    layer_names: &[String],
) -> Result<HashMap<String, BTreeMap<u32, f64>>> {
    let Some(Value::Dict(entries)) = root.get(key) else {
        match root.get(key) {
            None => bail!("the pickle's dict has no '{key}' key"),
            Some(v) => bail!("'{key}' is a {}, expected a dict", v.type_name()),
        }
    };
    let mut out = HashMap::new();
    for (k, v) in entries {
        let Value::Str(layer) = k else {
            bail!(
                "'{key}' has a {} key, expected layer names (str)",
                k.type_name()
            );
        };
        let Value::Dict(bits) = v else {
            bail!(
                "{key}[{layer:?}] is a {}, expected a dict of bit -> float",
                v.type_name()
            );
        };
        let mut per_bit = BTreeMap::new();
        for (bk, bv) in bits {
            let bit = match bk {
                Value::Str(s) => s.trim().parse::<u32>().ok(),
                Value::Int(i) => u32::try_from(*i).ok(),
                _ => None,
            }
            .filter(|b| (1..=32).contains(b));
            let Some(bit) = bit else {
                bail!("{key}[{layer:?}] has key {bk:?}, expected a bit-width 1..=32 like \"4\"");
            };
            let scale = match bv {
                Value::Float(f) => *f,
                Value::Int(i) => *i as f64,
                other => bail!(
                    "{key}[{layer:?}][\"{bit}\"] is a {}, expected a float",
                    other.type_name()
                ),
            };
            if !scale.is_finite() || scale < 0.0 {
                bail!(
                    "{key}[{layer:?}][\"{bit}\"] = {scale} is not a finite non-negative step size"
                );
            }
            if per_bit.insert(bit, scale).is_some() {
                bail!("{key}[{layer:?}] gives bit {bit} twice (as \"{bit}\" and {bit})");
            }
        }
        if out
            .insert(normalize_name(layer).to_string(), per_bit)
            .is_some()
        {
            bail!("'{key}' gives layer {layer:?} twice (with and without the module. prefix)");
        }
    }
    let listed: BTreeSet<&str> = layer_names.iter().map(|n| normalize_name(n)).collect();
    let missing: Vec<&str> = listed
        .iter()
        .filter(|n| !out.contains_key(**n))
        .copied()
        .collect();
    if !missing.is_empty() {
        bail!(
            "'{key}' has no entry for layers listed in layer_name: {}",
            missing.join(", ")
        );
    }
    let mut extra: Vec<&str> = out
        .keys()
        .map(String::as_str)
        .filter(|n| !listed.contains(n))
        .collect();
    if !extra.is_empty() {
        extra.sort_unstable();
        bail!(
            "'{key}' has layers not listed in layer_name: {}",
            extra.join(", ")
        );
    }
    Ok(out)
}

/// Union of the bit keys of every layer; each layer must have all of them.
fn bit_list(
    kind: &str,
    per: &HashMap<String, BTreeMap<u32, f64>>,
    order: &[String],
) -> Result<Vec<u32>> {
    let all: BTreeSet<u32> = per.values().flat_map(|m| m.keys().copied()).collect();
    for name in order {
        let Some(m) = per.get(normalize_name(name)) else {
            bail!("no {kind} step sizes for layer {name:?}");
        };
        let missing: Vec<String> = all
            .iter()
            .filter(|b| !m.contains_key(b))
            .map(|b| b.to_string())
            .collect();
        if !missing.is_empty() {
            bail!(
                "layer {name:?} has no {kind} step size at bit {} (other layers have it)",
                missing.join(", ")
            );
        }
    }
    if all.is_empty() {
        bail!("no {kind} bit-widths in the pickle");
    }
    Ok(all.into_iter().collect())
}

/// Join the pickle's indicators with the table's costs, in table order.
pub fn convert(
    ind: &Indicators,
    rows: &[TableRow],
    model: &str,
    fix_missing: bool,
) -> Result<IndicatorSet> {
    check_table(rows)?;
    let weight_bits = bit_list("weight", &ind.weight, &ind.layer_names)?;
    let act_bits = bit_list("act", &ind.act, &ind.layer_names)?;

    let table_names: BTreeSet<&str> = rows.iter().map(|r| normalize_name(&r.name)).collect();
    let unknown: Vec<&str> = ind
        .layer_names
        .iter()
        .filter(|n| !table_names.contains(normalize_name(n)))
        .map(String::as_str)
        .collect();
    let in_pickle: BTreeSet<&str> = ind.layer_names.iter().map(|n| normalize_name(n)).collect();
    let last = rows.len() - 1;
    let unmatched_table: Vec<&str> = rows
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            !in_pickle.contains(normalize_name(&r.name))
                && r.fixed.is_none()
                && !fix_missing
                && *i != 0
                && *i != last
        })
        .map(|(_, r)| r.name.as_str())
        .collect();
    if !unknown.is_empty() || !unmatched_table.is_empty() {
        let mut msg = String::from("layer names do not match");
        if !unknown.is_empty() {
            msg += &format!("; in the pickle but not the table: {}", unknown.join(", "));
        }
        if !unmatched_table.is_empty() {
            msg += &format!(
                "; searchable in the table but not in the pickle: {} (mark them fixed in the \
                 table or pass --fix-missing)",
                unmatched_table.join(", ")
            );
        }
        return Err(ImportError::new(msg));
    }

    // Every bit of `bits` is in `per_bit`: `bit_list` checked each pickle layer.
    let scales = |name: &str, kind: &str, per_bit: &BTreeMap<u32, f64>, bits: &[u32]| {
        bits.iter()
            .map(|b| {
                per_bit.get(b).copied().ok_or_else(|| {
                    ImportError::new(format!("layer {name:?} has no {kind} step size at bit {b}"))
                })
            })
            .collect::<Result<Vec<f64>>>()
    };
    let mut layers = Vec::with_capacity(rows.len());
    for r in rows {
        let key = normalize_name(&r.name);
        let layer = match (ind.weight.get(key), ind.act.get(key)) {
            (Some(w), Some(a)) => Layer {
                name: r.name.clone(),
                macs: r.macs,
                params: r.params,
                weight_scale: scales(&r.name, "weight", w, &weight_bits)?,
                act_scale: scales(&r.name, "act", a, &act_bits)?,
                fixed: r.fixed,
            },
            // Not searched: the solver reads only MACs, params and the fixed bits.
            _ => Layer {
                name: r.name.clone(),
                macs: r.macs,
                params: r.params,
                weight_scale: Vec::new(),
                act_scale: Vec::new(),
                fixed: Some(r.fixed.unwrap_or(DEFAULT_FIXED_BITS)),
            },
        };
        layers.push(layer);
    }
    Ok(IndicatorSet {
        model: model.to_string(),
        weight_bits,
        act_bits,
        layers,
        meta: Vec::new(),
    })
}

/// Reads a layer table file: RON (`.ron`) or CSV (anything else), checked with
/// [`check_table`].
///
/// RON: either a list of `(name: "...", macs: N, params: N, fixed: None)` rows, or a whole
/// `IndicatorSet` whose layers supply the names, MACs, params and fixed bits.
/// CSV: `name,macs,params[,fixed_w,fixed_a]`, an optional header line starting with `name`,
/// `#` comments and blank lines ignored.
pub fn read_table(path: &Path) -> Result<Vec<TableRow>> {
    let text = files::read_regular_text(path, files::MAX_TEXT)
        .map_err(|e| ImportError::new(format!("reading layer table: {e}")))?;
    let rows = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ron"))
    {
        parse_ron(&text)
    } else {
        parse_csv(&text)
    };
    let rows = rows.map_err(|e| e.context(format!("layer table {}", path.display())))?;
    check_table(&rows).map_err(|e| e.context(format!("layer table {}", path.display())))?;
    Ok(rows)
}

/// A RON table: rows, or an indicator set whose layers are the rows.
pub fn parse_ron(text: &str) -> Result<Vec<TableRow>> {
    let rows_err = match ron_from_str::<Vec<TableRow>>(text) {
        Ok(rows) => return Ok(rows),
        Err(e) => e,
    };
    match ron_from_str::<IndicatorSet>(text) {
        Ok(set) => Ok(set
            .layers
            .into_iter()
            .map(|l| TableRow {
                name: l.name,
                macs: l.macs,
                params: l.params,
                fixed: l.fixed,
            })
            .collect()),
        Err(set_err) => bail!(
            "neither a list of (name, macs, params, fixed) rows ({rows_err}) nor an \
             IndicatorSet ({set_err})"
        ),
    }
}

/// A CSV table: `name,macs,params[,fixed_w,fixed_a]` lines.
pub fn parse_csv(text: &str) -> Result<Vec<TableRow>> {
    let mut rows = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if rows.is_empty() && fields[0].eq_ignore_ascii_case("name") {
            continue; // header
        }
        if fields.len() != 3 && fields.len() != 5 {
            bail!(
                "line {line_no}: expected name,macs,params[,fixed_w,fixed_a], found {} fields",
                fields.len()
            );
        }
        let int = |idx: usize, what: &str| -> Result<u64> {
            fields[idx].parse::<u64>().map_err(|e| {
                ImportError::new(format!(
                    "line {line_no}: {what} of layer {:?} is not a non-negative integer: {:?}: {e}",
                    fields[0], fields[idx]
                ))
            })
        };
        let bits = |idx: usize, what: &str| -> Result<u32> {
            let v = int(idx, what)?;
            u32::try_from(v).map_err(|_| {
                ImportError::new(format!(
                    "line {line_no}: {what} of layer {:?} is {v}, too large",
                    fields[0]
                ))
            })
        };
        let fixed = if fields.len() == 5 {
            match (fields[3].is_empty(), fields[4].is_empty()) {
                (true, true) => None,
                (false, false) => Some((bits(3, "fixed_w")?, bits(4, "fixed_a")?)),
                _ => bail!(
                    "line {line_no}: layer {:?} gives only one of fixed_w and fixed_a",
                    fields[0]
                ),
            }
        } else {
            None
        };
        rows.push(TableRow {
            name: fields[0].to_string(),
            macs: int(1, "macs")?,
            params: int(2, "params")?,
            fixed,
        });
    }
    Ok(rows)
}

/// Names are non-empty and unique (after the `module.` prefix is stripped); fixed bits in
/// 1..=32; at least one row.
pub fn check_table(rows: &[TableRow]) -> Result<()> {
    if rows.is_empty() {
        bail!("the table has no layers");
    }
    let mut seen = HashSet::new();
    for r in rows {
        if r.name.is_empty() {
            bail!("a layer has an empty name");
        }
        if !seen.insert(normalize_name(&r.name)) {
            bail!("layer {:?} appears twice", r.name);
        }
        if let Some((w, a)) = r.fixed {
            if !(1..=32).contains(&w) || !(1..=32).contains(&a) {
                bail!("layer {:?}: fixed bits ({w}, {a}) outside 1..=32", r.name);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_header_comments_and_fixed() {
        let rows = parse_csv(
            "name,macs,params,fixed_w,fixed_a\n# stem\nconv1, 10, 20, 8, 8\n\nlayer1.0.conv1,30,40,,\nfc,5,6\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].fixed, Some((8, 8)));
        assert_eq!(rows[1].name, "layer1.0.conv1");
        assert_eq!(
            (rows[1].macs, rows[1].params, rows[1].fixed),
            (30, 40, None)
        );
        assert_eq!(rows[2].fixed, None);
    }

    #[test]
    fn csv_errors_name_line_and_field() {
        let e = parse_csv("a,1,2\nb,x,2\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("macs"), "{e}");
        let e = parse_csv("a,1,2,8,\n").unwrap_err().to_string();
        assert!(e.contains("only one of"), "{e}");
        let e = parse_csv("a,1\n").unwrap_err().to_string();
        assert!(e.contains("2 fields"), "{e}");
        let e = parse_csv("a,1,2,8,99999999999\n").unwrap_err().to_string();
        assert!(e.contains("fixed_a") && e.contains("too large"), "{e}");
    }

    #[test]
    fn ron_rows_and_duplicates() {
        let rows = parse_ron(r#"[(name: "a", macs: 1, params: 2), (name: "b", macs: 3, params: 4, fixed: Some((8, 8)))]"#)
            .unwrap();
        assert_eq!(rows[1].fixed, Some((8, 8)));
        let dup = vec![
            rows[0].clone(),
            TableRow {
                name: "module.a".into(),
                ..rows[0].clone()
            },
        ];
        assert!(check_table(&dup).unwrap_err().to_string().contains("twice"));
    }

    fn dict(items: Vec<(&str, Value)>) -> Value {
        Value::Dict(
            items
                .into_iter()
                .map(|(k, v)| (Value::Str(k.into()), v))
                .collect(),
        )
    }

    fn steps(base: f64) -> Value {
        dict(vec![
            ("2", Value::Float(base)),
            ("4", Value::Float(base / 2.0)),
        ])
    }

    /// Two searched layers between a fixed stem and classifier, `module.` prefixes dropped.
    #[test]
    fn converts_in_table_order_and_fixes_the_ends() {
        let names = ["module.a", "module.b"];
        let root = dict(vec![
            (
                "layer_name",
                Value::List(names.iter().map(|n| Value::Str((*n).into())).collect()),
            ),
            (
                "weight",
                dict(vec![(names[0], steps(1.0)), (names[1], steps(3.0))]),
            ),
            (
                "act",
                dict(vec![(names[0], steps(5.0)), (names[1], steps(7.0))]),
            ),
        ]);
        let ind = Indicators::from_value(&root).unwrap();
        let row = |name: &str, macs| TableRow {
            name: name.into(),
            macs,
            params: macs / 2,
            fixed: None,
        };
        let rows = [row("stem", 10), row("b", 20), row("a", 30), row("fc", 40)];
        let set = convert(&ind, &rows, "m", false).unwrap();
        assert_eq!(set.weight_bits, vec![2, 4]);
        let names: Vec<&str> = set.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["stem", "b", "a", "fc"]);
        assert_eq!(set.layers[0].fixed, Some(DEFAULT_FIXED_BITS));
        assert_eq!(set.layers[3].fixed, Some(DEFAULT_FIXED_BITS));
        assert_eq!(set.layers[1].weight_scale, vec![3.0, 1.5]);
        assert_eq!(set.layers[2].act_scale, vec![5.0, 2.5]);
        assert_eq!(set.layers[2].macs, 30);

        // A searchable middle layer the pickle lacks is named, unless fix_missing.
        let rows = [
            row("stem", 1),
            row("a", 2),
            row("c", 3),
            row("b", 4),
            row("fc", 5),
        ];
        let e = convert(&ind, &rows, "m", false).unwrap_err().to_string();
        assert!(e.contains("not in the pickle: c"), "{e}");
        let set = convert(&ind, &rows, "m", true).unwrap();
        assert_eq!(set.layers[2].fixed, Some(DEFAULT_FIXED_BITS));
    }
}
