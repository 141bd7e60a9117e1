//! `client failover`: an `--ha` pair's leader lost under load, and what users saw.

use crate::studies::failover::{self, FailoverReport, FailoverSpec, Fault};
use std::time::Duration;

/// `client failover` flags.
#[derive(Debug, clap::Args)]
pub struct FailoverArgs {
    /// How the leader is lost: kill (SIGKILL) or stall (SIGSTOP, resumed after the
    /// takeover); both by default, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "kill,stall")]
    pub faults: Vec<Fault>,
    /// Noop tasks per second (Poisson arrivals, one ExecuteStream call).
    #[arg(long, default_value_t = 5000.0)]
    pub rate: f64,
    /// How long the load runs.
    #[arg(long = "for", value_parser = humantime::parse_duration, default_value = "30s")]
    pub duration: Duration,
    /// When the leader is lost, from the load's start.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub fault_at: Duration,
    /// The dispatchers' lease (--ha-lease-ms).
    #[arg(long, default_value_t = 1000)]
    pub lease_ms: u64,
    /// Workers (push mode), each with --slots.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Slots per worker.
    #[arg(long, default_value_t = 2)]
    pub slots: u32,
    /// Redis with AOF and fsync on every write (default: no persistence).
    #[arg(long)]
    pub aof: bool,
    /// How long after the takeover a stalled leader is resumed.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub resume_after: Duration,
    /// Seed of the arrivals.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Where the logs and the JSON reports go.
    #[arg(long, default_value = "target/failover")]
    pub out: std::path::PathBuf,
}

/// Runs each fault; exits 1 if any audit found a task lost, unfinished or misreported.
pub async fn run(a: &FailoverArgs, as_json: bool) -> anyhow::Result<i32> {
    let mut sound = true;
    for fault in &a.faults {
        let spec = FailoverSpec {
            fault: *fault,
            rate: a.rate,
            duration: a.duration,
            fault_at: a.fault_at,
            lease: Duration::from_millis(a.lease_ms.max(10)),
            workers: a.workers,
            slots: a.slots,
            aof: a.aof,
            resume_after: a.resume_after,
            out: a.out.join(format!("{fault:?}").to_lowercase()),
            seed: a.seed,
        };
        let report = failover::run(&spec).await?;
        let saved = failover::save(&spec.out, &report)?;
        if as_json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print(&report);
            println!("  report: {}", saved.display());
        }
        sound &= report.sound();
    }
    Ok(if sound { 0 } else { 1 })
}

fn print(r: &FailoverReport) {
    println!(
        "{:?} of the leader at {:.0}/s, lease {} ms: the standby led {:.0} ms after; no completion for {:.0} ms at most",
        r.fault, r.rate, r.lease_ms, r.takeover_ms, r.service_gap_ms
    );
    for (label, w) in [("before", &r.before), ("failover 5 s", &r.during), ("after", &r.after)] {
        println!(
            "  {label:<13} {:>7} tasks  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
            w.tasks, w.p50_ms, w.p99_ms, w.max_ms
        );
    }
    println!(
        "  sent {} · completed {} · failed {} · refused {} · in doubt {} · unfinished {}",
        r.sent, r.completed, r.failed, r.refused, r.in_doubt, r.unfinished
    );
    println!(
        "  audit: {} acknowledged · {} lost · {} not terminal · {} told otherwise · {} stored in all",
        r.acknowledged, r.lost, r.not_terminal, r.disagreeing, r.stored
    );
    if let Some(code) = r.old_leader_exit {
        println!(
            "  the stalled leader, resumed, exited with code {code} (3: deposed) after {} fenced writes",
            r.fenced_writes.map_or("?".to_owned(), |n| n.to_string())
        );
    }
}
