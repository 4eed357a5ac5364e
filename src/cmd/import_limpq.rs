//! `limpq import-limpq PICKLE --layers TABLE -o IND.ron`: convert the PyTorch reference
//! code's indicator pickle into an indicator file. See `docs/IMPORT.md`.

pub mod pickle;
pub mod table;

use anyhow::{bail, Context};
use limpq_solver::{IndicatorSet, Layer};
use pickle::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use table::TableRow;

/// Bits at which table layers the pickle lacks (stem, classifier) are kept by default.
const DEFAULT_FIXED_BITS: (u32, u32) = (8, 8);

#[derive(clap::Args)]
pub struct Args {
    /// The reference code's indicator pickle (`importance_indicators.pkl`).
    pub pickle: PathBuf,
    /// Per-layer MACs and params: a built-in model (resnet18, resnet50, resnet20), a model
    /// description (MODEL.ron), or a table file (.csv `name,macs,params[,fixed_w,fixed_a]`,
    /// or .ron rows / an IndicatorSet). See docs/IMPORT.md.
    #[arg(long = "layers", value_name = "TABLE")]
    pub layers: String,
    /// Output indicator file; JSON when it ends with `.json`, RON otherwise.
    #[arg(short = 'o', long = "output", value_name = "IND.ron")]
    pub output: PathBuf,
    /// Model name written into the indicator file (default: the built-in name or the
    /// table file's stem).
    #[arg(long)]
    pub model: Option<String>,
    /// Keep every table layer the pickle lacks fixed at 8 bits, not only the first and
    /// last (stem and classifier) and those the table marks fixed.
    #[arg(long)]
    pub fix_missing: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (rows, table_model) = load_table(&args.layers)?;
    let bytes = read_bounded(&args.pickle, pickle::MAX_INPUT_BYTES)?;
    let (value, proto) =
        pickle::parse(&bytes).with_context(|| format!("reading {}", args.pickle.display()))?;
    let indicators = Indicators::from_value(&value)
        .with_context(|| format!("indicator pickle {}", args.pickle.display()))?;
    let model = args.model.clone().unwrap_or(table_model);
    let mut set = convert(&indicators, &rows, &model, args.fix_missing).with_context(|| {
        format!(
            "matching {} against layer table {}",
            args.pickle.display(),
            args.layers
        )
    })?;
    set.meta = vec![
        ("source".into(), args.pickle.display().to_string()),
        (
            "source_format".into(),
            match proto {
                Some(p) => format!("LIMPQ reference pickle, protocol {p}"),
                None => "LIMPQ reference pickle, protocol 0 or 1".into(),
            },
        ),
        ("layers_table".into(), args.layers.clone()),
        (
            "importer".into(),
            format!("limpq import-limpq {}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    let json = args
        .output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let text = if json {
        serde_json::to_string_pretty(&set).context("serialising the indicator set as JSON")?
    } else {
        ron::ser::to_string_pretty(&set, ron::ser::PrettyConfig::default())
            .context("serialising the indicator set as RON")?
    };
    write_atomically(&args.output, text.as_bytes())?;
    let searched = set.layers.iter().filter(|l| l.fixed.is_none()).count();
    eprintln!(
        "wrote {}: {} layers ({} searched, {} fixed), weight bits {:?}, act bits {:?}",
        args.output.display(),
        set.layers.len(),
        searched,
        set.layers.len() - searched,
        set.weight_bits,
        set.act_bits
    );
    Ok(())
}

/// The reference code's naming under `nn.DataParallel` prefixes every module with `module.`.
pub fn normalize_name(name: &str) -> &str {
    name.strip_prefix("module.").unwrap_or(name)
}

/// `--layers`: a built-in model or model description, or a table file. Returns the rows and
/// the default model name.
fn load_table(spec: &str) -> anyhow::Result<(Vec<TableRow>, String)> {
    let path = Path::new(spec);
    let is_table = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if !is_table {
        if let Some(model) = limpq_trainer::model::builtin(spec) {
            return Ok((model_rows(&model)?, model.name.clone()));
        }
    }
    if !path.exists() {
        bail!(
            "--layers {spec:?}: not a built-in model ({}) and no such file",
            limpq_trainer::model::BUILTIN_NAMES.join(", ")
        );
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| spec.to_string());
    match table::read_file(path) {
        Ok(rows) => Ok((rows, stem)),
        Err(table_err) if !is_table => {
            // A RON model description is the remaining possibility.
            match limpq_trainer::model::Model::from_ron_file(path) {
                Ok(model) => Ok((model_rows(&model)?, model.name.clone())),
                Err(model_err) => Err(table_err.context(format!(
                    "--layers {spec}: not a layer table, nor a model description ({model_err})"
                ))),
            }
        }
        Err(e) => Err(e),
    }
}

fn model_rows(model: &limpq_trainer::model::Model) -> anyhow::Result<Vec<TableRow>> {
    let layers = model
        .quantizable_layers()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rows: Vec<TableRow> = layers
        .into_iter()
        .map(|l| TableRow {
            name: l.name,
            macs: l.macs,
            params: l.params,
            fixed: l.fixed.then_some(limpq_trainer::model::FIXED_BITS),
        })
        .collect();
    table::check(&rows)?;
    Ok(rows)
}

/// The pickle's content, checked: layer order, and per layer the step size at each bit.
#[derive(Debug)]
pub struct Indicators {
    pub layer_names: Vec<String>,
    pub weight: HashMap<String, BTreeMap<u32, f64>>,
    pub act: HashMap<String, BTreeMap<u32, f64>>,
}

impl Indicators {
    pub fn from_value(root: &Value) -> anyhow::Result<Indicators> {
        if !matches!(root, Value::Dict(_)) {
            bail!("the pickle holds a {}, expected a dict", root.type_name());
        }
        let names = root
            .get("layer_name")
            .context("the pickle's dict has no 'layer_name' key")?;
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
) -> anyhow::Result<HashMap<String, BTreeMap<u32, f64>>> {
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
            .filter(|b| (1..=32).contains(b))
            .with_context(|| {
                format!("{key}[{layer:?}] has key {bk:?}, expected a bit-width 1..=32 like \"4\"")
            })?;
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
) -> anyhow::Result<Vec<u32>> {
    let all: BTreeSet<u32> = per.values().flat_map(|m| m.keys().copied()).collect();
    for name in order {
        let m = per
            .get(normalize_name(name))
            .with_context(|| format!("no {kind} step sizes for layer {name:?}"))?;
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
) -> anyhow::Result<IndicatorSet> {
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
        bail!("{msg}");
    }

    // Every bit of `bits` is in `per_bit`: `bit_list` checked each pickle layer.
    let scales = |name: &str, kind: &str, per_bit: &BTreeMap<u32, f64>, bits: &[u32]| {
        bits.iter()
            .map(|b| {
                per_bit
                    .get(b)
                    .copied()
                    .with_context(|| format!("layer {name:?} has no {kind} step size at bit {b}"))
            })
            .collect::<anyhow::Result<Vec<f64>>>()
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

/// Read at most `limit` bytes (one more, to tell an over-long file apart): never loads a huge
/// file into memory just to refuse it.
fn read_bounded(path: &Path, limit: usize) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() > limit {
        bail!(
            "{}: larger than the {limit}-byte limit for an indicator pickle",
            path.display()
        );
    }
    Ok(bytes)
}

/// Write `bytes` to a temporary file next to `path`, flush it to disk, then rename it over
/// `path`, so a reader never sees a half-written file.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .with_context(|| format!("output path {} has no file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}
