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
    /// Where the charts go.
    #[arg(long, default_value = "plots")]
    pub out: PathBuf,
}

/// Draws every chart the given files allow.
pub fn run(a: &PlotArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(
        a.csv.is_some() || a.tasks.is_some() || a.load.is_some() || a.replay.is_some(),
        "nothing to plot: give a performance CSV, --tasks, --load or --replay"
    );
    let files = crate::plot::plot_all(
        a.csv.as_deref(),
        a.tasks.as_deref(),
        a.load.as_deref(),
        a.replay.as_deref(),
        &a.out,
    )?;
    println!("{} charts written to {}", files.len() / 2, a.out.display());
    Ok(0)
}
