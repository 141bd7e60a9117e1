//! What the core shows of itself: counts, workers, per-function load, for `ClusterInfo`,
//! metrics and the elastic pool.

use super::{CoreCounters, FunctionLoad, SchedulerCore, WorkerSpec, WorkerView};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use volley_proto::ids::WorkerId;

impl SchedulerCore {
    /// Tasks waiting for a worker.
    pub fn queued(&self) -> usize {
        self.queues.len()
    }

    /// Tasks of `function` waiting for a worker.
    pub fn queued_of(&self, function: &str) -> usize {
        self.queues.len_of(function)
    }

    /// Tasks held by workers.
    pub fn running(&self) -> usize {
        self.tasks.len() - self.queues.len()
    }

    /// Per function: tasks waiting and running, the workers bound to it, and their idle
    /// time up to `now` (including instances that have left).
    pub fn functions(&self, now: Instant) -> Vec<FunctionLoad> {
        let mut out: BTreeMap<Arc<str>, FunctionLoad> = BTreeMap::new();
        let blank = |f: &Arc<str>| FunctionLoad::empty(f.to_string());
        for (f, n) in self.queues.lengths() {
            out.entry(f.clone()).or_insert_with(|| blank(f)).queued = n as u32;
        }
        for (f, n) in &self.init_failures {
            out.entry(f.clone()).or_insert_with(|| blank(f)).init_failures += n;
        }
        for (f, idle) in &self.departed_idle_us {
            out.entry(f.clone()).or_insert_with(|| blank(f)).idle_instance_us += idle;
        }
        for w in self.workers.values() {
            if let Some(f) = &w.spec.function {
                let row = out.entry(f.clone()).or_insert_with(|| blank(f));
                row.instances += 1;
                row.idle_instance_us += w.idle_until(now);
            }
            for t in &w.in_flight {
                if let Some(e) = self.tasks.get(t) {
                    out.entry(e.function.clone())
                        .or_insert_with(|| blank(&e.function))
                        .running += 1;
                }
            }
        }
        out.into_values().collect()
    }

    /// Event counts since start.
    pub fn counters(&self) -> CoreCounters {
        self.counters
    }

    /// The registered workers.
    pub fn workers(&self) -> Vec<WorkerView> {
        self.workers
            .iter()
            .map(|(id, w)| WorkerView {
                id: *id,
                name: w.spec.name.clone(),
                host: w.spec.host.clone(),
                pid: w.spec.pid,
                slots: w.spec.slots,
                in_flight: w.in_flight.len() as u32,
                function: w.spec.function.as_deref().map(str::to_owned),
            })
            .collect()
    }

    /// The workers bound to `function`: id, tasks held, and since when idle.
    pub fn bound_to(&self, function: &str) -> Vec<(WorkerId, u32, Instant)> {
        self.workers
            .iter()
            .filter(|(_, w)| w.spec.function.as_deref() == Some(function))
            .map(|(id, w)| (*id, w.in_flight.len() as u32, w.idle_since))
            .collect()
    }

    /// The registration of a worker, if it is known.
    pub fn worker_spec(&self, id: WorkerId) -> Option<&WorkerSpec> {
        self.workers.get(&id).map(|w| &w.spec)
    }

    /// The worker registered under `name`, if any.
    pub fn worker_named(&self, name: &str) -> Option<WorkerId> {
        self.workers
            .iter()
            .find(|(_, w)| w.spec.name == name)
            .map(|(id, _)| *id)
    }
}
