//! `client load`: open-loop load at a target rate, or the rate × spin × arrival grid.

use crate::load::Arrival;
use crate::workload::OpType;
use volley_client::commands::Target;
use volley_proto::Mode;

/// `client load` flags.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Target requests per second (single cell).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// uniform or poisson arrivals (single cell).
    #[arg(long, default_value = "poisson")]
    pub arrival: Arrival,
    /// noop, sleep or spin.
    #[arg(long, default_value = "spin")]
    pub optype: OpType,
    /// Task duration, ms (single cell).
    #[arg(long, default_value_t = 100)]
    pub task_ms: u64,
    /// How long to send (e.g. 30s, 12m).
    #[arg(long = "for", default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Requests intended before this are not counted.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: std::time::Duration,
    /// Wait this long after the last send for stragglers; unfinished ones are failures.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain: std::time::Duration,
    /// Seed of the arrival process.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Run the rate × spin × arrival grid on clusters started per cell.
    #[arg(long)]
    pub grid: bool,
    /// Grid: rates.
    #[arg(long, value_delimiter = ',', default_value = "5,10,15,20,25,30,35,40,45,50")]
    pub rates: Vec<f64>,
    /// Grid: spin durations, ms.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,200,300,400,500,600,700,800,900,1000"
    )]
    pub spins: Vec<u64>,
    /// Grid: arrival processes.
    #[arg(long, value_delimiter = ',', default_value = "uniform,poisson")]
    pub arrivals: Vec<Arrival>,
    /// Grid: sending time per cell.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub cell: std::time::Duration,
    /// Grid: warm-up per cell.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub cell_warmup: std::time::Duration,
    /// Grid: wait for stragglers per cell.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub cell_drain: std::time::Duration,
    /// Grid: cluster mode.
    #[arg(long, default_value = "push")]
    pub mode: Mode,
    /// Grid: workers.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Grid: slots per worker (at least 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub slots: u32,
    /// Result rows (one per cell).
    #[arg(long, default_value = "load.csv")]
    pub out: std::path::PathBuf,
}

/// Runs the load (or the grid) and appends its rows.
pub async fn run(target: &Target, a: LoadArgs, as_json: bool) -> anyhow::Result<i32> {
    use crate::load::{self as open_loop, GridSpec, LoadSpec};
    let results = if a.grid {
        let spec = GridSpec {
            rates: a.rates,
            spins: a.spins,
            arrivals: a.arrivals,
            mode: a.mode,
            workers: a.workers,
            slots: a.slots,
            cell: a.cell,
            warmup: a.cell_warmup,
            drain: a.cell_drain,
            seed: a.seed,
        };
        open_loop::run_grid(&spec, &a.out).await?
    } else {
        anyhow::ensure!(a.warmup < a.duration, "--warmup must be shorter than --for");
        let client = target.connect().await?;
        let spec = LoadSpec {
            rate: a.rate,
            arrival: a.arrival,
            optype: a.optype,
            task_ms: a.task_ms,
            duration: a.duration,
            warmup: a.warmup,
            drain: a.drain,
            seed: a.seed,
        };
        let r = open_loop::run(&client, &spec).await?;
        crate::report::write_meta(&a.out, &crate::report::RunMeta::collect(), Some(a.seed))?;
        open_loop::append(&a.out, std::slice::from_ref(&r))?;
        vec![r]
    };
    for r in &results {
        if as_json {
            println!("{}", serde_json::to_string(r)?);
        } else {
            println!(
                "{} {:>5.1}/s (achieved {:>5.1}/s{}) {} {:>4} ms: {}/{} ok ({:.1} %), latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms{}",
                r.arrival,
                r.target_rate,
                r.achieved_rate,
                if r.rate_ok { "" } else { ", OFF TARGET" },
                r.optype,
                r.task_ms,
                r.completed,
                r.requests,
                r.success_rate * 100.0,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                r.slowdown_p99.map(|s| format!(", slowdown p99 {s:.2}")).unwrap_or_default()
            );
        }
    }
    println!("{} result row(s) appended to {}", results.len(), a.out.display());
    Ok(0)
}
