//! `client plot`: charts of result files, as PNG and SVG.

use std::path::PathBuf;

/// `client plot` flags.
#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// A performance CSV (weak and strong scaling charts).
    pub csv: Option<PathBuf>,
    /// Per-task records (stage breakdown and latency CDFs).
    #[arg(long)]
    pub tasks: Option<PathBuf>,
    /// Open-loop results (heatmaps of the grid).
    #[arg(long)]
    pub load: Option<PathBuf>,
    /// A replay's per-invocation records (replay.csv).
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// A results database: CPU and memory over time of a run's processes.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// With --db: the run (default: the newest).
    #[arg(long, requires = "db")]
    pub run: Option<i64>,
    /// Where the charts go.
    #[arg(long, default_value = "plots")]
    pub out: PathBuf,
}

/// Draws every chart the given files allow.
pub fn run(a: &PlotArgs) -> anyhow::Result<i32> {
    let files_given = a.csv.is_some() || a.tasks.is_some() || a.load.is_some() || a.replay.is_some();
    anyhow::ensure!(
        files_given || a.db.is_some(),
        "nothing to plot: give a performance CSV, --tasks, --load, --replay or --db"
    );
    let mut files = if files_given {
        crate::plot::plot_all(
            a.csv.as_deref(),
            a.tasks.as_deref(),
            a.load.as_deref(),
            a.replay.as_deref(),
            &a.out,
        )?
    } else {
        Vec::new()
    };
    if let Some(path) = &a.db {
        use crate::results::{html, ResultsDb};
        let db = ResultsDb::open_read_only(path)?;
        let id = html::pick_run(&db, a.run)?;
        let (start, end) = html::run_span(&db, id)?;
        let bucket_ms = ((end - start) / 120).max(100);
        let (cpu, rss) = html::telemetry_series(&db, id, start, bucket_ms)?;
        anyhow::ensure!(!cpu.is_empty(), "run {id} has no process samples");
        let x = "seconds into the run";
        let title = format!("CPU per role, run {id}");
        crate::plot::plot_lines(
            &a.out,
            &format!("process-cpu-run{id}"),
            (&title, x, "% of one core"),
            cpu,
            &mut files,
        )?;
        let title = format!("Resident memory per role, run {id}");
        crate::plot::plot_lines(
            &a.out,
            &format!("process-rss-run{id}"),
            (&title, x, "MiB"),
            rss,
            &mut files,
        )?;
    }
    println!("{} charts written to {}", files.len() / 2, a.out.display());
    Ok(0)
}
