//! The per-layer cost table `--layers` gives: MACs and parameter counts the pickle lacks.

use anyhow::{bail, Context};
use std::path::Path;

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

/// Read a table file: RON (`.ron`) or CSV (anything else).
///
/// RON: either a list of `(name: "...", macs: N, params: N, fixed: None)` rows, or a whole
/// `IndicatorSet` whose layers supply the names, MACs, params and fixed bits.
/// CSV: `name,macs,params[,fixed_w,fixed_a]`, an optional header line starting with `name`,
/// `#` comments and blank lines ignored.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<TableRow>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading layer table {}", path.display()))?;
    let rows = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ron"))
    {
        parse_ron(&text).with_context(|| format!("layer table {}", path.display()))?
    } else {
        parse_csv(&text).with_context(|| format!("layer table {}", path.display()))?
    };
    check(&rows).with_context(|| format!("layer table {}", path.display()))?;
    Ok(rows)
}

fn parse_ron(text: &str) -> anyhow::Result<Vec<TableRow>> {
    let rows_err = match ron::from_str::<Vec<TableRow>>(text) {
        Ok(rows) => return Ok(rows),
        Err(e) => e,
    };
    match ron::from_str::<limpq_solver::IndicatorSet>(text) {
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

pub fn parse_csv(text: &str) -> anyhow::Result<Vec<TableRow>> {
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
        let int = |idx: usize, what: &str| -> anyhow::Result<u64> {
            fields[idx].parse::<u64>().with_context(|| {
                format!(
                    "line {line_no}: {what} of layer {:?} is not a non-negative integer: {:?}",
                    fields[0], fields[idx]
                )
            })
        };
        let fixed = if fields.len() == 5 {
            match (fields[3].is_empty(), fields[4].is_empty()) {
                (true, true) => None,
                (false, false) => Some((
                    u32::try_from(int(3, "fixed_w")?)?,
                    u32::try_from(int(4, "fixed_a")?)?,
                )),
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

/// Names are non-empty and unique (after the `module.` prefix is stripped); fixed bits in 1..=32.
pub fn check(rows: &[TableRow]) -> anyhow::Result<()> {
    if rows.is_empty() {
        bail!("the table has no layers");
    }
    let mut seen = std::collections::HashSet::new();
    for r in rows {
        if r.name.is_empty() {
            bail!("a layer has an empty name");
        }
        if !seen.insert(super::normalize_name(&r.name)) {
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
        assert!(check(&dup).unwrap_err().to_string().contains("twice"));
    }
}
