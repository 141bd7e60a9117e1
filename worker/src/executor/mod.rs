//! The slot pool: `N` slots, each running one task at a time.
//!
//! A slot is an async task on its owner's runtime (the worker's one I/O thread), so a
//! user function's task costs no thread hand-off: the slot writes the invocation to its
//! runtime's pipe, and the thread that reads the answer sends the result on. Built-ins
//! that must really occupy a core or a slot (`spin`, `sleep`, trace functions) run on
//! the slot's own OS thread. Work that finishes at once (`noop`, `echo`, `fail`) needs
//! no slot: it runs where it is submitted, and its results leave as one batch.
//!
//! A slot keeps one runtime process (see [`crate::runtime`]), for the function it last
//! ran, and starts a fresh one after a crash, a timeout or a change of function.

use crate::builtins::run;
use crate::runtime::instance::{Instance, Started};
use crate::runtime::{RuntimeError, Runtimes};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use volley_proto::function::{Job, UserCode};
use volley_proto::ids::TaskId;
use volley_proto::wire::{Outcome, TaskAssignment, TaskResult, INIT_FAILED};

struct Queued {
    assignment: TaskAssignment,
    received: Instant,
}

/// A request that a slot start a runtime for `code` before any task: its answer is the
/// runtime's start, or why it failed.
type Prewarm = (Arc<UserCode>, UnboundedSender<Result<Started, String>>);

enum Work {
    Task(Queued),
    Prewarm(Prewarm),
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Queued>,
    prewarm: VecDeque<Prewarm>,
    closed: bool,
}

/// Where a pool says which tasks sent with `report_start` its slots began.
pub type StartReports = UnboundedSender<Vec<(TaskId, u32)>>;

/// The queue the slots share.
#[derive(Default)]
struct Jobs {
    queue: Mutex<Queue>,
    available: Notify,
    starts: std::sync::OnceLock<StartReports>,
}

impl Jobs {
    /// The next job, waiting for one; `None` once closed. A prewarm request comes first.
    async fn take(&self) -> Option<Work> {
        loop {
            // Registered before the queue is looked at, so no wake-up falls in between.
            let notified = self.available.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut queue = self.queue.lock();
                if let Some(p) = queue.prewarm.pop_front() {
                    return Some(Work::Prewarm(p));
                }
                if let Some(job) = queue.jobs.pop_front() {
                    return Some(Work::Task(job));
                }
                if queue.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Wakes `n` idle slots (all of them when `n` reaches `slots`).
    fn wake(&self, n: usize, slots: usize) {
        if n >= slots {
            self.available.notify_waiters();
        }
        for _ in 0..n.min(slots) {
            self.available.notify_one();
        }
    }
}

/// A built-in job handed to a slot's OS thread, and where its result goes.
type Blocking = (Queued, oneshot::Sender<TaskResult>);

/// A slot's OS thread, for the built-ins that must occupy one; started with the first
/// such job. An instance of a user function never needs it, and starting it was on
/// every cold start's path (a thread, its stack and its malloc arena).
struct SlotThread {
    slot: usize,
    executed: Arc<AtomicU64>,
    sender: Option<std::sync::mpsc::Sender<Blocking>>,
}

impl SlotThread {
    /// Hands `job` to the thread, starting it if need be; gives the job back if the
    /// thread cannot be started or has gone (the next job then starts a new one).
    fn send(&mut self, job: Blocking) -> Result<(), (Blocking, String)> {
        let sender = match &mut self.sender {
            Some(sender) => sender,
            None => {
                let (to_thread, from_slot) = std::sync::mpsc::channel::<Blocking>();
                let counter = self.executed.clone();
                // Ends when its slot does (the channel closes), after the job in hand.
                let started = std::thread::Builder::new()
                    .name(format!("volley-slot-{}", self.slot))
                    .spawn(move || {
                        for (Queued { assignment, received }, reply) in from_slot {
                            let _ = reply.send(run(assignment, received, &counter));
                        }
                    });
                if let Err(e) = started {
                    return Err((job, format!("the slot's thread cannot start: {e}")));
                }
                self.sender.insert(to_thread)
            }
        };
        sender.send(job).map_err(|e| {
            self.sender = None;
            (e.0, "the slot's thread has gone".to_owned())
        })
    }
}

/// `N` slots running jobs, fed through one queue.
pub struct SlotPool {
    jobs: Arc<Jobs>,
    results: UnboundedSender<Vec<TaskResult>>,
    slots: usize,
    tasks: Vec<JoinHandle<()>>,
    executed: Arc<AtomicU64>,
    runtimes: Arc<Runtimes>,
}

impl SlotPool {
    /// Starts `slots` slots, on the current async runtime and one OS thread each, that
    /// send every result to `results`; user functions run in `runtimes`.
    pub fn start(
        slots: usize,
        results: UnboundedSender<Vec<TaskResult>>,
        runtimes: Arc<Runtimes>,
    ) -> std::io::Result<Self> {
        let jobs = Arc::new(Jobs::default());
        let executed = Arc::new(AtomicU64::new(0));
        let slots = slots.max(1);
        let mut tasks = Vec::with_capacity(slots);
        for slot in 0..slots {
            let thread = SlotThread {
                slot,
                executed: executed.clone(),
                sender: None,
            };
            tasks.push(tokio::spawn(run_slot(
                jobs.clone(),
                results.clone(),
                executed.clone(),
                runtimes.clone(),
                thread,
            )));
        }
        Ok(Self {
            jobs,
            results,
            slots,
            tasks,
            executed,
            runtimes,
        })
    }

    /// Reports the start of every task sent with `report_start` to `starts` from now on.
    pub fn report_starts(&self, starts: StartReports) {
        let _ = self.jobs.starts.set(starts);
    }

    /// Where user functions' code and runtimes live.
    pub fn runtimes(&self) -> &Arc<Runtimes> {
        &self.runtimes
    }

    /// Submits one task, as [`Self::submit_all`] does.
    pub fn submit(&self, assignment: TaskAssignment) {
        self.submit_all([assignment]);
    }

    /// Runs the tasks that finish at once here and now, sending their results as one
    /// batch; queues the rest in order under one lock and wakes as many slots as needed.
    pub fn submit_all(&self, assignments: impl IntoIterator<Item = TaskAssignment>) {
        let done = self.run_or_queue(assignments);
        if !done.is_empty() {
            // Fails only after the owner stopped listening.
            let _ = self.results.send(done);
        }
    }

    /// As [`Self::submit_all`], but the results of the tasks that finished at once are
    /// returned, for the caller to send with its next write: through the results channel
    /// they would wake the caller's own task once more per frame (a scheduler turn and
    /// an `epoll_wait` for every noop a worker runs one at a time).
    pub fn run_or_queue(&self, assignments: impl IntoIterator<Item = TaskAssignment>) -> Vec<TaskResult> {
        let received = Instant::now();
        let mut done = Vec::new();
        let added = {
            let mut queue = self.jobs.queue.lock();
            let before = queue.jobs.len();
            for assignment in assignments {
                if assignment.job.finishes_at_once() {
                    done.push(run(assignment, received, &self.executed));
                } else {
                    queue.jobs.push_back(Queued { assignment, received });
                }
            }
            queue.jobs.len() - before
        };
        self.jobs.wake(added, self.slots);
        done
    }

    /// Starts a runtime for `code` in each slot before any task (an instance of a user
    /// function does this before it registers), and returns each start or why it failed.
    pub async fn prewarm(&self, code: Arc<UserCode>) -> Vec<Result<Started, String>> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        {
            let mut queue = self.jobs.queue.lock();
            for _ in 0..self.slots {
                queue.prewarm.push_back((code.clone(), tx.clone()));
            }
        }
        drop(tx);
        self.jobs.wake(self.slots, self.slots);
        let mut started = Vec::with_capacity(self.slots);
        while let Some(s) = rx.recv().await {
            started.push(s);
        }
        started
    }

    /// Tasks executed since start, for reports.
    pub fn executed(&self) -> u64 {
        self.executed.load(Ordering::Relaxed)
    }
}

impl Drop for SlotPool {
    /// Closes the queue and stops the slots; a built-in in hand finishes on its thread
    /// (not joined, so a long `sleep` never delays the owner's exit). Runtimes are killed
    /// with their process groups: user code never outlives its worker.
    fn drop(&mut self) {
        self.jobs.queue.lock().closed = true;
        self.jobs.available.notify_waiters();
        for task in &self.tasks {
            task.abort();
        }
        self.runtimes.kill_all();
    }
}

/// One slot's loop: runs queued jobs one at a time and reports each result at once.
async fn run_slot(
    jobs: Arc<Jobs>,
    results: UnboundedSender<Vec<TaskResult>>,
    executed: Arc<AtomicU64>,
    runtimes: Arc<Runtimes>,
    mut thread: SlotThread,
) {
    let mut instance: Option<Instance> = None;
    while let Some(work) = jobs.take().await {
        let queued = match work {
            Work::Task(q) => {
                if q.assignment.report_start {
                    if let Some(starts) = jobs.starts.get() {
                        let _ = starts.send(vec![(q.assignment.task_id, q.assignment.attempt)]);
                    }
                }
                q
            }
            Work::Prewarm((code, reply)) => {
                let started = match instance.as_ref().filter(|i| i.serves(&code)) {
                    Some(i) => Ok(i.started.clone()),
                    None => match runtimes.start(&code).await {
                        Ok(i) => {
                            let started = i.started.clone();
                            instance = Some(i);
                            Ok(started)
                        }
                        Err(e) => Err(e.to_string()),
                    },
                };
                let _ = reply.send(started);
                continue;
            }
        };
        let result = match &queued.assignment.job {
            Job::User { code, args } => {
                let result = run_user(
                    &queued.assignment,
                    code,
                    args,
                    queued.received,
                    &runtimes,
                    &mut instance,
                )
                .await;
                executed.fetch_add(1, Ordering::Relaxed);
                result
            }
            _ => {
                let (tx, rx) = oneshot::channel();
                match thread.send((queued, tx)) {
                    Ok(()) => match rx.await {
                        Ok(result) => result,
                        Err(_) => return,
                    },
                    Err(((queued, _), why)) => {
                        tracing::error!("{why}; the task fails");
                        TaskResult {
                            task_id: queued.assignment.task_id,
                            attempt: queued.assignment.attempt,
                            outcome: Outcome::Failed(why),
                            wait_us: queued.received.elapsed().as_micros() as u64,
                            run_us: 0,
                            log: String::new(),
                        }
                    }
                }
            }
        };
        if results.send(vec![result]).is_err() {
            return;
        }
        runtimes.refill().await;
    }
}

/// Runs a user function's task in the slot's runtime, starting one if the slot has none
/// for this code. Whatever the code does, the slot survives and reports an outcome.
async fn run_user(
    assignment: &TaskAssignment,
    code: &UserCode,
    args: &str,
    received: Instant,
    runtimes: &Runtimes,
    instance: &mut Option<Instance>,
) -> TaskResult {
    let started = Instant::now();
    if instance.as_ref().is_some_and(|i| !i.serves(code)) {
        *instance = None;
    }
    let (outcome, log) = match instance {
        Some(i) => {
            let run = i.run(code, assignment.task_id.0, assignment.attempt, args).await;
            if !run.keep {
                *instance = None;
            }
            (run.outcome, run.log)
        }
        None => match runtimes.start(code).await {
            Ok(mut i) => {
                let run = i.run(code, assignment.task_id.0, assignment.attempt, args).await;
                if run.keep {
                    *instance = Some(i);
                }
                (run.outcome, run.log)
            }
            Err(RuntimeError::Init(e) | RuntimeError::Start(e)) => {
                (Outcome::Failed(format!("{INIT_FAILED}{e}")), String::new())
            }
        },
    };
    TaskResult {
        task_id: assignment.task_id,
        attempt: assignment.attempt,
        outcome,
        wait_us: started.duration_since(received).as_micros() as u64,
        run_us: started.elapsed().as_micros() as u64,
        log,
    }
}

#[cfg(test)]
mod tests;
