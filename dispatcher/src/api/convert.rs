//! Stored and just-finished tasks as the API shows them, and refusals as statuses.

use crate::core::{Finished, InstanceStart};
use crate::front::FrontError;
use crate::store::{StoreError, TaskRecord, TaskState};
use tonic::Status;
use volley_proto::api;
use volley_proto::wire::Outcome;

/// The status a refusal of the front door travels as.
pub fn status(e: FrontError) -> Status {
    match e {
        FrontError::Invalid(m) => Status::invalid_argument(m),
        FrontError::NotFound(m) => Status::not_found(m),
        FrontError::Exhausted(m) => Status::resource_exhausted(m),
        FrontError::Unavailable(m) => Status::unavailable(m),
        FrontError::Lost(m) => Status::data_loss(m),
        FrontError::Precondition(m) => Status::failed_precondition(m),
        FrontError::Internal(m) => Status::internal(m),
    }
}

/// The status a store error travels as.
pub(super) fn store_status(e: StoreError) -> Status {
    status(e.into())
}

pub(super) fn api_state(s: TaskState) -> api::TaskState {
    match s {
        TaskState::Queued => api::TaskState::Queued,
        TaskState::Running => api::TaskState::Running,
        TaskState::Completed => api::TaskState::Completed,
        TaskState::Failed => api::TaskState::Failed,
    }
}

/// The client's view of a stored task.
pub fn task_info(r: &TaskRecord) -> api::TaskInfo {
    api::TaskInfo {
        task_id: r.id.0,
        function_id: r.function_id.0,
        state: api_state(r.state) as i32,
        result: r.result.clone(),
        error: r.error.clone(),
        attempts: r.attempts,
        worker: r.worker.clone(),
        submitted_us: r.submitted_us,
        dispatched_us: r.dispatched_us,
        completed_us: r.completed_us,
        wait_us: r.wait_us,
        run_us: r.run_us,
        cold: r.cold.is_some(),
        cold_start: r.cold.as_deref().map(cold_start),
        log: r.log.clone(),
    }
}

fn cold_start(s: &InstanceStart) -> api::ColdStart {
    api::ColdStart {
        decided_us: s.decided_us,
        spawned_us: s.spawned_us,
        process_us: s.process_us,
        runtime_began_us: s.runtime_began_us,
        runtime_up_us: s.runtime_up_us,
        init_done_us: s.init_done_us,
        registered_us: s.registered_us,
    }
}

/// The client's view of a task that just finished.
pub fn finished_info(f: &Finished) -> api::TaskInfo {
    let (state, result, error) = match &f.outcome {
        Outcome::Completed(r) => (api::TaskState::Completed, r.clone(), String::new()),
        Outcome::Failed(e) => (api::TaskState::Failed, String::new(), e.clone()),
        Outcome::Raised { error, value } => (api::TaskState::Failed, value.clone(), error.clone()),
    };
    api::TaskInfo {
        task_id: f.task.0,
        function_id: f.function_id.0,
        state: state as i32,
        result,
        error,
        attempts: f.attempts,
        worker: f.worker.as_deref().unwrap_or_default().to_owned(),
        submitted_us: f.submitted_us,
        dispatched_us: f.dispatched_us,
        completed_us: f.completed_us,
        wait_us: f.wait_us,
        run_us: f.run_us,
        cold: f.cold.is_some(),
        cold_start: f.cold.as_deref().map(cold_start),
        log: f.log.clone(),
    }
}
