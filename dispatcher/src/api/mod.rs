//! The gRPC front door: validates requests, stores tasks, hands them to the reactor, and
//! answers from the store. The only module that speaks `tonic::Status`.
//!
//! - [`watch`] — the `WatchResults` streams, split so no message passes the 4 MiB every
//!   stock gRPC client accepts.
//! - [`session`] — `ExecuteStream`: submissions and their outcomes on one call.
//! - `convert` — stored and finished tasks as the API shows them; store errors as statuses.

mod convert;
mod functions;
pub mod session;
pub mod watch;

use convert::{api_state, store_status};
pub use convert::{finished_info, task_info};

use crate::core::{NewTask, Now, TaskSet};
use crate::reactor::{Command, Snapshot};
use crate::shared::{EdgeCounters, Shared};
use crate::store::{StoreError, Submission, TaskRecord};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};
use tracing::{info, instrument};
use volley_proto::api::{self, dispatcher_server::Dispatcher};
use volley_proto::function::FunctionKind;
use volley_proto::ids::{FunctionId, TaskId};
use volley_proto::Mode;

/// Most tasks one `ExecuteBatch` may carry.
pub const MAX_BATCH: usize = 100_000;
/// Largest `args` of one task, in bytes.
pub const MAX_ARGS_BYTES: usize = 1024 * 1024;
/// Longest function name.
pub const MAX_NAME_CHARS: usize = 256;
/// Most task ids one `WatchResults` may follow.
pub const MAX_WATCH: usize = 1_000_000;

/// Static facts `ClusterInfo` reports.
#[derive(Debug, Clone)]
pub struct ClusterFacts {
    /// The dispatcher's mode.
    pub mode: Mode,
    /// Where workers connect (empty in local mode).
    pub worker_endpoint: String,
    /// Tasks a worker may hold beyond its slots.
    pub prefetch: u32,
    /// Placement policy name.
    pub policy: &'static str,
}

/// A registered function as the API resolves tasks of it.
#[derive(Clone)]
struct Known {
    kind: FunctionKind,
    /// Its registered name: what function-bound workers serve.
    name: Arc<str>,
}

/// The `volley.v1.Dispatcher` service. Cheap to clone: an `ExecuteStream` call keeps one.
#[derive(Clone)]
pub struct Api {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    functions: Arc<RwLock<HashMap<FunctionId, Known>>>,
    max_job_ms: u64,
    facts: Arc<ClusterFacts>,
    uploads: Arc<tokio::sync::Semaphore>,
}

impl Api {
    /// The service over shared state, sending work to the reactor.
    pub fn new(shared: Arc<Shared>, commands: mpsc::Sender<Command>, max_job_ms: u64, facts: ClusterFacts) -> Self {
        Self {
            shared,
            commands,
            functions: Arc::new(RwLock::new(HashMap::new())),
            max_job_ms,
            facts: Arc::new(facts),
            uploads: functions::upload_places(),
        }
    }

    /// Lets the reactor run before a submission's reply is written. On an idle cluster the
    /// reply would otherwise reach the socket first, and the task would leave for its
    /// worker only after it: one syscall and, on a busy core, one scheduling delay later.
    /// The local pool is in-process, so there the yield would only cost.
    async fn reactor_first(&self) {
        if self.facts.mode != Mode::Local {
            tokio::task::yield_now().await;
        }
    }

    async fn function(&self, id: u64) -> Result<Known, Status> {
        let id = FunctionId(id);
        if let Some(known) = self.functions.read().get(&id) {
            return Ok(known.clone());
        }
        let record = self
            .shared
            .store
            .function(id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("no function with id {id}; register it first")))?;
        if !self.shared.hold_code(&record.kind).await.map_err(store_status)? {
            return Err(Status::data_loss(format!(
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

    async fn submit(&self, requests: &[api::ExecuteRequest], batch: bool) -> Result<Vec<TaskId>, Status> {
        if requests.is_empty() {
            return Err(Status::invalid_argument("the batch has no tasks"));
        }
        if requests.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "a batch of {} tasks exceeds the limit of {MAX_BATCH}; split it",
                requests.len()
            )));
        }
        let now = Now::current();
        let mut jobs = Vec::with_capacity(requests.len());
        let mut submissions = Vec::with_capacity(requests.len());
        let mut last: Option<(u64, Known)> = None;
        for (i, r) in requests.iter().enumerate() {
            let at = |msg: String| if batch { format!("task {i}: {msg}") } else { msg };
            if r.args.len() > MAX_ARGS_BYTES {
                return Err(Status::invalid_argument(at(format!(
                    "args of {} bytes exceed the limit of {MAX_ARGS_BYTES}",
                    r.args.len()
                ))));
            }
            let known = match &last {
                Some((id, known)) if *id == r.function_id => known,
                _ => {
                    let known = self
                        .function(r.function_id)
                        .await
                        .map_err(|s| Status::new(s.code(), at(s.message().to_owned())))?;
                    &last.insert((r.function_id, known)).1
                }
            };
            let job = known
                .kind
                .resolve(&r.args, self.max_job_ms)
                .map_err(|e| Status::invalid_argument(at(e.to_string())))?;
            jobs.push((job, known.name.clone()));
            submissions.push(Submission {
                function_id: FunctionId(r.function_id),
                args: r.args.clone(),
                submitted_us: now.unix_us,
            });
        }
        let n = submissions.len();
        if let Err(unfinished) = self.shared.admission.try_admit(n) {
            EdgeCounters::bump(&self.shared.counters.rejected_submissions);
            return Err(Status::resource_exhausted(format!(
                "queue full: {unfinished} unfinished tasks, limit {}; {n} more refused, retry later",
                self.shared.admission.limit()
            )));
        }
        let ids = match self.shared.store.enqueue(&submissions).await {
            Ok(ids) => ids,
            Err(e) => {
                self.shared.admission.release(n);
                return Err(match e {
                    StoreError::Unavailable(why) => Status::unavailable(format!(
                        "nothing was submitted, the task store is unavailable ({why}); submitting again is safe"
                    )),
                    e => store_status(e),
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
        self.commands.send(Command::Submit(tasks)).await.map_err(|_| {
            Status::unavailable(
                "the dispatcher is shutting down; tasks are stored and will run after a restart on a durable store",
            )
        })?;
        Ok(ids)
    }

    async fn record(&self, id: u64) -> Result<TaskRecord, Status> {
        if id == 0 {
            return Err(Status::invalid_argument("task_id is required (ids start at 1)"));
        }
        self.shared
            .store
            .get(TaskId(id))
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(self.unknown_task(id)))
    }

    fn unknown_task(&self, id: u64) -> String {
        match self.shared.store.forgets_finished() {
            Some(how) => format!("no task with id {id} (or it finished and was forgotten: {how})"),
            None => format!("no task with id {id}"),
        }
    }
}

#[tonic::async_trait]
impl Dispatcher for Api {
    #[instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn register_function(
        &self,
        request: Request<api::RegisterFunctionRequest>,
    ) -> Result<Response<api::RegisterFunctionResponse>, Status> {
        let req = request.into_inner();
        let name = functions::checked_name(&req.name)?;
        let (kind, code_digest) = self.function_kind(name, req.spec.as_ref()).await?;
        let (id, version) = self
            .shared
            .store
            .register_function(name, &kind)
            .await
            .map_err(store_status)?;
        info!(
            function = name,
            id = id.0,
            version,
            kind = kind.name(),
            "function registered"
        );
        if let Some(m) = &self.shared.metrics {
            m.name_function(id, name);
        }
        self.functions.write().insert(
            id,
            Known {
                kind,
                name: name.into(),
            },
        );
        Ok(Response::new(api::RegisterFunctionResponse {
            function_id: id.0,
            version,
            code_digest,
        }))
    }

    async fn upload_code(
        &self,
        request: Request<tonic::Streaming<api::CodeChunk>>,
    ) -> Result<Response<api::UploadCodeResponse>, Status> {
        self.upload(request.into_inner()).await
    }

    async fn list_functions(
        &self,
        _request: Request<api::ListFunctionsRequest>,
    ) -> Result<Response<api::ListFunctionsResponse>, Status> {
        self.list().await
    }

    async fn execute(&self, request: Request<api::ExecuteRequest>) -> Result<Response<api::ExecuteResponse>, Status> {
        let ids = self.submit(std::slice::from_ref(request.get_ref()), false).await?;
        self.reactor_first().await;
        Ok(Response::new(api::ExecuteResponse { task_id: ids[0].0 }))
    }

    async fn execute_batch(
        &self,
        request: Request<api::ExecuteBatchRequest>,
    ) -> Result<Response<api::ExecuteBatchResponse>, Status> {
        let ids = self.submit(&request.get_ref().tasks, true).await?;
        self.reactor_first().await;
        Ok(Response::new(api::ExecuteBatchResponse {
            task_ids: ids.into_iter().map(|i| i.0).collect(),
        }))
    }

    async fn get_status(
        &self,
        request: Request<api::GetStatusRequest>,
    ) -> Result<Response<api::GetStatusResponse>, Status> {
        let r = self.record(request.get_ref().task_id).await?;
        Ok(Response::new(api::GetStatusResponse {
            task_id: r.id.0,
            state: api_state(r.state) as i32,
            attempts: r.attempts,
        }))
    }

    async fn get_result(
        &self,
        request: Request<api::GetResultRequest>,
    ) -> Result<Response<api::GetResultResponse>, Status> {
        let r = self.record(request.get_ref().task_id).await?;
        Ok(Response::new(api::GetResultResponse {
            task: Some(task_info(&r)),
        }))
    }

    type WatchResultsStream = watch::WatchStream;

    async fn watch_results(
        &self,
        request: Request<api::WatchResultsRequest>,
    ) -> Result<Response<watch::WatchStream>, Status> {
        let ids = request.into_inner().task_ids;
        if ids.len() > MAX_WATCH {
            return Err(Status::invalid_argument(format!(
                "watching {} tasks exceeds the limit of {MAX_WATCH}",
                ids.len()
            )));
        }
        // Subscribe before reading the store, so nothing finishes unseen in between.
        let completions = self.shared.completions.subscribe();
        let stream: watch::WatchStream = if ids.is_empty() {
            let slot = self.shared.watchers_of_all.clone().try_acquire_owned().map_err(|_| {
                Status::resource_exhausted(format!(
                    "{} streams already watch every completion; watch the ids of your tasks instead",
                    watch::MAX_WATCHERS_OF_ALL
                ))
            })?;
            Box::pin(watch::all(completions, slot))
        } else {
            let mut pending: TaskSet = ids.iter().map(|i| TaskId(*i)).collect();
            let already = watch::finished_in_store(&self.shared, &mut pending, true).await?;
            Box::pin(watch::some(self.shared.clone(), completions, pending, already))
        };
        Ok(Response::new(stream))
    }

    type ExecuteStreamStream = session::SessionStream;

    async fn execute_stream(
        &self,
        request: Request<tonic::Streaming<api::ExecuteBatchRequest>>,
    ) -> Result<Response<session::SessionStream>, Status> {
        // Subscribe before the first request is read, so no task of the call finishes unseen.
        let completions = self.shared.completions.subscribe();
        Ok(Response::new(session::run(
            self.clone(),
            request.into_inner(),
            completions,
        )))
    }

    async fn cluster_info(
        &self,
        _request: Request<api::ClusterInfoRequest>,
    ) -> Result<Response<api::ClusterInfoResponse>, Status> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Snapshot(reply))
            .await
            .map_err(|_| Status::unavailable("the dispatcher is shutting down"))?;
        let Snapshot {
            workers,
            queued,
            running,
            counters,
            functions,
        } = answer
            .await
            .map_err(|_| Status::unavailable("the dispatcher is shutting down"))?;
        let edge = &self.shared.counters;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        Ok(Response::new(api::ClusterInfoResponse {
            mode: self.facts.mode.to_string(),
            store: self.shared.store.describe(),
            worker_endpoint: self.facts.worker_endpoint.clone(),
            workers: workers
                .into_iter()
                .map(|w| api::WorkerInfo {
                    id: w.id.0,
                    name: w.name,
                    host: w.host,
                    pid: w.pid,
                    slots: w.slots,
                    in_flight: w.in_flight,
                    function: w.function.unwrap_or_default(),
                })
                .collect(),
            queued: queued as u64,
            running: running as u64,
            counters: Some(api::Counters {
                submitted: counters.submitted,
                dispatched: counters.dispatched,
                completed: counters.completed,
                failed: counters.failed,
                requeued: counters.requeued,
                duplicate_results: counters.duplicate_results,
                dropped_frames: load(&edge.dropped_frames),
                workers_joined: counters.workers_joined,
                workers_lost: counters.workers_lost,
                rejected_submissions: load(&edge.rejected_submissions),
                rejected_workers: load(&edge.rejected_workers),
                unauthenticated_requests: load(&edge.unauthenticated_requests),
                duplicate_ids: counters.duplicate_ids,
            }),
            version: volley_proto::VERSION.to_owned(),
            prefetch: self.facts.prefetch,
            policy: self.facts.policy.to_owned(),
            pid: std::process::id(),
            host: hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            functions: functions
                .into_iter()
                .map(|f| api::FunctionInfo {
                    name: f.function,
                    queued: u64::from(f.queued),
                    running: u64::from(f.running),
                    ready: f.instances,
                    starting: f.starting,
                    failed_starts: f.failed_starts,
                    idle_instance_us: f.idle_instance_us,
                    init_failures: f.init_failures,
                })
                .collect(),
        }))
    }
}
