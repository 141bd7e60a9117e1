//! The pacer: wakes at each intended send time, on the generator's own event loop, and
//! says which requests are due.
//!
//! tokio's timer has a resolution of one millisecond, so a generator paced by it sends up
//! to a millisecond late and charges that to the dispatcher (the 1.5 ms p50 for a noop at
//! 1,000/s). A `timerfd` wakes within microseconds, and it wakes the thread that sends:
//! a pacer thread of its own cost each wake a hand-over to the sender's thread (an
//! `eventfd` write and a second wake-up, about a fifth of the generator's CPU at
//! 5,000/s). Each wake is set `slack` after the next request's time and takes every
//! request due by then, so close arrivals leave in one write instead of one wake each;
//! the slack is lateness from the intended send, which the latency figures include.

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A `TimerFd` as tokio's reactor takes it.
struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Requests due together at most; more are taken at the next call, without a wait.
pub const MAX_DUE: usize = 2_000;

/// How late after a request's time the pacer wakes by default: what a sleeping thread's
/// timer slack gave the pacer thread this replaced, so its batching, and no more.
pub const DEFAULT_SLACK: Duration = Duration::from_micros(50);

/// Requests `first..end` of the schedule, all due.
#[derive(Debug, Clone, Copy)]
pub struct Due {
    /// The first request's index.
    pub first: usize,
    /// One past the last request's index.
    pub end: usize,
}

/// Paces a schedule (offsets from `start`, ascending) on the event loop it is polled on.
pub struct Pacer {
    schedule: Arc<Vec<Duration>>,
    start: Instant,
    slack: Duration,
    next: usize,
    /// The request the timer is set for: a wait dropped and begun again (the event loop
    /// woke for something else) finds it set.
    armed: Option<usize>,
    timer: AsyncFd<Timer>,
}

impl Pacer {
    /// A pacer over `schedule`; must be created inside a tokio runtime with I/O enabled.
    pub fn new(schedule: Arc<Vec<Duration>>, start: Instant, slack: Duration) -> std::io::Result<Self> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: `Timer` owns its descriptor (a `TimerFd` holds an `OwnedFd`), so it stays
        // open, and the same, for as long as the `AsyncFd` holds it.
        #[allow(unsafe_code)]
        let timer = unsafe { AsyncFd::register_with_interest(Timer(timer), Interest::READABLE) }?;
        Ok(Self {
            schedule,
            start,
            slack,
            next: 0,
            armed: None,
            timer,
        })
    }

    /// The requests due now, waiting until there are some; `None` once the schedule is
    /// done. Cancel-safe: a wait dropped midway hands nothing over.
    pub async fn next(&mut self) -> std::io::Result<Option<Due>> {
        loop {
            let Some(offset) = self.schedule.get(self.next) else {
                return Ok(None);
            };
            let now = Instant::now();
            let at = self.start + *offset;
            if now >= at {
                let mut end = self.next + 1;
                while end < self.schedule.len() && end - self.next < MAX_DUE && self.start + self.schedule[end] <= now {
                    end += 1;
                }
                let due = Due { first: self.next, end };
                self.next = end;
                return Ok(Some(due));
            }
            if self.armed != Some(self.next) {
                self.timer.get_ref().0.set(
                    Expiration::OneShot(TimeSpec::from_duration(at - now + self.slack)),
                    TimerSetTimeFlags::empty(),
                )?;
                self.armed = Some(self.next);
            }
            let mut ready = self.timer.readable().await?;
            let mut expirations = [0u8; 8];
            // One read takes the expiry: the timer is not readable again until set again.
            // `WouldBlock` (it has not fired) clears the readiness by itself.
            if ready
                .try_io(|fd| Ok(nix::unistd::read(&fd.get_ref().0, &mut expirations)?))
                .is_ok()
            {
                ready.clear_ready();
                self.armed = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn every_request_is_handed_over_once_in_order_and_never_early() {
        let schedule: Vec<Duration> = (0..5_000).map(|i| Duration::from_micros(i * 20)).collect();
        let n = schedule.len();
        let start = Instant::now();
        let schedule = Arc::new(schedule);
        let mut pacer = Pacer::new(schedule.clone(), start, DEFAULT_SLACK).expect("timerfd");
        let mut expected = 0;
        while let Some(d) = pacer.next().await.expect("pacing") {
            let now = Instant::now();
            assert_eq!(d.first, expected);
            assert!(d.end > d.first && d.end - d.first <= MAX_DUE);
            assert!(
                start + schedule[d.end - 1] <= now,
                "request {} handed over early",
                d.end - 1
            );
            expected = d.end;
        }
        assert_eq!(expected, n);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_wait_dropped_midway_loses_nothing() {
        let schedule: Vec<Duration> = (0..50).map(|i| Duration::from_millis(2 * i)).collect();
        let mut pacer = Pacer::new(Arc::new(schedule), Instant::now(), DEFAULT_SLACK).expect("timerfd");
        let mut expected = 0;
        while expected < 50 {
            tokio::select! {
                d = pacer.next() => {
                    let d = d.expect("pacing").expect("more to come");
                    assert_eq!(d.first, expected);
                    expected = d.end;
                }
                // Often shorter than the wait for the next request: that wait is dropped.
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
        assert!(pacer.next().await.expect("pacing").is_none());
    }
}
