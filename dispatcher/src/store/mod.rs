//! Where every task's state lives: the source of truth for clients.
//!
//! One trait, [`TaskStore`], named after the domain's transitions, with two backends:
//! [`memory::MemoryStore`] (in-process, the embedded default) and [`redis::RedisStore`]
//! (durable and shared; a restarted dispatcher recovers unfinished tasks from it).
//! Every call takes a batch, and each batch is one round trip.

pub mod keys;
pub mod memory;
pub mod redis;
pub mod transition;

use crate::core::Transition;
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use volley_proto::function::{CodeDigest, FunctionKind};
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
    /// The instance start it waited for, if it was a cold start (boxed: one word for the
    /// warm majority of records).
    pub cold: Option<Box<crate::core::InstanceStart>>,
    /// What a runtime function printed during the last attempt (empty for built-ins).
    pub log: String,
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
    /// 1 for its name's first registration, then one more for each.
    pub version: u32,
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
    /// The store lost data it had acknowledged (Redis came back empty); what was asked
    /// was not done, and a retry works.
    #[error("store lost data: {0}")]
    DataLoss(String),
    /// The store address is wrong.
    #[error("bad store address: {0}")]
    Config(String),
    /// This dispatcher's lease (of this epoch) was taken over: nothing was written, and
    /// nothing will be.
    #[error("fenced: epoch {0} no longer leads, another dispatcher took over; nothing was written")]
    Fenced(u64),
}

/// What the store says of a task a client waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// Not yet COMPLETED or FAILED.
    Unfinished,
    /// Finished: its record.
    Finished(TaskRecord),
    /// No such task (or forgotten).
    Unknown,
}

/// The task store.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// `memory` or the Redis URL with its password redacted, for `ClusterInfo`, logs
    /// and reports.
    fn describe(&self) -> String;
    /// How this store forgets finished tasks, if it does, in words for an error message.
    fn forgets_finished(&self) -> Option<String>;
    /// Stores a function and returns its new id and its version under its name.
    async fn register_function(&self, name: &str, kind: &FunctionKind) -> Result<(FunctionId, u32), StoreError>;
    /// Every function, oldest first.
    async fn functions(&self) -> Result<Vec<FunctionRecord>, StoreError>;
    /// Stores a user function's code under its digest (once; storing it again is a no-op).
    async fn put_code(&self, digest: CodeDigest, code: Bytes) -> Result<(), StoreError>;
    /// A user function's code.
    async fn code(&self, digest: CodeDigest) -> Result<Option<Bytes>, StoreError>;
    /// A function by id.
    async fn function(&self, id: FunctionId) -> Result<Option<FunctionRecord>, StoreError>;
    /// Stores tasks as QUEUED and returns their new ids, in order.
    async fn enqueue(&self, tasks: &[Submission]) -> Result<Vec<TaskId>, StoreError>;
    /// Applies transitions in order (mark running, requeue, complete, fail).
    async fn record(&self, transitions: &[Transition]) -> Result<(), StoreError>;
    /// Applies transitions at once, as [`record`](Self::record) would, when this store
    /// needs no I/O and cannot fail for it; `false` (the default) when they must go
    /// through `record` on the store writer. Lets the reactor skip the writer's task
    /// hop, twice per task, on the embedded store. A store answers the same every time.
    fn record_now(&self, _transitions: &[Transition]) -> bool {
        false
    }
    /// One task.
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError>;
    /// Many tasks, in the order asked.
    async fn get_many(&self, ids: &[TaskId]) -> Result<Vec<Option<TaskRecord>>, StoreError>;
    /// For each id, whether it finished (with its record), is unfinished, or is unknown:
    /// what a client waiting for tasks asks first. Stores that can tell unfinished tasks
    /// without reading their records override it.
    async fn settled(&self, ids: &[TaskId]) -> Result<Vec<Settled>, StoreError> {
        Ok(self
            .get_many(ids)
            .await?
            .into_iter()
            .map(|r| match r {
                Some(r) if r.state.is_terminal() => Settled::Finished(r),
                Some(_) => Settled::Unfinished,
                None => Settled::Unknown,
            })
            .collect())
    }
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
    /// The lease epoch every Redis write is fenced with (`--ha`); `None`: unfenced.
    pub fence: Option<redis::Fence>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            redis_prefix: "volley:".into(),
            retain_finished: 1_000_000,
            redis_finished_ttl: None,
            fence: None,
        }
    }
}

/// Opens the store named on the command line: `memory` or `redis://host:port/db`. A
/// fence asks for Redis.
pub async fn open(spec: &str, options: &StoreOptions) -> Result<Arc<dyn TaskStore>, StoreError> {
    let redis_prefix = options.redis_prefix.as_str();
    if spec == "memory" {
        if options.fence.is_some() {
            return Err(StoreError::Config(
                "--ha needs a Redis store: leaders and standbys share their state there".into(),
            ));
        }
        return Ok(Arc::new(memory::MemoryStore::new(options.retain_finished)));
    }
    if spec.starts_with("redis://") || spec.starts_with("rediss://") || spec.starts_with("unix://") {
        let store = redis::RedisStore::connect(spec, redis_prefix).await?;
        return Ok(Arc::new(
            store
                .with_finished_ttl(options.redis_finished_ttl)
                .with_fence(options.fence.clone()),
        ));
    }
    Err(StoreError::Config(format!(
        "'{}' is neither 'memory' nor a redis:// URL",
        volley_proto::text::quote(&redact(spec))
    )))
}

/// A store address fit to print: the password in `scheme://user:password@host` and in
/// `?password=`/`?pass=` parameters becomes `***`. Credentials never reach a log line,
/// an error or `ClusterInfo`.
pub fn redact(address: &str) -> String {
    let Some((scheme, rest)) = address.split_once("://") else {
        return address.to_owned();
    };
    // The user-info is everything before the last '@': a password may hold '/', '?', '#'
    // or '@' unencoded, and all of it must be hidden (an '@' in a query hides more than
    // needed, never less). A socket path, `unix:///…`, has no user-info.
    let (user_info, after) = match rest.rfind('@') {
        Some(at) if !rest.starts_with('/') => (Some(&rest[..at]), &rest[at + 1..]),
        _ => (None, rest),
    };
    let (host_end, _) = after
        .char_indices()
        .find(|(_, c)| matches!(c, '/' | '?' | '#'))
        .unwrap_or((after.len(), ' '));
    let (host, tail) = after.split_at(host_end);
    let authority = match user_info {
        Some(user_info) => match user_info.split_once(':') {
            Some((user, _password)) if !user.contains(['/', '?', '#']) => format!("{user}:***@{host}"),
            // `redis://secret@host`: a lone user-info part may be a password; hide it.
            _ => format!("***@{host}"),
        },
        None => host.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("pass") => {
                        format!("{k}=***")
                    }
                    _ => p.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_survive_redaction() {
        assert_eq!(redact("redis://:hunter2@db:6379/0"), "redis://:***@db:6379/0");
        assert_eq!(redact("rediss://app:hunter2@db/1"), "rediss://app:***@db/1");
        assert_eq!(redact("redis://hunter2@db"), "redis://***@db");
        assert_eq!(redact("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        for url in [
            "redis://:pa#ss@db:6379/0",
            "redis://:p?w@db/0",
            "redis://:a/b@db/0",
            "redis://u:x@y@db/0",
        ] {
            let shown = redact(url);
            assert!(
                shown.ends_with("@db:6379/0") || shown.ends_with("@db/0"),
                "{url} -> {shown}"
            );
            for secret in ["pa#ss", "p?w", "a/b", "x@y"] {
                assert!(!shown.contains(secret), "{url} -> {shown}");
            }
        }
        assert_eq!(
            redact("unix:///run/redis.sock?db=1&pass=hunter2"),
            "unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(redact("memory"), "memory");
        assert!(!redact("redis://u:p@ss:w0rd@host/0").contains("w0rd"));
    }
}
