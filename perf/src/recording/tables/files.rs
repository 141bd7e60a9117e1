//! Result files on disk: CSV appends that write their header once, and the
//! `.meta.json` sidecar that says how a file was made.

use super::{PerfRow, TaskRow};
use anyhow::Context;
use serde::Serialize;
use std::path::Path;

/// Facts about the run every row carries.
#[derive(Debug, Clone)]
pub struct RunMeta {
    /// When the run started, RFC 3339.
    pub timestamp: String,
    /// `git rev-parse --short HEAD`, or `unknown`.
    pub git_revision: String,
    /// The machine.
    pub host: String,
    /// Its cores.
    pub cores: usize,
}

impl RunMeta {
    /// Reads the current time, revision, host and cores.
    pub fn collect() -> Self {
        let git_revision = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        Self {
            timestamp: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            git_revision,
            host: hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "unknown".into()),
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        }
    }
}

/// Appends rows to `path`, writing the header first when the file is new or empty.
pub fn append(path: &Path, rows: &[PerfRow]) -> anyhow::Result<()> {
    append_rows(path, rows)
}

/// Appends serialisable rows to a CSV file; the header (the rows' field names) is written
/// when the file is new or empty, so appending runs never repeat it. A file whose header
/// is not the rows' (made by another version, or by another command) is refused: rows
/// under the wrong header would be read back as other columns.
pub fn append_rows<T: Serialize>(path: &Path, rows: &[T]) -> anyhow::Result<()> {
    let fresh = std::fs::metadata(path).map(|m| m.len() == 0).unwrap_or(true);
    if let (false, Some(first)) = (fresh, rows.first()) {
        let (theirs, ours) = (header_in(path)?, header_of(first)?);
        anyhow::ensure!(
            theirs == ours,
            "{} has other columns than these rows (it has: {theirs}; these have: {ours}): move it away or write elsewhere",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut w = csv::WriterBuilder::new().has_headers(fresh).from_writer(file);
    for row in rows {
        w.serialize(row)?;
    }
    w.flush()?;
    Ok(())
}

/// The first line of an existing CSV file.
fn header_in(path: &Path) -> anyhow::Result<String> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut line = String::new();
    std::io::BufReader::new(file)
        .read_line(&mut line)
        .with_context(|| format!("reading the header of {}", path.display()))?;
    Ok(line.trim_end().to_owned())
}

/// The header line a row writes.
fn header_of<T: Serialize>(row: &T) -> anyhow::Result<String> {
    let mut w = csv::WriterBuilder::new().has_headers(true).from_writer(Vec::new());
    w.serialize(row)?;
    let bytes = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("encoding a header: {}", e.error()))?;
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// Writes serialisable rows to a new CSV file (replacing any), with a header.
pub fn write_rows<T: Serialize>(path: &Path, rows: &[T]) -> anyhow::Result<()> {
    if path.exists() {
        std::fs::remove_file(path).with_context(|| format!("replacing {}", path.display()))?;
    }
    append_rows(path, rows)
}

/// Appends task rows to `path`, with a header when the file is new.
pub fn append_tasks(path: &Path, rows: &[TaskRow]) -> anyhow::Result<()> {
    append_rows(path, rows)
}

/// Writes `<path>.meta.json` beside a result file: the full command line, versions, seed
/// and machine, so every figure can be traced to how it was made.
pub fn write_meta(path: &Path, meta: &RunMeta, seed: Option<u64>) -> anyhow::Result<()> {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".meta.json");
    let sidecar = path.with_file_name(name);
    let command: Vec<String> = std::env::args().collect();
    let json = format!(
        "{{\n  \"timestamp\": {:?},\n  \"git_revision\": {:?},\n  \"host\": {:?},\n  \"cores\": {},\n  \"volley_version\": {:?},\n  \"command\": {:?},\n  \"seed\": {}\n}}\n",
        meta.timestamp,
        meta.git_revision,
        meta.host,
        meta.cores,
        volley_proto::VERSION,
        command.join(" "),
        seed.map(|s| s.to_string()).unwrap_or_else(|| "null".into())
    );
    std::fs::write(&sidecar, json).with_context(|| format!("writing {}", sidecar.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Narrow {
        rate: f64,
        p50_ms: f64,
    }

    #[derive(Serialize)]
    struct Wide {
        rate: f64,
        p50_ms: f64,
        point: String,
    }

    #[test]
    fn rows_of_other_columns_are_refused_and_the_file_is_left_whole() {
        let dir = std::env::temp_dir().join(format!("volley-append-{}", std::process::id()));
        let path = dir.join("rows.csv");
        let _ = std::fs::remove_file(&path);
        let narrow = |rate| Narrow { rate, p50_ms: 0.25 };
        append_rows(&path, &[narrow(1000.0)]).expect("a new file");
        append_rows(&path, &[narrow(5000.0)]).expect("the same columns");
        let wide = Wide {
            rate: 9000.0,
            p50_ms: 0.3,
            point: "highest".into(),
        };
        let refused = append_rows(&path, &[wide]).expect_err("other columns");
        assert!(refused.to_string().contains("other columns"), "{refused}");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "rate,p50_ms\n1000.0,0.25\n5000.0,0.25\n");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
