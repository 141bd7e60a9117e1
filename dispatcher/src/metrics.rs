//! What the dispatcher records as tasks pass (the gRPC edge, the store writer): tasks by
//! function and state, latency and queue-wait histograms, store write time. A leaf: the
//! page that serves them is [`crate::scrape`]. Labels are bounded: a function's registered
//! name for the first [`MAX_FUNCTION_LABELS`] names, `other` after that; never a task id.

use crate::core::Finished;
use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::collections::HashMap;
use std::time::Duration;
use volley_proto::exposition::MicrosHistogram;
use volley_proto::ids::FunctionId;
use volley_proto::wire::Outcome;

/// Distinct function names that get their own label; later ones share `other`.
pub const MAX_FUNCTION_LABELS: usize = 100;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
/// A function's label, as the recorders and the scrape page share it.
pub(crate) struct FunctionLabel {
    pub(crate) function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
/// A finished task's labels: its function and terminal state.
pub(crate) struct FinishedLabels {
    function: String,
    state: &'static str,
}

/// Counters and histograms fed where tasks pass (the gRPC edge, the store writer).
#[derive(Debug)]
pub struct TaskMetrics {
    names: RwLock<HashMap<FunctionId, String>>,
    pub(crate) submitted: Family<FunctionLabel, Counter>,
    pub(crate) finished: Family<FinishedLabels, Counter>,
    pub(crate) latency: MicrosHistogram,
    pub(crate) queue_wait: MicrosHistogram,
    pub(crate) store_write: MicrosHistogram,
}

impl TaskMetrics {
    pub(crate) fn new() -> Self {
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
