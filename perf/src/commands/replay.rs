//! `client replay`: an Azure-schema trace replayed open loop against a dispatcher.

use crate::recording::db::{MinuteRow as DbMinute, RequestRow};
use crate::recording::observe::{ObserveArgs, Observed};
use crate::recording::verdict::{Kind, MetricDef};
use crate::studies::replay::elastic::{self, ElasticArgs, PoolWatch};
use crate::studies::replay::records::Summary;
use crate::studies::replay::run::{self, ReplaySpec, Replayed};
use crate::studies::replay::{select, Granularity, Iat, ScheduleSpec, Trace};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use volley_client::commands::Target;
use volley_proto::api;
use volley_proto::Mode;
use volley_testbed::cluster::{Cluster, ClusterSpec};

/// `client replay` flags.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Folder with invocations.csv, durations.csv and memory.csv (Azure 2019 schema).
    #[arg(long)]
    pub trace: PathBuf,
    /// Whether the count columns are minutes or seconds.
    #[arg(long, default_value = "minute")]
    pub granularity: Granularity,
    /// A sample of N functions, stratified by invocation rate.
    #[arg(long, conflicts_with = "function_ids")]
    pub functions: Option<usize>,
    /// A file of HashFunction ids to replay, one a line.
    #[arg(long)]
    pub function_ids: Option<PathBuf>,
    /// Trace minutes A..B (end exclusive), e.g. 540..560.
    #[arg(long)]
    pub minutes: Option<String>,
    /// Spacing inside a minute: equidistant, uniform or exponential.
    #[arg(long, default_value = "exponential")]
    pub iat: Iat,
    /// A random phase per function.
    #[arg(long)]
    pub shift: bool,
    /// Divide every time and duration by X.
    #[arg(long, default_value_t = 1.0)]
    pub compress: f64,
    /// Run each invocation as sleep (default: fits many functions on few cores) or spin.
    #[arg(long, default_value = "sleep", value_parser = ["sleep", "spin"])]
    pub emulate: String,
    /// The most memory one invocation touches, MiB.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(0..=4096))]
    pub max_memory_mb: u64,
    /// Seed of the schedule, the sample and the drawn work.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Leading minutes sent but not judged.
    #[arg(long, default_value_t = 0)]
    pub warmup_minutes: usize,
    /// How long to wait for results after the last intended send.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Run every invocation on this deployed function (`client deploy`; its latest
    /// version), which gets the invocation's drawn `{"ms": …, "mb": …}` as its event;
    /// against the running dispatcher only.
    #[arg(long, conflicts_with = "cluster")]
    pub function: Option<String>,
    /// Replay even if the offered work exceeds the cluster's slots.
    #[arg(long)]
    pub force: bool,
    /// Start a cluster MODE:WORKERS:SLOTS for the replay instead of using --dispatcher.
    #[arg(long)]
    pub cluster: Option<String>,
    /// One row per invocation.
    #[arg(long, default_value = "replay.csv")]
    pub out: PathBuf,
    /// One row per minute.
    #[arg(long, default_value = "replay-minutes.csv")]
    pub minutes_out: PathBuf,
    /// The summary and verdict, as JSON.
    #[arg(long, default_value = "replay.json")]
    pub summary: PathBuf,
    /// An elastic pool instead of a fixed one.
    #[command(flatten)]
    pub elastic: ElasticArgs,
    /// Results database, verdicts, telemetry.
    #[command(flatten)]
    pub observe: ObserveArgs,
}

/// What a replay can be judged on.
pub const METRICS: &[MetricDef] = &[
    MetricDef::new("p50", Kind::Time, "median latency from the intended send"),
    MetricDef::new("p90", Kind::Time, "90th percentile"),
    MetricDef::new("p99", Kind::Time, "99th percentile"),
    MetricDef::new("p999", Kind::Time, "99.9th percentile"),
    MetricDef::new(
        "slowdown_p99",
        Kind::Number,
        "99th percentile latency / requested duration",
    ),
    MetricDef::new("achieved_rate", Kind::Fraction, "completed rate / offered rate"),
    MetricDef::new(
        "failure_rate",
        Kind::Fraction,
        "failed, refused, unfinished or unknown / scheduled",
    ),
    MetricDef::new("completed", Kind::Number, "invocations completed"),
    MetricDef::new("failed", Kind::Number, "invocations failed"),
    MetricDef::new("late_sends", Kind::Number, "invocations sent more than 1 ms late"),
    MetricDef::new(
        "cold_starts",
        Kind::Number,
        "invocations that waited for an instance start (--autoscale)",
    ),
    MetricDef::new("cold_pct", Kind::Fraction, "cold starts / completed (--autoscale)"),
    MetricDef::new(
        "idle_instance_s",
        Kind::Number,
        "instance-seconds registered and idle (--autoscale)",
    ),
    MetricDef::new("instance_starts", Kind::Number, "instances started (--autoscale)"),
];

fn measures(s: &Summary) -> BTreeMap<String, f64> {
    [
        ("p50", s.p50_ms / 1e3),
        ("p90", s.p90_ms / 1e3),
        ("p99", s.p99_ms / 1e3),
        ("p999", s.p999_ms / 1e3),
        ("slowdown_p99", s.slowdown_p99),
        ("achieved_rate", s.achieved_rate / s.offered_rate.max(1e-9)),
        ("failure_rate", s.failure_rate),
        ("completed", s.completed as f64),
        ("failed", s.failed as f64),
        ("late_sends", s.late_sends as f64),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The database's rows of a replay: invocations with Unix times, and the minutes.
fn rows(r: &Replayed) -> (Vec<RequestRow>, Vec<DbMinute>) {
    let at = |us: u64| r.start_unix_us + us;
    let requests = r
        .invocations
        .iter()
        .map(|i| RequestRow {
            function: i.function.clone(),
            state: i.state,
            intended_us: Some(at(i.intended_us)),
            submitted_us: i.sent_us.map(at),
            completed_us: i.completed_us.map(at),
            latency_us: i.completed_us.map(|c| c.saturating_sub(i.intended_us)),
            run_us: i.actual_ms.map(|ms| (ms * 1e3) as u64),
            worker: (!i.worker.is_empty()).then(|| i.worker.clone()),
            error: (!i.error.is_empty()).then(|| i.error.clone()),
            ..Default::default()
        })
        .collect();
    let minutes = r
        .minutes
        .iter()
        .enumerate()
        .map(|(k, m)| DbMinute {
            minute: m.minute.parse().unwrap_or(k as i64),
            target: m.target,
            issued: m.issued,
            completed: m.completed,
            failed: m.failed,
            late: m.late,
        })
        .collect();
    (requests, minutes)
}

fn parse_cluster(text: &str) -> anyhow::Result<(Mode, usize, u32)> {
    let parts: Vec<&str> = text.split(':').collect();
    let [mode, workers, slots] = parts.as_slice() else {
        anyhow::bail!("--cluster takes MODE:WORKERS:SLOTS, e.g. pull:2:4, not '{text}'");
    };
    let mode: Mode = mode.parse().map_err(|e| anyhow::anyhow!("--cluster: {e}"))?;
    let workers = workers
        .parse()
        .map_err(|_| anyhow::anyhow!("--cluster: '{workers}' is not a worker count"))?;
    let slots: u32 = slots
        .parse()
        .map_err(|_| anyhow::anyhow!("--cluster: '{slots}' is not a slot count"))?;
    anyhow::ensure!(slots > 0, "--cluster: a worker needs at least one slot");
    Ok((mode, workers, slots))
}

/// Runs the replay; exits 1 when the verdict fails.
pub async fn run(target: &Target, a: &ReplayArgs, as_json: bool) -> anyhow::Result<i32> {
    let mut observed = Observed::start("replay", &a.observe, METRICS, Some(a.seed))?;
    anyhow::ensure!(
        a.function.is_none() || a.elastic.autoscale.is_none(),
        "--function replays onto the running dispatcher; an elastic pool it starts has no deployed function"
    );
    if let Some(policy) = &a.elastic.autoscale {
        policy
            .parse::<volley_dispatcher::scaler::PolicySpec>()
            .map_err(|e| anyhow::anyhow!("--autoscale {e}"))?;
    }
    let trace = Trace::read(&a.trace, a.granularity)?;
    for s in &trace.skipped {
        eprintln!("skipped function {} (missing from {})", s.key.2, s.missing_from);
    }
    let window = select::window(&trace, a.minutes.as_deref())?;
    anyhow::ensure!(
        a.warmup_minutes < window.len(),
        "--warmup-minutes {} leaves nothing to measure in {} minutes",
        a.warmup_minutes,
        window.len()
    );
    let functions = match &a.function_ids {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            select::by_ids(&trace, &text)?
        }
        None => select::sample(&trace, window.clone(), a.functions, a.seed),
    };
    anyhow::ensure!(!functions.is_empty(), "no function to replay");
    let spec = ReplaySpec {
        schedule: ScheduleSpec {
            window: window.clone(),
            iat: a.iat,
            shift: a.shift,
            compress: a.compress,
            seed: a.seed,
        },
        spin: a.emulate == "spin",
        max_memory_mb: a.max_memory_mb,
        warmup_columns: a.warmup_minutes,
        drain: a.drain,
        function: a.function.clone(),
    };

    let cluster = match (&a.cluster, &a.elastic.autoscale) {
        (_, Some(policy)) => Some(Cluster::start(a.elastic.cluster(policy)?).await?),
        (Some(text), None) => {
            let (mode, workers, slots) = parse_cluster(text)?;
            let (procs, slots) = if mode == Mode::Local {
                (0, workers as u32 * slots)
            } else {
                (workers, slots)
            };
            Some(Cluster::start(ClusterSpec::new(mode, procs, slots).label("replay").log_level("warn")).await?)
        }
        (None, None) => None,
    };
    if let Some(c) = &cluster {
        observed.sampler().track_cluster(c);
    }
    let client = match &cluster {
        Some(c) => c.connect().await?,
        None => target.connect().await?,
    };

    // The offered work, against the cluster's slots, before anything is sent.
    let planned = run::prepare(&trace, &functions, &spec)?;
    let seconds = window.len() as f64 * trace.granularity.seconds() as f64;
    let busy = run::busy_slots(&planned, seconds, a.compress);
    let info = client
        .clone()
        .cluster_info(api::ClusterInfoRequest {})
        .await
        .map_err(|s| volley_client::commands::status_error("ClusterInfo", s))?
        .into_inner();
    if cluster.is_none() {
        observed.sampler().track_reported(&info);
        crate::recording::observe::track_redis(observed.sampler(), &info.store).await;
    }
    let slots: u64 = match &a.elastic.autoscale {
        Some(_) => u64::from(a.elastic.max_instances) * u64::from(a.elastic.instance_slots),
        None => info.workers.iter().map(|w| u64::from(w.slots)).sum(),
    };
    let touched_mb: u64 = planned.iter().map(|p| p.mb).sum();
    eprintln!(
        "replaying {} functions, {} invocations over {} trace minutes in {:.0} s: {:.2} busy slots of work on {slots} slots, \
         {:.0} MiB of memory touched per second (fresh pages cost a worker up to 0.65 ms of CPU a MiB here)",
        functions.len(),
        planned.len(),
        window.len(),
        seconds / a.compress,
        busy,
        touched_mb as f64 / (seconds / a.compress).max(1e-9)
    );
    if busy > slots as f64 && !a.force {
        if let Some(c) = cluster {
            c.stop().await?;
        }
        anyhow::bail!(
            "the replay offers {busy:.2} busy slots of work but the cluster has {slots} slots: it cannot keep up \
             (lower --compress, sample fewer --functions, add workers, or --force)"
        );
    }
    let watch = a
        .elastic
        .autoscale
        .is_some()
        .then(|| PoolWatch::start(client.clone(), Duration::from_millis(200)));
    let began = std::time::Instant::now();
    let replayed = run::replay(&client, &trace, &functions, &spec, &planned).await;
    let wall = began.elapsed();
    // The pool's accounting, read before the cluster goes.
    let pool = match watch {
        Some(watch) => {
            let info = client.clone().cluster_info(api::ClusterInfoRequest {}).await;
            Some((PoolWatch::peak(&watch.stop()), info))
        }
        None => None,
    };
    if let Some(c) = cluster {
        c.stop().await?;
    }
    let replayed = replayed?;
    if let (Some(policy), Some((peak, info))) = (&a.elastic.autoscale, pool) {
        let info = info
            .map_err(|s| volley_client::commands::status_error("ClusterInfo", s))?
            .into_inner();
        let row = elastic::live_row(policy, &replayed.invocations, &info, peak, wall)?;
        println!("elastic pool, live: {}", row.line());
        if let Some(path) = &a.elastic.policy_out {
            crate::recording::tables::append_rows(path, std::slice::from_ref(&row))?;
        }
        observed.record.metrics.extend([
            ("cold_starts".to_owned(), row.cold_starts as f64),
            ("cold_pct".to_owned(), row.cold_pct / 100.0),
            ("idle_instance_s".to_owned(), row.idle_instance_s),
            ("instance_starts".to_owned(), row.instance_starts as f64),
        ]);
    }

    crate::recording::tables::write_meta(&a.out, &crate::recording::tables::RunMeta::collect(), Some(a.seed))?;
    crate::recording::tables::write_rows(&a.out, &replayed.invocations)?;
    crate::recording::tables::write_rows(&a.minutes_out, &replayed.minutes)?;
    let s = &replayed.summary;
    std::fs::write(&a.summary, serde_json::to_string_pretty(s)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.summary.display()))?;
    if as_json {
        println!("{}", serde_json::to_string(s)?);
    } else {
        println!(
            "{} scheduled, {} issued: {} completed, {} failed, {} refused, {} unfinished, {} unknown",
            s.scheduled, s.issued, s.completed, s.failed, s.refused, s.unfinished, s.unknown
        );
        println!(
            "offered {:.1}/s, completed {:.1}/s; latency p50 {:.1} ms, p99 {:.1}, p99.9 {:.1}; slowdown p50 {:.2}, p99 {:.2}",
            s.offered_rate, s.achieved_rate, s.p50_ms, s.p99_ms, s.p999_ms, s.slowdown_p50, s.slowdown_p99
        );
        println!(
            "{} late sends, lateness p99 {:.2} ms; generator CPU {:.2} s; records in {}, {}, {}",
            s.late_sends,
            s.lateness_p99_ms,
            s.generator_cpu_s,
            a.out.display(),
            a.minutes_out.display(),
            a.summary.display()
        );
    }
    for w in &s.verdict.warnings {
        eprintln!("warning: {w}");
    }
    for f in &s.verdict.failures {
        eprintln!("FAILED: {f}");
    }
    let own = if s.verdict.pass { 0 } else { 1 };
    observed.record.metrics.extend(measures(s));
    (observed.record.requests, observed.record.minutes) = rows(&replayed);
    let verdict = observed.finish(s.completed, as_json)?;
    Ok(crate::recording::observe::exit_code(own, verdict))
}
