//! The page the dispatcher serves Prometheus (`--metrics ADDR`): the recorders of
//! [`crate::metrics`], and at each scrape the core's queue, workers and counters, read
//! through a reactor snapshot and the edge's counters.

use crate::metrics::TaskMetrics;
use crate::reactor::{Command, Inbox, Snapshot};
use crate::shared::Shared;
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::oneshot;
use volley_proto::exposition::Render;

mod per_function;
use per_function::per_function;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    mode: String,
    store: String,
    policy: String,
}

/// The values read at each scrape: the core's snapshot and the edge counters.
#[derive(Debug, Default)]
struct ScrapeView {
    snapshot: Option<Snapshot>,
    edge: [u64; 4],
    refusals: Vec<(&'static str, &'static str, u64)>,
    store_up: bool,
    /// Epoch led, leaders before, writes fenced (all 0 without `--ha`).
    ha: [u64; 3],
}

#[derive(Debug, Default)]
struct ClusterCollector {
    view: Mutex<ScrapeView>,
}

fn put<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: M,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(m)
}

impl Collector for ClusterCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let view = self.view.lock();
        let [dropped, refused_tasks, refused_workers, unauthenticated] = view.edge;
        put(
            &mut e,
            "dropped_frames",
            "Worker frames dropped: undecodable, wrong version or malformed.",
            ConstCounter::new(dropped),
        )?;
        for (name, help, n) in &view.refusals {
            put(&mut e, name, help, ConstCounter::new(*n))?;
        }
        put(
            &mut e,
            "refused_submissions",
            "Submissions refused with RESOURCE_EXHAUSTED because the queue was full.",
            ConstCounter::new(refused_tasks),
        )?;
        put(
            &mut e,
            "refused_workers",
            "Worker registrations refused (token, mode, version, slots).",
            ConstCounter::new(refused_workers),
        )?;
        put(
            &mut e,
            "unauthenticated_requests",
            "gRPC calls refused for a missing or wrong token.",
            ConstCounter::new(unauthenticated),
        )?;
        put(
            &mut e,
            "store_up",
            "1 while store writes succeed, 0 while they fail.",
            ConstGauge::new(i64::from(view.store_up)),
        )?;
        if view.ha[0] > 0 {
            let [epoch, takeovers, fenced] = view.ha;
            put(
                &mut e,
                "ha_leader",
                "1 while this dispatcher leads (--ha), 0 while it stands by.",
                ConstGauge::new(1),
            )?;
            put(
                &mut e,
                "ha_epoch",
                "The lease epoch of the leader: this dispatcher's while it leads.",
                ConstGauge::new(epoch as i64),
            )?;
            put(
                &mut e,
                "ha_takeovers",
                "Leaders of this deployment before this one (takeovers and restarts).",
                ConstGauge::new(takeovers as i64),
            )?;
            put(
                &mut e,
                "ha_fenced_writes",
                "Store writes Redis refused because another dispatcher leads.",
                ConstGauge::new(fenced as i64),
            )?;
        }
        let Some(s) = &view.snapshot else { return Ok(()) };
        let c = &s.counters;
        put(
            &mut e,
            "tasks_queued",
            "Tasks waiting for a worker.",
            ConstGauge::new(s.queued as i64),
        )?;
        put(
            &mut e,
            "tasks_in_flight",
            "Tasks held by workers (running or prefetched).",
            ConstGauge::new(s.running as i64),
        )?;
        put(
            &mut e,
            "tasks_dispatched",
            "Attempts sent to workers.",
            ConstCounter::new(c.dispatched),
        )?;
        put(
            &mut e,
            "tasks_requeued",
            "Attempts lost with their worker and queued again.",
            ConstCounter::new(c.requeued),
        )?;
        put(
            &mut e,
            "duplicate_results",
            "Results dropped: late, duplicate, for another attempt or from the wrong worker.",
            ConstCounter::new(c.duplicate_results),
        )?;
        put(
            &mut e,
            "duplicate_ids",
            "New tasks whose id was still in use: 0 unless the store's id counter went back.",
            ConstCounter::new(c.duplicate_ids),
        )?;
        put(
            &mut e,
            "workers_ready",
            "Workers registered and serving.",
            ConstGauge::new(s.workers.len() as i64),
        )?;
        let slots: u64 = s.workers.iter().map(|w| u64::from(w.slots)).sum();
        put(
            &mut e,
            "worker_slots",
            "Execution slots of the registered workers.",
            ConstGauge::new(slots as i64),
        )?;
        put(
            &mut e,
            "workers_joined",
            "Worker registrations accepted.",
            ConstCounter::new(c.workers_joined),
        )?;
        put(
            &mut e,
            "workers_lost",
            "Workers that left or were declared dead.",
            ConstCounter::new(c.workers_lost),
        )?;
        per_function(&mut e, &s.functions)
    }
}

/// Everything the dispatcher exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Fed by the gRPC edge and the store writer.
    pub tasks: Arc<TaskMetrics>,
    cluster: Arc<ClusterCollector>,
}

/// Static facts for `volley_build_info`.
#[derive(Debug, Clone)]
pub struct BuildFacts {
    /// local, pull or push.
    pub mode: String,
    /// The store's kind (`memory`, `redis`), never its address.
    pub store: String,
    /// The placement policy.
    pub policy: String,
}

impl Metrics {
    /// A registry under the `volley_` prefix.
    pub fn new(facts: BuildFacts) -> Self {
        let tasks = Arc::new(TaskMetrics::new());
        let cluster = Arc::new(ClusterCollector::default());
        let mut registry = Registry::with_prefix("volley");
        registry.register(
            "build",
            "The running dispatcher's version and configuration",
            Info::new(BuildLabels {
                version: volley_proto::VERSION.to_owned(),
                mode: facts.mode,
                store: facts.store,
                policy: facts.policy,
            }),
        );
        registry.register(
            "tasks_submitted",
            "Tasks stored on submission, by function",
            tasks.submitted.clone(),
        );
        registry.register(
            "tasks_finished",
            "Tasks that reached a terminal state, by function and state",
            tasks.finished.clone(),
        );
        registry.register_with_unit(
            "task_latency",
            "Submitted to completed, on the dispatcher's clock",
            Unit::Seconds,
            tasks.latency.clone(),
        );
        registry.register_with_unit(
            "task_queue_wait",
            "Submitted to the last attempt's dispatch",
            Unit::Seconds,
            tasks.queue_wait.clone(),
        );
        registry.register_with_unit(
            "store_write",
            "One store write of a batch of transitions",
            Unit::Seconds,
            tasks.store_write.clone(),
        );
        registry.register_collector(Box::new(cluster.clone()));
        Self {
            registry,
            tasks,
            cluster,
        }
    }

    /// The page renderer: asks the reactor for a snapshot, then encodes everything.
    pub fn render(self: &Arc<Self>, shared: Arc<Shared>, commands: Inbox) -> Render {
        let metrics = self.clone();
        Arc::new(move || {
            let (metrics, shared, commands) = (metrics.clone(), shared.clone(), commands.clone());
            Box::pin(async move {
                let (reply, answer) = oneshot::channel();
                commands
                    .send(Command::Snapshot(reply))
                    .map_err(|_| "the dispatcher is shutting down".to_owned())?;
                let snapshot = answer.await.map_err(|_| "the dispatcher is shutting down".to_owned())?;
                let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
                let edge = &shared.counters;
                *metrics.cluster.view.lock() = ScrapeView {
                    snapshot: Some(snapshot),
                    edge: [
                        load(&edge.dropped_frames),
                        load(&edge.rejected_submissions),
                        load(&edge.rejected_workers),
                        load(&edge.unauthenticated_requests),
                    ],
                    refusals: (shared.grpc_edge.get().into_iter())
                        .flat_map(|g| g.stats.counters())
                        .chain(shared.worker_socket.get().into_iter().flat_map(|w| w.counters()))
                        .chain(shared.rest.counters())
                        .collect(),
                    store_up: shared.store_healthy.load(Ordering::Acquire),
                    ha: shared.leadership.as_ref().map_or([0; 3], |l| {
                        [l.epoch, l.takeovers(), l.fenced_writes.load(Ordering::Relaxed)]
                    }),
                };
                volley_proto::exposition::encode(&metrics.registry)
            })
        })
    }
}
