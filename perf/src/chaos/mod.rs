//! The chaos scenario: a mixed workload runs on a Redis-backed cluster while faults are
//! injected. Workers are SIGKILLed and replaced, one is stalled with SIGSTOP and then
//! resumed (it comes back holding stale results), the dispatcher is SIGKILLed and
//! restarted on the same Redis, and Redis itself is SIGKILLed and restarted (a private
//! server with AOF, fsync on every write, so it keeps what it acknowledged). One
//! single-slot worker and some 1 s tasks give slow work beside fast work.
//!
//! At the end every task in the store is audited: exactly one terminal state, the
//! result its function and arguments imply, and none of the acknowledged ids missing.
//! Everything is on 127.0.0.1 and bounded in time and in the number of faults.

use crate::cluster::{Cluster, ClusterSpec, Signal};
use crate::driver::{register_spec, Client};
use crate::redis_server::RedisServer;
use anyhow::{bail, Context};
use futures::StreamExt;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use volley_proto::api;
use volley_proto::Mode;

/// The Redis key prefix of the scenario's private server.
const PREFIX: &str = "volley:";
/// Tasks per `ExecuteBatch`.
const CHUNK: usize = 10;
/// How long a single fault's measurement may take before the scenario gives up.
const FAULT_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// SIGKILL the dispatcher and restart it on the same Redis.
    pub restart_dispatcher: bool,
    /// SIGKILL Redis and restart it from its AOF.
    pub restart_redis: bool,
    /// The dispatcher's heartbeat interval.
    pub heartbeat_ms: u64,
    /// Heartbeats missed before a worker is dead.
    pub liveness: u32,
    /// Seeds which workers die.
    pub seed: u64,
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
            restart_redis: true,
            heartbeat_ms: 100,
            liveness: 3,
            seed: 7,
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
             faults: {} workers killed, {} stalled, {} dispatcher restarts, {} Redis restarts\n\
             requeues {} · duplicate executions {} · tasks retried {}\n\
             dead worker detected (SIGKILL): {}\n\
             stalled worker detected (SIGSTOP): {} · rejoined after SIGCONT: {}\n\
             dispatcher restart: ready {} · workers back {} · first new result {}\n\
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
            self.redis_restarts,
            self.requeues,
            self.duplicate_executions,
            self.retried_tasks,
            ms(&self.kill_detect_ms),
            ms(&self.stall_detect_ms),
            ms(&self.stall_rejoin_ms),
            ms(&self.dispatcher_ready_ms),
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

/// The workload: function specs, their shares of the tasks, and per-task arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Noop,
    Echo,
    Sleep,
    Spin,
    Fail,
    Long,
}

const MIX: &[(Kind, &str, u32)] = &[
    (Kind::Noop, "noop", 40),
    (Kind::Echo, "echo", 25),
    (Kind::Sleep, "sleep:20", 20),
    (Kind::Spin, "spin:5", 9),
    (Kind::Fail, "fail:chaos", 5),
    (Kind::Long, "sleep:1000", 1),
];

/// Function ids of the workload, and what each task must come to.
struct Catalog {
    kinds: HashMap<u64, Kind>,
    ids: Vec<(Kind, u64, u32)>,
    probe: u64,
}

impl Catalog {
    async fn register(client: &mut Client) -> anyhow::Result<Self> {
        let mut kinds = HashMap::new();
        let mut ids = Vec::new();
        for (kind, spec, weight) in MIX {
            let (id, _) = register_spec(client, spec).await?;
            kinds.insert(id, *kind);
            ids.push((*kind, id, *weight));
        }
        let (probe, _) = register_spec(client, "noop").await?;
        Ok(Self { kinds, ids, probe })
    }

    /// The `seq`-th task: its function and arguments (unique where the function allows).
    fn task(&self, seq: u64) -> (u64, String) {
        let total: u32 = self.ids.iter().map(|(_, _, w)| w).sum();
        let mut pick = (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32 % total;
        for (kind, id, weight) in &self.ids {
            if pick < *weight {
                let args = match kind {
                    Kind::Echo => format!("{{\"seq\":{seq}}}"),
                    Kind::Fail => format!("{{\"message\":\"chaos-{seq}\"}}"),
                    Kind::Sleep => format!("{{\"ms\":{}}}", 10 + seq % 21),
                    _ => String::new(),
                };
                return (*id, args);
            }
            pick -= weight;
        }
        (self.probe, String::new())
    }

    /// Why a stored task's outcome is not what its function and arguments imply.
    fn check(&self, t: &StoredTask) -> Option<String> {
        let Some(kind) = self.kinds.get(&t.function_id).copied().or_else(|| {
            // The probe is a noop.
            (t.function_id == self.probe).then_some(Kind::Noop)
        }) else {
            return Some(format!("task {} has unknown function {}", t.id, t.function_id));
        };
        let completed = |expected: &str| {
            (t.state != "COMPLETED" || t.result != expected).then(|| {
                format!(
                    "task {} ({kind:?}, args {:?}): {} {:?} {:?}, expected COMPLETED {expected:?}",
                    t.id, t.args, t.state, t.result, t.error
                )
            })
        };
        let json_u64 = |key: &str| {
            serde_json::from_str::<serde_json::Value>(&t.args)
                .ok()
                .and_then(|v| v.get(key).and_then(|v| v.as_u64()))
        };
        match kind {
            Kind::Noop => completed("null"),
            Kind::Echo => completed(&t.args),
            Kind::Sleep => completed(&format!("{{\"slept_ms\":{}}}", json_u64("ms").unwrap_or(20))),
            Kind::Long => completed("{\"slept_ms\":1000}"),
            Kind::Spin => (t.state != "COMPLETED" || !t.result.contains("\"spun_ms\":5"))
                .then(|| format!("task {} (spin): {} {:?} {:?}", t.id, t.state, t.result, t.error)),
            Kind::Fail => {
                let message = serde_json::from_str::<serde_json::Value>(&t.args)
                    .ok()
                    .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                    .unwrap_or_else(|| "chaos".into());
                (t.state != "FAILED" || t.error != message).then(|| {
                    format!(
                        "task {} (fail): {} {:?}, expected FAILED {message:?}",
                        t.id, t.state, t.error
                    )
                })
            }
        }
    }
}

/// What the submitter saw.
#[derive(Default)]
struct Ledger {
    acknowledged: Vec<u64>,
    unacknowledged: usize,
    refused: usize,
}

/// Runs the scenario and audits the store. Fails only if the scenario itself could not
/// run; what the audit finds is in the report.
pub async fn run(spec: &ChaosSpec) -> anyhow::Result<ChaosReport> {
    anyhow::ensure!(spec.mode != Mode::Local, "chaos needs workers: use pull or push mode");
    anyhow::ensure!(spec.workers >= 1, "chaos needs at least one worker");
    let mut redis = RedisServer::start(true)?;
    let cluster_spec = ClusterSpec::new(spec.mode, spec.workers, spec.slots)
        .store(redis.url())
        .label(format!("chaos-{}", spec.mode))
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
    // The slow worker: one slot beside the fast ones.
    let slow = cluster.add_worker(1, &[]).await?;
    cluster
        .wait_for_workers(spec.workers + 1, Duration::from_secs(30))
        .await?;
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

    drain(&mut cluster, &redis, &mut tally).await?;
    report.drain_s = submission_ended.elapsed().as_secs_f64();
    let counters = tally.total();
    report.requeues = counters.requeued;
    report.duplicate_executions = counters.duplicate_results;

    let ledger = std::mem::take(&mut *ledger.lock().map_err(|_| anyhow::anyhow!("ledger poisoned"))?);
    report.acknowledged = ledger.acknowledged.len();
    report.unacknowledged = ledger.unacknowledged;
    report.refused = ledger.refused;
    audit(&cluster, &redis, &catalog, &ledger.acknowledged, &mut report).await?;
    cluster.stop().await?;
    Ok(report)
}

/// When each fault happens, in order.
fn schedule(spec: &ChaosSpec) -> Vec<(Duration, Fault)> {
    let at = |fraction: f64| spec.duration.mul_f64(fraction);
    let mut events = Vec::new();
    for k in 0..spec.worker_kills {
        let fraction = 0.08 + 0.8 * (k as f64 + 0.5) / spec.worker_kills as f64;
        events.push((at(fraction), Fault::KillWorker));
    }
    if spec.stall {
        events.push((at(0.2), Fault::StallWorker));
    }
    if spec.restart_dispatcher {
        events.push((at(0.45), Fault::RestartDispatcher));
    }
    if spec.restart_redis {
        events.push((at(0.7), Fault::RestartRedis));
    }
    events.sort_by_key(|(at, _)| *at);
    events
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillWorker,
    StallWorker,
    RestartDispatcher,
    RestartRedis,
}

/// Counters summed over dispatcher incarnations (each restart starts from zero).
#[derive(Default)]
struct Tally {
    banked: api::Counters,
    last: api::Counters,
}

impl Tally {
    fn saw(&mut self, info: &api::ClusterInfoResponse) {
        if let Some(c) = info.counters {
            self.last = c;
        }
    }

    fn bank(&mut self) {
        let (b, l) = (&mut self.banked, std::mem::take(&mut self.last));
        b.requeued += l.requeued;
        b.duplicate_results += l.duplicate_results;
    }

    fn total(&self) -> api::Counters {
        api::Counters {
            requeued: self.banked.requeued + self.last.requeued,
            duplicate_results: self.banked.duplicate_results + self.last.duplicate_results,
            ..api::Counters::default()
        }
    }
}

struct FaultContext<'a> {
    cluster: &'a mut Cluster,
    redis: &'a mut RedisServer,
    catalog: &'a Catalog,
    slots_of: &'a mut HashMap<usize, u32>,
    tally: &'a mut Tally,
    report: &'a mut ChaosReport,
    rng: &'a mut SmallRng,
    spec: &'a ChaosSpec,
}

impl FaultContext<'_> {
    async fn inject(&mut self, fault: Fault) -> anyhow::Result<()> {
        eprintln!("chaos: {fault:?}");
        match fault {
            Fault::KillWorker => self.kill_worker().await,
            Fault::StallWorker => self.stall_worker().await,
            Fault::RestartDispatcher => self.restart_dispatcher().await,
            Fault::RestartRedis => self.restart_redis().await,
        }
    }

    fn pick_worker(&mut self) -> anyhow::Result<usize> {
        let mut alive: Vec<usize> = self.slots_of.keys().copied().collect();
        alive.sort_unstable();
        anyhow::ensure!(!alive.is_empty(), "no worker left to break");
        Ok(alive[self.rng.random_range(0..alive.len())])
    }

    async fn kill_worker(&mut self) -> anyhow::Result<()> {
        let victim = self.pick_worker()?;
        let slots = self.slots_of.remove(&victim).unwrap_or(self.spec.slots);
        let t0 = Instant::now();
        self.cluster.kill_worker(victim).await?;
        self.wait_registered(victim, false).await?;
        self.report.kill_detect_ms.push(ms_since(t0));
        self.report.workers_killed += 1;
        let fresh = self.cluster.add_worker(slots, &[]).await?;
        self.slots_of.insert(fresh, slots);
        self.wait_registered(fresh, true).await
    }

    async fn stall_worker(&mut self) -> anyhow::Result<()> {
        let victim = self.pick_worker()?;
        let t0 = Instant::now();
        self.cluster.signal_worker(victim, Signal::SIGSTOP)?;
        let detected = self.wait_registered(victim, false).await;
        let stalled_for = t0.elapsed();
        // Resume it whatever happened, so nothing stays frozen.
        self.cluster.signal_worker(victim, Signal::SIGCONT)?;
        detected?;
        self.report.stall_detect_ms.push(stalled_for.as_secs_f64() * 1e3);
        let t1 = Instant::now();
        self.wait_registered(victim, true).await?;
        self.report.stall_rejoin_ms.push(ms_since(t1));
        self.report.workers_stalled += 1;
        Ok(())
    }

    async fn restart_dispatcher(&mut self) -> anyhow::Result<()> {
        if let Ok(info) = self.cluster.info().await {
            self.tally.saw(&info);
        }
        self.tally.bank();
        let t0 = Instant::now();
        self.cluster.kill_dispatcher().await?;
        self.cluster.restart_dispatcher().await?;
        self.report.dispatcher_ready_ms.push(ms_since(t0));
        let live = self.slots_of.len();
        let deadline = Instant::now() + FAULT_TIMEOUT;
        loop {
            if let Ok(info) = self.cluster.info().await {
                if info.workers.len() >= live {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("workers did not come back to the restarted dispatcher");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.report.dispatcher_workers_back_ms.push(ms_since(t0));
        probe(self.cluster, self.catalog.probe, &mut self.report.probe_ids).await?;
        self.report.dispatcher_recover_ms.push(ms_since(t0));
        self.report.dispatcher_restarts += 1;
        Ok(())
    }

    async fn restart_redis(&mut self) -> anyhow::Result<()> {
        self.redis.stop();
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.redis.restart()?;
        let t0 = Instant::now();
        probe(self.cluster, self.catalog.probe, &mut self.report.probe_ids).await?;
        self.report.redis_recover_ms.push(ms_since(t0));
        self.report.redis_restarts += 1;
        Ok(())
    }

    /// Waits until worker `index` is (or is no longer) registered, keeping counters.
    async fn wait_registered(&mut self, index: usize, registered: bool) -> anyhow::Result<()> {
        let name = format!("worker-{index}");
        let deadline = Instant::now() + FAULT_TIMEOUT;
        loop {
            if let Ok(info) = self.cluster.info().await {
                self.tally.saw(&info);
                if info.workers.iter().any(|w| w.name == name) == registered {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} was {} registered after {FAULT_TIMEOUT:?}",
                    if registered { "not" } else { "still" }
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Submits one noop until it is accepted and waits for its result: the time a user
/// waits for service after a fault. Every probe task submitted is noted in `ids`.
async fn probe(cluster: &Cluster, function_id: u64, ids: &mut Vec<u64>) -> anyhow::Result<()> {
    let deadline = Instant::now() + FAULT_TIMEOUT;
    loop {
        if Instant::now() > deadline {
            bail!("no task completed within {FAULT_TIMEOUT:?} of the fault");
        }
        let Ok(mut client) = cluster.connect().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let request = api::ExecuteRequest {
            function_id,
            args: String::new(),
        };
        let Ok(accepted) = client.execute(request).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let id = accepted.into_inner().task_id;
        ids.push(id);
        let Ok(stream) = client
            .watch_results(api::WatchResultsRequest { task_ids: vec![id] })
            .await
        else {
            continue;
        };
        let mut stream = stream.into_inner();
        let wait = tokio::time::timeout_at(deadline.into(), stream.next()).await;
        if let Ok(Some(Ok(msg))) = wait {
            if msg.tasks.iter().any(|t| t.task_id == id) {
                return Ok(());
            }
        }
        // The stream broke (another fault): the task is still in the store; try anew.
    }
}

/// Submits the workload at `rate` until `until`, recording what was acknowledged.
async fn submit(
    url: String,
    access: crate::driver::Access,
    catalog: Arc<Catalog>,
    rate: f64,
    until: Instant,
    ledger: Arc<Mutex<Ledger>>,
) {
    let period = Duration::from_secs_f64(CHUNK as f64 / rate.max(1.0));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut client = None;
    let mut seq = 0u64;
    while Instant::now() < until {
        tick.tick().await;
        if client.is_none() {
            client = crate::driver::connect_with(&url, &access).await.ok();
        }
        let tasks: Vec<api::ExecuteRequest> = (0..CHUNK)
            .map(|_| {
                seq += 1;
                let (function_id, args) = catalog.task(seq);
                api::ExecuteRequest { function_id, args }
            })
            .collect();
        let n = tasks.len();
        let Some(c) = client.as_mut() else {
            // Not even connected: nothing was sent.
            if let Ok(mut l) = ledger.lock() {
                l.refused += n;
            }
            continue;
        };
        let call = c.execute_batch(api::ExecuteBatchRequest { tasks });
        let answer = tokio::time::timeout(Duration::from_secs(5), call).await;
        let Ok(mut l) = ledger.lock() else { return };
        match answer {
            Ok(Ok(r)) => l.acknowledged.extend(r.into_inner().task_ids),
            Ok(Err(s))
                if matches!(
                    s.code(),
                    tonic::Code::ResourceExhausted | tonic::Code::Unavailable | tonic::Code::InvalidArgument
                ) && s.source().is_none() =>
            {
                // The dispatcher itself answered: nothing was stored.
                l.refused += n;
            }
            _ => {
                l.unacknowledged += n;
                client = None;
            }
        }
    }
}

/// Waits until nothing is queued or running and the store holds no unfinished task.
async fn drain(cluster: &mut Cluster, redis: &RedisServer, tally: &mut Tally) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut conn = redis_conn(redis).await?;
    loop {
        let unfinished: usize = redis::cmd("SCARD")
            .arg(format!("{PREFIX}unfinished"))
            .query_async(&mut conn)
            .await
            .context("SCARD unfinished")?;
        if let Ok(info) = cluster.info().await {
            tally.saw(&info);
            if unfinished == 0 && info.queued == 0 && info.running == 0 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{unfinished} tasks still unfinished 120 s after submission ended; logs in {}",
                cluster.log_dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn redis_conn(redis: &RedisServer) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(redis.url())?;
    Ok(client.get_multiplexed_async_connection().await?)
}

/// One task's record as the store holds it.
#[derive(Debug)]
struct StoredTask {
    id: u64,
    function_id: u64,
    args: String,
    state: String,
    result: String,
    error: String,
    attempts: u32,
}

/// Reads every task hash straight from Redis.
async fn stored_tasks(redis: &RedisServer) -> anyhow::Result<Vec<StoredTask>> {
    let mut conn = redis_conn(redis).await?;
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{PREFIX}task:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .context("SCAN")?;
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let mut tasks = Vec::with_capacity(keys.len());
    for part in keys.chunks(500) {
        let mut pipe = redis::pipe();
        for k in part {
            pipe.hgetall(k);
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await.context("HGETALL")?;
        for (key, h) in part.iter().zip(hashes) {
            let field = |name: &str| h.get(name).cloned().unwrap_or_default();
            let id = key
                .rsplit(':')
                .next()
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("task key {key}"))?;
            tasks.push(StoredTask {
                id,
                function_id: field("function_id").parse().unwrap_or(0),
                args: field("args"),
                state: field("state").to_ascii_uppercase(),
                result: field("result"),
                error: field("error"),
                attempts: field("attempts").parse().unwrap_or(0),
            });
        }
    }
    Ok(tasks)
}

/// Checks every stored task, and every acknowledged id through the API.
async fn audit(
    cluster: &Cluster,
    redis: &RedisServer,
    catalog: &Catalog,
    acknowledged: &[u64],
    report: &mut ChaosReport,
) -> anyhow::Result<()> {
    let stored = stored_tasks(redis).await?;
    let by_id: HashMap<u64, &StoredTask> = stored.iter().map(|t| (t.id, t)).collect();
    let acked: HashSet<u64> = acknowledged.iter().copied().collect();
    report.stored = stored.len();
    for t in &stored {
        if t.attempts > 1 {
            report.retried_tasks += 1;
        }
        if t.state != "COMPLETED" && t.state != "FAILED" {
            report.unfinished += 1;
            report.problem(format!("task {} is {} at the end", t.id, t.state));
        } else if let Some(why) = catalog.check(t) {
            report.wrong += 1;
            report.problem(why);
        }
        if !acked.contains(&t.id) && !report.probe_ids.contains(&t.id) {
            report.stored_unacknowledged += 1;
        }
    }
    for id in &acked {
        if !by_id.contains_key(id) {
            report.lost += 1;
            report.problem(format!("acknowledged task {id} is not in the store"));
        }
    }

    // The API view: each acknowledged id reported exactly once, terminal, as stored.
    let mut client = cluster.connect().await?;
    for part in acknowledged.chunks(1000) {
        let mut seen: HashMap<u64, usize> = HashMap::new();
        let mut stream = client
            .watch_results(api::WatchResultsRequest {
                task_ids: part.to_vec(),
            })
            .await
            .context("WatchResults for the audit")?
            .into_inner();
        let read = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(msg) = stream.next().await {
                let Ok(msg) = msg else { break };
                for t in msg.tasks {
                    *seen.entry(t.task_id).or_default() += 1;
                    let state = crate::driver::state_name(t.state);
                    let agrees = by_id.get(&t.task_id).is_some_and(|s| s.state == state);
                    if !agrees {
                        report.api_mismatches += 1;
                        report.problem(format!("task {}: the API says {state}, the store disagrees", t.task_id));
                    }
                }
                if seen.len() == part.len() {
                    break;
                }
            }
        })
        .await;
        if read.is_err() {
            report.problem("WatchResults did not report every acknowledged task within 30 s".into());
        }
        for id in part {
            if seen.get(id).copied().unwrap_or(0) != 1 {
                report.api_mismatches += 1;
                report.problem(format!(
                    "task {id} reported {} times",
                    seen.get(id).copied().unwrap_or(0)
                ));
            }
        }
    }
    Ok(())
}
