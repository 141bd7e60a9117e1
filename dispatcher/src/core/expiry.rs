//! Tasks the dispatcher gives up on: lost past their last attempt, or waiting for a
//! worker longer than `max_queue_wait`. Either way they end FAILED, so every accepted task
//! reaches a terminal state in bounded time (clients that poll forever need it).

use super::{Comm, Finished, Now, SchedulerCore, TaskEntry, TaskState, Transition};
use std::sync::Arc;
use volley_proto::ids::TaskId;
use volley_proto::wire::Outcome;

/// How the error of a task no worker took in time begins.
pub const NO_WORKER: &str = "no_worker: ";

impl SchedulerCore {
    /// Fails the tasks at the heads of the queues that have waited past
    /// `max_queue_wait`. Heads only: a queue is oldest first but for requeued tasks, which
    /// go to its front, so a task behind one waits at most one bound more.
    pub(super) fn expire_queued(&mut self, now: Now, comm: &mut impl Comm) {
        let Some(bound) = self.config.max_queue_wait else {
            return;
        };
        let bound_us = bound.as_micros() as u64;
        let functions: Vec<Arc<str>> = self.queues.lengths().map(|(f, _)| f.clone()).collect();
        for function in functions {
            let mut expired = Vec::new();
            if let Some(queue) = self.queues.of(&function) {
                while let Some(&(_, task)) = queue.front() {
                    let waited = match self.tasks.get(&task).map(|e| &e.state) {
                        Some(TaskState::Queued { since_us }) => now.unix_us.saturating_sub(*since_us),
                        _ => u64::MAX, // gone or taken: drop the stale entry
                    };
                    if waited <= bound_us {
                        break;
                    }
                    queue.pop_front();
                    expired.push(task);
                }
            }
            self.queues.took(&function, expired.len());
            for task in expired {
                let Some(entry) = self.tasks.remove(&task) else {
                    continue;
                };
                tracing::warn!(task_id = %task, function = %function, "no worker took the task within --max-queue-wait; it fails");
                let why = format!(
                    "{NO_WORKER}no worker took the task within {:.0} s (--max-queue-wait)",
                    bound.as_secs_f64()
                );
                self.finish_lost(task, entry, None, why, now, comm);
            }
        }
    }

    /// Ends a task the dispatcher gave up on as FAILED with `why`.
    pub(super) fn finish_lost(
        &mut self,
        task: TaskId,
        entry: TaskEntry,
        worker: Option<Arc<str>>,
        why: String,
        now: Now,
        comm: &mut impl Comm,
    ) {
        let dispatched_us = match entry.state {
            TaskState::Assigned { dispatched_us, .. } => dispatched_us,
            TaskState::Queued { .. } => 0,
        };
        self.counters.failed += 1;
        comm.record(Transition::Finished(Finished {
            task,
            function_id: entry.function_id,
            outcome: Outcome::Failed(why),
            attempts: entry.attempts,
            worker,
            submitted_us: entry.submitted_us,
            dispatched_us,
            completed_us: now.unix_us,
            wait_us: 0,
            run_us: 0,
            cold: None,
            log: String::new(),
        }));
    }
}
