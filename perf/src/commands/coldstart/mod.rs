//! `client coldstart`: the cold-start study on elastic pools it starts itself — scale
//! from zero with the breakdown of every cold start, a burst from nothing to R tasks/s,
//! and that burst at container concurrency 1 and at many; with `--runtimes`, cold starts
//! of user functions per language and way of starting ([`runtimes`]).

mod records;
mod runtimes;

use records::{
    plot_timeline, plot_trials, print_burst, print_trial, record_tasks, summarise_trials, TimelineRow, TrialRow,
};

use crate::recording::observe::{ObserveArgs, Observed};
use crate::recording::verdict::{Kind, MetricDef};
use crate::studies::coldstart::{self, Burst, BurstResult, Pool};
use crate::studies::replay::elastic::PoolSample;
use std::path::PathBuf;
use std::time::Duration;
use volley_proto::Mode;

/// `client coldstart` flags.
#[derive(Debug, clap::Args)]
pub struct ColdstartArgs {
    /// Which parts: zero (scale from zero), burst, concurrency (the burst at one slot
    /// per instance and at --many-slots), runtimes (user functions per language);
    /// comma-separated. Default: runtimes when --runtimes is given, else the other three.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,
    /// The languages of the runtimes scenario: python, node, java, native.
    #[arg(long, value_delimiter = ',', value_parser = parse_language)]
    pub runtimes: Vec<volley_proto::function::Language>,
    /// How the runtimes scenario's instances start their runtime: fresh (a new worker
    /// forked from the worker template), fresh-exec (a new worker exec'd), ready-worker (a
    /// fresh runtime in a worker started ahead), prewarm (stem cells with runtimes up),
    /// fork (Python's fork server); each where the language allows.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fresh,fresh-exec,ready-worker,prewarm,fork"
    )]
    pub starts: Vec<crate::studies::coldstart::runtimes::StartWay>,
    /// The runtimes scenario's handlers: empty, heavy (a heavy import first).
    #[arg(long, value_delimiter = ',', default_value = "empty,heavy")]
    pub handlers: Vec<crate::studies::coldstart::languages::Handler>,
    /// One row per trial of the runtimes scenario.
    #[arg(long, default_value = "coldstart-runtimes.csv")]
    pub runtimes_out: PathBuf,
    /// The warm scenario's rates, tasks/s, each a window of --warm-for after a warm-up.
    #[arg(long, value_delimiter = ',', default_value = "50,500,5000")]
    pub warm_rates: Vec<f64>,
    /// The warm scenario's measured window per rate.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub warm_for: Duration,
    /// One row per runtime, slots per instance and rate of the warm scenario.
    #[arg(long, default_value = "coldstart-warm.csv")]
    pub warm_out: PathBuf,
    /// The dispatcher's mode.
    #[arg(long, default_value = "push", value_parser = parse_mode)]
    pub mode: Mode,
    /// Emulated runtime start-up of every instance, ms.
    #[arg(long, default_value_t = 250)]
    pub init_ms: u64,
    /// Scale-from-zero trials.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub trials: u64,
    /// Keep-alive of the scale-from-zero pool: each trial starts after the pool has been
    /// idle at least this long and retired its instance.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub keepalive: Duration,
    /// The task of the scale-from-zero trials.
    #[arg(long, default_value = "noop")]
    pub task: String,
    /// The burst's policy (its target is set to the slots per instance when not given).
    #[arg(long, default_value = "kpa")]
    pub policy: String,
    /// The burst's rate, tasks/s, from zero.
    #[arg(long, default_value_t = 40.0)]
    pub rate: f64,
    /// Each burst task sleeps this long, ms.
    #[arg(long, default_value_t = 100)]
    pub task_ms: u64,
    /// How long the burst sends.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// How long to wait for the burst's last results.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Instances at most during a burst.
    #[arg(long, default_value_t = 16)]
    pub max_instances: u32,
    /// Slots per instance of the "many" side of the concurrency comparison.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..=1024))]
    pub many_slots: u32,
    /// One row per scale-from-zero trial.
    #[arg(long, default_value = "coldstart-trials.csv")]
    pub trials_out: PathBuf,
    /// One row per burst.
    #[arg(long, default_value = "coldstart-bursts.csv")]
    pub out: PathBuf,
    /// Instances over time during each burst.
    #[arg(long, default_value = "coldstart-timeline.csv")]
    pub timeline_out: PathBuf,
    /// Also draw the bursts' instances over time and the trials' breakdown here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Results database, verdicts, telemetry.
    #[command(flatten)]
    pub observe: ObserveArgs,
}

/// A part of the study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Scale from zero, trial by trial.
    Zero,
    /// A burst at one slot per instance.
    Burst,
    /// The burst at one slot and at many.
    Concurrency,
    /// User functions' cold starts per language (`--runtimes`).
    Runtimes,
    /// Warm latency per language at --warm-rates, one slot per instance and --many-slots.
    Warm,
}

fn parse_language(s: &str) -> Result<volley_proto::function::Language, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s.parse::<Mode>()? {
        Mode::Local => Err("an elastic pool runs workers: push or pull".into()),
        m => Ok(m),
    }
}

/// What the study can be judged on.
pub const METRICS: &[MetricDef] = &[
    MetricDef::new("extra_p50", Kind::Time, "median cold − warm latency over the trials"),
    MetricDef::new("cold_p50", Kind::Time, "median cold latency"),
    MetricDef::new("warm_p50", Kind::Time, "median warm latency"),
    MetricDef::new(
        "residual_max",
        Kind::Time,
        "largest |cold − warm − the cold start's stages| over the trials",
    ),
    MetricDef::new(
        "burst_p99",
        Kind::Time,
        "99th percentile latency during the one-slot burst",
    ),
    MetricDef::new(
        "burst_ready",
        Kind::Time,
        "time until the one-slot burst had the instances it needs",
    ),
    MetricDef::new("lost", Kind::Number, "burst tasks sent and not completed, all bursts"),
    MetricDef::new(
        "platform_p50",
        Kind::Time,
        "the largest median platform share of a user function's cold start over the runtimes cases",
    ),
    MetricDef::new(
        "ready_ratio",
        Kind::Number,
        "the largest median start-to-READY ÷ bare start over the fresh, empty-handler cases",
    ),
];

/// Runs the study.
pub async fn run(a: &ColdstartArgs, as_json: bool) -> anyhow::Result<i32> {
    let mut observed = Observed::start("coldstart", &a.observe, METRICS, None)?;
    let scenarios = match (a.scenarios.is_empty(), a.runtimes.is_empty()) {
        (false, _) => a.scenarios.clone(),
        (true, false) => vec![Scenario::Runtimes],
        (true, true) => vec![Scenario::Zero, Scenario::Burst, Scenario::Concurrency],
    };
    anyhow::ensure!(
        !(scenarios.contains(&Scenario::Runtimes) || scenarios.contains(&Scenario::Warm)) || !a.runtimes.is_empty(),
        "the runtimes and warm scenarios need --runtimes, e.g. --runtimes python,node"
    );
    anyhow::ensure!(
        a.warm_rates.iter().all(|r| *r > 0.0 && r.is_finite()),
        "--warm-rates must be positive"
    );
    let policy_of = |slots: u32| -> anyhow::Result<String> {
        let text = if a.policy == "kpa" || (a.policy.starts_with("kpa:") && !a.policy.contains("target=")) {
            let sep = if a.policy.contains(':') { "," } else { ":" };
            format!("{}{sep}target={slots}", a.policy)
        } else {
            a.policy.clone()
        };
        text.parse::<volley_dispatcher::scaler::PolicySpec>()
            .map_err(|e| anyhow::anyhow!("--policy {e}"))?;
        Ok(text)
    };
    let burst = Burst {
        rate: a.rate,
        task_ms: a.task_ms,
        duration: a.duration,
        drain: a.drain,
    };
    anyhow::ensure!(a.rate > 0.0, "--rate must be positive");
    policy_of(1)?;
    let mut measures = std::collections::BTreeMap::new();
    let mut written = Vec::new();

    let mut runtime_tasks = 0;
    if scenarios.contains(&Scenario::Runtimes) {
        runtime_tasks = runtimes::run(a, &mut observed, &mut measures, &mut written, as_json).await?;
    }
    let mut warm_lost = 0;
    if scenarios.contains(&Scenario::Warm) {
        let sides = [(1, policy_of(1)?), (a.many_slots, policy_of(a.many_slots)?)];
        let (tasks, lost) = runtimes::run_warm(a, &sides, &mut written, as_json).await?;
        runtime_tasks += tasks;
        warm_lost = lost;
    }

    if scenarios.contains(&Scenario::Zero) {
        let pool = Pool {
            mode: a.mode,
            policy: format!("fixed:keepalive={}", humantime::format_duration(a.keepalive)),
            max_instances: 1,
            slots: 1,
            init_ms: a.init_ms,
            extra_args: Vec::new(),
            env: Vec::new(),
        };
        let cluster = pool.start("coldstart-zero").await?;
        observed.sampler().track_cluster(&cluster);
        eprintln!(
            "scale from zero: {} trials, --init-ms {}, {}",
            a.trials, a.init_ms, pool.policy
        );
        let result = coldstart::scale_from_zero(&cluster, &a.task, a.trials as usize, |t| {
            if !as_json {
                print_trial(t);
            }
        })
        .await;
        cluster.stop().await?;
        let (trials, tasks) = result?;
        let rows: Vec<TrialRow> = trials.iter().map(TrialRow::from).collect();
        crate::recording::tables::write_rows(&a.trials_out, &rows)?;
        written.push(a.trials_out.clone());
        summarise_trials(&trials, &mut measures, as_json);
        record_tasks(&mut observed, &tasks, None);
        if let Some(dir) = &a.plot {
            plot_trials(dir, &trials)?;
        }
    }

    let mut sides: Vec<u32> = Vec::new();
    if scenarios.contains(&Scenario::Burst) || scenarios.contains(&Scenario::Concurrency) {
        sides.push(1);
    }
    if scenarios.contains(&Scenario::Concurrency) {
        sides.push(a.many_slots);
    }
    let mut bursts: Vec<BurstResult> = Vec::new();
    let mut timeline: Vec<(u32, PoolSample)> = Vec::new();
    for slots in sides {
        let pool = Pool {
            mode: a.mode,
            policy: policy_of(slots)?,
            max_instances: a.max_instances,
            slots,
            init_ms: a.init_ms,
            extra_args: Vec::new(),
            env: Vec::new(),
        };
        eprintln!(
            "burst: 0 → {}/s of sleep:{} for {:?}, {} slot(s) per instance, {}, at most {} instances",
            a.rate, a.task_ms, a.duration, slots, pool.policy, a.max_instances
        );
        let (r, samples) = coldstart::burst(&pool, &burst).await?;
        if as_json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            print_burst(&r);
        }
        timeline.extend(samples.into_iter().map(|s| (slots, s)));
        bursts.push(r);
    }
    if !bursts.is_empty() {
        crate::recording::tables::write_rows(&a.out, &bursts)?;
        let rows: Vec<TimelineRow> = timeline
            .iter()
            .map(|(slots, (t, ready, starting, queued))| TimelineRow {
                slots: *slots,
                t_s: *t,
                ready: *ready,
                starting: *starting,
                queued: *queued,
            })
            .collect();
        crate::recording::tables::write_rows(&a.timeline_out, &rows)?;
        written.extend([a.out.clone(), a.timeline_out.clone()]);
        if let Some(one) = bursts.iter().find(|b| b.slots == 1) {
            measures.insert("burst_p99".to_owned(), one.p99_ms / 1e3);
            if let Some(t) = one.time_to_ready_s {
                measures.insert("burst_ready".to_owned(), t);
            }
        }
        measures.insert("lost".to_owned(), bursts.iter().map(|b| b.lost).sum::<u64>() as f64);
        if let Some(dir) = &a.plot {
            plot_timeline(dir, &timeline)?;
        }
    }
    let lost: u64 = bursts.iter().map(|b| b.lost).sum::<u64>() + warm_lost;
    eprintln!(
        "records in {}",
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    observed.record.metrics = measures;
    let tasks = 2 * a.trials * u64::from(scenarios.contains(&Scenario::Zero))
        + bursts.iter().map(|b| b.completed).sum::<u64>()
        + runtime_tasks;
    let verdict = observed.finish(tasks, as_json)?;
    Ok(crate::recording::observe::exit_code(i32::from(lost > 0), verdict))
}
