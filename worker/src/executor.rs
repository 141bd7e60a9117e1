//! The slot pool: `N` OS threads, each running one task at a time.
//!
//! Threads (not async tasks) because `spin` must really occupy a core and `sleep` must
//! really occupy a slot. Work that finishes at once (`noop`, `echo`, `fail`) needs no
//! slot: it runs on the thread that submits it, and its results leave as one batch, so
//! a frame of short tasks costs no thread hand-off at all.
//!
//! A user function's task runs in the slot's runtime process (see [`crate::runtime`]):
//! each slot keeps one, for the function it last ran, and starts a fresh one after a
//! crash, a timeout or a change of function.

use crate::runtime::instance::Instance;
use crate::runtime::{RuntimeError, Runtimes};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use volley_proto::function::{Job, UserCode};
use volley_proto::wire::{Outcome, TaskAssignment, TaskResult, INIT_FAILED};

struct Queued {
    assignment: TaskAssignment,
    received: Instant,
}

/// A request that a slot start a runtime for `code` before any task: its answer is the
/// runtime's start, or why it failed.
type Prewarm = (
    Arc<UserCode>,
    std::sync::mpsc::Sender<Result<crate::runtime::instance::Started, String>>,
);

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Queued>,
    prewarm: VecDeque<Prewarm>,
    closed: bool,
}

/// The queue the slots share. A mutex and a condition variable rather than a lock-free
/// channel: idle slots sleep in the kernel at once instead of spinning and yielding, which
/// on a small machine takes the core from the processes doing the work.
#[derive(Default)]
struct Jobs {
    queue: Mutex<Queue>,
    available: Condvar,
}

impl Jobs {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A slot never panics while holding the lock (jobs run outside it), so a poisoned
        // lock still guards a consistent queue.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next job, waiting for one; `None` once closed. A prewarm request comes first.
    fn take(&self) -> Option<Result<Queued, Prewarm>> {
        let mut queue = self.lock();
        loop {
            if let Some(p) = queue.prewarm.pop_front() {
                return Some(Err(p));
            }
            if let Some(job) = queue.jobs.pop_front() {
                return Some(Ok(job));
            }
            if queue.closed {
                return None;
            }
            queue = self
                .available
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// `N` threads running jobs, fed through one queue.
pub struct SlotPool {
    jobs: Arc<Jobs>,
    results: UnboundedSender<Vec<TaskResult>>,
    slots: usize,
    threads: Vec<JoinHandle<()>>,
    executed: Arc<AtomicU64>,
    runtimes: Arc<Runtimes>,
}

impl SlotPool {
    /// Starts `slots` threads that send every result to `results`, in batches; user
    /// functions run in `runtimes`.
    pub fn start(
        slots: usize,
        results: UnboundedSender<Vec<TaskResult>>,
        runtimes: Arc<Runtimes>,
    ) -> std::io::Result<Self> {
        let jobs = Arc::new(Jobs::default());
        let executed = Arc::new(AtomicU64::new(0));
        let slots = slots.max(1);
        let mut threads = Vec::with_capacity(slots);
        for slot in 0..slots {
            let jobs = jobs.clone();
            let results = results.clone();
            let executed = executed.clone();
            let runtimes = runtimes.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("volley-slot-{slot}"))
                    .spawn(move || run_slot(&jobs, &results, &executed, &runtimes))?,
            );
        }
        Ok(Self {
            jobs,
            results,
            slots,
            threads,
            executed,
            runtimes,
        })
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
        let received = Instant::now();
        let mut done = Vec::new();
        let added = {
            let mut queue = self.jobs.lock();
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
        if added >= self.slots {
            self.jobs.available.notify_all();
        } else {
            for _ in 0..added {
                self.jobs.available.notify_one();
            }
        }
        if !done.is_empty() {
            // Fails only after the owner stopped listening.
            let _ = self.results.send(done);
        }
    }

    /// Starts a runtime for `code` in each slot before any task (an instance of a user
    /// function does this before it registers), and returns each start or why it failed.
    /// Blocks until every slot has answered.
    pub fn prewarm(&self, code: Arc<UserCode>) -> Vec<Result<crate::runtime::instance::Started, String>> {
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let mut queue = self.jobs.lock();
            for _ in 0..self.slots {
                queue.prewarm.push_back((code.clone(), tx.clone()));
            }
        }
        drop(tx);
        self.jobs.available.notify_all();
        rx.iter().collect()
    }

    /// Tasks executed since start, for reports.
    pub fn executed(&self) -> u64 {
        self.executed.load(Ordering::Relaxed)
    }
}

impl Drop for SlotPool {
    /// Closes the queue; threads finish the task in hand and exit. Not joined, so a
    /// long `sleep` never delays the owner's exit. Runtimes are killed with their process
    /// groups: user code never outlives its worker.
    fn drop(&mut self) {
        self.jobs.lock().closed = true;
        self.jobs.available.notify_all();
        self.runtimes.kill_all();
        self.threads.clear();
    }
}

/// One slot's loop: runs queued jobs one at a time and reports each result at once.
fn run_slot(jobs: &Jobs, results: &UnboundedSender<Vec<TaskResult>>, executed: &AtomicU64, runtimes: &Runtimes) {
    let mut instance: Option<Instance> = None;
    while let Some(work) = jobs.take() {
        let Queued { assignment, received } = match work {
            Ok(q) => q,
            Err((code, reply)) => {
                let started = match instance.as_ref().filter(|i| i.serves(&code)) {
                    Some(i) => Ok(i.started.clone()),
                    None => runtimes.start(&code).map_err(|e| e.to_string()).map(|i| {
                        let started = i.started.clone();
                        instance = Some(i);
                        started
                    }),
                };
                let _ = reply.send(started);
                continue;
            }
        };
        let result = match &assignment.job {
            Job::User { code, args } => run_user(&assignment, code, args, received, runtimes, &mut instance, executed),
            _ => run(assignment, received, executed),
        };
        if results.send(vec![result]).is_err() {
            return;
        }
    }
}

/// Runs a user function's task in the slot's runtime, starting one if the slot has none
/// for this code. Whatever the code does, the slot survives and reports an outcome.
fn run_user(
    assignment: &TaskAssignment,
    code: &UserCode,
    args: &str,
    received: Instant,
    runtimes: &Runtimes,
    instance: &mut Option<Instance>,
    executed: &AtomicU64,
) -> TaskResult {
    let started = Instant::now();
    if instance.as_ref().is_some_and(|i| !i.serves(code)) {
        *instance = None;
    }
    let (outcome, log) = match instance {
        Some(i) => {
            let run = i.run(code, assignment.task_id.0, assignment.attempt, args);
            if !run.keep {
                *instance = None;
            }
            (run.outcome, run.log)
        }
        None => match runtimes.start(code) {
            Ok(mut i) => {
                let run = i.run(code, assignment.task_id.0, assignment.attempt, args);
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
    executed.fetch_add(1, Ordering::Relaxed);
    TaskResult {
        task_id: assignment.task_id,
        attempt: assignment.attempt,
        outcome,
        wait_us: started.duration_since(received).as_micros() as u64,
        run_us: started.elapsed().as_micros() as u64,
        log,
    }
}

/// Runs one assignment and times it.
fn run(assignment: TaskAssignment, received: Instant, executed: &AtomicU64) -> TaskResult {
    let started = Instant::now();
    let outcome = run_job(&assignment.job);
    let run_us = started.elapsed().as_micros() as u64;
    executed.fetch_add(1, Ordering::Relaxed);
    TaskResult {
        task_id: assignment.task_id,
        attempt: assignment.attempt,
        outcome,
        wait_us: started.duration_since(received).as_micros() as u64,
        run_us,
        log: String::new(),
    }
}

/// Runs one job on the calling thread and returns its result as JSON.
pub fn run_job(job: &Job) -> Outcome {
    match job {
        Job::Noop => Outcome::Completed("null".to_owned()),
        Job::Sleep { ms } => {
            std::thread::sleep(Duration::from_millis(*ms));
            Outcome::Completed(format!("{{\"slept_ms\":{ms}}}"))
        }
        Job::Spin { ms } => {
            let iterations = spin_for(Duration::from_millis(*ms));
            Outcome::Completed(format!("{{\"spun_ms\":{ms},\"iterations\":{iterations}}}"))
        }
        Job::Echo { payload } => Outcome::Completed(payload.clone()),
        Job::Fail { message } => Outcome::Failed(message.to_string()),
        Job::Trace { ms, mb, spin } => run_trace(*ms, *mb, *spin),
        Job::User { code, .. } => Outcome::Failed(format!(
            "{} is a user function: it runs in a slot's runtime, not here",
            code.function
        )),
    }
}

/// Bytes between two writes when touching memory: one a page.
const PAGE: usize = 4096;

/// A trace function's task: allocates and touches `mb` MiB (so the memory is resident,
/// not merely reserved), then sleeps or spins for what is left of `ms`. The result
/// reports what really happened, so the replay can compare it with what was asked.
fn run_trace(ms: u64, mb: u64, spin: bool) -> Outcome {
    let start = Instant::now();
    let bytes = (mb as usize).saturating_mul(1 << 20);
    let mut memory: Vec<u8> = Vec::new();
    if memory.try_reserve_exact(bytes).is_err() {
        return Outcome::Failed(format!("cannot allocate {mb} MiB"));
    }
    // Fresh pages come from the kernel unmapped; writing one byte a page makes each
    // resident, at a cost per page rather than per byte. Nothing is ever read back.
    let spare = memory.spare_capacity_mut();
    for i in (0..bytes).step_by(PAGE) {
        spare[i].write(1);
    }
    std::hint::black_box(spare);
    let rest = Duration::from_millis(ms).saturating_sub(start.elapsed());
    if spin {
        spin_for(rest);
    } else {
        std::thread::sleep(rest);
    }
    drop(memory);
    let actual = start.elapsed().as_secs_f64() * 1e3;
    Outcome::Completed(format!("{{\"ms\":{actual:.3},\"mb\":{mb}}}"))
}

/// Keeps one core busy for `wall` of wall time; returns the loop count so the work
/// cannot be optimised away.
fn spin_for(wall: Duration) -> u64 {
    let start = Instant::now();
    let mut iterations: u64 = 0;
    let mut acc: u64 = 0x9e37_79b9_7f4a_7c15;
    loop {
        for _ in 0..1024 {
            acc = std::hint::black_box(acc.rotate_left(5) ^ iterations);
            iterations += 1;
        }
        if start.elapsed() >= wall {
            std::hint::black_box(acc);
            return iterations;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volley_proto::ids::TaskId;

    #[test]
    fn jobs_produce_their_results() {
        assert_eq!(run_job(&Job::Noop), Outcome::Completed("null".into()));
        assert_eq!(
            run_job(&Job::Echo { payload: "[1]".into() }),
            Outcome::Completed("[1]".into())
        );
        assert_eq!(run_job(&Job::Fail { message: "x".into() }), Outcome::Failed("x".into()));
        for spin in [false, true] {
            let started = Instant::now();
            match run_job(&Job::Trace { ms: 30, mb: 8, spin }) {
                Outcome::Completed(r) => assert!(r.contains("\"mb\":8"), "{r}"),
                other => panic!("{other:?}"),
            }
            assert!(started.elapsed() >= Duration::from_millis(30));
        }
        let start = Instant::now();
        assert!(matches!(run_job(&Job::Spin { ms: 20 }), Outcome::Completed(s) if s.contains("iterations")));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    fn runtimes() -> Arc<Runtimes> {
        Arc::new(Runtimes::new(crate::runtime::Interpreters::default()).unwrap())
    }

    fn assignment(id: u64, job: Job) -> TaskAssignment {
        TaskAssignment {
            task_id: TaskId(id),
            attempt: 1,
            job,
        }
    }

    #[tokio::test]
    async fn instant_tasks_run_where_submitted_and_report_as_one_batch_before_a_sleep() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let pool = SlotPool::start(1, tx, runtimes()).unwrap();
        let mut frame: Vec<_> = (0..500).map(|i| assignment(i, Job::Noop)).collect();
        frame.push(assignment(500, Job::Sleep { ms: 200 }));
        pool.submit_all(frame);
        // The noops ran inside `submit_all`: their results are already sent, as one batch,
        // while the sleep went to the slot.
        let mut ids = Vec::new();
        let mut batches = 0;
        while ids.len() < 500 {
            ids.extend(rx.recv().await.unwrap().iter().map(|r| r.task_id.0));
            batches += 1;
        }
        assert_eq!(ids, (0..500).collect::<Vec<_>>());
        assert_eq!(batches, 1);
        assert_eq!(
            rx.recv().await.unwrap().iter().map(|r| r.task_id.0).collect::<Vec<_>>(),
            vec![500]
        );
    }

    #[tokio::test]
    async fn slots_run_concurrently() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let pool = SlotPool::start(4, tx, runtimes()).unwrap();
        let start = Instant::now();
        for i in 0..4 {
            pool.submit(assignment(i, Job::Sleep { ms: 300 }));
        }
        let mut ids = Vec::new();
        while ids.len() < 4 {
            ids.extend(rx.recv().await.unwrap().iter().map(|r| r.task_id.0));
        }
        ids.sort();
        assert_eq!(ids, vec![0, 1, 2, 3]);
        // Four 300 ms sleeps in four slots take one sleep, not four (1.2 s): generous bound.
        assert!(start.elapsed() < Duration::from_millis(1000), "{:?}", start.elapsed());
        assert_eq!(pool.executed(), 4);
    }
}
