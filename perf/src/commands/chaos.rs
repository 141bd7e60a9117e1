//! `client chaos`: the fault-injection scenario per mode, and its exit code.

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
    /// Skip the Redis SIGKILL + restart.
    #[arg(long)]
    pub no_redis_restart: bool,
    /// Picks which workers die.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Writes the reports as JSON here.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// Runs the scenario for each mode; exits 1 if any audit failed.
pub async fn run(a: ChaosArgs, as_json: bool) -> anyhow::Result<i32> {
    use crate::chaos::{self as scenario, ChaosSpec};
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
            restart_redis: !a.no_redis_restart,
            seed: a.seed,
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
    Ok(if reports.iter().all(|r| r.passed()) { 0 } else { 1 })
}
