//! The rows: one per measured point (`performance_test.csv`) and one per task
//! (`--tasks-csv`), with the figures derived from a batch's outcome.
//!
//! The seed's columns come first (`Mode,OpType,nWorkers,nTasks,TotalTime`), so tools written
//! for the original harness keep working; then the scaling, store and task parameters, the
//! derived figures, and the run's metadata (timestamp, git revision, host, cores).

use super::RunMeta;
use crate::workload::{OpType, Scaling};
use serde::{Deserialize, Serialize};
use volley_client::BatchOutcome;
use volley_proto::api;
use volley_proto::Mode;

/// The column names, in order.
pub const HEADER: &[&str] = &[
    "Mode",
    "OpType",
    "nWorkers",
    "nTasks",
    "TotalTime",
    "Scaling",
    "Store",
    "TaskMs",
    "SlotsPerWorker",
    "Repeat",
    "Throughput",
    "LatencyP50Ms",
    "LatencyP99Ms",
    "OverheadMs",
    "Efficiency",
    "FailedTasks",
    "Timestamp",
    "GitRevision",
    "Host",
    "Cores",
];

/// What was run at one point.
#[derive(Debug, Clone)]
pub struct PointSpec {
    /// The dispatcher's mode.
    pub mode: Mode,
    /// The kind of task.
    pub optype: OpType,
    /// Workers (for local: the pool counts as one worker with its slots).
    pub workers: usize,
    /// Weak or strong.
    pub scaling: Scaling,
    /// `memory` or the Redis URL.
    pub store: String,
    /// Each task's nominal duration.
    pub task_ms: u64,
    /// Slots per worker.
    pub slots_per_worker: u32,
    /// Which repetition.
    pub repeat: u32,
    /// A user function's name, written as the row's OpType instead of the built-in.
    pub function: Option<String>,
}

impl PointSpec {
    /// What the OpType column says: the built-in, or the user function's name.
    pub fn kind(&self) -> String {
        self.function.clone().unwrap_or_else(|| self.optype.to_string())
    }
}

/// One row of `performance_test.csv`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerfRow {
    #[serde(rename = "Mode")]
    mode: String,
    #[serde(rename = "OpType")]
    optype: String,
    #[serde(rename = "nWorkers")]
    workers: usize,
    #[serde(rename = "nTasks")]
    tasks: usize,
    #[serde(rename = "TotalTime")]
    total_time_s: f64,
    #[serde(rename = "Scaling")]
    scaling: String,
    #[serde(rename = "Store")]
    store: String,
    #[serde(rename = "TaskMs")]
    task_ms: u64,
    #[serde(rename = "SlotsPerWorker")]
    slots_per_worker: u32,
    #[serde(rename = "Repeat")]
    repeat: u32,
    #[serde(rename = "Throughput")]
    throughput: f64,
    #[serde(rename = "LatencyP50Ms")]
    latency_p50_ms: f64,
    #[serde(rename = "LatencyP99Ms")]
    latency_p99_ms: f64,
    #[serde(rename = "OverheadMs")]
    overhead_ms: f64,
    #[serde(rename = "Efficiency")]
    efficiency: Option<f64>,
    #[serde(rename = "FailedTasks")]
    failed: usize,
    #[serde(rename = "Timestamp")]
    timestamp: String,
    #[serde(rename = "GitRevision")]
    git_revision: String,
    #[serde(rename = "Host")]
    host: String,
    #[serde(rename = "Cores")]
    cores: usize,
}

impl PerfRow {
    /// Derives the figures of one point from its outcome.
    ///
    /// Ideal time is what perfect slots would take: `ceil(tasks / slots) × task_ms`.
    /// Overhead is (actual − ideal) time per task; efficiency is ideal / actual × 100
    /// (absent for zero-duration tasks, where it means nothing). Latency percentiles are
    /// each task's submitted→completed time on the dispatcher's clock.
    pub fn new(spec: &PointSpec, outcome: &BatchOutcome, meta: &RunMeta) -> Self {
        let tasks = outcome.submitted.max(1);
        let total = outcome.elapsed.as_secs_f64();
        let slots = (spec.workers as u64 * u64::from(spec.slots_per_worker)).max(1);
        let ideal = (tasks as u64).div_ceil(slots) as f64 * spec.task_ms as f64 / 1000.0;
        let mut lat: Vec<f64> = outcome
            .tasks
            .iter()
            .map(|t| t.completed_us.saturating_sub(t.submitted_us) as f64 / 1000.0)
            .collect();
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if lat.is_empty() {
                0.0
            } else {
                lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]
            }
        };
        Self {
            mode: spec.mode.to_string(),
            optype: spec.kind(),
            workers: spec.workers,
            tasks: outcome.submitted,
            total_time_s: total,
            scaling: spec.scaling.as_str().to_owned(),
            store: spec.store.clone(),
            task_ms: spec.task_ms,
            slots_per_worker: spec.slots_per_worker,
            repeat: spec.repeat,
            throughput: outcome.throughput(),
            latency_p50_ms: pct(0.50),
            latency_p99_ms: pct(0.99),
            overhead_ms: (total - ideal) / tasks as f64 * 1000.0,
            efficiency: (ideal > 0.0).then(|| ideal / total.max(1e-9) * 100.0),
            failed: outcome.failed,
            timestamp: meta.timestamp.clone(),
            git_revision: meta.git_revision.clone(),
            host: meta.host.clone(),
            cores: meta.cores,
        }
    }

    /// Tasks that ended FAILED.
    pub fn failed(&self) -> usize {
        self.failed
    }

    /// Efficiency in percent, if the tasks have a duration.
    pub fn efficiency(&self) -> Option<f64> {
        self.efficiency
    }

    /// The mode.
    pub fn mode_name(&self) -> &str {
        &self.mode
    }

    /// The optype.
    pub fn optype_name(&self) -> &str {
        &self.optype
    }

    /// `weak` or `strong`.
    pub fn scaling_kind(&self) -> &str {
        &self.scaling
    }

    /// Workers.
    pub fn workers_count(&self) -> usize {
        self.workers
    }

    /// Task duration, ms.
    pub fn task_duration_ms(&self) -> u64 {
        self.task_ms
    }

    /// Total time, s.
    pub fn total_seconds(&self) -> f64 {
        self.total_time_s
    }

    /// Throughput, tasks/s.
    pub fn tasks_per_second(&self) -> f64 {
        self.throughput
    }

    /// Overhead per task, ms.
    pub fn overhead(&self) -> f64 {
        self.overhead_ms
    }

    /// The p50 and p99 of submitted→completed, ms.
    pub fn latency_ms(&self) -> (f64, f64) {
        (self.latency_p50_ms, self.latency_p99_ms)
    }

    /// Tasks measured.
    pub fn task_count(&self) -> usize {
        self.tasks
    }

    /// Total time / tasks, ms.
    pub fn latency_per_task_ms(&self) -> f64 {
        self.total_time_s / self.tasks.max(1) as f64 * 1000.0
    }
}

/// A batch of `n` completed tasks over `secs`, task `i` finishing at 100 + i ms after
/// submission, having run 100 ms; for tests.
#[cfg(test)]
pub(crate) fn sample_outcome(n: usize, secs: f64) -> BatchOutcome {
    BatchOutcome {
        submitted: n,
        completed: n,
        failed: 0,
        elapsed: std::time::Duration::from_secs_f64(secs),
        tasks: (0..n as u64)
            .map(|i| api::TaskInfo {
                task_id: i + 1,
                state: api::TaskState::Completed as i32,
                submitted_us: 1_000_000,
                dispatched_us: 1_000_100 + i,
                completed_us: 1_000_000 + 100_000 + i * 1000,
                wait_us: 50,
                run_us: 100_000,
                ..Default::default()
            })
            .collect(),
    }
}

/// One task's timings, for `--tasks-csv`: enough to split latency into queueing in the
/// dispatcher, queueing in the worker, execution, and the network and bookkeeping rest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRow {
    /// The point's mode.
    pub mode: String,
    /// The point's optype.
    pub optype: String,
    /// The point's task duration, ms.
    pub task_ms: u64,
    /// The point's worker count.
    pub workers: usize,
    /// The point's repetition.
    pub repeat: u32,
    /// The task.
    pub task_id: u64,
    /// COMPLETED or FAILED.
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// Who ran it.
    pub worker: String,
    /// Submission, µs since the epoch (dispatcher clock).
    pub submitted_us: u64,
    /// Dispatch of the last attempt.
    pub dispatched_us: u64,
    /// Start of execution on the dispatcher's clock, estimated: the worker's clock is not
    /// comparable, so the network time is split evenly between the two directions.
    pub started_us: u64,
    /// End of execution, estimated likewise.
    pub finished_us: u64,
    /// Completion at the dispatcher.
    pub completed_us: u64,
    /// Waiting in the dispatcher's queue: dispatched − submitted.
    pub queue_us: u64,
    /// Waiting inside the worker for a slot (worker clock).
    pub worker_wait_us: u64,
    /// Execution (worker clock).
    pub run_us: u64,
    /// The rest of completed − dispatched: network both ways and bookkeeping.
    pub transfer_us: u64,
    /// completed − submitted.
    pub total_us: u64,
}

impl TaskRow {
    /// Splits one task's record into its stages.
    pub fn new(spec: &PointSpec, t: &api::TaskInfo) -> Self {
        let in_flight = t.completed_us.saturating_sub(t.dispatched_us);
        let transfer = in_flight.saturating_sub(t.wait_us + t.run_us);
        // Split the transfer evenly between the way out and the way back.
        let started = t.dispatched_us + transfer / 2 + t.wait_us;
        Self {
            mode: spec.mode.to_string(),
            optype: spec.kind(),
            task_ms: spec.task_ms,
            workers: spec.workers,
            repeat: spec.repeat,
            task_id: t.task_id,
            state: volley_client::state_name(t.state).to_owned(),
            attempts: t.attempts,
            worker: t.worker.clone(),
            submitted_us: t.submitted_us,
            dispatched_us: t.dispatched_us,
            started_us: started,
            finished_us: started + t.run_us,
            completed_us: t.completed_us,
            queue_us: t.dispatched_us.saturating_sub(t.submitted_us),
            worker_wait_us: t.wait_us,
            run_us: t.run_us,
            transfer_us: transfer,
            total_us: t.completed_us.saturating_sub(t.submitted_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::tables::append;

    fn outcome(n: usize, secs: f64) -> BatchOutcome {
        sample_outcome(n, secs)
    }

    #[test]
    fn figures_follow_the_definitions() {
        let spec = PointSpec {
            mode: Mode::Push,
            optype: OpType::Sleep,
            workers: 4,
            scaling: Scaling::Weak,
            store: "memory".into(),
            task_ms: 100,
            slots_per_worker: 1,
            repeat: 0,
            function: None,
        };
        // 20 tasks on 4 slots of 100 ms: ideal 0.5 s; took 0.625 s.
        let row = PerfRow::new(&spec, &outcome(20, 0.625), &RunMeta::collect());
        assert!((row.efficiency().unwrap() - 80.0).abs() < 1e-9);
        assert!((row.overhead_ms - 6.25).abs() < 1e-9);
        assert!((row.throughput - 32.0).abs() < 1e-9);
        assert!((row.latency_p50_ms - 110.0).abs() < 1e-9);
        let noop = PointSpec { task_ms: 0, ..spec };
        assert_eq!(
            PerfRow::new(&noop, &outcome(5, 0.01), &RunMeta::collect()).efficiency(),
            None
        );
    }

    #[test]
    fn header_once_then_rows() {
        let path = std::env::temp_dir().join(format!("volley-report-{}.csv", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let spec = PointSpec {
            mode: Mode::Local,
            optype: OpType::Noop,
            workers: 1,
            scaling: Scaling::Weak,
            store: "memory".into(),
            task_ms: 0,
            slots_per_worker: 2,
            repeat: 1,
            function: None,
        };
        let row = PerfRow::new(&spec, &outcome(3, 0.1), &RunMeta::collect());
        append(&path, std::slice::from_ref(&row)).unwrap();
        append(&path, &[row]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], HEADER.join(","));
        assert!(lines[0].starts_with("Mode,OpType,nWorkers,nTasks,TotalTime,"));
        assert!(lines[1].starts_with("local,noop,1,3,0.1,weak,memory,0,2,1,"));
        assert_eq!(lines[1].split(',').count(), HEADER.len());
        let _ = std::fs::remove_file(&path);
    }
}
