//! The gRPC edge of the front door ([`crate::front`]): requests in, the front door's
//! answers and refusals out as messages and statuses. The only module that speaks
//! `tonic::Status`.
//!
//! - [`watch`] — the `WatchResults` streams, split so no message passes the 4 MiB every
//!   stock gRPC client accepts.
//! - [`session`] — `ExecuteStream`: submissions and their outcomes on one call.
//! - `convert` — stored and finished tasks as the API shows them; refusals as statuses.
//! - `functions` — code uploads and function listings.

mod convert;
mod functions;
pub mod session;
mod wake_gate;
pub mod watch;

use convert::{api_state, store_status};
pub use convert::{finished_info, status, task_info};

use crate::core::TaskSet;
use crate::front::{checked_name, Front};
use crate::reactor::{Command, Snapshot};
use crate::store::TaskRecord;
use std::sync::Arc;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};
use tracing::instrument;
use volley_proto::api::{self, dispatcher_server::Dispatcher};
use volley_proto::ids::TaskId;
use volley_proto::Mode;

pub use crate::front::{MAX_ARGS_BYTES, MAX_BATCH, MAX_NAME_CHARS};

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
    /// How long an `ExecuteStream` call holds an acceptance back for its outcome.
    pub ack_linger: std::time::Duration,
}

/// The `volley.v1.Dispatcher` service: the front door's gRPC edge. Cheap to clone: an
/// `ExecuteStream` call keeps one.
#[derive(Clone)]
pub struct Api {
    front: Front,
    facts: Arc<ClusterFacts>,
}

impl Api {
    /// The service over the front door.
    pub fn new(front: Front, facts: ClusterFacts) -> Self {
        Self {
            front,
            facts: Arc::new(facts),
        }
    }

    async fn submit(&self, requests: &[api::ExecuteRequest], batch: bool) -> Result<Vec<TaskId>, Status> {
        self.front.submit(requests, batch).await.map_err(status)
    }

    async fn reactor_first(&self) {
        self.front.reactor_first().await;
    }

    async fn record(&self, id: u64) -> Result<TaskRecord, Status> {
        self.front.record(id).await.map_err(status)
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
        let name = checked_name(&req.name).map_err(status)?;
        let (kind, code_digest) = self
            .front
            .function_kind(name, req.spec.as_ref())
            .await
            .map_err(status)?;
        let (id, version) = self.front.register(name, kind).await.map_err(status)?;
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
        let completions = self.front.shared.completions.subscribe();
        let stream: watch::WatchStream = if ids.is_empty() {
            let slot = self
                .front
                .shared
                .watchers_of_all
                .clone()
                .try_acquire_owned()
                .map_err(|_| {
                    Status::resource_exhausted(format!(
                        "{} streams already watch every completion; watch the ids of your tasks instead",
                        watch::MAX_WATCHERS_OF_ALL
                    ))
                })?;
            Box::pin(watch::all(completions, slot))
        } else {
            let mut pending: TaskSet = ids.iter().map(|i| TaskId(*i)).collect();
            let already = watch::finished_in_store(&self.front.shared, &mut pending, true).await?;
            Box::pin(watch::some(self.front.shared.clone(), completions, pending, already))
        };
        Ok(Response::new(stream))
    }

    type ExecuteStreamStream = session::SessionStream;

    async fn execute_stream(
        &self,
        request: Request<tonic::Streaming<api::ExecuteBatchRequest>>,
    ) -> Result<Response<session::SessionStream>, Status> {
        // Subscribe before the first request is read, so no task of the call finishes unseen.
        let header = request.metadata().get(session::ACCEPT_HEADER);
        let header = header
            .map(|v| v.to_str())
            .transpose()
            .map_err(|_| Status::invalid_argument(format!("{}: not text", session::ACCEPT_HEADER)))?;
        let acceptances = session::Acceptances::from_header(header, self.facts.ack_linger)?;
        let completions = self.front.shared.completions.subscribe();
        Ok(Response::new(session::run(
            self.clone(),
            request.into_inner(),
            completions,
            acceptances,
        )))
    }

    async fn cluster_info(
        &self,
        _request: Request<api::ClusterInfoRequest>,
    ) -> Result<Response<api::ClusterInfoResponse>, Status> {
        let (reply, answer) = oneshot::channel();
        self.front
            .commands
            .send(Command::Snapshot(reply))
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
        let edge = &self.front.shared.counters;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        Ok(Response::new(api::ClusterInfoResponse {
            mode: self.facts.mode.to_string(),
            store: self.front.shared.store.describe(),
            ha_epoch: self.front.shared.leadership.as_ref().map_or(0, |l| l.epoch),
            ha_takeovers: self.front.shared.leadership.as_ref().map_or(0, |l| l.takeovers()),
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
