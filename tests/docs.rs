//! The Markdown documents (README.md and docs/*.md) as a reader sees them rendered:
//!
//! - every fenced code block is closed: one fence left open turns the rest of the file
//!   inside out (prose as code, code as prose) and hides every heading after it;
//! - every relative link points at a file that exists, and every `#anchor` at a heading
//!   of its target, as the anchor GitHub and most renderers derive from the heading.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn documents() -> Vec<PathBuf> {
    let mut v = vec![Path::new(ROOT).join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    v.extend(docs);
    v
}

/// The fence that opens or closes a fenced block: three or more backticks or tildes.
fn fence(line: &str) -> Option<&str> {
    let t = line.trim_start();
    for c in ['`', '~'] {
        let n = t.chars().take_while(|&x| x == c).count();
        if n >= 3 {
            return Some(&t[..n]);
        }
    }
    None
}

/// The lines outside fenced blocks, numbered from 1; or the line of a fence left open,
/// or of an opening fence (one with a language after it) met inside a block, which can
/// only mean that an earlier block was not closed and the fences pair up wrongly since.
fn prose(text: &str) -> Result<Vec<(usize, &str)>, usize> {
    let mut out = Vec::new();
    let mut open: Option<(usize, &str)> = None;
    for (i, line) in text.lines().enumerate() {
        match (open, fence(line)) {
            (None, Some(f)) => open = Some((i + 1, f)),
            // A block closes at a fence of the same character, at least as long, with
            // nothing after it.
            (Some((at, o)), Some(f)) if f.starts_with(&o[..1]) && f.len() >= o.len() => {
                if line.trim() != f {
                    return Err(at);
                }
                open = None
            }
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    match open {
        Some((at, _)) => Err(at),
        None => Ok(out),
    }
}

/// The anchor a renderer gives a heading: lower case, letters, digits, `-` and `_` kept,
/// spaces turned into `-`, everything else dropped; a repeated heading gets `-1`, `-2`, ….
fn anchors(lines: &[(usize, &str)]) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (_, line) in lines {
        let t = line.trim_start();
        let level = t.chars().take_while(|&c| c == '#').count();
        if level == 0 || level > 6 || !t[level..].starts_with(' ') {
            continue;
        }
        let slug: String = t[level..]
            .trim()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .flat_map(char::to_lowercase)
            .collect();
        let mut s = slug.clone();
        let mut k = 0;
        while !seen.insert(s.clone()) {
            k += 1;
            s = format!("{slug}-{k}");
        }
    }
    seen
}

/// The targets of inline links `[text](target)` on a line.
fn links(line: &str) -> Vec<&str> {
    let mut v = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(j) = rest.find(')') {
            v.push(rest[..j].split_whitespace().next().unwrap_or(""));
            rest = &rest[j..];
        }
    }
    v
}

#[test]
fn every_code_fence_is_closed() {
    let mut bad = Vec::new();
    for p in documents() {
        if let Err(at) = prose(&fs::read_to_string(&p).unwrap()) {
            bad.push(format!(
                "{}:{at}: this fence, or one above it, is never closed (the fences pair up wrongly from here)",
                p.display()
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut bad = Vec::new();
    let mut checked = 0;
    for p in documents() {
        let text = fs::read_to_string(&p).unwrap();
        let Ok(lines) = prose(&text) else { continue }; // the fence test reports it
        for &(n, line) in &lines {
            for target in links(line) {
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = match target.split_once('#') {
                    Some((f, a)) => (f, Some(a)),
                    None => (target, None),
                };
                let file = if file.is_empty() {
                    p.clone()
                } else {
                    p.parent().unwrap().join(file)
                };
                checked += 1;
                if !file.exists() {
                    bad.push(format!("{}:{n}: {target}: no such file", p.display()));
                    continue;
                }
                let Some(anchor) = anchor else { continue };
                let heads = match fs::read_to_string(&file) {
                    Ok(t) => match prose(&t) {
                        Ok(l) => anchors(&l),
                        Err(_) => continue,
                    },
                    Err(_) => continue,
                };
                if !heads.contains(anchor) {
                    bad.push(format!("{}:{n}: {target}: no such heading", p.display()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // The documents link to each other often; finding none means the reader broke.
    assert!(checked > 50, "only {checked} relative links found");
}

#[test]
fn the_readers_of_this_test_see_what_a_renderer_sees() {
    let text = "# A b\n```js\nx\n```\n## C: d (e) — f_g\n~~~\n```\n~~~\n# A b\n";
    let lines = prose(text).unwrap();
    let heads = anchors(&lines);
    for a in ["a-b", "c-d-e--f_g", "a-b-1"] {
        assert!(heads.contains(a), "{a}: {heads:?}");
    }
    assert_eq!(prose("text\n```\ncode\n").unwrap_err(), 2);
    // A shorter fence inside a longer one is code, not a close.
    assert_eq!(prose("````\n```\n````\nx\n").unwrap(), [(4, "x")]);
    assert_eq!(prose("````\n```\n").unwrap_err(), 1);
    // The block of line 1 was never closed: line 3 closes it, and line 5 opens a block
    // that swallows the fence of line 7.
    let flipped = "```js\nx\n```\nprose\n```\ncode\n```c\ny\n```\n";
    assert_eq!(prose(flipped).unwrap_err(), 5);
    assert_eq!(
        links("see [a](B.md#c) and [d](https://e) `x`"),
        ["B.md#c", "https://e"]
    );
}

/// The fields of a format section's first table in docs/FORMATS.md: `| `name` | …` rows.
fn table_fields(formats: &str, heading: &str) -> Vec<String> {
    let section = formats
        .split(&format!("\n## {heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("docs/FORMATS.md has no section {heading}"));
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .map(String::from)
        .collect()
}

/// Each format's table in docs/FORMATS.md names the top-level fields its JSON Schema
/// allows (the schemas are kept equal to the readers by tests/schemas.rs), no more and no
/// fewer: a field added to a reader and its schema but not to the table fails here.
#[test]
fn every_format_table_lists_its_schemas_fields() {
    let formats = fs::read_to_string(Path::new(ROOT).join("docs/FORMATS.md")).unwrap();
    let mut bad = Vec::new();
    for (heading, schema) in [
        ("Indicator file", "indicators"),
        ("Policy file", "policy"),
        ("Frontier file", "frontier"),
        ("Resource table", "resource-table"),
        ("Model description", "model"),
        ("Pipeline job", "pipeline-job"),
    ] {
        let path = Path::new(ROOT).join(format!("docs/schemas/{schema}.schema.json"));
        let s: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let want: Vec<&str> = s["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{}: no top-level properties", path.display()))
            .keys()
            .map(String::as_str)
            .collect();
        let have = table_fields(&formats, heading);
        let missing: Vec<_> = want
            .iter()
            .filter(|f| !have.iter().any(|h| h == *f))
            .collect();
        let extra: Vec<_> = have
            .iter()
            .filter(|h| !want.contains(&h.as_str()))
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            bad.push(format!(
                "FORMATS.md, {heading}: missing {missing:?}, not in {schema}.schema.json {extra:?}"
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
