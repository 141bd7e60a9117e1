//! `client runs`, `client compare` and `client report`: reading the results database.

use crate::presentation::html;
use crate::recording::db::{compare, ResultsDb};
use std::path::PathBuf;

/// `client runs` flags.
#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// The results database.
    #[arg(long, default_value = "results.sqlite")]
    pub db: PathBuf,
}

/// `client compare` flags.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The baseline run's id.
    pub a: i64,
    /// The run compared with it.
    pub b: i64,
    /// The results database.
    #[arg(long, default_value = "results.sqlite")]
    pub db: PathBuf,
}

/// `client report` flags.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The results database.
    #[arg(long, default_value = "results.sqlite")]
    pub db: PathBuf,
    /// The run (default: the newest).
    #[arg(long)]
    pub run: Option<i64>,
    /// The HTML file to write.
    #[arg(long, default_value = "report.html")]
    pub out: PathBuf,
}

/// Writes one run's HTML report.
pub fn report(a: &ReportArgs) -> anyhow::Result<i32> {
    let db = ResultsDb::open_read_only(&a.db)?;
    let id = html::pick_run(&db, a.run)?;
    let page = html::render(&db, id)?;
    std::fs::write(&a.out, page).map_err(|e| anyhow::anyhow!("writing {}: {e}", a.out.display()))?;
    println!("run {id} written to {}", a.out.display());
    Ok(0)
}

/// Lists every run.
pub fn list(a: &RunsArgs, as_json: bool) -> anyhow::Result<i32> {
    let db = ResultsDb::open_read_only(&a.db)?;
    let runs = compare::runs(&db)?;
    if as_json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&runs)?))?;
        return Ok(0);
    }
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>4}  {:<7} {:<20} {:>9}  {:<9} {:<7} command",
        "id", "kind", "started", "seconds", "revision", "verdict"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "{:>4}  {:<7} {:<20} {:>9.1}  {:<9} {:<7} {}",
            r.id,
            r.kind,
            r.started_at,
            r.seconds,
            r.revision,
            r.verdict.as_deref().unwrap_or("-"),
            r.command
        );
    }
    emit(&out)?;
    Ok(0)
}

/// Writes a listing to stdout; a reader that stopped early (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Compares two runs.
pub fn run_compare(a: &CompareArgs, as_json: bool) -> anyhow::Result<i32> {
    let db = ResultsDb::open_read_only(&a.db)?;
    let deltas = compare::compare(&db, a.a, a.b)?;
    if as_json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&deltas)?))?;
    } else {
        emit(&compare::render(a.a, a.b, &deltas))?;
    }
    Ok(0)
}
