//! Choosing a worker for the next task.

use super::WorkerEntry;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use volley_proto::ids::WorkerId;

/// How a task's worker is picked among those with free capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Fewest tasks in flight relative to slots; ties go to the lowest id.
    LeastLoaded,
    /// The next worker after the last one picked.
    RoundRobin,
    /// Uniformly at random.
    Random,
}

impl Policy {
    /// The name used on command lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::LeastLoaded => "least-loaded",
            Policy::RoundRobin => "round-robin",
            Policy::Random => "random",
        }
    }
}

/// A worker's load as least-loaded placement orders it: tasks in flight relative to
/// slots, ties to the lowest id.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Load {
    in_flight: u64,
    slots: u64,
    id: WorkerId,
}

impl Load {
    fn of(id: WorkerId, w: &WorkerEntry) -> Self {
        Self {
            in_flight: w.in_flight.len() as u64,
            slots: u64::from(w.spec.slots.max(1)),
            id,
        }
    }
}

impl Ord for Load {
    fn cmp(&self, other: &Self) -> Ordering {
        // in_flight / slots against the other's, without division.
        (self.in_flight * other.slots)
            .cmp(&(other.in_flight * self.slots))
            .then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Load {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Least-loaded placement for one scheduling pass: the open workers in a heap, built
/// once per pass and kind of work, so placing `k` tasks on `n` workers costs
/// `O(n + k log n)`, not `O(n k)`.
///
/// Work that finishes at once occupies no slot, so spreading it buys no parallelism
/// worth a frame: it stays with the worker picked first until that worker's window is
/// full, and a pass sends few large frames rather than one small frame per worker.
///
/// A pass keeps one round per function (each over the workers that serve it). A worker
/// shared by several functions may be picked through another round meanwhile, so an entry
/// is checked when it comes off the heap: a full worker is dropped, a changed load goes
/// back in as it is now.
#[derive(Default)]
pub(super) struct Round {
    /// The kind of work the heap was built for (see `WorkerEntry::free`).
    instant: Option<bool>,
    heap: BinaryHeap<Reverse<Load>>,
    /// The worker picked last: its load changed, so it goes back in with the new one.
    last: Option<WorkerId>,
    /// Another round of the same pass may have picked from these workers: check entries.
    shared: bool,
}

impl Round {
    /// From now on, entries may be stale: another function's round picks in this pass.
    pub(super) fn share(&mut self) {
        self.shared = true;
    }

    /// As new, keeping the heap's storage for the next pass.
    pub(super) fn reset(&mut self) {
        self.instant = None;
        self.heap.clear();
        self.last = None;
        self.shared = false;
    }
}

impl Round {
    fn pick(
        &mut self,
        workers: &BTreeMap<WorkerId, WorkerEntry>,
        prefetch: u32,
        instant: bool,
        function: &str,
    ) -> Option<WorkerId> {
        let open = |w: &WorkerEntry| w.free(prefetch, instant) > 0 && w.spec.serves(function);
        if self.instant != Some(instant) {
            self.instant = Some(instant);
            self.last = None;
            self.heap.clear();
            self.heap.extend(
                workers
                    .iter()
                    .filter(|(_, w)| open(w))
                    .map(|(id, w)| Reverse(Load::of(*id, w))),
            );
        } else if let Some(id) = self.last.take() {
            if let Some(w) = workers.get(&id).filter(|w| open(w)) {
                if instant {
                    self.last = Some(id);
                    return Some(id);
                }
                self.heap.push(Reverse(Load::of(id, w)));
            }
        }
        loop {
            let Reverse(least) = self.heap.pop()?;
            if !self.shared {
                self.last = Some(least.id);
                return Some(least.id);
            }
            let Some(w) = workers.get(&least.id).filter(|w| open(w)) else {
                continue;
            };
            let current = Load::of(least.id, w);
            if current != least {
                self.heap.push(Reverse(current));
                continue;
            }
            self.last = Some(least.id);
            return Some(least.id);
        }
    }
}

pub(super) struct Placer {
    policy: Policy,
    cursor: Option<WorkerId>,
    rng: SmallRng,
}

impl Placer {
    pub(super) fn new(policy: Policy, seed: u64) -> Self {
        Self {
            policy,
            cursor: None,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// The worker for the next task of one scheduling pass (`round`, fresh per pass: the
    /// caller assigns each pick before asking again, and nothing else changes meanwhile).
    pub(super) fn pick(
        &mut self,
        workers: &BTreeMap<WorkerId, WorkerEntry>,
        prefetch: u32,
        instant: bool,
        function: &str,
        round: &mut Round,
    ) -> Option<WorkerId> {
        let mut open = workers
            .iter()
            .filter(|(_, w)| w.free(prefetch, instant) > 0 && w.spec.serves(function));
        match self.policy {
            Policy::LeastLoaded => round.pick(workers, prefetch, instant, function),
            Policy::RoundRobin => {
                let after = self.cursor;
                let next = open
                    .clone()
                    .find(|(id, _)| after.is_none_or(|c| **id > c))
                    .or_else(|| open.next())
                    .map(|(id, _)| *id);
                self.cursor = next.or(self.cursor);
                next
            }
            Policy::Random => {
                let candidates: Vec<WorkerId> = open.map(|(id, _)| *id).collect();
                if candidates.is_empty() {
                    None
                } else {
                    Some(candidates[self.rng.random_range(0..candidates.len())])
                }
            }
        }
    }
}
