//! What the dispatcher tells Prometheus (`--metrics ADDR`): tasks by function and state,
//! latency and queue-wait histograms, store write time, and at each scrape the core's
//! queue, workers and counters. Labels are bounded: a function's registered name for the
//! first [`MAX_FUNCTION_LABELS`] names, `other` after that; never a task id.

use crate::core::Finished;
use crate::reactor::{Command, Snapshot};
use crate::shared::Shared;
use parking_lot::{Mutex, RwLock};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use volley_proto::exposition::{MicrosHistogram, Render};
use volley_proto::ids::FunctionId;
use volley_proto::wire::Outcome;

/// Distinct function names that get their own label; later ones share `other`.
pub const MAX_FUNCTION_LABELS: usize = 100;

mod per_function;
use per_function::per_function;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabel {
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedLabels {
    function: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    mode: String,
    store: String,
    policy: String,
}

/// Counters and histograms fed where tasks pass (the gRPC edge, the store writer).
#[derive(Debug)]
pub struct TaskMetrics {
    names: RwLock<HashMap<FunctionId, String>>,
    submitted: Family<FunctionLabel, Counter>,
    finished: Family<FinishedLabels, Counter>,
    latency: MicrosHistogram,
    queue_wait: MicrosHistogram,
    store_write: MicrosHistogram,
}

impl TaskMetrics {
    fn new() -> Self {
        Self {
            names: RwLock::new(HashMap::new()),
            submitted: Family::default(),
            finished: Family::default(),
            // 50 µs … 52 s: noop tasks on loopback up to the longest sleeps people run.
            latency: MicrosHistogram::new(50, 21),
            queue_wait: MicrosHistogram::new(50, 21),
            // 10 µs … 5 s: an in-process map up to Redis coming back from an outage.
            store_write: MicrosHistogram::new(10, 20),
        }
    }

    /// Remembers the label of a function the dispatcher has seen.
    pub fn name_function(&self, id: FunctionId, name: &str) {
        let mut names = self.names.write();
        if names.contains_key(&id) {
            return;
        }
        let distinct = names.len();
        let label = if distinct < MAX_FUNCTION_LABELS { name } else { "other" };
        names.insert(id, label.to_owned());
    }

    fn label(&self, id: FunctionId) -> String {
        self.names
            .read()
            .get(&id)
            .cloned()
            .unwrap_or_else(|| "other".to_owned())
    }

    /// Counts stored submissions, in runs of one function.
    pub fn submitted(&self, functions: impl Iterator<Item = FunctionId>) {
        for (function, n) in runs(functions) {
            self.submitted
                .get_or_create(&FunctionLabel {
                    function: self.label(function),
                })
                .inc_by(n);
        }
    }

    /// Counts a stored batch of outcomes and observes their latency and queue wait.
    pub fn finished(&self, batch: &[Finished]) {
        // A batch holds few functions: a short list beats hashing every outcome.
        let mut counts: Vec<((FunctionId, bool), u64)> = Vec::new();
        for f in batch {
            let key = (f.function_id, matches!(f.outcome, Outcome::Completed(_)));
            match counts.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => counts.push((key, 1)),
            }
        }
        self.latency
            .observe_all(batch.iter().map(|f| f.completed_us.saturating_sub(f.submitted_us)));
        self.queue_wait.observe_all(
            batch
                .iter()
                .filter(|f| f.dispatched_us > 0)
                .map(|f| f.dispatched_us.saturating_sub(f.submitted_us)),
        );
        for ((function, completed), n) in counts {
            let labels = FinishedLabels {
                function: self.label(function),
                state: if completed { "completed" } else { "failed" },
            };
            self.finished.get_or_create(&labels).inc_by(n);
        }
    }

    /// Observes one store write (a batch of transitions).
    pub fn store_write(&self, took: Duration) {
        self.store_write.observe_all([took.as_micros() as u64]);
    }
}

fn runs(ids: impl Iterator<Item = FunctionId>) -> Vec<(FunctionId, u64)> {
    let mut out: Vec<(FunctionId, u64)> = Vec::new();
    for id in ids {
        match out.last_mut() {
            Some((last, n)) if *last == id => *n += 1,
            _ => out.push((id, 1)),
        }
    }
    out
}

/// The values read at each scrape: the core's snapshot and the edge counters.
#[derive(Debug, Default)]
struct ScrapeView {
    snapshot: Option<Snapshot>,
    edge: [u64; 4],
    refusals: Vec<(&'static str, &'static str, u64)>,
    store_up: bool,
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
    pub fn render(self: &Arc<Self>, shared: Arc<Shared>, commands: mpsc::Sender<Command>) -> Render {
        let metrics = self.clone();
        Arc::new(move || {
            let (metrics, shared, commands) = (metrics.clone(), shared.clone(), commands.clone());
            Box::pin(async move {
                let (reply, answer) = oneshot::channel();
                commands
                    .send(Command::Snapshot(reply))
                    .await
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
                        .collect(),
                    store_up: shared.store_healthy.load(Ordering::Acquire),
                };
                volley_proto::exposition::encode(&metrics.registry)
            })
        })
    }
}
