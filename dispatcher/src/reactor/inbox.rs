//! What the client edges ask of the reactor: tasks to schedule, and the core's state
//! for `ClusterInfo`.

use crate::core::{CoreCounters, FunctionLoad, NewTask, WorkerView};
use tokio::sync::oneshot;

/// Requests from the gRPC edge.
pub enum Command {
    /// Stored tasks to schedule.
    Submit(Vec<NewTask>),
    /// A snapshot for `ClusterInfo`.
    Snapshot(oneshot::Sender<Snapshot>),
}

/// What `ClusterInfo` reports of the core.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Registered workers.
    pub workers: Vec<WorkerView>,
    /// Tasks waiting.
    pub queued: usize,
    /// Tasks held by workers.
    pub running: usize,
    /// Core event counts.
    pub counters: CoreCounters,
    /// Per function: queue, running, instances.
    pub functions: Vec<FunctionLoad>,
}
