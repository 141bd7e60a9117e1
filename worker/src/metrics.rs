//! What a worker tells Prometheus (`worker --metrics ADDR`): tasks received and finished,
//! what it holds, its registrations and losses of the dispatcher, and how long tasks waited
//! and ran inside it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;
use volley_proto::exposition::{MicrosHistogram, Render};
use volley_proto::wire::{Outcome, TaskResult};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabel {
    fault: &'static str,
}

/// How a runtime's failures begin (`docs/runtime-protocol.md`), as the fault label.
const FAULTS: [(&str, &str); 5] = [
    ("crashed: ", "crashed"),
    ("timeout: ", "timeout"),
    ("out_of_memory: ", "out_of_memory"),
    (volley_proto::wire::INIT_FAILED, "init_failed"),
    ("runtime_protocol: ", "runtime_protocol"),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    name: String,
}

/// A worker's counters, shared by its session loop and its `/metrics` page.
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    registry: Arc<Registry>,
    received: Counter,
    finished: Family<StateLabel, Counter>,
    in_flight: Gauge,
    connected: Gauge,
    registrations: Counter,
    losses: Counter,
    dropped_frames: Counter,
    runtime_faults: Family<FaultLabel, Counter>,
    wait: MicrosHistogram,
    run: MicrosHistogram,
}

impl WorkerMetrics {
    /// A registry under the `volley_worker_` prefix for a worker of `slots` named `name`.
    pub fn new(name: &str, slots: u32) -> Self {
        Self::with_runtime_starts(name, slots, &Default::default())
    }

    /// As [`WorkerMetrics::new`], showing `starts`, the counters its runtimes count
    /// their starts in (by origin, and the failed ones).
    pub fn with_runtime_starts(name: &str, slots: u32, starts: &crate::runtime::prewarm::StartCounts) -> Self {
        let mut registry = Registry::with_prefix("volley_worker");
        for (what, help, counter) in [
            ("runtime_starts_spawned", "User-function runtimes started as fresh processes", &starts.spawned),
            ("runtime_starts_forked", "Python runtimes forked from the fork server", &starts.forked),
            ("runtime_starts_prewarmed", "Runtimes taken prewarmed, started before their code was known", &starts.prewarmed),
            (
                "runtime_failed_starts",
                "Runtime starts that failed for the platform's reasons (a fork refused, a prewarmed runtime dead), each replaced",
                &starts.failed,
            ),
        ] {
            registry.register(what, help, counter.clone());
        }
        let slots_gauge: Gauge = Gauge::default();
        slots_gauge.set(i64::from(slots));
        let m = Self {
            registry: Arc::new(Registry::default()),
            received: Counter::default(),
            finished: Family::default(),
            in_flight: Gauge::default(),
            connected: Gauge::default(),
            registrations: Counter::default(),
            losses: Counter::default(),
            dropped_frames: Counter::default(),
            runtime_faults: Family::default(),
            wait: MicrosHistogram::new(10, 22),
            run: MicrosHistogram::new(10, 24),
        };
        let build = Info::new(BuildLabels {
            version: volley_proto::VERSION.to_owned(),
            name: name.to_owned(),
        });
        registry.register("build", "This worker's version and name", build);
        registry.register("slots", "Tasks this worker runs at once", slots_gauge);
        registry.register("tasks_received", "Tasks the dispatcher sent", m.received.clone());
        registry.register("tasks_finished", "Results sent back, by state", m.finished.clone());
        registry.register(
            "tasks_in_flight",
            "Tasks held: running or waiting for a slot",
            m.in_flight.clone(),
        );
        registry.register("connected", "1 while registered with a dispatcher", m.connected.clone());
        registry.register("registrations", "Welcomes from a dispatcher", m.registrations.clone());
        registry.register(
            "dispatcher_losses",
            "Sessions that ended with the dispatcher silent or gone",
            m.losses.clone(),
        );
        registry.register(
            "dropped_frames",
            "Undecodable frames from the dispatcher",
            m.dropped_frames.clone(),
        );
        registry.register(
            "runtime_faults",
            "User-function tasks that failed in their runtime, by fault (crashed, timeout, out_of_memory, init_failed, runtime_protocol)",
            m.runtime_faults.clone(),
        );
        registry.register_with_unit(
            "task_wait",
            "Time a task waited for a slot",
            Unit::Seconds,
            m.wait.clone(),
        );
        registry.register_with_unit("task_run", "Time a task's function ran", Unit::Seconds, m.run.clone());
        Self {
            registry: Arc::new(registry),
            ..m
        }
    }

    /// The page renderer.
    pub fn render(&self) -> Render {
        let registry = self.registry.clone();
        Arc::new(move || {
            let page = volley_proto::exposition::encode(&registry);
            Box::pin(async move { page })
        })
    }

    pub(crate) fn received(&self, n: usize, in_flight: u32) {
        self.received.inc_by(n as u64);
        self.in_flight.set(i64::from(in_flight));
    }

    pub(crate) fn finished(&self, results: &[TaskResult], in_flight: u32) {
        let completed = results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Completed(_)))
            .count() as u64;
        let failed = results.len() as u64 - completed;
        if failed > 0 {
            for r in results {
                let Outcome::Failed(e) = &r.outcome else { continue };
                if let Some((_, fault)) = FAULTS.iter().find(|(prefix, _)| e.starts_with(prefix)) {
                    self.runtime_faults.get_or_create(&FaultLabel { fault }).inc();
                }
            }
        }
        for (state, n) in [("completed", completed), ("failed", failed)] {
            if n > 0 {
                self.finished.get_or_create(&StateLabel { state }).inc_by(n);
            }
        }
        self.wait.observe_all(results.iter().map(|r| r.wait_us));
        self.run.observe_all(results.iter().map(|r| r.run_us));
        self.in_flight.set(i64::from(in_flight));
    }

    pub(crate) fn registered(&self) {
        self.registrations.inc();
        self.connected.set(1);
    }

    pub(crate) fn lost(&self) {
        self.losses.inc();
        self.connected.set(0);
    }

    pub(crate) fn dropped_frame(&self) {
        self.dropped_frames.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volley_proto::ids::TaskId;

    fn failed(error: &str) -> TaskResult {
        TaskResult {
            task_id: TaskId(1),
            attempt: 1,
            outcome: Outcome::Failed(error.into()),
            wait_us: 0,
            run_us: 0,
            log: String::new(),
        }
    }

    #[tokio::test]
    async fn runtime_faults_are_counted_by_kind_and_other_failures_are_not() {
        let m = WorkerMetrics::new("w", 1);
        m.finished(
            &[
                failed("crashed: the python runtime was killed by signal 11 (SIGSEGV)"),
                failed("crashed: the node runtime exited with status 3"),
                failed("timeout: the task ran past its 100 ms limit; its runtime was killed"),
                failed("init_failed: SyntaxError: invalid syntax"),
                failed("ValueError: bad input"),
            ],
            0,
        );
        let page = (m.render())().await.expect("a page");
        assert!(
            page.contains("volley_worker_runtime_faults_total{fault=\"crashed\"} 2"),
            "{page}"
        );
        assert!(
            page.contains("volley_worker_runtime_faults_total{fault=\"timeout\"} 1"),
            "{page}"
        );
        assert!(
            page.contains("volley_worker_runtime_faults_total{fault=\"init_failed\"} 1"),
            "{page}"
        );
        assert!(!page.contains("fault=\"out_of_memory\""), "{page}");
        assert!(
            page.contains("volley_worker_tasks_finished_total{state=\"failed\"} 5"),
            "{page}"
        );
    }
}
