//! Query results on stdout, the same way for `sluice query` and `sluice athena query`: an aligned
//! table, CSV or JSON Lines.

use std::io::Write;

use anyhow::Result;
use serde_json::Value;

/// How rows are printed.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// A header, then one line per row (NULL is an empty field, an empty string `""`).
    Csv,
    /// One JSON object per row.
    Jsonl,
    /// Aligned columns, for a terminal.
    Table,
}

/// A cell as text: strings bare, NULL empty.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints `rows` (one value per name) in `format`.
pub fn print_rows(
    names: &[&str],
    rows: &[Vec<Value>],
    format: Format,
    out: &mut impl Write,
) -> Result<()> {
    match format {
        Format::Jsonl => {
            for row in rows {
                let object: serde_json::Map<String, Value> = names
                    .iter()
                    .map(|n| n.to_string())
                    .zip(row.iter().cloned())
                    .collect();
                writeln!(out, "{}", Value::Object(object))?;
            }
        }
        Format::Csv => {
            let mut w = sluice_flatten::CsvWriter::new(out);
            w.write_fields(names.iter().map(Some))?;
            for row in rows {
                // NULL is an empty field; an empty string is `""`.
                let cells = row.iter().map(|v| (!v.is_null()).then(|| text(v)));
                w.write_fields(cells)?;
            }
            w.flush()?;
        }
        Format::Table => {
            let cells: Vec<Vec<String>> =
                rows.iter().map(|r| r.iter().map(text).collect()).collect();
            let widths: Vec<usize> = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    cells
                        .iter()
                        .map(|r| r[i].chars().count())
                        .chain([n.chars().count()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |values: Vec<&str>| {
                let padded: Vec<String> = values
                    .iter()
                    .zip(&widths)
                    .map(|(v, w)| format!("{v:<w$}"))
                    .collect();
                padded.join("  ").trim_end().to_owned()
            };
            writeln!(out, "{}", line(names.to_vec()))?;
            for r in &cells {
                writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
            }
        }
    }
    Ok(())
}
