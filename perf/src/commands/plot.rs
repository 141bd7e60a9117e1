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
    /// Policy rows (`client simulate`'s sim.csv, `client replay --policy-out`'s rows;
    /// repeat for several files): cold starts against idle instance-time, per policy and
    /// source, simulated and live side by side.
    #[arg(long)]
    pub policies: Vec<PathBuf>,
    /// A CPU curve (`client load --curve`'s cpu-curve.csv): CPU per task by role and
    /// latency against the offered rate, per mode and shape.
    #[arg(long)]
    pub curve: Option<PathBuf>,
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
        files_given || a.db.is_some() || !a.policies.is_empty() || a.curve.is_some(),
        "nothing to plot: give a performance CSV, --tasks, --load, --replay, --curve, --policies or --db"
    );
    let mut files = if files_given {
        crate::presentation::plot::plot_all(
            a.csv.as_deref(),
            a.tasks.as_deref(),
            a.load.as_deref(),
            a.replay.as_deref(),
            &a.out,
        )?
    } else {
        Vec::new()
    };
    if !a.policies.is_empty() {
        plot_policies(&a.policies, &a.out, &mut files)?;
    }
    if let Some(path) = &a.curve {
        let points: Vec<crate::studies::load::curve::CurvePoint> = crate::presentation::plot::read_csv(path)?;
        anyhow::ensure!(!points.is_empty(), "{} holds no curve points", path.display());
        files.extend(crate::presentation::plot::plot_curve(&points, &a.out)?);
    }
    if let Some(path) = &a.db {
        use crate::presentation::html;
        use crate::recording::db::ResultsDb;
        let db = ResultsDb::open_read_only(path)?;
        let id = html::pick_run(&db, a.run)?;
        let (start, end) = html::run_span(&db, id)?;
        let bucket_ms = ((end - start) / 120).max(100);
        let (cpu, rss) = html::telemetry_series(&db, id, start, bucket_ms)?;
        anyhow::ensure!(!cpu.is_empty(), "run {id} has no process samples");
        let x = "seconds into the run";
        let title = format!("CPU per role, run {id}");
        crate::presentation::plot::plot_lines(
            &a.out,
            &format!("process-cpu-run{id}"),
            (&title, x, "% of one core"),
            cpu,
            &mut files,
        )?;
        let title = format!("Resident memory per role, run {id}");
        crate::presentation::plot::plot_lines(
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

#[derive(serde::Deserialize)]
struct PolicyPoint {
    source: String,
    policy: String,
    cold_pct: f64,
    idle_instance_s: f64,
}

/// One point per policy, one line per source (simulated, live): idle instance-seconds
/// against the cold-start share, each policy's figures printed beside.
fn plot_policies(paths: &[PathBuf], out: &std::path::Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let mut rows = csv::Reader::from_reader(body.as_bytes());
        for row in rows.deserialize::<PolicyPoint>() {
            let p = row.map_err(|e| anyhow::anyhow!("{}: not a policy row: {e}", path.display()))?;
            eprintln!(
                "{:<10} {:<14} idle {:>9.1} instance-s, cold {:>6.2} %",
                p.source, p.policy, p.idle_instance_s, p.cold_pct
            );
            match series.iter_mut().find(|(name, _)| *name == p.source) {
                Some((_, points)) => points.push((p.idle_instance_s, p.cold_pct)),
                None => series.push((p.source.clone(), vec![(p.idle_instance_s, p.cold_pct)])),
            }
        }
    }
    // Each source's policies joined from the least idle time to the most: its trade-off curve.
    for (_, points) in &mut series {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    anyhow::ensure!(!series.is_empty(), "the --policies files hold no rows");
    let title = "Cold starts against idle instance-time, one point per policy";
    crate::presentation::plot::plot_lines(
        out,
        "policies",
        (
            title,
            "idle instance-seconds (wasted memory time)",
            "cold starts, % of invocations",
        ),
        series,
        files,
    )
}
