//! What every benchmark command does around its run: checks `--db` and `--assert` before
//! anything starts, samples the processes while it runs, and at the end prints the cost
//! per role, judges the assertions and stores the run.

use crate::recording::db::{ResultsDb, RunRecord};
use crate::recording::sampler::{Sampler, Tracker, DEFAULT_HZ};
use crate::recording::tables::RunMeta;
use crate::recording::verdict::{self, Assertion, MetricDef, TELEMETRY_METRICS};
use anyhow::Context;
use std::path::PathBuf;

/// The flags every benchmark command shares.
#[derive(Debug, Clone, clap::Args)]
pub struct ObserveArgs {
    /// Store the run in this SQLite results database (created if absent).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Judge the run: comma-separated `metric<op>value` (e.g. `p99<250ms,failed==0`);
    /// any failure exits 99.
    #[arg(long = "assert")]
    pub assertions: Option<String>,
    /// Process telemetry samples per second (CPU and RSS from /proc).
    #[arg(long, default_value_t = DEFAULT_HZ)]
    pub sample_hz: f64,
}

/// A run being observed.
#[derive(Debug)]
pub struct Observed {
    db: Option<ResultsDb>,
    assertions: Vec<Assertion>,
    sampler: Sampler,
    /// What the run fills in: points, requests, minutes, metrics.
    pub record: RunRecord,
}

impl Observed {
    /// Checks the flags against the metrics this command offers (plus telemetry's), opens
    /// the database, and starts sampling.
    pub fn start(
        kind: &'static str,
        args: &ObserveArgs,
        offered: &[MetricDef],
        seed: Option<u64>,
    ) -> anyhow::Result<Self> {
        if !(args.sample_hz > 0.0 && args.sample_hz <= 1000.0) {
            anyhow::bail!("--sample-hz must be in (0, 1000]");
        }
        let mut all: Vec<MetricDef> = offered.to_vec();
        all.extend_from_slice(TELEMETRY_METRICS);
        let assertions = match &args.assertions {
            Some(list) => verdict::parse(list, &all).map_err(|e| anyhow::anyhow!("--assert {e}"))?,
            None => Vec::new(),
        };
        let db = match &args.db {
            Some(path) => Some(ResultsDb::open(path)?),
            None => None,
        };
        Ok(Self {
            db,
            assertions,
            sampler: Sampler::start(args.sample_hz),
            record: RunRecord::new(kind, RunMeta::collect(), seed),
        })
    }

    /// Where to register the processes the run starts, so they are sampled.
    pub fn sampler(&self) -> &Tracker {
        self.sampler.tracker()
    }

    /// Stops sampling, adds CPU per task (over `tasks`) and peak memory per role to the
    /// metrics, prints them, judges, stores. Returns the exit code the verdict demands.
    pub fn finish(self, tasks: u64, as_json: bool) -> anyhow::Result<Option<i32>> {
        let Self {
            db,
            assertions,
            sampler,
            mut record,
        } = self;
        let telemetry = sampler.finish();
        record.ended_ms = crate::recording::db::unix_ms();
        let roles = telemetry.by_role();
        let per_task = |cpu_s: f64| cpu_s / tasks.max(1) as f64;
        let m = &mut record.metrics;
        let total: f64 = roles.values().map(|r| r.cpu_s).sum();
        m.insert("cpu_per_task".into(), per_task(total));
        for (role, cost) in &roles {
            m.insert(format!("{role}_cpu_per_task"), per_task(cost.cpu_s));
            m.insert(format!("{role}_peak_rss"), cost.peak_rss_bytes as f64);
        }
        let peak = roles.values().map(|r| r.peak_rss_bytes).max().unwrap_or(0);
        m.insert("peak_rss".into(), peak as f64);
        m.insert("sampler_cpu_share".into(), telemetry.sampler_share());
        if !as_json {
            println!(
                "\nprocess cost ({} samples; sampler {:.2}% of a core):",
                telemetry.samples.len(),
                telemetry.sampler_share() * 100.0
            );
            for (role, cost) in &roles {
                println!(
                    "  {role:<10} {:>3} process{} CPU {:>8} per task, {:>8.3} s in all; peak RSS {:.1} MB",
                    cost.processes,
                    if cost.processes == 1 { " " } else { "es" },
                    verdict::show(per_task(cost.cpu_s), verdict::Kind::Time),
                    cost.cpu_s,
                    cost.peak_rss_bytes as f64 / (1024.0 * 1024.0)
                );
            }
        }
        record.samples = telemetry.samples;
        record.assertions = verdict::check(&assertions, &record.metrics);
        let code = if as_json {
            let failed = record.assertions.iter().any(|c| !c.passed);
            failed.then_some(verdict::EXIT_FAILED)
        } else {
            verdict::report(&record.assertions)
        };
        if let Some(mut db) = db {
            let id = db.record(&record)?;
            if !as_json {
                println!("stored as run {id} in {}", db.path().display());
            }
        }
        Ok(code)
    }
}

/// The worse of two exit codes: a failed verdict (99) outranks a run's own failure code.
pub fn exit_code(run: i32, verdict: Option<i32>) -> i32 {
    verdict.unwrap_or(run)
}

/// Samples the Redis server behind `store` too, when it runs on this host (a loopback
/// address) and answers `INFO` with its pid. A remote Redis cannot be read from here, and a
/// redacted URL (`***` for a password) cannot log in: both are skipped, with a note.
pub async fn track_redis(tracker: &Tracker, store: &str) {
    let Some(rest) = store.strip_prefix("redis://") else {
        return;
    };
    let host = rest.rsplit('@').next().unwrap_or(rest);
    let host = host.split(['/', ':']).next().unwrap_or(host);
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") || store.contains("***") {
        eprintln!("note: Redis at {host} is not sampled (not on this host, or its password is not known here)");
        return;
    }
    match redis_pid(store).await {
        Ok(pid) => tracker.track("redis", pid, false),
        Err(e) => eprintln!("note: Redis is not sampled: {e:#}"),
    }
}

/// Reads Redis's own pid (`INFO server`), so its CPU and memory can be sampled.
pub async fn redis_pid(url: &str) -> anyhow::Result<u32> {
    let client = redis::Client::open(url).context("parsing the Redis URL")?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .context("INFO server without process_id")
}
