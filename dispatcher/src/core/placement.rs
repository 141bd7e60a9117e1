//! Choosing a worker for the next task.

use super::WorkerEntry;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
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

    pub(super) fn pick(
        &mut self,
        workers: &BTreeMap<WorkerId, WorkerEntry>,
        prefetch: u32,
        instant: bool,
    ) -> Option<WorkerId> {
        let mut open = workers.iter().filter(|(_, w)| w.free(prefetch, instant) > 0);
        match self.policy {
            Policy::LeastLoaded => open
                .min_by(|(_, a), (_, b)| {
                    // a.in_flight / a.slots vs b.in_flight / b.slots, without division.
                    let la = a.in_flight.len() as u64 * u64::from(b.spec.slots.max(1));
                    let lb = b.in_flight.len() as u64 * u64::from(a.spec.slots.max(1));
                    la.cmp(&lb)
                })
                .map(|(id, _)| *id),
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
