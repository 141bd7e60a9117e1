//! `client chaos`: the fault-injection scenario per mode, and its exit code.

use crate::recording::observe::{ObserveArgs, Observed};
use crate::recording::verdict::{Kind, MetricDef};
use anyhow::Context;
use std::time::Duration;
use volley_proto::Mode;

/// `client chaos` flags.
#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// Modes to run, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "push,pull")]
    pub modes: Vec<Mode>,
    /// How long tasks are submitted; the faults are spread over it.
    #[arg(long = "for", value_parser = humantime::parse_duration, default_value = "60s")]
    pub duration: Duration,
    /// Tasks submitted per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Fast workers (a single-slot slow worker is added).
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Slots per fast worker.
    #[arg(long, default_value_t = 2)]
    pub slots: u32,
    /// Workers SIGKILLed and replaced.
    #[arg(long, default_value_t = 8)]
    pub kills: usize,
    /// Skip the SIGSTOP/SIGCONT stall.
    #[arg(long)]
    pub no_stall: bool,
    /// Skip the dispatcher SIGKILL + restart.
    #[arg(long)]
    pub no_dispatcher_restart: bool,
    /// Run the dispatcher `--ha` with a standby on the same ports: the dispatcher fault
    /// then SIGKILLs the leader and the standby takes over.
    #[arg(long)]
    pub ha: bool,
    /// The lease of `--ha`, in milliseconds: how long a takeover may take.
    #[arg(long, default_value_t = 1000)]
    pub ha_lease_ms: u64,
    /// Run Redis with `appendfsync everysec` instead of `always`, to measure what a Redis
    /// SIGKILL then loses (the audit's `lost`: acknowledged, gone).
    #[arg(long)]
    pub redis_everysec: bool,
    /// Skip the Redis SIGKILL + restart.
    #[arg(long)]
    pub no_redis_restart: bool,
    /// Picks which workers die.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Writes the reports as JSON here.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Results database, verdicts, telemetry.
    #[command(flatten)]
    pub observe: ObserveArgs,
}

/// What a chaos run can be judged on, over every mode run.
pub const METRICS: &[MetricDef] = &[
    MetricDef::new("lost", Kind::Number, "acknowledged tasks missing from the store"),
    MetricDef::new("wrong", Kind::Number, "tasks whose outcome is not what they imply"),
    MetricDef::new("unfinished", Kind::Number, "stored tasks not terminal at the end"),
    MetricDef::new(
        "api_mismatches",
        Kind::Number,
        "tasks WatchResults did not report exactly once",
    ),
    MetricDef::new("acknowledged", Kind::Number, "tasks the dispatcher acknowledged"),
    MetricDef::new("requeued", Kind::Number, "attempts requeued after a worker was lost"),
];

/// Runs the scenario for each mode; exits 1 if any audit failed.
pub async fn run(a: ChaosArgs, as_json: bool) -> anyhow::Result<i32> {
    use crate::studies::chaos::{self as scenario, ChaosSpec};
    let mut observed = Observed::start("chaos", &a.observe, METRICS, Some(a.seed))?;
    let mut reports = Vec::new();
    for mode in a.modes {
        let spec = ChaosSpec {
            mode,
            workers: a.workers,
            slots: a.slots,
            duration: a.duration,
            rate: a.rate,
            worker_kills: a.kills,
            stall: !a.no_stall,
            restart_dispatcher: !a.no_dispatcher_restart,
            ha: a.ha,
            ha_lease_ms: a.ha_lease_ms,
            restart_redis: !a.no_redis_restart,
            redis_fsync_everysec: a.redis_everysec,
            seed: a.seed,
            tracker: Some(observed.sampler().clone()),
            ..ChaosSpec::default()
        };
        let report = scenario::run(&spec)
            .await
            .with_context(|| format!("the {mode} chaos scenario could not run"))?;
        if !as_json {
            println!("{}\n", report.summary());
            for p in &report.problems {
                println!("  problem: {p}");
            }
        }
        reports.push(report);
    }
    let text = serde_json::to_string_pretty(&reports)?;
    if as_json {
        println!("{text}");
    }
    if let Some(out) = &a.out {
        std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    }
    let total = |f: &dyn Fn(&crate::studies::chaos::ChaosReport) -> usize| reports.iter().map(f).sum::<usize>() as f64;
    let m = &mut observed.record.metrics;
    m.insert("lost".into(), total(&|r| r.lost));
    m.insert("wrong".into(), total(&|r| r.wrong));
    m.insert("unfinished".into(), total(&|r| r.unfinished));
    m.insert("api_mismatches".into(), total(&|r| r.api_mismatches));
    m.insert("acknowledged".into(), total(&|r| r.acknowledged));
    m.insert("requeued".into(), total(&|r| r.requeues as usize));
    let tasks = total(&|r| r.acknowledged) as u64;
    let verdict = observed.finish(tasks, as_json)?;
    let own = if reports.iter().all(|r| r.passed()) { 0 } else { 1 };
    Ok(crate::recording::observe::exit_code(own, verdict))
}
