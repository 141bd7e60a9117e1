//! Reading a trace in the Azure Functions 2019 schema (Shahrad et al., ATC'20):
//! `invocations.csv` (HashOwner, HashApp, HashFunction, Trigger, then one count column per
//! minute or second), `durations.csv` (ms percentiles) and `memory.csv` (MB percentiles,
//! per app in the original dataset, per function in some samples).
//!
//! Columns are found by name, since files in the wild order the hash columns differently.
//! Functions are joined on (owner, app, function). An app's memory is split evenly among
//! its functions. A function missing from any file is reported and skipped; a malformed
//! file is an error naming the file, line and column.

use super::percentiles::Percentiles;
use super::table::Table;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why a trace cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file's content does not fit the schema.
    #[error("{}, line {line}, column {column}: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line (the header is line 1).
        line: u64,
        /// The column's name (or number, where the header lacks one).
        column: String,
        /// What is wrong.
        message: String,
    },
}

/// Whether the count columns are minutes or seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// One count column per minute (the published dataset).
    Minute,
    /// One count column per second.
    Second,
}

impl Granularity {
    /// Seconds one count column spans.
    pub fn seconds(self) -> u64 {
        match self {
            Granularity::Minute => 60,
            Granularity::Second => 1,
        }
    }
}

impl std::str::FromStr for Granularity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "minute" => Ok(Self::Minute),
            "second" => Ok(Self::Second),
            other => Err(format!("unknown granularity '{other}': expected minute or second")),
        }
    }
}

/// (owner, app, function) hashes.
pub type FunctionKey = (String, String, String);

/// One function of the trace with everything the replay needs.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceFunction {
    /// Its (owner, app, function) hashes.
    pub key: FunctionKey,
    /// How it is triggered (http, timer, queue, …).
    pub trigger: String,
    /// Invocations per count column, in column order.
    pub counts: Vec<u64>,
    /// Execution time percentiles, ms.
    pub duration_ms: Percentiles,
    /// Allocated memory percentiles, MB (the app's share, if memory is per app).
    pub memory_mb: Percentiles,
}

/// A function left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its hashes.
    pub key: FunctionKey,
    /// Which file lacks it.
    pub missing_from: &'static str,
}

/// A whole trace.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The count columns' labels (e.g. trace minutes `540`…`689`), in order.
    pub columns: Vec<String>,
    /// Seconds each count column spans.
    pub granularity: Granularity,
    /// The functions found in all three files, in `invocations.csv` order.
    pub functions: Vec<TraceFunction>,
    /// The functions left out.
    pub skipped: Vec<Skipped>,
}

const DURATION_PERCENTILES: [(f64, &str); 7] = [
    (0.0, "percentile_Average_0"),
    (1.0, "percentile_Average_1"),
    (25.0, "percentile_Average_25"),
    (50.0, "percentile_Average_50"),
    (75.0, "percentile_Average_75"),
    (99.0, "percentile_Average_99"),
    (100.0, "percentile_Average_100"),
];

const MEMORY_PERCENTILES: [(f64, &str); 8] = [
    (1.0, "AverageAllocatedMb_pct1"),
    (5.0, "AverageAllocatedMb_pct5"),
    (25.0, "AverageAllocatedMb_pct25"),
    (50.0, "AverageAllocatedMb_pct50"),
    (75.0, "AverageAllocatedMb_pct75"),
    (95.0, "AverageAllocatedMb_pct95"),
    (99.0, "AverageAllocatedMb_pct99"),
    (100.0, "AverageAllocatedMb_pct100"),
];

impl Trace {
    /// Reads `invocations.csv`, `durations.csv` and `memory.csv` from `dir`.
    pub fn read(dir: &Path, granularity: Granularity) -> Result<Self, TraceError> {
        let inv = Table::read(dir.join("invocations.csv"))?;
        let dur = Table::read(dir.join("durations.csv"))?;
        let mem = Table::read(dir.join("memory.csv"))?;

        let key_cols = |t: &Table| -> Result<[usize; 3], TraceError> {
            Ok([t.column("HashOwner")?, t.column("HashApp")?, t.column("HashFunction")?])
        };
        let key_of = |t: &Table, row: &(u64, csv::StringRecord), cols: [usize; 3]| -> FunctionKey {
            (
                t.text(row, cols[0]).to_owned(),
                t.text(row, cols[1]).to_owned(),
                t.text(row, cols[2]).to_owned(),
            )
        };

        // Invocations: the count columns are every column after the named ones.
        let inv_keys = key_cols(&inv)?;
        let trigger = inv.column("Trigger")?;
        let named = [inv_keys[0], inv_keys[1], inv_keys[2], trigger];
        let count_cols: Vec<usize> = (0..inv.header.len()).filter(|c| !named.contains(c)).collect();
        if count_cols.is_empty() {
            return Err(TraceError::Malformed {
                path: inv.path.clone(),
                line: 1,
                column: "-".into(),
                message: "no count columns after HashOwner, HashApp, HashFunction, Trigger".into(),
            });
        }
        let columns: Vec<String> = count_cols.iter().map(|&c| inv.header[c].clone()).collect();

        // Durations by function.
        let dur_keys = key_cols(&dur)?;
        let dur_cols: Vec<(f64, usize)> = DURATION_PERCENTILES
            .iter()
            .map(|&(p, name)| Ok((p, dur.column(name)?)))
            .collect::<Result<_, TraceError>>()?;
        let mut durations = HashMap::new();
        for row in &dur.rows {
            durations.insert(key_of(&dur, row, dur_keys), dur.percentiles(row, &dur_cols)?);
        }

        // Memory by function, or by app (split among the app's functions below).
        let per_function = mem.column("HashFunction").is_ok();
        let mem_owner = mem.column("HashOwner")?;
        let mem_app = mem.column("HashApp")?;
        let mem_fn = mem.column("HashFunction").ok();
        let mem_cols: Vec<(f64, usize)> = MEMORY_PERCENTILES
            .iter()
            .map(|&(p, name)| Ok((p, mem.column(name)?)))
            .collect::<Result<_, TraceError>>()?;
        let mut memory = HashMap::new();
        for row in &mem.rows {
            let function = mem_fn.map(|c| mem.text(row, c).to_owned()).unwrap_or_default();
            let key = (
                mem.text(row, mem_owner).to_owned(),
                mem.text(row, mem_app).to_owned(),
                function,
            );
            memory.insert(key, mem.percentiles(row, &mem_cols)?);
        }

        let mut functions = Vec::new();
        let mut skipped = Vec::new();
        let mut per_app: HashMap<(String, String), usize> = HashMap::new();
        for row in &inv.rows {
            let key = key_of(&inv, row, inv_keys);
            let counts = count_cols
                .iter()
                .map(|&c| {
                    let v = inv.number(row, c)?;
                    if v.fract() != 0.0 {
                        return Err(TraceError::Malformed {
                            path: inv.path.clone(),
                            line: row.0,
                            column: inv.header[c].clone(),
                            message: format!("{v} is not a whole count"),
                        });
                    }
                    Ok(v as u64)
                })
                .collect::<Result<Vec<u64>, TraceError>>()?;
            let Some(duration_ms) = durations.get(&key).cloned() else {
                skipped.push(Skipped {
                    key,
                    missing_from: "durations.csv",
                });
                continue;
            };
            let memory_key = if per_function {
                key.clone()
            } else {
                (key.0.clone(), key.1.clone(), String::new())
            };
            let Some(memory_mb) = memory.get(&memory_key).cloned() else {
                skipped.push(Skipped {
                    key,
                    missing_from: "memory.csv",
                });
                continue;
            };
            *per_app.entry((key.0.clone(), key.1.clone())).or_default() += 1;
            functions.push(TraceFunction {
                trigger: inv.text(row, trigger).to_owned(),
                key,
                counts,
                duration_ms,
                memory_mb,
            });
        }
        if !per_function {
            for f in &mut functions {
                let n = per_app.get(&(f.key.0.clone(), f.key.1.clone())).copied().unwrap_or(1);
                f.memory_mb = f.memory_mb.scaled(1.0 / n as f64);
            }
        }
        Ok(Self {
            columns,
            granularity,
            functions,
            skipped,
        })
    }

    /// Invocations of every function in count columns `window`.
    pub fn invocations(&self, window: std::ops::Range<usize>) -> u64 {
        self.functions
            .iter()
            .map(|f| f.counts[window.clone()].iter().sum::<u64>())
            .sum()
    }

    /// The work the window offers, in busy cores: Σ invocations × mean duration, over the
    /// window's length. A replay that offers more than the cluster's slots cannot keep up.
    pub fn busy_cores(&self, window: std::ops::Range<usize>) -> f64 {
        let seconds = (window.len() as u64 * self.granularity.seconds()) as f64;
        let busy_ms: f64 = self
            .functions
            .iter()
            .map(|f| f.counts[window.clone()].iter().sum::<u64>() as f64 * f.duration_ms.mean())
            .sum();
        busy_ms / 1e3 / seconds.max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::studies::replay::fixture;

    fn fixture_trace(label: &str) -> (PathBuf, Trace) {
        let dir = fixture::temp_dir(label);
        fixture::write(&dir, 12, 3, 5).expect("fixture");
        let trace = Trace::read(&dir, Granularity::Minute).expect("trace");
        (dir, trace)
    }

    #[test]
    fn the_fixture_reads_by_column_name() {
        let (dir, t) = fixture_trace("read");
        assert_eq!(t.columns, vec!["1", "2", "3"]);
        assert_eq!(t.functions.len(), 12);
        assert!(t.skipped.is_empty());
        let f = &t.functions[0];
        assert_eq!(f.counts.len(), 3);
        assert!(f.duration_ms.range().0 >= 1.0);
        assert!(f.memory_mb.mean() > 10.0);
        assert!(t.invocations(0..3) > 0);
        assert!(t.busy_cores(0..3) > 0.0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn memory_per_app_is_split_among_its_functions() {
        let (dir, per_function) = fixture_trace("per-app");
        // Rewrite memory.csv per app, as the published dataset has it: one row an app,
        // holding the first function's figures.
        let text = std::fs::read_to_string(dir.join("memory.csv")).expect("memory");
        let mut lines = text.lines();
        let header = lines.next().expect("header").replacen("HashFunction,", "", 1);
        let mut out = format!("{header}\n");
        for (i, line) in lines.enumerate() {
            if i % 2 == 0 {
                out.push_str(line.split_once(',').expect("row").1);
                out.push('\n');
            }
        }
        std::fs::write(dir.join("memory.csv"), out).expect("write");
        let per_app = Trace::read(&dir, Granularity::Minute).expect("trace");
        let (a, b) = (
            per_function.functions[0].memory_mb.mean(),
            per_app.functions[0].memory_mb.mean(),
        );
        assert!((b - a / 2.0).abs() < 1e-9, "{b} is not half of {a}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_rows_are_skipped_and_bad_cells_are_located() {
        let (dir, full) = fixture_trace("bad");
        let durations = std::fs::read_to_string(dir.join("durations.csv")).expect("durations");
        let kept: Vec<&str> = durations
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, l)| l)
            .collect();
        std::fs::write(dir.join("durations.csv"), kept.join("\n") + "\n").expect("write");
        let t = Trace::read(&dir, Granularity::Minute).expect("trace");
        assert_eq!(t.functions.len(), 11);
        assert_eq!(
            t.skipped,
            vec![Skipped {
                key: full.functions[1].key.clone(),
                missing_from: "durations.csv"
            }]
        );

        let inv = std::fs::read_to_string(dir.join("invocations.csv")).expect("invocations");
        let mut lines: Vec<String> = inv.lines().map(str::to_owned).collect();
        lines[4] = lines[4].rsplit_once(',').expect("row").0.to_owned() + ",many";
        std::fs::write(dir.join("invocations.csv"), lines.join("\n") + "\n").expect("write");
        let e = Trace::read(&dir, Granularity::Minute).expect_err("a word in a count column");
        let text = e.to_string();
        assert!(text.contains("invocations.csv, line 5, column 3: 'many'"), "{text}");

        std::fs::remove_file(dir.join("memory.csv")).expect("remove");
        let e = Trace::read(&dir, Granularity::Minute).expect_err("no memory file");
        assert!(e.to_string().contains("memory.csv"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_azure_sample_reads_whole_when_present() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces/azure2019-vswarm-sample");
        if !dir.join("invocations.csv").exists() {
            eprintln!("skipped: {} is absent", dir.display());
            return;
        }
        let t = Trace::read(&dir, Granularity::Minute).expect("the sample");
        assert_eq!(t.columns.first().map(String::as_str), Some("540"));
        assert_eq!(t.columns.last().map(String::as_str), Some("689"));
        assert_eq!(t.functions.len() + t.skipped.len(), 250);
        let all = t.invocations(0..t.columns.len());
        assert!(
            t.skipped.is_empty() && all == 324_209,
            "{} skipped, {all} invocations",
            t.skipped.len()
        );
    }
}
