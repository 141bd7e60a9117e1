//! A CSV file of a trace, read whole with its header so fields are found by name, and
//! errors that say which file, line and column.

use super::percentiles::Percentiles;
use super::trace::TraceError;
use std::path::PathBuf;

/// A CSV file read with its header, so fields are looked up by name.
pub(super) struct Table {
    pub(super) path: PathBuf,
    pub(super) header: Vec<String>,
    pub(super) rows: Vec<(u64, csv::StringRecord)>,
}

impl Table {
    pub(super) fn read(path: PathBuf) -> Result<Self, TraceError> {
        let io = |source| TraceError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(io)?;
        let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(file);
        let malformed = |line: u64, message: String| TraceError::Malformed {
            path: path.clone(),
            line,
            column: "-".into(),
            message,
        };
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| malformed(1, e.to_string()))?
            .iter()
            .map(|h| h.trim().to_owned())
            .collect();
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                malformed(line, e.to_string())
            })?;
            let line = record.position().map_or(0, |p| p.line());
            rows.push((line, record));
        }
        Ok(Self { path, header, rows })
    }

    pub(super) fn column(&self, name: &str) -> Result<usize, TraceError> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| TraceError::Malformed {
                path: self.path.clone(),
                line: 1,
                column: name.into(),
                message: format!("no column named {name}"),
            })
    }

    pub(super) fn text<'a>(&self, row: &'a (u64, csv::StringRecord), col: usize) -> &'a str {
        row.1.get(col).unwrap_or("").trim()
    }

    pub(super) fn number(&self, row: &(u64, csv::StringRecord), col: usize) -> Result<f64, TraceError> {
        let text = self.text(row, col);
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err(TraceError::Malformed {
                path: self.path.clone(),
                line: row.0,
                column: self.header.get(col).cloned().unwrap_or_else(|| (col + 1).to_string()),
                message: format!("'{}' is not a non-negative number", volley_proto::text::clip(text, 32)),
            }),
        }
    }

    pub(super) fn percentiles(
        &self,
        row: &(u64, csv::StringRecord),
        cols: &[(f64, usize)],
    ) -> Result<Percentiles, TraceError> {
        let points = cols
            .iter()
            .map(|&(p, c)| Ok((p, self.number(row, c)?)))
            .collect::<Result<Vec<_>, TraceError>>()?;
        Percentiles::new(points).map_err(|message| TraceError::Malformed {
            path: self.path.clone(),
            line: row.0,
            column: self.header.get(cols[0].1).cloned().unwrap_or_default(),
            message,
        })
    }
}
