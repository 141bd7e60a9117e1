//! The built-in functions (`noop`, `echo`, `fail`, `sleep`, `spin`, trace functions):
//! each runs on the calling thread, which a slot's OS thread is for those that take time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use volley_proto::function::Job;
use volley_proto::wire::{Outcome, TaskAssignment, TaskResult};

/// Runs one assignment and times it.
pub(crate) fn run(assignment: TaskAssignment, received: Instant, executed: &AtomicU64) -> TaskResult {
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
}
