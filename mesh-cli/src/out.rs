//! Output helpers shared by the query commands: aligned tables and stdout writes
//! that tolerate a closed pipe.

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Result;

use crate::error::Hint;

/// Writes `text` to stdout. A reader that went away (`meshctl members | head -1`)
/// is not an error.
pub(crate) fn print_stdout(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).hint("stdout is closed or full")
        }
        _ => Ok(()),
    }
}

/// An aligned table: a header row, then `rows`, columns two spaces apart, no
/// trailing blanks.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_lines_end_without_blanks() {
        let t = table(
            &["A", "BB", "C"],
            &[
                vec!["long-cell".into(), "x".into(), String::new()],
                vec!["y".into(), "zzz".into(), "w".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "A          BB   C");
        assert_eq!(lines[1], "long-cell  x");
        assert_eq!(lines[2], "y          zzz  w");
    }
}
