//! The pacer: a thread of its own that wakes at each intended send time and hands the
//! requests that are due to the sender.
//!
//! tokio's timer has a resolution of one millisecond, so a generator paced by it sends up
//! to a millisecond late and charges that to the dispatcher (the 1.5 ms p50 for a noop at
//! 1,000/s). `std::thread::sleep` wakes within tens of microseconds. When requests are due
//! faster than the thread can wake, every wake takes all that are due: high rates leave in
//! batches instead of falling behind one request at a time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Requests due together at most; more wait for the next wake (microseconds later).
pub const MAX_DUE: usize = 2_000;

/// Requests `first..end` of the schedule, due at the latest at `at`.
#[derive(Debug, Clone, Copy)]
pub struct Due {
    /// The first request's index.
    pub first: usize,
    /// One past the last request's index.
    pub end: usize,
}

/// Stops the pacer early when dropped or when [`PacerHandle::stop`] is called.
pub struct PacerHandle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PacerHandle {
    /// Stops the pacer and waits for its thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PacerHandle {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Starts pacing `schedule` (offsets from `start`, ascending) on its own thread.
pub fn start(
    schedule: Arc<Vec<Duration>>,
    start: Instant,
    due: mpsc::UnboundedSender<Due>,
) -> std::io::Result<PacerHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let halt = stop.clone();
    let thread = std::thread::Builder::new()
        .name("volley-pacer".into())
        .spawn(move || pace(&schedule, start, &due, &halt))?;
    Ok(PacerHandle {
        stop,
        thread: Some(thread),
    })
}

/// The longest single sleep, so a stop request is noticed soon.
const MAX_SLEEP: Duration = Duration::from_millis(50);

fn pace(schedule: &[Duration], start: Instant, due: &mpsc::UnboundedSender<Due>, stop: &AtomicBool) {
    let mut next = 0;
    while next < schedule.len() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let at = start + schedule[next];
        let now = Instant::now();
        if now < at {
            std::thread::sleep((at - now).min(MAX_SLEEP));
            continue;
        }
        let now = Instant::now();
        let mut end = next + 1;
        while end < schedule.len() && end - next < MAX_DUE && start + schedule[end] <= now {
            end += 1;
        }
        if due.send(Due { first: next, end }).is_err() {
            return;
        }
        next = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_is_handed_over_once_in_order() {
        let schedule: Vec<Duration> = (0..5_000).map(|i| Duration::from_micros(i * 20)).collect();
        let n = schedule.len();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handle = start(Arc::new(schedule), Instant::now(), tx).expect("thread");
        let mut expected = 0;
        while let Some(d) = rx.blocking_recv() {
            assert_eq!(d.first, expected);
            assert!(d.end > d.first && d.end - d.first <= MAX_DUE);
            expected = d.end;
        }
        assert_eq!(expected, n);
        handle.stop();
    }
}
