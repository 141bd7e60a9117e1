//! What goes in and out of the scheduler core: the time of an event, the tasks and
//! workers it is told about, the transitions and assignments it emits through [`Comm`],
//! and what it reports.

use super::Policy;
use std::sync::Arc;
use std::time::{Duration, Instant};
use volley_proto::function::Job;
use volley_proto::ids::{FunctionId, TaskId, WorkerId};
use volley_proto::wire::{Outcome, TaskAssignment};

/// The time an event happened: monotonic for deadlines, wall clock (µs since the Unix
/// epoch) for records.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// For leases and liveness.
    pub instant: Instant,
    /// For task timestamps.
    pub unix_us: u64,
}

impl Now {
    /// The current time. The instant is read from tokio's clock, which is the system's
    /// except in tests that pause it to run liveness and leases on virtual time.
    pub fn current() -> Self {
        Self {
            instant: tokio::time::Instant::now().into_std(),
            unix_us: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
        }
    }

    /// This time plus `d`.
    pub fn after(self, d: Duration) -> Self {
        Self {
            instant: self.instant + d,
            unix_us: self.unix_us + d.as_micros() as u64,
        }
    }
}

/// Scheduling parameters fixed at start.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Attempts before a task whose workers keep dying is FAILED.
    pub max_attempts: u32,
    /// Tasks a worker may hold beyond its slots.
    pub prefetch: u32,
    /// How push (and pull, among workers with credits) picks a worker.
    pub policy: Policy,
    /// How long one attempt may take from dispatch to result.
    pub lease: Duration,
    /// Silence after which a worker is dead.
    pub liveness: Duration,
    /// The longest a task may wait for a worker before it fails (`None`: for ever).
    pub max_queue_wait: Option<Duration>,
    /// A task sent while its worker's slots are all taken is RUNNING only once the worker
    /// says a slot began it (`true`), or as soon as it is sent (`false`: one message less
    /// per such task, and RUNNING then means dispatched).
    pub report_starts: bool,
}

/// How a worker's capacity is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// Pull: the worker grants credits with `Ready`; each task sent spends one.
    Credits,
    /// Push and local: at most `slots + prefetch` tasks in flight.
    Slots,
}

/// A worker as it registers.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// Stable across reconnects; shown to operators.
    pub name: String,
    /// Host name, for operators.
    pub host: String,
    /// Process id, for operators.
    pub pid: u32,
    /// Tasks it runs at once.
    pub slots: u32,
    /// How its capacity is counted.
    pub capacity: Capacity,
    /// Whether silence makes it dead (false for the in-process local pool).
    pub monitored: bool,
    /// The one function it serves (an instance of it); `None`: every function.
    pub function: Option<Arc<str>>,
    /// How it started, when a provisioner started it; tasks submitted before it
    /// registered and run by it are cold.
    pub start: Option<InstanceStart>,
}

/// How a provisioned instance came to be, on the dispatcher's clock (µs since the
/// epoch), each time at or after the one before: the stages of a cold start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceStart {
    /// The scaler decided to start it.
    pub decided_us: u64,
    /// The provisioner spawned its process.
    pub spawned_us: u64,
    /// Its `main` began.
    pub process_us: u64,
    /// Its user function's runtime was spawned (or, prewarmed, given its code); for a
    /// built-in, `process_us`.
    pub runtime_began_us: u64,
    /// That runtime was up, ready for code (its interpreter's start); for a built-in,
    /// `process_us`.
    pub runtime_up_us: u64,
    /// Its runtime initialisation ended: the code loaded and READY (or `--init-ms`).
    pub init_done_us: u64,
    /// It registered with this dispatcher.
    pub registered_us: u64,
}

impl InstanceStart {
    /// From a worker's report and the time its `Hello` arrived. The worker's own times are
    /// durations before its `Hello` left, so the one-way transit of that message counts
    /// in "spawn → process ready"; out-of-order values are clamped into order.
    pub fn from_report(r: &volley_proto::wire::StartReport, registered_us: u64) -> Self {
        let decided_us = r.decided_us.min(registered_us);
        let spawned_us = r.spawned_us.clamp(decided_us, registered_us);
        let process_us = registered_us
            .saturating_sub(r.hello_after_us)
            .clamp(spawned_us, registered_us);
        let init_done_us = process_us.saturating_add(r.init_done_after_us).min(registered_us);
        let after = |us: u64| process_us.saturating_add(us).min(init_done_us);
        let (runtime_began_us, runtime_up_us) = match r.runtime {
            Some(rt) => {
                let began = after(rt.began_after_us);
                (began, after(rt.up_after_us).max(began))
            }
            None => (process_us, process_us),
        };
        Self {
            decided_us,
            spawned_us,
            process_us,
            runtime_began_us,
            runtime_up_us,
            init_done_us,
            registered_us,
        }
    }

    /// Whether a task submitted at `submitted_us` waited for this start.
    pub fn delayed(&self, submitted_us: u64) -> bool {
        submitted_us < self.registered_us
    }
}

impl WorkerSpec {
    /// Whether it may run tasks of `function`.
    pub fn serves(&self, function: &str) -> bool {
        self.function.as_deref().is_none_or(|f| f == function)
    }
}

/// A task entering the core: fresh from a client, or recovered from the store.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// The task.
    pub id: TaskId,
    /// Its function, for records.
    pub function_id: FunctionId,
    /// Its function's registered name: what function-bound workers serve.
    pub function: Arc<str>,
    /// What to run.
    pub job: Job,
    /// Attempts already made (0 for a fresh task).
    pub attempts: u32,
    /// When it was submitted.
    pub submitted_us: u64,
}

/// Why a worker left, or why an attempt was abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// The worker said goodbye.
    Goodbye,
    /// Its connection closed.
    Disconnected,
    /// It missed its heartbeats.
    Silent,
    /// It registered again, so its old registration is void.
    Replaced,
    /// One attempt's lease ran out (the worker may live on).
    LeaseExpired,
}

impl LossReason {
    /// The error a task gets when this loss uses its last attempt.
    pub fn failure(self) -> &'static str {
        match self {
            LossReason::LeaseExpired => "lease_expired",
            _ => "worker_lost",
        }
    }
}

/// A task state change the store must record, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Dispatched as attempt `attempt` to `worker`.
    Running {
        /// The task.
        task: TaskId,
        /// The attempt now running.
        attempt: u32,
        /// Who runs it.
        worker: Arc<str>,
        /// When it was sent.
        at_us: u64,
    },
    /// Back in the queue after attempt `attempts` was lost.
    Requeued {
        /// The task.
        task: TaskId,
        /// Attempts made so far.
        attempts: u32,
    },
    /// Reached COMPLETED or FAILED; final.
    Finished(Finished),
}

/// A task's terminal record: everything a client is told.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The task.
    pub task: TaskId,
    /// Its function.
    pub function_id: FunctionId,
    /// The result JSON, or the error.
    pub outcome: Outcome,
    /// Attempts made.
    pub attempts: u32,
    /// Who ran the last attempt, if anyone did.
    pub worker: Option<Arc<str>>,
    /// When it was submitted.
    pub submitted_us: u64,
    /// When the last attempt was sent (0 if never).
    pub dispatched_us: u64,
    /// When the dispatcher accepted the outcome.
    pub completed_us: u64,
    /// Worker-side queueing.
    pub wait_us: u64,
    /// Execution time.
    pub run_us: u64,
    /// The start of the instance it waited for, if it was a cold start (boxed: most
    /// tasks are warm, and this record is moved several times per task).
    pub cold: Option<Box<InstanceStart>>,
    /// What a runtime function printed (empty for built-ins and lost tasks).
    pub log: String,
}

/// Where the core's decisions go.
pub trait Comm {
    /// Send this task to this worker (batched by the caller).
    fn assign(&mut self, worker: WorkerId, task: TaskAssignment);
    /// Persist this transition before telling anyone about it.
    fn record(&mut self, transition: Transition);
    /// This worker is no longer registered; forget its connection.
    fn worker_removed(&mut self, worker: WorkerId, reason: LossReason);
}

/// Event counts, for `ClusterInfo` and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreCounters {
    /// Tasks that entered the core (fresh and recovered).
    pub submitted: u64,
    /// Attempts sent to workers.
    pub dispatched: u64,
    /// Tasks COMPLETED.
    pub completed: u64,
    /// Tasks FAILED (function errors and lost workers).
    pub failed: u64,
    /// Attempts lost and put back in the queue.
    pub requeued: u64,
    /// Results dropped: late, duplicate, for another attempt or from the wrong worker.
    pub duplicate_results: u64,
    /// Workers registered.
    pub workers_joined: u64,
    /// Workers that left or died.
    pub workers_lost: u64,
    /// New tasks refused because their id was still in use (a store whose id counter
    /// went back); always 0 unless the store lost data.
    pub duplicate_ids: u64,
}

/// A worker as operators see it.
#[derive(Debug, Clone)]
pub struct WorkerView {
    /// Its id.
    pub id: WorkerId,
    /// Its name.
    pub name: String,
    /// Its host.
    pub host: String,
    /// Its pid.
    pub pid: u32,
    /// Its slots.
    pub slots: u32,
    /// Tasks it holds.
    pub in_flight: u32,
    /// The function it is an instance of, if bound to one.
    pub function: Option<String>,
}

/// One function's load, as `ClusterInfo` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionLoad {
    /// The function's registered name.
    pub function: String,
    /// Tasks waiting.
    pub queued: u32,
    /// Tasks held by workers.
    pub running: u32,
    /// Workers bound to it (its instances).
    pub instances: u32,
    /// Instances started and not yet registered (the elastic pool's).
    pub starting: u32,
    /// Instance starts that failed (the elastic pool's).
    pub failed_starts: u64,
    /// Tasks whose code failed to load (`init_failed`: a syntax error, a missing handler).
    pub init_failures: u64,
    /// Time its instances spent registered and idle, µs, including instances that have
    /// left: the wasted instance-time a keep-alive policy trades for fewer cold starts.
    pub idle_instance_us: u64,
}

impl FunctionLoad {
    /// A function with nothing queued, running or started yet.
    pub fn empty(function: impl Into<String>) -> Self {
        Self {
            function: function.into(),
            queued: 0,
            running: 0,
            instances: 0,
            starting: 0,
            failed_starts: 0,
            init_failures: 0,
            idle_instance_us: 0,
        }
    }
}
