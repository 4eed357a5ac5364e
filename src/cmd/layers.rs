//! `limpq layers`: per-layer MACs and parameter counts of a model description.

use limpq_trainer::model::{LayerKind, Model, NodeInfo, QuantLayer};

/// Print the quantizable layers of a model: shapes, MACs, weights, fixed or searchable.
///
/// Counting rule: MACs of a conv = Cin·Cout·k²·Hout·Wout / groups with integer (floored)
/// output sizes; of a linear layer in·out; per image. Params are weights only, biases and
/// BatchNorm excluded. The first conv and the last linear layer (stem and fc) are fixed at
/// 8 bits and not searched. Sums are printed over conv layers, linear layers, all of them,
/// and the searchable ones (the layers a BitOps budget counts).
#[derive(clap::Args)]
#[command(after_help = "\
Counting: MACs per image; a conv counts Cin·Cout·k²·Hout·Wout/groups with integer (floored)
output sizes, a linear layer in·out. Params are weights only (no bias, no BatchNorm). The
first conv and the last linear layer (stem, fc) are fixed at 8 bits and not searched; the
'searchable' sum is what a BitOps budget counts.

Examples:
  limpq layers resnet18
  limpq layers resnet20-cifar --all   # every node: BN, ReLU, add, pooling too
  limpq layers small_cnn --format ron > my_model.ron   # start a custom model from a built-in
  limpq layers my_model.ron")]
pub struct Args {
    /// A built-in model (small_cnn, resnet20, resnet20-cifar, resnet18, resnet50) or the
    /// path of a RON model description (docs/MODELS.md).
    #[arg(value_name = "MODEL")]
    pub model: String,
    /// `table`: the per-layer table and sums. `ron`: the model description itself, as a
    /// file `limpq layers` and the trainer read back.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// List every node of the graph (BatchNorm, ReLU, add, pooling too), not only the
    /// quantizable layers.
    #[arg(long)]
    pub all: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Ron,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let model = Model::resolve(&args.model)?;
    match args.format {
        Format::Ron => println!("{}", model.to_ron_versioned()),
        Format::Table => {
            let infos = model.analyze()?;
            let layers = model.quantizable_layers()?;
            print!("{}", table(&model, &infos, &layers, args.all));
        }
    }
    Ok(())
}

/// `1234567` → `"1,234,567"`.
pub fn thousands(n: impl Into<u128>) -> String {
    let n: u128 = n.into();
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn table(model: &Model, infos: &[NodeInfo], layers: &[QuantLayer], all: bool) -> String {
    use std::fmt::Write;
    let (c, h, w) = model.input;
    let mut rows: Vec<[String; 6]> = vec![[
        "layer".into(),
        "kind".into(),
        "shape in → out".into(),
        "MACs".into(),
        "params".into(),
        "bits".into(),
    ]];
    let mut quantizable = layers.iter().peekable();
    for (i, (node, info)) in model.nodes.iter().zip(infos).enumerate() {
        let shapes_in: Vec<String> = info.input_shapes.iter().map(|s| s.to_string()).collect();
        let shapes = format!("{} → {}", shapes_in.join(" + "), info.output);
        match quantizable.next_if(|l| l.node == i) {
            Some(l) => rows.push([
                l.name.clone(),
                l.kind.to_string(),
                shapes,
                thousands(l.macs),
                thousands(l.params),
                if l.fixed {
                    "fixed 8/8".into()
                } else {
                    "searched".into()
                },
            ]),
            None if all => rows.push([
                node.name.clone(),
                node.op.kind().into(),
                shapes,
                String::new(),
                String::new(),
                String::new(),
            ]),
            None => {}
        }
    }
    let sum = |pred: &dyn Fn(&QuantLayer) -> bool| {
        let sel = layers.iter().filter(|l| pred(l));
        let n = sel.clone().count();
        // u128: a user's model may have layers whose u64 counts overflow when summed.
        let (m, p) = sel.fold((0u128, 0u128), |(m, p), l| {
            (m + u128::from(l.macs), p + u128::from(l.params))
        });
        (n, m, p)
    };
    let sums = [
        ("conv layers", sum(&|l| l.kind == LayerKind::Conv)),
        ("linear layers", sum(&|l| l.kind == LayerKind::Linear)),
        ("all layers", sum(&|_| true)),
        ("searchable layers", sum(&|l| !l.fixed)),
    ];
    rows.push(Default::default());
    for (label, (n, m, p)) in sums {
        rows.push([
            format!("sum over {label} ({n})"),
            String::new(),
            String::new(),
            thousands(m),
            thousands(p),
            String::new(),
        ]);
    }

    let width = |col: usize| {
        rows.iter()
            .map(|r| r[col].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..6).map(width).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model {}: input {c}×{h}×{w}, {} classes, {} nodes, {} quantizable layers",
        model.name,
        model.classes,
        model.nodes.len(),
        layers.len()
    );
    for row in &rows {
        let mut line = String::new();
        for (col, cell) in row.iter().enumerate() {
            let pad = widths[col] - cell.chars().count();
            // Numbers right-aligned, text left-aligned.
            if (3..5).contains(&col) {
                let _ = write!(line, "{}{cell}  ", " ".repeat(pad));
            } else {
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = writeln!(
        out,
        "MACs per image: conv Cin·Cout·k²·Hout·Wout/groups (floored output sizes), linear in·out; \
params: weights only (no bias, no BN); first conv and last linear fixed at 8 bits."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0u64), "0");
        assert_eq!(thousands(999u32), "999");
        assert_eq!(thousands(1000u32), "1,000");
        assert_eq!(thousands(1_813_561_344u64), "1,813,561,344");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }
}
