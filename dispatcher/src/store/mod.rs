//! Where every task's state lives: the source of truth for clients.
//!
//! One trait, [`TaskStore`], named after the domain's transitions, with two backends:
//! [`memory::MemoryStore`] (in-process, the embedded default) and [`redis::RedisStore`]
//! (durable and shared; a restarted dispatcher recovers unfinished tasks from it).
//! Every call takes a batch, and each batch is one round trip.

pub mod keys;
pub mod memory;
pub mod redis;

use crate::core::Transition;
use async_trait::async_trait;
use std::sync::Arc;
use volley_proto::function::FunctionKind;
use volley_proto::ids::{FunctionId, TaskId};

/// A task's lifecycle state as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for a worker (fresh or requeued).
    Queued,
    /// Sent to a worker.
    Running,
    /// Finished with a result.
    Completed,
    /// Finished with an error, or lost too many times.
    Failed,
}

impl TaskState {
    /// Completed or failed: the task will never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Completed | TaskState::Failed)
    }

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => TaskState::Queued,
            "running" => TaskState::Running,
            "completed" => TaskState::Completed,
            "failed" => TaskState::Failed,
            _ => return None,
        })
    }
}

/// Everything stored about one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// The task.
    pub id: TaskId,
    /// Its function (the function itself is stored once).
    pub function_id: FunctionId,
    /// Its arguments as given.
    pub args: String,
    /// Where it is in its life.
    pub state: TaskState,
    /// The result JSON when completed.
    pub result: String,
    /// The error when failed.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
    /// Who ran (or runs) the last attempt.
    pub worker: String,
    /// Submission time, µs since the epoch.
    pub submitted_us: u64,
    /// Last dispatch time.
    pub dispatched_us: u64,
    /// Completion time.
    pub completed_us: u64,
    /// Worker-side queueing of the last attempt.
    pub wait_us: u64,
    /// Execution time of the last attempt.
    pub run_us: u64,
}

impl TaskRecord {
    /// A freshly queued task.
    pub fn queued(id: TaskId, s: &Submission) -> Self {
        Self {
            id,
            function_id: s.function_id,
            args: s.args.clone(),
            state: TaskState::Queued,
            result: String::new(),
            error: String::new(),
            attempts: 0,
            worker: String::new(),
            submitted_us: s.submitted_us,
            dispatched_us: 0,
            completed_us: 0,
            wait_us: 0,
            run_us: 0,
        }
    }

    /// Applies one transition; both backends share this meaning of each transition.
    pub fn apply(&mut self, t: &Transition) {
        match t {
            Transition::Running {
                attempt, worker, at_us, ..
            } => {
                self.state = TaskState::Running;
                self.attempts = *attempt;
                self.worker = worker.to_string();
                self.dispatched_us = *at_us;
            }
            Transition::Requeued { attempts, .. } => {
                self.state = TaskState::Queued;
                self.attempts = *attempts;
            }
            Transition::Finished(f) => {
                match &f.outcome {
                    volley_proto::wire::Outcome::Completed(r) => {
                        self.state = TaskState::Completed;
                        self.result = r.clone();
                    }
                    volley_proto::wire::Outcome::Failed(e) => {
                        self.state = TaskState::Failed;
                        self.error = e.clone();
                    }
                }
                self.attempts = f.attempts;
                if let Some(w) = &f.worker {
                    self.worker = w.to_string();
                }
                self.dispatched_us = f.dispatched_us;
                self.completed_us = f.completed_us;
                self.wait_us = f.wait_us;
                self.run_us = f.run_us;
            }
        }
    }
}

/// A task to store, before it has an id.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Its function.
    pub function_id: FunctionId,
    /// Its arguments.
    pub args: String,
    /// When the dispatcher received it.
    pub submitted_us: u64,
}

/// A registered function as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRecord {
    /// Its id.
    pub id: FunctionId,
    /// The name it was registered under.
    pub name: String,
    /// What it does.
    pub kind: FunctionKind,
}

/// Why a store call failed, classified by what the caller should do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached now; retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend holds data this dispatcher cannot read; do not retry.
    #[error("store holds unreadable data: {0}")]
    Corrupt(String),
    /// The store address is wrong.
    #[error("bad store address: {0}")]
    Config(String),
}

/// The task store.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// `memory` or the Redis URL, for `ClusterInfo` and reports.
    fn describe(&self) -> String;
    /// Stores a function and returns its new id.
    async fn register_function(&self, name: &str, kind: &FunctionKind) -> Result<FunctionId, StoreError>;
    /// A function by id.
    async fn function(&self, id: FunctionId) -> Result<Option<FunctionRecord>, StoreError>;
    /// Stores tasks as QUEUED and returns their new ids, in order.
    async fn enqueue(&self, tasks: &[Submission]) -> Result<Vec<TaskId>, StoreError>;
    /// Applies transitions in order (mark running, requeue, complete, fail).
    async fn record(&self, transitions: &[Transition]) -> Result<(), StoreError>;
    /// One task.
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError>;
    /// Many tasks, in the order asked.
    async fn get_many(&self, ids: &[TaskId]) -> Result<Vec<Option<TaskRecord>>, StoreError>;
    /// Every task not yet COMPLETED or FAILED, for a dispatcher starting up.
    async fn recover_unfinished(&self) -> Result<Vec<TaskRecord>, StoreError>;
}

/// How a store is opened besides its address.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Prefix of every Redis key.
    pub redis_prefix: String,
    /// Finished tasks the memory store keeps (oldest forgotten first).
    pub retain_finished: usize,
    /// How long Redis keeps a finished task; `None`: for ever.
    pub redis_finished_ttl: Option<std::time::Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            redis_prefix: "volley:".into(),
            retain_finished: 1_000_000,
            redis_finished_ttl: None,
        }
    }
}

/// Opens the store named on the command line: `memory` or `redis://host:port/db`.
pub async fn open(spec: &str, options: &StoreOptions) -> Result<Arc<dyn TaskStore>, StoreError> {
    let redis_prefix = options.redis_prefix.as_str();
    if spec == "memory" {
        return Ok(Arc::new(memory::MemoryStore::new(options.retain_finished)));
    }
    if spec.starts_with("redis://") || spec.starts_with("rediss://") || spec.starts_with("unix://") {
        let store = redis::RedisStore::connect(spec, redis_prefix).await?;
        return Ok(Arc::new(store.with_finished_ttl(options.redis_finished_ttl)));
    }
    Err(StoreError::Config(format!(
        "'{spec}' is neither 'memory' nor a redis:// URL"
    )))
}
