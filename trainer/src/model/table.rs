//! The layer table of a model (`limpq layers`): per quantizable layer (or every node) its
//! shapes, MACs, weights and whether it is searched, and the sums a BitOps budget and the
//! papers' figures use; as a value to serialise and as the text table.

use std::fmt::Write as _;

use serde::Serialize;

use super::{LayerKind, Model, ModelError, QuantLayer, FIXED_BITS};

/// The counting rules in one line, as the table's last line and the report's `counting`.
pub const COUNTING: &str =
    "MACs per image: conv Cin·Cout·k²·Hout·Wout/groups (floored output sizes), linear in·out; \
params: weights only (no bias, no BN); first conv and last linear fixed at 8 bits.";

/// One row: a quantizable layer, or (with `all`) any other node, whose figures are `None`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerRow {
    pub name: String,
    /// `conv` or `linear` for a quantizable layer, else the op (`bn`, `relu`, `add`, …).
    pub kind: String,
    /// The input shapes, each `[c, h, w]` per image.
    pub inputs: Vec<[usize; 3]>,
    /// The output shape `[c, h, w]` per image.
    pub output: [usize; 3],
    pub macs: Option<u64>,
    pub params: Option<u64>,
    /// `Some(true)`: held at [`FIXED_BITS`] (`fixed_bits`), not searched; `Some(false)`:
    /// searched; `None`: not a quantizable layer.
    pub fixed: Option<bool>,
}

/// A sum over a kind of layers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerSum {
    /// `conv layers`, `linear layers`, `all layers` or `searchable layers`.
    pub over: &'static str,
    pub layers: usize,
    /// u128: a user's model may have layers whose u64 counts overflow when summed (such a
    /// sum is written as a decimal string: RON has no 128-bit numbers).
    #[serde(serialize_with = "wide")]
    pub macs: u128,
    #[serde(serialize_with = "wide")]
    pub params: u128,
}

/// A u128 as a number when it fits in 64 bits, else as its decimal string.
fn wide<S: serde::Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
    match u64::try_from(*v) {
        Ok(n) => s.serialize_u64(n),
        Err(_) => s.collect_str(v),
    }
}

/// What `limpq layers` shows, in the order it shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerTable {
    pub model: String,
    /// `(channels, height, width)`.
    pub input: (usize, usize, usize),
    pub classes: usize,
    pub nodes: usize,
    pub quantizable_layers: usize,
    /// The bits of the fixed layers (weights, activations).
    pub fixed_bits: (u32, u32),
    pub rows: Vec<LayerRow>,
    pub sums: Vec<LayerSum>,
    pub counting: &'static str,
}

impl Model {
    /// The layer table: the quantizable layers, or with `all` every node.
    pub fn layer_table(&self, all: bool) -> Result<LayerTable, ModelError> {
        let infos = self.analyze()?;
        let layers = self.quantizable_layers()?;
        let dims = |s: &super::Shape| [s.c, s.h, s.w];
        let mut rows = Vec::new();
        let mut quantizable = layers.iter().peekable();
        for (i, (node, info)) in self.nodes.iter().zip(&infos).enumerate() {
            let mut row = LayerRow {
                name: node.name.clone(),
                kind: node.op.kind().into(),
                inputs: info.input_shapes.iter().map(dims).collect(),
                output: dims(&info.output),
                macs: None,
                params: None,
                fixed: None,
            };
            match quantizable.next_if(|l| l.node == i) {
                Some(l) => {
                    row.name = l.name.clone();
                    row.kind = l.kind.to_string();
                    row.macs = Some(l.macs);
                    row.params = Some(l.params);
                    row.fixed = Some(l.fixed);
                }
                None if !all => continue,
                None => {}
            }
            rows.push(row);
        }
        let sum = |over, pred: &dyn Fn(&QuantLayer) -> bool| {
            let sel = layers.iter().filter(|l| pred(l));
            LayerSum {
                over,
                layers: sel.clone().count(),
                macs: sel.clone().map(|l| u128::from(l.macs)).sum(),
                params: sel.map(|l| u128::from(l.params)).sum(),
            }
        };
        Ok(LayerTable {
            model: self.name.clone(),
            input: self.input,
            classes: self.classes,
            nodes: self.nodes.len(),
            quantizable_layers: layers.len(),
            fixed_bits: FIXED_BITS,
            rows,
            sums: vec![
                sum("conv layers", &|l| l.kind == LayerKind::Conv),
                sum("linear layers", &|l| l.kind == LayerKind::Linear),
                sum("all layers", &|_| true),
                sum("searchable layers", &|l| !l.fixed),
            ],
            counting: COUNTING,
        })
    }
}

impl LayerTable {
    /// The text table: a header line, a row per layer, the sums and the counting rules.
    pub fn to_text(&self) -> String {
        let shape = |d: &[usize; 3]| format!("{}×{}×{}", d[0], d[1], d[2]);
        let (fw, fa) = self.fixed_bits;
        let mut rows: Vec<[String; 6]> = vec![[
            "layer".into(),
            "kind".into(),
            "shape in → out".into(),
            "MACs".into(),
            "params".into(),
            "bits".into(),
        ]];
        for r in &self.rows {
            let ins: Vec<String> = r.inputs.iter().map(shape).collect();
            let num = |v: Option<u64>| v.map_or(String::new(), thousands);
            rows.push([
                r.name.clone(),
                r.kind.clone(),
                format!("{} → {}", ins.join(" + "), shape(&r.output)),
                num(r.macs),
                num(r.params),
                match r.fixed {
                    Some(true) => format!("fixed {fw}/{fa}"),
                    Some(false) => "searched".into(),
                    None => String::new(),
                },
            ]);
        }
        rows.push(Default::default());
        for s in &self.sums {
            rows.push([
                format!("sum over {} ({})", s.over, s.layers),
                String::new(),
                String::new(),
                thousands(s.macs),
                thousands(s.params),
                String::new(),
            ]);
        }
        let widths: Vec<usize> = (0..6)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let (c, h, w) = self.input;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "model {}: input {c}×{h}×{w}, {} classes, {} nodes, {} quantizable layers",
            self.model, self.classes, self.nodes, self.quantizable_layers
        );
        for row in &rows {
            let mut line = String::new();
            for (col, cell) in row.iter().enumerate() {
                let pad = " ".repeat(widths[col] - cell.chars().count());
                // Numbers right-aligned, text left-aligned.
                if (3..5).contains(&col) {
                    let _ = write!(line, "{pad}{cell}  ");
                } else {
                    let _ = write!(line, "{cell}{pad}  ");
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let _ = writeln!(out, "{}", self.counting);
        out
    }
}

/// `1234567` → `"1,234,567"`.
pub fn thousands(n: impl Into<u128>) -> String {
    let digits = n.into().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0u64), "0");
        assert_eq!(thousands(999u32), "999");
        assert_eq!(thousands(1000u32), "1,000");
        assert_eq!(thousands(1_813_561_344u64), "1,813,561,344");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn sums_add_up_the_rows() {
        let m = super::super::builtin("resnet20").unwrap();
        let t = m.layer_table(false).unwrap();
        let all = &t.sums[2];
        assert_eq!(all.layers, t.rows.len());
        let macs: u128 = t.rows.iter().map(|r| u128::from(r.macs.unwrap())).sum();
        assert_eq!(all.macs, macs);
        assert!(m.layer_table(true).unwrap().rows.len() > t.rows.len());
        assert!(t.to_text().contains(&thousands(all.macs)));
    }
}
