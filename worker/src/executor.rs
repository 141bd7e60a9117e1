//! The slot pool: `N` OS threads, each running one task at a time.
//!
//! Threads (not async tasks) because `spin` must really occupy a core and `sleep` must
//! really occupy a slot. Results go back on an unbounded channel that the owner drains in
//! batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use volley_proto::function::Job;
use volley_proto::wire::{Outcome, TaskAssignment, TaskResult};

struct Queued {
    assignment: TaskAssignment,
    received: Instant,
}

/// `N` threads running jobs, fed through one queue.
pub struct SlotPool {
    jobs: Option<crossbeam_channel::Sender<Queued>>,
    threads: Vec<JoinHandle<()>>,
    executed: Arc<AtomicU64>,
}

impl SlotPool {
    /// Starts `slots` threads that send every result to `results`.
    pub fn start(slots: usize, results: UnboundedSender<TaskResult>) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<Queued>();
        let executed = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::with_capacity(slots);
        for slot in 0..slots.max(1) {
            let rx = rx.clone();
            let results = results.clone();
            let executed = executed.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("volley-slot-{slot}"))
                    .spawn(move || {
                        while let Ok(Queued { assignment, received }) = rx.recv() {
                            let started = Instant::now();
                            let outcome = run_job(&assignment.job);
                            let run_us = started.elapsed().as_micros() as u64;
                            executed.fetch_add(1, Ordering::Relaxed);
                            let result = TaskResult {
                                task_id: assignment.task_id,
                                attempt: assignment.attempt,
                                outcome,
                                wait_us: started.duration_since(received).as_micros() as u64,
                                run_us,
                            };
                            if results.send(result).is_err() {
                                return;
                            }
                        }
                    })?,
            );
        }
        Ok(Self {
            jobs: Some(tx),
            threads,
            executed,
        })
    }

    /// Queues one task; a free slot picks it up.
    pub fn submit(&self, assignment: TaskAssignment) {
        if let Some(jobs) = &self.jobs {
            // Fails only after shutdown, when results are no longer wanted.
            let _ = jobs.send(Queued {
                assignment,
                received: Instant::now(),
            });
        }
    }

    /// Tasks executed since start, for reports.
    pub fn executed(&self) -> u64 {
        self.executed.load(Ordering::Relaxed)
    }
}

impl Drop for SlotPool {
    /// Closes the queue; threads finish the task in hand and exit. Not joined, so a
    /// long `sleep` never delays the owner's exit.
    fn drop(&mut self) {
        self.jobs.take();
        self.threads.clear();
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
        Job::Fail { message } => Outcome::Failed(message.clone()),
        Job::Trace { ms, mb, spin } => run_trace(*ms, *mb, *spin),
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

    #[tokio::test]
    async fn slots_run_concurrently() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let pool = SlotPool::start(4, tx).unwrap();
        let start = Instant::now();
        for i in 0..4 {
            pool.submit(TaskAssignment {
                task_id: TaskId(i),
                attempt: 1,
                job: Job::Sleep { ms: 300 },
            });
        }
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(rx.recv().await.unwrap().task_id.0);
        }
        ids.sort();
        assert_eq!(ids, vec![0, 1, 2, 3]);
        // Four 300 ms sleeps in four slots take one sleep, not four (1.2 s): generous bound.
        assert!(start.elapsed() < Duration::from_millis(1000), "{:?}", start.elapsed());
        assert_eq!(pool.executed(), 4);
    }
}
