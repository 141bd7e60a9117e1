//! The ledger of an open-loop run: one entry per request, from its intended send time to
//! exactly one fate. Nothing is counted twice and nothing is dropped: a request is
//! completed, failed (with the dispatcher's error), refused at submission (with its
//! status), unfinished when the drain ends, or — only if the dispatcher no longer knows the
//! task — unknown, which the run reports as an error rather than guessing.

// Task ids are the dispatcher's counters, not an attacker's keys: a fast hash will do.
use foldhash::{HashMap, HashMapExt};
use std::time::Duration;

/// How a finished task came back.
#[derive(Debug, Clone)]
pub struct Finish {
    /// COMPLETED (else FAILED).
    pub completed: bool,
    /// The dispatcher's error, for a failure.
    pub error: String,
    /// When the result was known here, as an offset from the run's start.
    pub at: Duration,
    /// When the dispatcher finished the task, on the same scale (same-host clocks).
    pub done_at: Duration,
    /// Read back by id after the live result stream fell behind.
    pub recovered: bool,
    /// The worker that ran it.
    pub worker: String,
    /// How long the function ran on the worker, µs.
    pub run_us: u64,
    /// It waited for an instance to start (elastic pools).
    pub cold: bool,
}

/// One request's fate.
#[derive(Debug, Clone)]
pub enum Fate {
    /// Sent (or about to be) and not yet answered.
    Pending,
    /// Finished, one way or the other.
    Finished(Finish),
    /// Refused at submission; the status code and message.
    Refused(tonic::Code, String),
    /// The dispatcher does not know the task it acknowledged, or the request was lost
    /// in transit: whether it ran cannot be known.
    Unknown,
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request {
    /// When it was handed to the network, as an offset from the run's start.
    pub sent: Option<Duration>,
    /// The task id the dispatcher gave it.
    pub task: Option<u64>,
    /// What became of it.
    pub fate: Fate,
}

/// Completions seen before their submission was acknowledged, at most; beyond it the
/// stash is cleared and the run reads the affected results back by id.
const EARLY_CAP: usize = 1_000_000;

/// Every request of a run.
#[derive(Debug)]
pub struct Ledger {
    /// Indexed like the schedule.
    pub requests: Vec<Request>,
    by_task: HashMap<u64, usize>,
    early: HashMap<u64, Finish>,
    unresolved: usize,
    /// The early stash overflowed: some results must be read back by id.
    pub lost_early: bool,
}

impl Ledger {
    /// A ledger for `n` requests, all pending.
    pub fn new(n: usize) -> Self {
        Self {
            requests: vec![
                Request {
                    sent: None,
                    task: None,
                    fate: Fate::Pending,
                };
                n
            ],
            by_task: HashMap::with_capacity(n),
            early: HashMap::new(),
            unresolved: n,
            lost_early: false,
        }
    }

    /// Requests `range` left at `at`.
    pub fn sent(&mut self, range: std::ops::Range<usize>, at: Duration) {
        for r in &mut self.requests[range] {
            r.sent = Some(at);
        }
    }

    /// The dispatcher accepted `range` and named their tasks, in order.
    pub fn acknowledged(&mut self, range: std::ops::Range<usize>, ids: &[u64]) {
        for (i, &id) in range.zip(ids) {
            self.requests[i].task = Some(id);
            self.by_task.insert(id, i);
            if let Some(f) = self.early.remove(&id) {
                self.settle(i, Fate::Finished(f));
            }
        }
    }

    /// The dispatcher refused `range`.
    pub fn refused(&mut self, range: std::ops::Range<usize>, code: tonic::Code, message: &str) {
        for i in range {
            self.settle(i, Fate::Refused(code, message.to_owned()));
        }
    }

    /// Requests `range` may or may not have reached the dispatcher: the connection failed
    /// under them. Nothing can tell what became of them.
    pub fn lost_in_transit(&mut self, range: std::ops::Range<usize>) {
        for i in range {
            self.settle(i, Fate::Unknown);
        }
    }

    /// A task finished. The first word on a task wins; results of other clients' tasks
    /// (the live stream carries every completion) are kept until they are known not to
    /// be ours, within a bound.
    pub fn finished(&mut self, task: u64, f: Finish) {
        match self.by_task.get(&task) {
            Some(&i) => self.settle(i, Fate::Finished(f)),
            None => {
                if self.early.len() >= EARLY_CAP {
                    self.early.clear();
                    self.lost_early = true;
                }
                self.early.entry(task).or_insert(f);
            }
        }
    }

    /// The dispatcher does not know `task`.
    pub fn unknown(&mut self, task: u64) {
        if let Some(&i) = self.by_task.get(&task) {
            self.settle(i, Fate::Unknown);
        }
    }

    fn settle(&mut self, i: usize, fate: Fate) {
        if matches!(self.requests[i].fate, Fate::Pending) {
            self.requests[i].fate = fate;
            self.unresolved -= 1;
        }
    }

    /// Every request has its fate.
    pub fn settled(&self) -> bool {
        self.unresolved == 0
    }

    /// Acknowledged tasks with no result yet.
    pub fn unresolved_tasks(&self) -> Vec<u64> {
        self.requests
            .iter()
            .filter(|r| matches!(r.fate, Fate::Pending))
            .filter_map(|r| r.task)
            .collect()
    }
}

/// The four outcomes (five with unknown) of every request sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Requests sent.
    pub sent: u64,
    /// COMPLETED.
    pub completed: u64,
    /// FAILED, with the dispatcher's error.
    pub failed: u64,
    /// Refused at submission.
    pub refused: u64,
    /// No result when the drain ended (including sends never acknowledged).
    pub unfinished: u64,
    /// Of the unfinished, sends the dispatcher never acknowledged.
    pub unacknowledged: u64,
    /// Tasks the dispatcher no longer knew, and sends lost in transit.
    pub unknown: u64,
    /// Results read back by id after the live stream fell behind.
    pub recovered: u64,
}

impl Outcomes {
    /// Counts the fates of every request that was sent.
    pub fn of(ledger: &Ledger) -> Self {
        let mut o = Self::default();
        for r in ledger.requests.iter().filter(|r| r.sent.is_some()) {
            o.sent += 1;
            match &r.fate {
                Fate::Finished(f) => {
                    if f.completed {
                        o.completed += 1;
                    } else {
                        o.failed += 1;
                    }
                    o.recovered += u64::from(f.recovered);
                }
                Fate::Refused(..) => o.refused += 1,
                Fate::Unknown => o.unknown += 1,
                Fate::Pending => {
                    o.unfinished += 1;
                    o.unacknowledged += u64::from(r.task.is_none());
                }
            }
        }
        o
    }

    /// The outcomes add up to the requests sent.
    pub fn add_up(&self) -> bool {
        self.completed + self.failed + self.refused + self.unfinished + self.unknown == self.sent
    }
}

/// The first failure or refusal, for the summary.
pub fn first_error(ledger: &Ledger) -> Option<String> {
    ledger.requests.iter().find_map(|r| match &r.fate {
        Fate::Finished(f) if !f.completed => Some(format!("failed: {}", f.error)),
        Fate::Refused(code, message) => Some(format!("refused ({code:?}): {message}")),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(at_ms: u64) -> Finish {
        Finish {
            completed: true,
            error: String::new(),
            at: Duration::from_millis(at_ms),
            done_at: Duration::from_millis(at_ms),
            recovered: false,
            worker: String::new(),
            run_us: 0,
            cold: false,
        }
    }

    #[test]
    fn every_request_ends_in_exactly_one_outcome() {
        let mut l = Ledger::new(6);
        l.sent(0..6, Duration::ZERO);
        // A result may arrive before its acknowledgement; a result of someone else's
        // task is never counted.
        l.finished(11, done(3));
        l.finished(999, done(3));
        l.acknowledged(0..3, &[10, 11, 12]);
        l.finished(10, done(4));
        l.finished(10, done(9)); // a second word on a task changes nothing
        l.finished(
            12,
            Finish {
                completed: false,
                error: "boom".into(),
                at: Duration::from_millis(5),
                done_at: Duration::from_millis(5),
                recovered: true,
                worker: String::new(),
                run_us: 0,
                cold: false,
            },
        );
        l.refused(3..4, tonic::Code::ResourceExhausted, "queue full");
        l.acknowledged(4..5, &[14]);
        // 5 was sent and never acknowledged; 14 has no result.
        let o = Outcomes::of(&l);
        assert_eq!(
            o,
            Outcomes {
                sent: 6,
                completed: 2,
                failed: 1,
                refused: 1,
                unfinished: 2,
                unacknowledged: 1,
                unknown: 0,
                recovered: 1,
            }
        );
        assert!(o.add_up());
        assert!(!l.settled());
        assert_eq!(l.unresolved_tasks(), vec![14]);
        l.unknown(14);
        assert_eq!(Outcomes::of(&l).unknown, 1);
        assert_eq!(first_error(&l).as_deref(), Some("failed: boom"));
    }
}
