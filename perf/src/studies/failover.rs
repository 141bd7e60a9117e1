//! `client failover`: the leader of an `--ha` pair lost under a steady open-loop load.
//!
//! Two `dispatcher --ha` processes share a private `redis-server`; workers and the load
//! take both addresses and follow whichever leads. Part-way through, the leader is
//! SIGKILLed (`kill`) or SIGSTOPped (`stall`, resumed once the standby leads, when it must
//! exit without writing). Then every task the load was told of is audited in Redis:
//! present, terminal, and as the client heard it. Latency is from each request's intended
//! send to the dispatcher's completion (same-host clocks), so tasks whose result the
//! client read back after the failover are timed by when they finished, not when read.

use crate::studies::load::arrivals::{Arrival, Arrivals};
use crate::studies::load::drive::drive;
use crate::studies::load::ledger::{Fate, Outcomes};
use crate::studies::load::transport::Transport;
use anyhow::{bail, Context};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::Command;
use volley_client::commands::Target;
use volley_client::{register_spec, Access};
use volley_dispatcher::store::redis::RedisStore;
use volley_dispatcher::store::TaskStore;
use volley_proto::api;
use volley_testbed::{HaMember, RedisServer};

/// The key prefix of the pair.
const PREFIX: &str = "volley:";
/// What counts as the failover window: from the fault, this long.
const WINDOW: Duration = Duration::from_secs(5);

/// How the leader is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    /// SIGKILL: the process is gone, its sockets closed.
    Kill,
    /// SIGSTOP, then SIGCONT once the standby leads: the process is there but silent,
    /// then wakes up deposed.
    Stall,
}

/// One failover run.
#[derive(Debug, Clone)]
pub struct FailoverSpec {
    /// How the leader is lost.
    pub fault: Fault,
    /// Noop tasks per second, Poisson arrivals.
    pub rate: f64,
    /// How long the load runs.
    pub duration: Duration,
    /// When the leader is lost, from the load's start.
    pub fault_at: Duration,
    /// The lease, `--ha-lease-ms`.
    pub lease: Duration,
    /// Workers, each with `slots`.
    pub workers: usize,
    /// Slots per worker.
    pub slots: u32,
    /// Redis with AOF, fsync on every write; otherwise no persistence.
    pub aof: bool,
    /// How long after the takeover a stalled leader is resumed.
    pub resume_after: Duration,
    /// Where the processes' logs go.
    pub out: PathBuf,
    /// Seed of the arrivals.
    pub seed: u64,
}

/// p50, p99 and the largest latency of a window, ms.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Window {
    /// Completed tasks intended in the window.
    pub tasks: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

/// What a failover run measured.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    /// How the leader was lost.
    pub fault: Fault,
    /// Offered rate.
    pub rate: f64,
    /// The lease.
    pub lease_ms: u64,
    /// From the fault to the standby's ready line (lease, recovery, binding).
    pub takeover_ms: f64,
    /// The longest time without a completed task around the fault: how long users saw
    /// no service.
    pub service_gap_ms: f64,
    /// Tasks intended before the fault.
    pub before: Window,
    /// Tasks intended in the [`WINDOW`] after it.
    pub during: Window,
    /// Tasks intended after that.
    pub after: Window,
    /// Every request's fate.
    pub sent: u64,
    /// COMPLETED.
    pub completed: u64,
    /// FAILED.
    pub failed: u64,
    /// Refused at submission (a standby or a dying leader said so): never stored.
    pub refused: u64,
    /// Sent to the dying leader with no answer: whether it took them cannot be known
    /// by the client; any it stored are run by the new leader and found by the audit.
    pub in_doubt: u64,
    /// No result when the run ended.
    pub unfinished: u64,
    /// Acknowledged tasks.
    pub acknowledged: u64,
    /// Acknowledged tasks missing from Redis.
    pub lost: u64,
    /// Acknowledged tasks not terminal in Redis after the drain.
    pub not_terminal: u64,
    /// Tasks whose stored outcome differs from what the client heard.
    pub disagreeing: u64,
    /// Tasks in Redis in all (including those in doubt).
    pub stored: u64,
    /// A stalled leader's exit code once resumed (3: deposed).
    pub old_leader_exit: Option<i32>,
    /// Writes it attempted and Redis refused, from its last log line.
    pub fenced_writes: Option<u64>,
}

impl FailoverReport {
    /// Whether nothing was lost, everything ended, and the client heard what happened.
    pub fn sound(&self) -> bool {
        self.lost == 0 && self.not_terminal == 0 && self.disagreeing == 0 && self.unfinished == 0
    }
}

/// Runs the scenario once.
pub async fn run(spec: &FailoverSpec) -> anyhow::Result<FailoverReport> {
    std::fs::create_dir_all(&spec.out)?;
    let redis = RedisServer::start(spec.aof)?;
    let lease_ms = spec.lease.as_millis() as u64;
    let mut a = HaMember::start(&redis.url(), PREFIX, lease_ms, &spec.out, "a", &[])?;
    a.leads(Duration::from_secs(30)).await?;
    let mut b = HaMember::start(&redis.url(), PREFIX, lease_ms, &spec.out, "b", &[])?;
    let endpoints = format!("{},{}", a.workers, b.workers);
    let mut workers = Vec::new();
    for i in 0..spec.workers {
        workers.push(
            Command::new(volley_testbed::binaries::path("worker")?)
                .args([&spec.slots.to_string(), endpoints.as_str(), "--mode", "push"])
                .args(["--name", &format!("w{i}"), "--max-backoff-ms", "100"])
                .env_remove("VOLLEY_TOKEN")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(spec.out.join(format!("worker-{i}.log")))?)
                .kill_on_drop(true)
                .spawn()
                .context("spawning a worker")?,
        );
    }
    let target = Target {
        url: format!("{},{}", a.grpc, b.grpc),
        access: Access::default(),
    };
    let mut client = target.connect().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .cluster_info(api::ClusterInfoRequest {})
        .await
        .map(|i| i.into_inner().workers.len())
        .unwrap_or(0)
        < spec.workers
    {
        if Instant::now() > deadline {
            bail!("workers did not register; logs in {}", spec.out.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (function_id, args) = register_spec(&mut client, "noop").await?;
    let schedule = Arc::new(Arrivals::new(Arrival::Poisson, spec.rate, spec.seed)?.schedule(spec.duration));
    let requests = |_: usize| api::ExecuteRequest {
        function_id,
        args: args.clone(),
    };

    let fault = async {
        tokio::time::sleep(spec.fault_at).await;
        let at = Instant::now();
        let at_unix_us = unix_us();
        match spec.fault {
            Fault::Kill => a.child.start_kill().context("killing the leader")?,
            Fault::Stall => a.signal(nix::sys::signal::Signal::SIGSTOP)?,
        }
        let took = b.leads(Duration::from_secs(30)).await?.saturating_duration_since(at);
        let mut exit = None;
        if spec.fault == Fault::Stall {
            tokio::time::sleep(spec.resume_after).await;
            a.signal(nix::sys::signal::Signal::SIGCONT)?;
            let status = tokio::time::timeout(Duration::from_secs(15), a.child.wait())
                .await
                .context("the resumed leader did not exit")??;
            exit = status.code();
        }
        anyhow::Ok((at_unix_us, took, exit))
    };
    let load = drive(
        &client,
        Some(&target),
        Transport::Stream,
        schedule.clone(),
        requests,
        spec.duration + Duration::from_secs(15),
    );
    let (driven, faulted) = tokio::join!(load, fault);
    let (driven, (fault_unix_us, took, exit)) = (driven?, faulted?);

    let store = RedisStore::connect(&redis.url(), PREFIX).await?;
    let mut report = audit(spec, &store, &driven.ledger).await?;
    report.takeover_ms = took.as_secs_f64() * 1e3;
    report.old_leader_exit = exit;
    if spec.fault == Fault::Stall {
        report.fenced_writes = std::fs::read_to_string(&a.log)
            .ok()
            .and_then(|log| log.split("fenced_writes=").nth(1).and_then(leading_number));
    }
    let fault_at = Duration::from_micros(fault_unix_us.saturating_sub(driven.clock.start_unix_us));
    latency(&mut report, &schedule, &driven.ledger, fault_at);
    b.stop().await;
    drop(workers);
    Ok(report)
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn leading_number(text: &str) -> Option<u64> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Every acknowledged task against Redis, once nothing is left to run.
async fn audit(
    spec: &FailoverSpec,
    store: &RedisStore,
    ledger: &crate::studies::load::ledger::Ledger,
) -> anyhow::Result<FailoverReport> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.unfinished_count().await? > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let o = Outcomes::of(ledger);
    let acknowledged: Vec<(u64, &Fate)> = ledger
        .requests
        .iter()
        .filter_map(|r| r.task.map(|t| (t, &r.fate)))
        .collect();
    let ids: Vec<_> = acknowledged
        .iter()
        .map(|(t, _)| volley_proto::ids::TaskId(*t))
        .collect();
    let stored = store.get_many(&ids).await?;
    let (mut lost, mut not_terminal, mut disagreeing) = (0, 0, 0);
    for ((_, fate), record) in acknowledged.iter().zip(&stored) {
        let Some(r) = record else {
            lost += 1;
            continue;
        };
        if !r.state.is_terminal() {
            not_terminal += 1;
        } else if let Fate::Finished(f) = fate {
            let completed = r.state == volley_dispatcher::store::TaskState::Completed;
            disagreeing += u64::from(completed != f.completed);
        }
    }
    Ok(FailoverReport {
        fault: spec.fault,
        rate: spec.rate,
        lease_ms: spec.lease.as_millis() as u64,
        takeover_ms: 0.0,
        service_gap_ms: 0.0,
        before: Window::default(),
        during: Window::default(),
        after: Window::default(),
        sent: o.sent,
        completed: o.completed,
        failed: o.failed,
        refused: o.refused,
        in_doubt: o.unknown,
        unfinished: o.unfinished,
        acknowledged: acknowledged.len() as u64,
        lost,
        not_terminal,
        disagreeing,
        stored: store.all_tasks().await?.len() as u64,
        old_leader_exit: None,
        fenced_writes: None,
    })
}

/// Latency before, during and after the failover window, and the longest gap between
/// completions around the fault.
fn latency(
    report: &mut FailoverReport,
    schedule: &[Duration],
    ledger: &crate::studies::load::ledger::Ledger,
    fault_at: Duration,
) {
    let mut windows: [Vec<Duration>; 3] = Default::default();
    let mut done = Vec::new();
    for (intended, r) in schedule.iter().zip(&ledger.requests) {
        let Fate::Finished(f) = &r.fate else { continue };
        if !f.completed {
            continue;
        }
        done.push(f.done_at);
        let w = if *intended < fault_at {
            0
        } else if *intended < fault_at + WINDOW {
            1
        } else {
            2
        };
        windows[w].push(f.done_at.saturating_sub(*intended));
    }
    let summary = |mut v: Vec<Duration>| {
        v.sort_unstable();
        let q = |p: f64| {
            v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        Window {
            tasks: v.len() as u64,
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            max_ms: v.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        }
    };
    let [before, during, after] = windows;
    (report.before, report.during, report.after) = (summary(before), summary(during), summary(after));
    done.sort_unstable();
    let around = done
        .iter()
        .filter(|d| **d + Duration::from_secs(1) >= fault_at && **d <= fault_at + Duration::from_secs(10));
    report.service_gap_ms = around
        .clone()
        .zip(around.skip(1))
        .map(|(a, b)| b.saturating_sub(*a))
        .max()
        .unwrap_or_default()
        .as_secs_f64()
        * 1e3;
}

/// Writes the report as JSON into `dir`.
pub fn save(dir: &Path, report: &FailoverReport) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!(
        "failover-{}.json",
        serde_json::to_value(report.fault)?.as_str().unwrap_or("run")
    ));
    std::fs::write(&path, serde_json::to_string_pretty(report)?)?;
    Ok(path)
}
