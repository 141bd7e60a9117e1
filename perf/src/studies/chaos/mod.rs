//! The chaos scenario: a mixed workload runs on a Redis-backed cluster while faults are
//! injected. Workers are SIGKILLed and replaced, one is stalled with SIGSTOP and then
//! resumed (it comes back holding stale results), the dispatcher is SIGKILLed and
//! restarted on the same Redis (or, with `ha`, the leader of an `--ha` pair is SIGKILLed
//! and its standby takes over on the same ports), and Redis itself is SIGKILLed and restarted (a private
//! server with AOF, fsync on every write, so it keeps what it acknowledged; or, to
//! measure what that costs, `everysec`). One
//! single-slot worker and some 1 s tasks give slow work beside fast work.
//!
//! At the end every task in the store is audited: exactly one terminal state, the
//! result its function and arguments imply, and none of the acknowledged ids missing.
//! Everything is on 127.0.0.1 and bounded in time and in the number of faults.
//!
//! - [`workload`] — the task mix, what each task must come to, and the submitter.
//! - [`faults`] — when each fault strikes and how it is injected and timed.
//! - [`audit`] — the drain, and the check of every stored task and acknowledged id.

mod audit;
mod faults;
mod workload;

use audit::{audit, drain};
use faults::{schedule, FaultContext, Tally};
use workload::{submit, Catalog, Ledger};

use anyhow::Context;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use volley_proto::Mode;
use volley_testbed::cluster::{Cluster, ClusterSpec};
use volley_testbed::redis_server::{Persistence, RedisServer};

/// The Redis key prefix of the scenario's private server.
pub(super) const PREFIX: &str = "volley:";
/// Tasks per `ExecuteBatch`.
pub(super) const CHUNK: usize = 10;
/// How long a single fault's measurement may take before the scenario gives up.
pub(super) const FAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What to run and what to break.
#[derive(Debug, Clone)]
pub struct ChaosSpec {
    /// Pull or push.
    pub mode: Mode,
    /// Fast workers at the start (a single-slot one is added beside them).
    pub workers: usize,
    /// Slots per fast worker.
    pub slots: u32,
    /// How long tasks are submitted; faults are spread over this time.
    pub duration: Duration,
    /// Tasks submitted per second.
    pub rate: f64,
    /// Workers SIGKILLed (each replaced by a fresh one).
    pub worker_kills: usize,
    /// SIGSTOP one worker past its liveness, then SIGCONT it.
    pub stall: bool,
    /// SIGKILL the dispatcher and restart it on the same Redis; with `ha`, SIGKILL the
    /// leader and let the standby take over.
    pub restart_dispatcher: bool,
    /// Run the dispatcher `--ha` with a standby on the same ports (a new standby is
    /// started after each takeover, as a supervisor would).
    pub ha: bool,
    /// The lease of `--ha` (`--ha-lease-ms`).
    pub ha_lease_ms: u64,
    /// SIGKILL Redis and restart it from its AOF.
    pub restart_redis: bool,
    /// Redis's AOF fsync: `always` keeps every acknowledged write across the kill;
    /// `everysec` (to measure what it loses) about the last second of them.
    pub redis_fsync_everysec: bool,
    /// The dispatcher's heartbeat interval.
    pub heartbeat_ms: u64,
    /// Heartbeats missed before a worker is dead.
    pub liveness: u32,
    /// Seeds which workers die.
    pub seed: u64,
    /// Samples every process the scenario starts, restarts included.
    pub tracker: Option<crate::recording::sampler::Tracker>,
}

impl Default for ChaosSpec {
    fn default() -> Self {
        Self {
            mode: Mode::Push,
            workers: 4,
            slots: 2,
            duration: Duration::from_secs(60),
            rate: 200.0,
            worker_kills: 8,
            stall: true,
            restart_dispatcher: true,
            ha: false,
            ha_lease_ms: 1000,
            restart_redis: true,
            redis_fsync_everysec: false,
            heartbeat_ms: 100,
            liveness: 3,
            seed: 7,
            tracker: None,
        }
    }
}

/// What happened and what the audit found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChaosReport {
    /// The mode run.
    pub mode: String,
    /// Seconds of submission.
    pub duration_s: f64,
    /// Task ids the dispatcher acknowledged.
    pub acknowledged: usize,
    /// Tasks whose `ExecuteBatch` got no answer (dispatcher or Redis down, or a call
    /// cut mid-way); the audit finds out which of them were stored anyway.
    pub unacknowledged: usize,
    /// Tasks refused with a definite status (UNAVAILABLE while the store was down,
    /// RESOURCE_EXHAUSTED): never stored.
    pub refused: usize,
    /// Tasks in the store at the end.
    pub stored: usize,
    /// Stored tasks never acknowledged: accepted, but the answer was lost.
    pub stored_unacknowledged: usize,
    /// Acknowledged ids missing from the store. Must be 0.
    pub lost: usize,
    /// Stored tasks not COMPLETED/FAILED at the end. Must be 0.
    pub unfinished: usize,
    /// Stored tasks whose outcome is not what their function and arguments imply
    /// (including FAILED `worker_lost`). Must be 0.
    pub wrong: usize,
    /// Acknowledged tasks `WatchResults` did not report exactly once, terminal, as the
    /// store has them. Must be 0.
    pub api_mismatches: usize,
    /// Examples of what went wrong, for the log.
    pub problems: Vec<String>,
    /// Workers SIGKILLed.
    pub workers_killed: usize,
    /// Workers stalled with SIGSTOP and resumed.
    pub workers_stalled: usize,
    /// Dispatcher SIGKILL + restarts.
    pub dispatcher_restarts: usize,
    /// Leaders SIGKILLed under `ha`, each replaced by its standby.
    pub leader_kills: usize,
    /// Leaders deposed around a Redis restart under `ha` (the standby took the lease
    /// first once Redis was back), each replaced by the standby.
    pub leaders_deposed: usize,
    /// Redis SIGKILL + restarts.
    pub redis_restarts: usize,
    /// Attempts lost and requeued, summed over dispatcher incarnations.
    pub requeues: u64,
    /// Results that arrived for an attempt already settled: executions that ran twice.
    pub duplicate_executions: u64,
    /// Tasks that needed more than one attempt (from the store).
    pub retried_tasks: usize,
    /// Milliseconds from a worker's SIGKILL to the dispatcher dropping it.
    pub kill_detect_ms: Vec<f64>,
    /// Milliseconds from SIGSTOP to the dispatcher declaring the worker dead.
    pub stall_detect_ms: Vec<f64>,
    /// Milliseconds from SIGCONT to the stalled worker being registered again.
    pub stall_rejoin_ms: Vec<f64>,
    /// Milliseconds from the dispatcher's SIGKILL to its restart being ready.
    pub dispatcher_ready_ms: Vec<f64>,
    /// Milliseconds from the leader's SIGKILL to its standby's ready line (`ha`).
    pub takeover_ms: Vec<f64>,
    /// Milliseconds from the dispatcher's SIGKILL to every live worker registered again.
    pub dispatcher_workers_back_ms: Vec<f64>,
    /// Milliseconds from the dispatcher's SIGKILL to a new task's result.
    pub dispatcher_recover_ms: Vec<f64>,
    /// Milliseconds from Redis answering again to a new task's result.
    pub redis_recover_ms: Vec<f64>,
    /// Seconds from the end of submission until nothing was left to run.
    pub drain_s: f64,
    /// Ids of the probe tasks that timed recovery (audited like the rest).
    pub probe_ids: Vec<u64>,
}

impl ChaosReport {
    /// Nothing lost, nothing unfinished, nothing wrong.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.unfinished == 0 && self.wrong == 0 && self.api_mismatches == 0
    }

    /// A few lines for people.
    pub fn summary(&self) -> String {
        let ms = |v: &[f64]| -> String {
            if v.is_empty() {
                return "–".into();
            }
            let max = v.iter().copied().fold(f64::MIN, f64::max);
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            format!("mean {mean:.0} ms, max {max:.0} ms (n={})", v.len())
        };
        format!(
            "chaos {} · {:.0} s · {}\n\
             tasks: {} acknowledged, {} stored ({} accepted without an answer), {} unanswered, {} refused\n\
             audit: {} lost, {} unfinished, {} wrong, {} API mismatches\n\
             faults: {} workers killed, {} stalled, {} dispatcher restarts, {} leaders killed, {} Redis restarts ({} leaders deposed)\n\
             requeues {} · duplicate executions {} · tasks retried {}\n\
             dead worker detected (SIGKILL): {}\n\
             stalled worker detected (SIGSTOP): {} · rejoined after SIGCONT: {}\n\
             dispatcher restart: ready {} · takeover {} · workers back {} · first new result {}\n\
             Redis restart: first new result {}\n\
             drained in {:.1} s",
            self.mode,
            self.duration_s,
            if self.passed() { "PASSED" } else { "FAILED" },
            self.acknowledged,
            self.stored,
            self.stored_unacknowledged,
            self.unacknowledged,
            self.refused,
            self.lost,
            self.unfinished,
            self.wrong,
            self.api_mismatches,
            self.workers_killed,
            self.workers_stalled,
            self.dispatcher_restarts,
            self.leader_kills,
            self.redis_restarts,
            self.leaders_deposed,
            self.requeues,
            self.duplicate_executions,
            self.retried_tasks,
            ms(&self.kill_detect_ms),
            ms(&self.stall_detect_ms),
            ms(&self.stall_rejoin_ms),
            ms(&self.dispatcher_ready_ms),
            ms(&self.takeover_ms),
            ms(&self.dispatcher_workers_back_ms),
            ms(&self.dispatcher_recover_ms),
            ms(&self.redis_recover_ms),
            self.drain_s,
        )
    }

    fn problem(&mut self, what: String) {
        if self.problems.len() < 20 {
            self.problems.push(what);
        }
    }
}

/// Follows the scenario's processes as they are (re)started.
pub(super) fn track(spec: &ChaosSpec, cluster: &Cluster, redis: &RedisServer) {
    if let Some(t) = &spec.tracker {
        t.track_cluster(cluster);
        if let Some(pid) = redis.pid() {
            t.track("redis", pid, true);
        }
    }
}

/// Runs the scenario and audits the store. Fails only if the scenario itself could not
/// run; what the audit finds is in the report.
pub async fn run(spec: &ChaosSpec) -> anyhow::Result<ChaosReport> {
    anyhow::ensure!(spec.mode != Mode::Local, "chaos needs workers: use pull or push mode");
    anyhow::ensure!(spec.workers >= 1, "chaos needs at least one worker");
    let mut redis = RedisServer::start_with(if spec.redis_fsync_everysec {
        Persistence::EverySec
    } else {
        Persistence::Always
    })?;
    let ha: Vec<String> = if spec.ha {
        vec!["--ha".into(), "--ha-lease-ms".into(), spec.ha_lease_ms.to_string()]
    } else {
        Vec::new()
    };
    let cluster_spec = ClusterSpec::new(spec.mode, spec.workers, spec.slots)
        .store(redis.url())
        .label(format!("chaos-{}{}", spec.mode, if spec.ha { "-ha" } else { "" }))
        .args(ha)
        .args([
            "--heartbeat-ms".to_owned(),
            spec.heartbeat_ms.to_string(),
            "--liveness".to_owned(),
            spec.liveness.to_string(),
            "--max-attempts".to_owned(),
            "20".to_owned(),
            "--task-timeout".to_owned(),
            "30".to_owned(),
        ]);
    let mut cluster = Cluster::start(cluster_spec).await?;
    if spec.ha {
        cluster.start_standby()?;
    }
    // The slow worker: one slot beside the fast ones.
    let slow = cluster.add_worker(1, &[]).await?;
    cluster
        .wait_for_workers(spec.workers + 1, Duration::from_secs(30))
        .await?;
    track(spec, &cluster, &redis);
    let mut slots_of: HashMap<usize, u32> = (0..spec.workers).map(|i| (i, spec.slots)).collect();
    slots_of.insert(slow, 1);

    let mut client = cluster.connect().await?;
    let catalog = Arc::new(Catalog::register(&mut client).await?);
    let mut report = ChaosReport {
        mode: spec.mode.to_string(),
        duration_s: spec.duration.as_secs_f64(),
        ..ChaosReport::default()
    };
    eprintln!("chaos: cluster up, logs in {}", cluster.log_dir().display());

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let started = Instant::now();
    let submitter = tokio::spawn(submit(
        cluster.grpc_url(),
        cluster.access(),
        catalog.clone(),
        spec.rate,
        started + spec.duration,
        ledger.clone(),
    ));

    let mut tally = Tally::default();
    let mut rng = SmallRng::seed_from_u64(spec.seed);
    for (at, fault) in schedule(spec) {
        tokio::time::sleep_until((started + at).into()).await;
        let mut ctx = FaultContext {
            cluster: &mut cluster,
            redis: &mut redis,
            catalog: &catalog,
            slots_of: &mut slots_of,
            tally: &mut tally,
            report: &mut report,
            rng: &mut rng,
            spec,
        };
        ctx.inject(fault)
            .await
            .with_context(|| format!("injecting {fault:?} at {at:?}"))?;
    }
    submitter.await.context("the submitter panicked")?;
    let submission_ended = Instant::now();

    drain(&mut cluster, &redis, &catalog, &mut tally).await?;
    report.drain_s = submission_ended.elapsed().as_secs_f64();
    let counters = tally.total();
    report.requeues = counters.requeued;
    report.duplicate_executions = counters.duplicate_results;

    let ledger = std::mem::take(&mut *ledger.lock().map_err(|_| anyhow::anyhow!("ledger poisoned"))?);
    report.acknowledged = ledger.acknowledged.len();
    report.unacknowledged = ledger.unacknowledged;
    report.refused = ledger.refused;
    audit(
        &cluster,
        &redis,
        &catalog,
        &ledger.acknowledged,
        &ledger.seq_of,
        &mut report,
    )
    .await?;
    cluster.stop().await?;
    Ok(report)
}

pub(super) fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
