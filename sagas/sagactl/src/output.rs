//! Printing answers: the API's JSON (pretty) for scripts, aligned tables for people.

use std::io::Write;

use clap::ValueEnum;
use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use serde::Serialize;

use crate::error::CliError;

/// How answers are printed (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns and `key: value` blocks, for people.
    Table,
    /// The coordinator's JSON answer, pretty-printed, for scripts (pipe it to `jq`).
    Json,
}

/// `value` as pretty JSON. The API types serialise exactly as the coordinator sends them
/// (same fields, same order; a saga's input is its submitted text, untouched).
pub fn json<T: Serialize>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value).map_err(|e| CliError::Output(std::io::Error::other(e)))
}

/// Writes `text` to standard output, ending it with a newline. A reader that went away (a
/// closed pipe, `| head`) is not an error: there is nobody left to tell.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| {
            if text.ends_with('\n') {
                Ok(())
            } else {
                stdout.write_all(b"\n")
            }
        })
        .and_then(|()| stdout.flush());
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// An empty table with these column headings: no borders, columns two spaces apart, nothing
/// wrapped (a pipe to `grep` or `less -S` keeps one row per line).
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(|h| h.to_uppercase()));
    table
}

/// Right-aligns the columns at these indexes (numbers).
pub fn align_right(table: &mut Table, columns: &[usize]) {
    for &index in columns {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// The table as text: flush left, columns two spaces apart, no trailing blanks.
pub fn render(table: &mut Table) -> String {
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let mut text = String::new();
    for line in table.lines() {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `key: value` lines with the values aligned, for the head of a `get`. Fields whose value is
/// `None` are left out.
pub fn fields(rows: &[(&str, Option<String>)]) -> String {
    let width = rows
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for (key, value) in rows {
        if let Some(value) = value {
            let pad = width - key.chars().count();
            text.push_str(&format!("{key}:{:pad$} {value}\n", ""));
        }
    }
    text
}

/// A value for a table cell, `-` when there is none.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Milliseconds for people: `3ms`, `12.5ms`, `1.25s`, `2m03s`.
pub fn millis(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        "-".to_string()
    } else if ms < 10.0 && ms.fract() != 0.0 {
        format!("{ms:.1}ms")
    } else if ms.round() < 1_000.0 {
        format!("{}ms", ms.round())
    } else if ms < 60_000.0 {
        format!("{:.2}s", ms / 1_000.0)
    } else {
        let seconds = (ms / 1_000.0).round() as u64;
        if seconds < 3_600 {
            format!("{}m{:02}s", seconds / 60, seconds % 60)
        } else {
            format!("{}h{:02}m", seconds / 3_600, seconds % 3_600 / 60)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_flush_left_without_trailing_blanks() {
        let mut t = table(&["id", "state"]);
        t.add_row(vec!["a-long-id", "committed"]);
        t.add_row(vec!["b", "stuck"]);
        assert_eq!(
            render(&mut t),
            "ID         STATE\na-long-id  committed\nb          stuck\n"
        );
    }

    #[test]
    fn fields_align_and_skip_absent_values() {
        let text = fields(&[
            ("id", Some("x".into())),
            ("error", None),
            ("workflow", Some("w".into())),
        ]);
        assert_eq!(text, "id:       x\nworkflow: w\n");
    }

    #[test]
    fn millis_read_well() {
        assert_eq!(millis(3.0), "3ms");
        assert_eq!(millis(2.24), "2.2ms");
        assert_eq!(millis(999.4), "999ms");
        assert_eq!(millis(999.6), "1.00s");
        assert_eq!(millis(1_250.0), "1.25s");
        assert_eq!(millis(123_000.0), "2m03s");
        assert_eq!(millis(3_720_000.0), "1h02m");
        assert_eq!(millis(f64::NAN), "-");
    }
}
