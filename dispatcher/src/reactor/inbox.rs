//! What the client edges ask of the reactor: tasks to schedule, and the core's state
//! for `ClusterInfo`.

use crate::core::{CoreCounters, FunctionLoad, NewTask, WorkerView};
use tokio::sync::{mpsc, oneshot};

/// Where the edges send their [`Command`]s. Unbounded, because it needs no bound of its
/// own: a submission is admitted (`--max-queued`) before it is sent, and a snapshot's
/// asker waits for its answer. A bounded channel's permits cost every task a semaphore
/// acquire and release, under a lock.
pub type Inbox = mpsc::UnboundedSender<Command>;

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
