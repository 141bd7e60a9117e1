//! The cold-start study (`client coldstart`) on elastic pools this process starts:
//!
//! - **scale from zero**: one task after the pool has retired every instance (so idle
//!   longer than the keep-alive), then one more on the instance it woke; the cold task's
//!   latency, the warm one's, and the cold start stage by stage;
//! - **burst**: a step from nothing to R tasks/s at target concurrency `slots`, open loop:
//!   how long until enough instances are ready, latency during the burst, nothing lost.
//!
//! Every time here is the dispatcher's (µs since the epoch): a cold task's stages come
//! from its `TaskInfo`, so they add up to its latency exactly.
//!
//! - [`languages`] — the interpreters, handlers and bare starts of the per-runtime study;
//! - [`runtimes`] — that study: cold starts of user functions per language and per way
//!   of starting (fresh, prewarmed, forked);
//! - [`warm`] — warm latency per language at set rates, one slot per instance or many.

pub mod languages;
pub mod runtimes;
pub mod warm;

use crate::studies::load::ledger::Fate;
use crate::studies::load::{drive, Arrival, Arrivals};
use crate::studies::replay::elastic::{PoolSample, PoolWatch};
use std::sync::Arc;
use std::time::{Duration, Instant};
use volley_client::{register_spec, run_batch, Client};
use volley_proto::api;
use volley_proto::Mode;
use volley_testbed::cluster::{Cluster, ClusterSpec};

/// One elastic pool: its policy and instances.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The dispatcher's mode (push or pull).
    pub mode: Mode,
    /// The scaling policy.
    pub policy: String,
    /// Instances at most.
    pub max_instances: u32,
    /// Slots per instance (container concurrency).
    pub slots: u32,
    /// Emulated runtime start-up, ms.
    pub init_ms: u64,
    /// Further dispatcher flags (`--prewarm`, `--fork-server`).
    pub extra_args: Vec<String>,
    /// The dispatcher's environment beyond this process's (the interpreters).
    pub env: Vec<(String, String)>,
}

impl Pool {
    /// Starts a dispatcher with this pool and no worker.
    pub async fn start(&self, label: &str) -> anyhow::Result<Cluster> {
        let worker = volley_testbed::binaries::path("worker")?;
        let spec = ClusterSpec::new(self.mode, 0, self.slots)
            .args(["--autoscale", &self.policy, "--provision", "local"])
            .args(["--worker-bin".to_owned(), worker.display().to_string()])
            .args([
                "--max-instances".to_owned(),
                self.max_instances.to_string(),
                "--instance-slots".to_owned(),
                self.slots.to_string(),
                "--init-ms".to_owned(),
                self.init_ms.to_string(),
            ])
            .args(self.extra_args.iter().cloned())
            .label(label)
            .log_level("warn");
        let spec = self.env.iter().fold(spec, |spec, (k, v)| spec.env(k, v));
        Cluster::start(spec).await
    }
}

/// A cold task's latency, stage by stage (µs). A stage that began before the task was
/// submitted counts from its submission, so the stages sum to the latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Breakdown {
    /// Submitted → the scaler decided to start an instance.
    pub queued_us: u64,
    /// Decision → process spawned.
    pub decide_us: u64,
    /// Spawn → the process's `main` began.
    pub spawn_us: u64,
    /// `main` → its user function's runtime spawned (0 for a built-in).
    pub worker_us: u64,
    /// Runtime spawned → up, ready for code: the interpreter's own start (0 for a
    /// built-in, and for a prewarmed runtime, which was up before).
    pub runtime_us: u64,
    /// Up → the code loaded and READY (a built-in: `--init-ms`).
    pub init_us: u64,
    /// Initialisation done → registered with the dispatcher.
    pub register_us: u64,
    /// Registered → the task sent to it.
    pub dispatch_us: u64,
    /// Sent → finished (the run itself and the trip back).
    pub finish_us: u64,
}

impl Breakdown {
    /// The breakdown of a cold task; `None` for a warm one.
    pub fn of(t: &api::TaskInfo) -> Option<Self> {
        // A stage stamped before submission (the instance was already starting) counts
        // from submission.
        let marks = t.cold_start_marks()?.map(|us| us.max(t.submitted_us));
        let d = |i: usize| marks[i + 1].saturating_sub(marks[i]);
        Some(Self {
            queued_us: d(0),
            decide_us: d(1),
            spawn_us: d(2),
            worker_us: d(3),
            runtime_us: d(4),
            init_us: d(5),
            register_us: d(6),
            dispatch_us: d(7),
            finish_us: d(8),
        })
    }

    /// Submitted → sent to a worker: the time the cold start added before the task ran.
    pub fn waited_us(&self) -> u64 {
        self.queued_us
            + self.decide_us
            + self.spawn_us
            + self.worker_us
            + self.runtime_us
            + self.init_us
            + self.register_us
            + self.dispatch_us
    }

    /// The platform's share of the wait: everything but the language's start
    /// (`runtime_us`) and the user's init (`init_us`).
    pub fn platform_us(&self) -> u64 {
        self.waited_us() - self.runtime_us - self.init_us
    }

    /// All stages: the task's latency.
    pub fn total_us(&self) -> u64 {
        self.waited_us() + self.finish_us
    }
}

/// A task's latency on the dispatcher's clock, submitted → finished, µs.
pub fn latency_us(t: &api::TaskInfo) -> u64 {
    t.completed_us.saturating_sub(t.submitted_us)
}

/// One scale-from-zero trial.
#[derive(Debug, Clone)]
pub struct Trial {
    /// Its number, from 1.
    pub trial: usize,
    /// The cold task.
    pub task_id: u64,
    /// The cold task's latency, µs.
    pub cold_us: u64,
    /// The next task's, on the same instance, µs.
    pub warm_us: u64,
    /// cold − warm, µs.
    pub extra_us: i64,
    /// The cold task's stages.
    pub stages: Breakdown,
    /// extra − the stages up to dispatch: what the breakdown leaves unexplained, µs.
    pub residual_us: i64,
    /// The reference start timed beside this trial (the bare interpreter's), µs.
    pub reference_us: Option<u64>,
}

/// A start timed beside each trial, in the trial's conditions, µs: the bare interpreter
/// the runtimes' study compares a runtime's start with.
pub type Reference<'a> = &'a dyn Fn() -> anyhow::Result<u64>;

/// The quiet on each side of a reference start: the retired instance's exit is over
/// before it, and its own exit before the cold start.
const REFERENCE_QUIET: Duration = Duration::from_millis(100);

/// Scale-from-zero trials on a running pool: each waits until the pool has no instance
/// of the function, sends one task (cold), then one more (warm).
pub async fn scale_from_zero(
    cluster: &Cluster,
    spec: &str,
    trials: usize,
    progress: impl FnMut(&Trial),
) -> anyhow::Result<(Vec<Trial>, Vec<api::TaskInfo>)> {
    let client = cluster.connect().await?;
    let (function, args) = register_spec(&mut client.clone(), spec).await?;
    trials_of(&client, function, &args, trials, None, progress).await
}

/// Scale-from-zero trials of a registered function; with a `reference`, that start is
/// timed in each trial once the pool is at zero, before the cold task, so the two are
/// timed in the same conditions (a machine idle for the keep-alive, caches as cold) and
/// drift over the run moves both alike.
pub async fn trials_of(
    client: &Client,
    function: u64,
    args: &str,
    trials: usize,
    reference: Option<Reference<'_>>,
    mut progress: impl FnMut(&Trial),
) -> anyhow::Result<(Vec<Trial>, Vec<api::TaskInfo>)> {
    let mut out = Vec::with_capacity(trials);
    let mut tasks = Vec::new();
    for trial in 1..=trials {
        wait_for_zero(client, Duration::from_secs(60)).await?;
        let reference_us = match reference {
            Some(start) => {
                tokio::time::sleep(REFERENCE_QUIET).await;
                // Timed with a blocking wait, the most exact clock for a spawn to exit:
                // nothing else of this client's is in flight between trials.
                let us = start()?;
                tokio::time::sleep(REFERENCE_QUIET).await;
                Some(us)
            }
            None => None,
        };
        let cold = one(client, function, args).await?;
        let warm = one(client, function, args).await?;
        let stages = Breakdown::of(&cold).ok_or_else(|| {
            anyhow::anyhow!("trial {trial}: the first task after scale-to-zero was not cold: {cold:?}")
        })?;
        anyhow::ensure!(
            !warm.cold,
            "trial {trial}: the task after the cold one waited for an instance start too"
        );
        let (cold_us, warm_us) = (latency_us(&cold), latency_us(&warm));
        let extra_us = cold_us as i64 - warm_us as i64;
        let t = Trial {
            trial,
            task_id: cold.task_id,
            cold_us,
            warm_us,
            extra_us,
            stages,
            residual_us: extra_us - stages.waited_us() as i64,
            reference_us,
        };
        progress(&t);
        out.push(t);
        tasks.extend([cold, warm]);
    }
    Ok((out, tasks))
}

async fn one(client: &Client, function: u64, args: &str) -> anyhow::Result<api::TaskInfo> {
    let outcome = run_batch(client, vec![(function, args.to_owned())], 1, Duration::from_secs(60)).await?;
    let task = outcome.tasks.into_iter().next();
    match task {
        Some(t) if t.state == api::TaskState::Completed as i32 => Ok(t),
        other => anyhow::bail!("a study task did not complete: {other:?}"),
    }
}

/// Waits until no instance is starting or registered.
async fn wait_for_zero(client: &Client, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let info = client
            .clone()
            .cluster_info(api::ClusterInfoRequest {})
            .await?
            .into_inner();
        let instances: u32 = info.functions.iter().map(|f| f.ready + f.starting).sum();
        if instances == 0 && info.workers.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the pool did not scale to zero within {limit:?} ({instances} instances)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A burst: a step from nothing to `rate` tasks/s of `sleep:task_ms`.
#[derive(Debug, Clone)]
pub struct Burst {
    /// Tasks per second.
    pub rate: f64,
    /// Each task's sleep, ms.
    pub task_ms: u64,
    /// How long tasks are sent.
    pub duration: Duration,
    /// How long to wait for the last results.
    pub drain: Duration,
}

/// What a burst measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BurstResult {
    /// Slots per instance.
    pub slots: u32,
    /// The policy.
    pub policy: String,
    /// Target rate, tasks/s.
    pub rate: f64,
    /// Requests sent.
    pub sent: u64,
    /// COMPLETED.
    pub completed: u64,
    /// FAILED.
    pub failed: u64,
    /// Sent and never completed (failed, refused, unfinished, unknown).
    pub lost: u64,
    /// Completed tasks that waited for an instance start.
    pub cold_starts: u64,
    /// Latency from the intended send, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Instances the load needs: ceil(rate × task time / slots).
    pub needed: u32,
    /// From the first send until `needed` instances were registered, s (empty: never).
    pub time_to_ready_s: Option<f64>,
    /// Most instances at once.
    pub peak_instances: u32,
    /// Instances started.
    pub instance_starts: u64,
    /// Instance-seconds registered and idle.
    pub idle_instance_s: f64,
}

/// Runs a burst on a fresh pool; also the pool over time.
pub async fn burst(pool: &Pool, b: &Burst) -> anyhow::Result<(BurstResult, Vec<PoolSample>)> {
    let cluster = pool.start(&format!("coldstart-burst-{}", pool.slots)).await?;
    let result = run_burst(&cluster, pool, b).await;
    cluster.stop().await?;
    result
}

async fn run_burst(cluster: &Cluster, pool: &Pool, b: &Burst) -> anyhow::Result<(BurstResult, Vec<PoolSample>)> {
    let client = cluster.connect().await?;
    let spec = format!("sleep:{}", b.task_ms);
    let (function, args) = register_spec(&mut client.clone(), &spec).await?;
    let schedule = Arc::new(Arrivals::new(Arrival::Uniform, b.rate, 1)?.schedule(b.duration));
    let requests = |_: usize| api::ExecuteRequest {
        function_id: function,
        args: args.clone(),
    };
    let watch = PoolWatch::start(client.clone(), Duration::from_millis(50));
    let driven = drive::drive(
        &client,
        None,
        Default::default(),
        schedule.clone(),
        requests,
        b.duration + b.drain,
    )
    .await?;
    let info = client
        .clone()
        .cluster_info(api::ClusterInfoRequest {})
        .await?
        .into_inner();
    // Times from the first send, which the engine makes a lead after it starts.
    let lead = crate::studies::load::LEAD.as_secs_f64();
    let samples: Vec<PoolSample> = watch
        .stop()
        .into_iter()
        .map(|(t, r, s, q)| (t - lead, r, s, q))
        .collect();
    let peak = PoolWatch::peak(&samples);

    let mut latencies = Vec::new();
    let mut r = BurstResult {
        slots: pool.slots,
        policy: pool.policy.clone(),
        rate: b.rate,
        needed: ((b.rate * b.task_ms as f64 / 1e3) / f64::from(pool.slots))
            .ceil()
            .max(1.0) as u32,
        peak_instances: peak,
        instance_starts: info.counters.map_or(0, |c| c.workers_joined),
        idle_instance_s: info.functions.iter().map(|f| f.idle_instance_us).sum::<u64>() as f64 / 1e6,
        ..Default::default()
    };
    for (intended, req) in schedule.iter().zip(&driven.ledger.requests) {
        r.sent += u64::from(req.sent.is_some());
        match &req.fate {
            Fate::Finished(f) if f.completed => {
                r.completed += 1;
                r.cold_starts += u64::from(f.cold);
                latencies.push(f.at.saturating_sub(*intended).as_secs_f64() * 1e3);
            }
            Fate::Finished(_) => r.failed += 1,
            _ => {}
        }
    }
    r.lost = r.sent - r.completed;
    latencies.sort_by(f64::total_cmp);
    r.p50_ms = crate::stats::percentile(&latencies, 0.5).unwrap_or(0.0);
    r.p99_ms = crate::stats::percentile(&latencies, 0.99).unwrap_or(0.0);
    r.time_to_ready_s = samples.iter().find(|s| s.1 >= r.needed).map(|s| s.0.max(0.0));
    Ok((r, samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_sum_to_the_latency_and_clip_at_submission() {
        let t = api::TaskInfo {
            cold: true,
            cold_start: Some(api::ColdStart {
                decided_us: 90,
                spawned_us: 120,
                process_us: 150,
                runtime_began_us: 160,
                runtime_up_us: 300,
                init_done_us: 400,
                registered_us: 410,
            }),
            submitted_us: 100,
            dispatched_us: 415,
            completed_us: 500,
            ..Default::default()
        };
        let b = Breakdown::of(&t).expect("cold");
        assert_eq!(b.queued_us, 0, "decided before the task came: no wait for a decision");
        assert_eq!(b.decide_us, 20);
        assert_eq!((b.spawn_us, b.worker_us, b.runtime_us, b.init_us), (30, 10, 140, 100));
        assert_eq!((b.register_us, b.dispatch_us, b.finish_us), (10, 5, 85));
        assert_eq!(b.total_us(), latency_us(&t));
        assert_eq!(b.waited_us(), 315);
        assert_eq!(b.platform_us(), 315 - 140 - 100);
        assert!(Breakdown::of(&api::TaskInfo::default()).is_none());
    }
}
