//! `client load`: open-loop load at a target rate; with `--find-max`, the highest rate that
//! meets an SLO; with `--grid`, the rate × spin × arrival study; with `--curve`, CPU per
//! task by role against the offered rate.

mod curve;
pub(crate) use curve::parse_rates;
mod find_max;

use crate::recording::observe::{ObserveArgs, Observed};
use crate::recording::sampler::Tracker;
use crate::recording::verdict::{Kind, MetricDef};
use crate::studies::load::slo::Slo;
use crate::studies::load::transport::Transport;
use crate::studies::load::{self as open_loop, Arrival, GridSpec, LoadResult, LoadSpec, Shape};
use crate::workload::OpType;
use std::collections::BTreeMap;
use std::time::Duration;
use volley_client::commands::Target;
use volley_proto::api;
use volley_proto::Mode;

/// `client load` flags.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Target requests per second (single run).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// uniform or poisson arrivals (single run and --find-max).
    #[arg(long, default_value = "poisson")]
    pub arrival: Arrival,
    /// noop, sleep or spin.
    #[arg(long, default_value = "spin")]
    pub optype: OpType,
    /// Send tasks of this deployed function (`client deploy`) instead of --optype; the
    /// latest version runs. Against the running dispatcher only (not --fresh, --grid).
    #[arg(long, conflicts_with_all = ["grid", "fresh"])]
    pub function: Option<String>,
    /// With --function: every request's arguments, a JSON text.
    #[arg(long, default_value = "", requires = "function")]
    pub args: String,
    /// Task duration, ms (sleep and spin).
    #[arg(long, default_value_t = 100)]
    pub task_ms: u64,
    /// How requests travel: stream-with-outcome (one ExecuteStream call carries every
    /// request and result; each acceptance comes with the next outcome, one wake-up of
    /// the generator per quick task instead of two), stream (acceptances at once), or
    /// unary (ExecuteBatch per due batch, results from WatchResults). Following a list of
    /// dispatchers (--ha), acceptances come at once.
    #[arg(long, value_enum, default_value = "stream-with-outcome")]
    pub transport: Transport,
    /// How long to send (e.g. 30s, 12m).
    #[arg(long = "for", default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Requests intended before this are sent but not measured.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Wait this long after the last send for results; what has none then is reported
    /// as unfinished (never as failed).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Seed of the arrival process.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Judge the run (or each probe, or each point of the curve and its search for the
    /// highest rate) by this SLO, e.g. 'p99<50ms,success>=0.999'; a single run that
    /// misses it exits 1.
    #[arg(long)]
    pub slo: Option<Slo>,
    /// Find the highest offered rate that meets --slo, by bisection over --rates lo..hi.
    #[arg(long, requires = "slo", conflicts_with = "grid")]
    pub find_max: bool,
    /// --find-max: probes at most.
    #[arg(long, default_value_t = 10)]
    pub max_probes: usize,
    /// --find-max without --fresh: the pause after the dispatcher's queue empties.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub cool_down: Duration,
    /// Run the rate × spin × arrival grid on clusters started per cell.
    #[arg(long)]
    pub grid: bool,
    /// Draw the CPU curve: CPU per task of the generator, the dispatcher and the workers
    /// at each of --rates (default 1000,5000,20000,40000,80000), noop tasks, for each of
    /// --curve-modes and --curve-shapes, each point --for long, then the highest rate each
    /// cluster sustains (--curve-probes); writes cpu-curve.csv and its charts beside --out.
    #[arg(long, conflicts_with_all = ["grid", "find_max", "function", "fresh"])]
    pub curve: bool,
    /// --curve: the modes.
    #[arg(long, value_delimiter = ',', default_value = "pull,push")]
    pub curve_modes: Vec<Mode>,
    /// --curve: cluster shapes, WORKERSxSLOTS.
    #[arg(long, default_value = "1x1,1x8")]
    pub curve_shapes: String,
    /// --curve: after the listed rates, search each cluster for the highest rate that
    /// meets --slo (default 'p99<50ms,success>=0.999'), to within 10 %, with at most this
    /// many more runs; 0: no search.
    #[arg(long, default_value_t = 6)]
    pub curve_probes: usize,
    /// --curve: the top of that search when every listed rate meets the SLO, requests/s.
    #[arg(long, default_value_t = 300_000.0)]
    pub curve_up_to: f64,
    /// --curve: a probe of that search that fails while the hypervisor steals at least
    /// this share of the machine's CPU time, percent, runs once more.
    #[arg(long, default_value_t = 2.0)]
    pub curve_retry_steal: f64,
    /// Rates: the grid's list (default 5,10,…,50) or --find-max's range (default 1000..100000).
    #[arg(long)]
    pub rates: Option<String>,
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
    pub cell: Duration,
    /// Grid: warm-up per cell.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub cell_warmup: Duration,
    /// Grid: wait for results per cell.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub cell_drain: Duration,
    /// Start a fresh cluster (--mode, --workers, --slots) for every run instead of using
    /// --dispatcher (the grid always does).
    #[arg(long)]
    pub fresh: bool,
    /// Fresh clusters: mode.
    #[arg(long, default_value = "push")]
    pub mode: Mode,
    /// Fresh clusters: workers.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Fresh clusters: slots per worker (at least 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub slots: u32,
    /// Result rows (one per run, cell or probe).
    #[arg(long, default_value = "load.csv")]
    pub out: std::path::PathBuf,
    /// Results database, verdicts, telemetry.
    #[command(flatten)]
    pub observe: ObserveArgs,
}

/// What a single load run can be judged on.
pub const METRICS: &[MetricDef] = &[
    MetricDef::new("p50", Kind::Time, "median latency from the intended send"),
    MetricDef::new("p90", Kind::Time, "90th percentile"),
    MetricDef::new("p99", Kind::Time, "99th percentile"),
    MetricDef::new("max", Kind::Time, "largest latency"),
    MetricDef::new("mean", Kind::Time, "mean latency"),
    MetricDef::new("send_p99", Kind::Time, "99th percentile from the actual send"),
    MetricDef::new("achieved_rate", Kind::Fraction, "completed rate / target rate"),
    MetricDef::new("offered_rate", Kind::Number, "requests sent per second"),
    MetricDef::new("completed_rate", Kind::Number, "results completed per second"),
    MetricDef::new("success", Kind::Fraction, "share of measured requests completed"),
    MetricDef::new("completed", Kind::Number, "requests completed"),
    MetricDef::new("failed", Kind::Number, "requests failed"),
    MetricDef::new("refused", Kind::Number, "requests refused at submission"),
    MetricDef::new("unfinished", Kind::Number, "requests with no result after the drain"),
    MetricDef::new("late_sends", Kind::Number, "requests sent late"),
];

/// A single run's measures, in seconds and fractions.
pub fn measures(r: &LoadResult) -> BTreeMap<String, f64> {
    let ms = |v: f64| v / 1e3;
    [
        ("p50", ms(r.p50_ms)),
        ("p90", ms(r.p90_ms)),
        ("p99", ms(r.p99_ms)),
        ("max", ms(r.max_ms)),
        ("mean", ms(r.mean_ms)),
        ("send_p99", ms(r.send_p99_ms)),
        ("achieved_rate", r.completed_rate / r.target_rate.max(1e-9)),
        ("offered_rate", r.offered_rate),
        ("completed_rate", r.completed_rate),
        ("success", r.success_rate),
        ("completed", r.completed as f64),
        ("failed", r.failed as f64),
        ("refused", r.refused as f64),
        ("unfinished", r.unfinished as f64),
        ("late_sends", r.late_sends as f64),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl LoadArgs {
    fn spec(&self, rate: f64) -> LoadSpec {
        LoadSpec {
            rate,
            arrival: self.arrival,
            optype: self.optype,
            task_ms: self.task_ms,
            duration: self.duration,
            warmup: self.warmup,
            drain: self.drain,
            seed: self.seed,
            function: self.function.clone().map(|f| (f, self.args.clone())),
            transport: self.transport,
            follow: None,
        }
    }

    fn shape(&self) -> Shape {
        Shape {
            mode: self.mode,
            workers: self.workers,
            slots: self.slots,
        }
    }

    /// One run at `rate`, on a fresh cluster or against the target, its processes
    /// followed by `sampler`.
    async fn once(&self, target: &Target, rate: f64, sampler: Option<&Tracker>) -> anyhow::Result<LoadResult> {
        let mut r = if self.fresh {
            self.shape()
                .run_observed(&format!("load-{rate}"), &self.spec(rate), sampler)
                .await?
        } else {
            let mut client = target.connect().await?;
            if let Some(s) = sampler {
                if let Ok(info) = client.cluster_info(api::ClusterInfoRequest {}).await {
                    s.track_reported(info.get_ref());
                    crate::recording::observe::track_redis(s, &info.get_ref().store).await;
                }
            }
            let mut spec = self.spec(rate);
            // A list of dispatchers under --ha: follow the leader through a failover.
            spec.follow = target.url.contains(',').then(|| target.clone());
            // Through a failover, an acceptance still held when the call broke would leave
            // its request's fate unknown where it could have been known.
            if spec.follow.is_some() && spec.transport == Transport::StreamWithOutcome {
                spec.transport = Transport::Stream;
            }
            open_loop::run(&client, &spec).await?
        };
        if let Some(slo) = &self.slo {
            r.verdict = slo.judge(&r).label();
        }
        crate::recording::tables::write_meta(
            &self.out,
            &crate::recording::tables::RunMeta::collect(),
            Some(self.seed),
        )?;
        open_loop::append(&self.out, std::slice::from_ref(&r))?;
        Ok(r)
    }
}

/// Runs the load, the search or the grid, and appends its rows.
pub async fn run(target: &Target, a: LoadArgs, as_json: bool) -> anyhow::Result<i32> {
    anyhow::ensure!(a.warmup < a.duration, "--warmup must be shorter than --for");
    anyhow::ensure!(
        a.observe.assertions.is_none() || !(a.grid || a.find_max),
        "--assert judges a single run; --find-max and --grid search with --slo instead"
    );
    if a.curve {
        return curve::curve(&a).await;
    }
    let mut observed = Observed::start("load", &a.observe, METRICS, Some(a.seed))?;
    if a.find_max {
        let code = find_max::find_max(target, &a, as_json, &mut observed).await?;
        let tasks = observed
            .record
            .requests
            .iter()
            .filter(|q| q.state == "completed")
            .count();
        observed.finish(tasks as u64, as_json)?;
        return Ok(code);
    }
    if a.grid {
        let rates = match &a.rates {
            Some(text) => curve::parse_rates(text).map_err(|e| anyhow::anyhow!("the grid takes {e}"))?,
            None => (1..=10).map(|i| 5.0 * i as f64).collect(),
        };
        let spec = GridSpec {
            rates,
            spins: a.spins.clone(),
            arrivals: a.arrivals.clone(),
            shape: a.shape(),
            cell: a.cell,
            warmup: a.cell_warmup,
            drain: a.cell_drain,
            seed: a.seed,
        };
        let mut results =
            crate::studies::load::grid::run_grid_observed(&spec, &a.out, Some(observed.sampler())).await?;
        for r in &mut results {
            observed.record.requests.append(&mut r.records);
        }
        results.iter().for_each(|r| print(r, as_json));
        println!("{} result row(s) appended to {}", results.len(), a.out.display());
        let tasks = results.iter().map(|r| r.completed).sum();
        observed.finish(tasks, as_json)?;
        return Ok(0);
    }
    let mut r = a.once(target, a.rate, Some(observed.sampler())).await?;
    print(&r, as_json);
    println!("1 result row appended to {}", a.out.display());
    observed.record.metrics = measures(&r);
    observed.record.requests = std::mem::take(&mut r.records);
    let verdict = observed.finish(r.completed, as_json)?;
    if r.unknown > 0 {
        eprintln!(
            "error: the dispatcher no longer knows {} of the tasks it accepted; their outcome cannot be known",
            r.unknown
        );
        return Ok(2);
    }
    let own = if r.verdict.starts_with("fail") { 1 } else { 0 };
    Ok(crate::recording::observe::exit_code(own, verdict))
}

/// A run's summary for a person, or its row as JSON.
pub fn print(r: &LoadResult, as_json: bool) {
    if as_json {
        match serde_json::to_string(r) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("cannot encode a result as JSON: {e}"),
        }
        return;
    }
    let what = if r.task_ms > 0 {
        format!("{} {} ms", r.optype, r.task_ms)
    } else {
        r.optype.clone()
    };
    let off = if r.rate_ok {
        ""
    } else {
        " — OFF TARGET: the generator could not offer the rate"
    };
    println!(
        "{} {what} at {:.0}/s on {}: offered {:.0}/s, completed {:.0}/s over the measured window{off}",
        r.arrival,
        r.target_rate,
        if r.mode.is_empty() { "?" } else { &r.mode },
        r.offered_rate,
        r.completed_rate
    );
    println!(
        "  {} sent: {} completed, {} failed, {} refused, {} unfinished{}",
        r.sent,
        r.completed,
        r.failed,
        r.refused,
        r.unfinished,
        if r.unknown > 0 {
            format!(", {} UNKNOWN", r.unknown)
        } else {
            String::new()
        }
    );
    println!(
        "  latency from intended send: p50 {:.2} ms, p90 {:.2}, p99 {:.2}, max {:.2}; from actual send: p50 {:.2}, p99 {:.2}",
        r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms, r.send_p50_ms, r.send_p99_ms
    );
    println!(
        "  generator: {} late sends (> 1 ms), max lag {:.2} ms, {:.0} ms CPU ({:.1} µs per request)",
        r.late_sends,
        r.max_lag_ms,
        r.generator_cpu_ms,
        r.generator_cpu_ms * 1e3 / r.sent.max(1) as f64
    );
    if r.stream_breaks > 0 {
        println!(
            "  the result stream fell behind {} time(s) ({}); {} results were read back by id",
            r.stream_breaks, r.last_break, r.recovered
        );
    }
    if let (Some(c), Some(f)) = (r.dispatcher_completed, r.dispatcher_failed) {
        let agrees = if r.agrees_with_dispatcher() == Some(true) {
            "consistent"
        } else {
            "INCONSISTENT (another client on this dispatcher?)"
        };
        println!("  the dispatcher counted {c} completed and {f} failed meanwhile: {agrees}");
    }
    if !r.first_error.is_empty() {
        println!("  first error: {}", r.first_error);
    }
    if !r.verdict.is_empty() {
        println!("  SLO: {}", r.verdict);
    }
}
