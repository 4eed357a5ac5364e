//! `limpq import-limpq PICKLE --layers TABLE -o IND.ron`: convert the PyTorch reference
//! code's indicator pickle into an indicator file. The reading and conversion live in
//! `limpq_io::import_limpq`; this command picks the layer table and writes the result.
//! See `docs/IMPORT.md`.

use anyhow::bail;
use limpq_io::documents;
use limpq_io::import_limpq::{self, TableRow};
use limpq_trainer::model::{self as models, Model};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// The reference code's indicator pickle (`importance_indicators.pkl`).
    pub pickle: PathBuf,
    /// Per-layer MACs and params: a built-in model (resnet18, resnet50 and resnet20, those of
    /// the reference code; small_cnn, resnet20-cifar, mobilenetv2 too), a model
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
    super::out::distinct_outputs(
        &[("-o", Some(&args.output))],
        &[
            ("the pickle", Some(&args.pickle)),
            ("--layers", Some(Path::new(&args.layers))),
        ],
    )?;
    let (rows, table_model) = load_table(&args.layers)?;
    let model = args.model.clone().unwrap_or(table_model);
    let set = import_limpq::import(&args.pickle, &rows, &args.layers, &model, args.fix_missing)?;
    documents::write_indicators(&args.output, &set)?;
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

/// `--layers`: a built-in model or model description, or a table file. Returns the rows and
/// the default model name.
fn load_table(spec: &str) -> anyhow::Result<(Vec<TableRow>, String)> {
    let path = Path::new(spec);
    let is_table = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if !is_table {
        if let Some(model) = models::builtin(spec) {
            return Ok((model_rows(&model)?, model.name.clone()));
        }
    }
    if !path.exists() {
        bail!(
            "--layers {spec:?}: not a built-in model ({}) and no such file",
            models::BUILTIN_NAMES.join(", ")
        );
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| spec.to_string());
    match import_limpq::read_table(path) {
        Ok(rows) => Ok((rows, stem)),
        Err(table_err) if !is_table => {
            // A RON model description is the remaining possibility.
            match Model::from_ron_file(path) {
                Ok(model) => Ok((model_rows(&model)?, model.name.clone())),
                Err(model_err) => bail!(
                    "--layers {spec}: not a layer table, nor a model description \
                     ({model_err}): {table_err}"
                ),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The quantizable layers of a model as table rows (stem and classifier fixed).
fn model_rows(model: &Model) -> anyhow::Result<Vec<TableRow>> {
    let rows: Vec<TableRow> = model
        .quantizable_layers()?
        .into_iter()
        .map(|l| TableRow {
            name: l.name,
            macs: l.macs,
            params: l.params,
            fixed: l.fixed.then_some(models::FIXED_BITS),
        })
        .collect();
    import_limpq::check_table(&rows)?;
    Ok(rows)
}
