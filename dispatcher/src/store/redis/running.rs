//! What this dispatcher knows about its tasks in flight and Redis does not: who runs
//! them. RUNNING is not written to Redis (recovery would requeue the task anyway), so a
//! client asking this dispatcher about a task sees it here; a dispatcher that restarts
//! starts with nothing, and its recovered tasks are QUEUED, which they are.

use crate::core::Transition;
use crate::store::{TaskRecord, TaskState};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use volley_proto::ids::TaskId;

/// The last attempt of each task this dispatcher dispatched and has not seen finish.
#[derive(Default)]
pub struct InFlight {
    tasks: Mutex<HashMap<TaskId, Attempt>>,
}

struct Attempt {
    number: u32,
    worker: Arc<str>,
    sent_us: u64,
    /// False once the attempt was lost and the task requeued: its worker is kept for a
    /// final failure that names none.
    running: bool,
}

impl InFlight {
    /// Takes note of a batch of transitions before it is written.
    pub fn note(&self, transitions: &[Transition]) {
        let mut tasks = self.tasks.lock();
        for t in transitions {
            match t {
                Transition::Running {
                    task,
                    attempt,
                    worker,
                    at_us,
                } => {
                    tasks.insert(
                        *task,
                        Attempt {
                            number: *attempt,
                            worker: worker.clone(),
                            sent_us: *at_us,
                            running: true,
                        },
                    );
                }
                Transition::Requeued { task, .. } => {
                    if let Some(a) = tasks.get_mut(task) {
                        a.running = false;
                    }
                }
                Transition::Finished(_) => {}
            }
        }
    }

    /// For each finish in `transitions`, the worker of the task's last attempt when the
    /// finish itself names none (a task lost for good).
    pub fn last_workers(&self, transitions: &[Transition]) -> Vec<Option<Arc<str>>> {
        let tasks = self.tasks.lock();
        transitions
            .iter()
            .filter_map(|t| match t {
                Transition::Finished(f) => Some(match &f.worker {
                    Some(_) => None,
                    None => tasks.get(&f.task).map(|a| a.worker.clone()),
                }),
                _ => None,
            })
            .collect()
    }

    /// Forgets the tasks whose finish is written.
    pub fn forget_finished(&self, transitions: &[Transition]) {
        let mut tasks = self.tasks.lock();
        for t in transitions {
            if let Transition::Finished(f) = t {
                tasks.remove(&f.task);
            }
        }
    }

    /// Shows a stored QUEUED task that this dispatcher has sent to a worker as RUNNING.
    pub fn overlay(&self, record: &mut TaskRecord) {
        if record.state != TaskState::Queued {
            return;
        }
        if let Some(a) = self.tasks.lock().get(&record.id).filter(|a| a.running) {
            record.state = TaskState::Running;
            record.attempts = a.number;
            record.worker = a.worker.to_string();
            record.dispatched_us = a.sent_us;
        }
    }
}
