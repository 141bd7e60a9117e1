//! The front door both client edges share, speaking no transport: it checks requests,
//! admits and stores tasks, hands them to the reactor, registers functions and reads
//! tasks back. Its refusals are typed ([`FrontError`]); the gRPC edge (`crate::api`) and
//! the REST edge (`crate::rest`) each map them to their own codes and stay thin.
//!
//! - `functions` — names checked, specs resolved, user code stored by digest.

mod error;
mod functions;

pub use error::FrontError;
pub use functions::{checked_name, MAX_UPLOADS};

use crate::core::{NewTask, Now};
use crate::reactor::{Command, Inbox};
use crate::shared::{EdgeCounters, Shared};
use crate::store::{StoreError, Submission, TaskRecord};
use foldhash::HashMap;
use parking_lot::RwLock;
use std::sync::Arc;
use volley_proto::function::FunctionKind;
use volley_proto::ids::{FunctionId, TaskId};
use volley_proto::Mode;

/// Most tasks one batch may carry.
pub const MAX_BATCH: usize = 100_000;
/// Largest `args` of one task, in bytes: under the 4 MiB message every stock gRPC client
/// accepts, and room for the several-MiB payloads REST clients send.
pub const MAX_ARGS_BYTES: usize = 3 * 1024 * 1024;
/// Longest function name.
pub const MAX_NAME_CHARS: usize = 256;

/// One task as an edge received it.
pub trait TaskRequest {
    /// The function to run.
    fn function_id(&self) -> u64;
    /// Its arguments, a JSON text (empty: none).
    fn args(&self) -> &str;
}

impl TaskRequest for volley_proto::api::ExecuteRequest {
    fn function_id(&self) -> u64 {
        self.function_id
    }
    fn args(&self) -> &str {
        &self.args
    }
}

/// A registered function as tasks of it are resolved.
#[derive(Clone)]
pub struct Known {
    /// What it runs.
    pub kind: FunctionKind,
    /// Its registered name: what function-bound workers serve.
    pub name: Arc<str>,
}

/// The transport-neutral front door. Cheap to clone.
#[derive(Clone)]
pub struct Front {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Where work goes to the reactor.
    pub commands: Inbox,
    functions: Arc<RwLock<HashMap<FunctionId, Known>>>,
    /// The longest task the dispatcher allows, ms.
    pub max_job_ms: u64,
    mode: Mode,
    uploads: Arc<tokio::sync::Semaphore>,
}

impl Front {
    /// The front door over shared state, sending work to the reactor.
    pub fn new(shared: Arc<Shared>, commands: Inbox, max_job_ms: u64, mode: Mode) -> Self {
        Self {
            shared,
            commands,
            functions: Arc::new(RwLock::new(HashMap::default())),
            max_job_ms,
            mode,
            uploads: functions::upload_places(),
        }
    }

    /// Lets the reactor run before a submission's reply is written. On an idle cluster the
    /// reply would otherwise reach the socket first, and the task would leave for its
    /// worker only after it: one syscall and, on a busy core, one scheduling delay later.
    /// The local pool is in-process, so there the yield would only cost.
    pub async fn reactor_first(&self) {
        if self.mode != Mode::Local {
            tokio::task::yield_now().await;
        }
    }

    /// A registered function, from the cache or the store.
    pub async fn function(&self, id: u64) -> Result<Known, FrontError> {
        let id = FunctionId(id);
        if let Some(known) = self.functions.read().get(&id) {
            return Ok(known.clone());
        }
        let record = self
            .shared
            .store
            .function(id)
            .await?
            .ok_or_else(|| FrontError::NotFound(format!("no function with id {id}; register it first")))?;
        if !self.shared.hold_code(&record.kind).await? {
            return Err(FrontError::Lost(format!(
                "function {id} ({}): the store has lost its code; deploy it again",
                record.name
            )));
        }
        if let Some(m) = &self.shared.metrics {
            m.name_function(id, &record.name);
        }
        let known = Known {
            kind: record.kind,
            name: record.name.into(),
        };
        self.functions.write().insert(id, known.clone());
        Ok(known)
    }

    /// Checks, admits, stores and queues `requests`, all or none; their ids in order.
    /// In a `batch`, a refusal names the task it is about.
    pub async fn submit<R: TaskRequest>(&self, requests: &[R], batch: bool) -> Result<Vec<TaskId>, FrontError> {
        if requests.is_empty() {
            return Err(FrontError::Invalid("the batch has no tasks".into()));
        }
        if requests.len() > MAX_BATCH {
            return Err(FrontError::Invalid(format!(
                "a batch of {} tasks exceeds the limit of {MAX_BATCH}; split it",
                requests.len()
            )));
        }
        let now = Now::current();
        let mut jobs = Vec::with_capacity(requests.len());
        let mut submissions = Vec::with_capacity(requests.len());
        let mut last: Option<(u64, Known)> = None;
        for (i, r) in requests.iter().enumerate() {
            let at = |e: FrontError| if batch { e.at(format_args!("task {i}")) } else { e };
            let args = r.args();
            if args.len() > MAX_ARGS_BYTES {
                return Err(at(FrontError::Invalid(format!(
                    "args of {} bytes exceed the limit of {MAX_ARGS_BYTES}",
                    args.len()
                ))));
            }
            let function_id = r.function_id();
            let known = match &last {
                Some((id, known)) if *id == function_id => known,
                _ => {
                    let known = self.function(function_id).await.map_err(at)?;
                    &last.insert((function_id, known)).1
                }
            };
            let job = known
                .kind
                .resolve(args, self.max_job_ms)
                .map_err(|e| at(FrontError::Invalid(e.to_string())))?;
            jobs.push((job, known.name.clone()));
            submissions.push(Submission {
                function_id: FunctionId(function_id),
                args: args.to_owned(),
                submitted_us: now.unix_us,
            });
        }
        let n = submissions.len();
        if let Err(unfinished) = self.shared.admission.try_admit(n) {
            EdgeCounters::bump(&self.shared.counters.rejected_submissions);
            return Err(FrontError::Exhausted(format!(
                "queue full: {unfinished} unfinished tasks, limit {}; {n} more refused, retry later",
                self.shared.admission.limit()
            )));
        }
        let ids = match self.shared.store.enqueue(&submissions).await {
            Ok(ids) => ids,
            Err(e) => {
                self.shared.admission.release(n);
                if let StoreError::Fenced(_) = e {
                    self.shared.fenced();
                }
                return Err(match e {
                    StoreError::Unavailable(why) => FrontError::Unavailable(format!(
                        "nothing was submitted, the task store is unavailable ({why}); submitting again is safe"
                    )),
                    e => e.into(),
                });
            }
        };
        if let Some(m) = &self.shared.metrics {
            m.submitted(submissions.iter().map(|s| s.function_id));
        }
        let tasks = ids
            .iter()
            .zip(submissions)
            .zip(jobs)
            .map(|((id, s), (job, function))| NewTask {
                id: *id,
                function_id: s.function_id,
                function,
                job,
                attempts: 0,
                submitted_us: s.submitted_us,
            })
            .collect();
        self.commands.send(Command::Submit(tasks)).map_err(|_| {
            FrontError::Unavailable(
                "the dispatcher is shutting down; tasks are stored and will run after a restart on a durable store"
                    .into(),
            )
        })?;
        Ok(ids)
    }

    /// One task as stored.
    pub async fn record(&self, id: u64) -> Result<TaskRecord, FrontError> {
        if id == 0 {
            return Err(FrontError::Invalid("task_id is required (ids start at 1)".into()));
        }
        self.shared
            .store
            .get(TaskId(id))
            .await?
            .ok_or_else(|| FrontError::NotFound(self.unknown_task(id)))
    }

    /// Why task `id` cannot be found, in words.
    pub fn unknown_task(&self, id: u64) -> String {
        match self.shared.store.forgets_finished() {
            Some(how) => format!("no task with id {id} (or it finished and was forgotten: {how})"),
            None => format!("no task with id {id}"),
        }
    }
}
