//! `limpq compare`: do two indicator files rank the layers alike? The arithmetic is
//! `limpq_trainer::analysis::compare_indicators`.

use std::path::PathBuf;

use limpq_trainer::analysis::compare_indicators;

use super::out::OutputFormat;

/// Rank-correlate two indicator files layer by layer.
///
/// For every searchable layer (matched by name) and every pair of consecutive bit-widths
/// both files offer, the increment s(b) - s(b') says how much one more bit lowers the
/// layer's indicator: what the search trades. The command prints Spearman's rank
/// correlation of the two files' increments per side (weights, activations) and per step,
/// and over every step pooled, beside the |rho| above which it differs from zero at 5 %.
/// Scales do not matter, only the order of the layers.
#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  limpq compare run/seed0/indicators.ron run/seed0/sensitivity.ron
      # learned step sizes against measured loss increases (limpq sensitivity)
  limpq compare short/indicators.ron long/indicators.ron --format json")]
pub struct Args {
    /// The first indicator file (RON or JSON).
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// The second indicator file, with the same searchable layers.
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// `table`, or the same rows as a `json` / `ron` document.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let a = limpq_io::documents::read_indicators(&args.a)?;
    let b = limpq_io::documents::read_indicators(&args.b)?;
    // What a solve would refuse (NaN, negative or missing values) is refused here too: a
    // rank correlation of such values would print figures that mean nothing.
    for (set, path) in [(&a, &args.a), (&b, &args.b)] {
        set.check()
            .map_err(|e| anyhow::anyhow!("in {}: {e}", path.display()))?;
    }
    let agreement = compare_indicators(&a, &b).map_err(|e| {
        anyhow::anyhow!(
            "cannot compare {} with {}: {e}",
            args.a.display(),
            args.b.display()
        )
    })?;
    args.format.print(&agreement, || agreement.to_text())
}
