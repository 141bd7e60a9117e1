//! The scheduler core: every task's and worker's scheduling state, with no I/O.
//!
//! Events come in as method calls carrying the current time ([`Now`]); actions go out
//! through [`Comm`]. Local, pull and push mode all drive this one core: local mode is one
//! in-process worker, pull mode gives workers [`Capacity::Credits`], push mode places tasks
//! by [`Policy`] up to [`Capacity::Slots`]. Being pure, it is unit-tested without sockets.

mod dispatch;
mod expiry;
mod interface;
mod placement;
mod queues;
#[cfg(test)]
mod tests;
mod views;

pub use expiry::NO_WORKER;
pub use interface::*;
pub use placement::Policy;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use volley_proto::function::Job;
use volley_proto::ids::{FunctionId, TaskId, WorkerId};
use volley_proto::wire::{TaskAssignment, TaskResult, INIT_FAILED};

/// A map keyed by task id with a fast seeded hash: ids are looked up several times per
/// task on the hot path, where SipHash costs more than the lookup itself.
pub type TaskMap<V> = foldhash::HashMap<TaskId, V>;
/// A set of task ids with the same fast seeded hash as [`TaskMap`].
pub type TaskSet = foldhash::HashSet<TaskId>;

enum TaskState {
    /// Waiting for a worker since this time (µs since the epoch).
    Queued { since_us: u64 },
    Assigned {
        worker: WorkerId,
        deadline: Instant,
        dispatched_us: u64,
    },
}

struct TaskEntry {
    function_id: FunctionId,
    function: Arc<str>,
    job: Job,
    attempts: u32,
    submitted_us: u64,
    state: TaskState,
}

/// Tasks that finish at once ([`Job::finishes_at_once`]) one worker may hold at most.
/// They take no slot, so `slots + prefetch` does not bound them; this does, keeping
/// frames and what a lost worker takes with it small.
pub const INSTANT_WINDOW: u32 = 256;
/// Bytes of job data one worker may hold at once (two full frames): with 1 MiB arguments,
/// `slots + prefetch` or the instant window alone would let one worker hold hundreds of MiB.
pub const WINDOW_BYTES: u64 = 2 * volley_proto::wire::MAX_FRAME_BYTES as u64;

struct WorkerEntry {
    spec: WorkerSpec,
    label: Arc<str>,
    /// Pull mode: slot work the worker asked for and has not been sent.
    credits: u32,
    in_flight: TaskSet,
    /// How many of `in_flight` finish at once.
    instant: u32,
    /// Bytes of job data `in_flight` holds (see [`Job::wire_weight`]).
    bytes: u64,
    last_seen: Instant,
    /// When it last held nothing (registration, or its last task ending).
    idle_since: Instant,
    /// Idle time before `idle_since`, µs: the elastic pool's wasted instance-time.
    idle_us: u64,
}

impl WorkerEntry {
    /// All its idle time up to `now`, µs.
    fn idle_until(&self, now: Instant) -> u64 {
        let open = if self.in_flight.is_empty() {
            now.saturating_duration_since(self.idle_since).as_micros() as u64
        } else {
            0
        };
        self.idle_us + open
    }

    /// `slots + prefetch`; an instance of one function gets no prefetch: like Knative's
    /// container concurrency, it holds at most its slots, and further tasks wait in the
    /// dispatcher's queue, where the scaler sees them.
    fn limit(&self, prefetch: u32) -> u32 {
        if self.spec.function.is_some() {
            return self.spec.slots;
        }
        self.spec.slots.saturating_add(prefetch)
    }

    /// Room left in the slot window: `slots + prefetch` less the slot work held.
    fn room(&self, prefetch: u32) -> u32 {
        let slot_work = (self.in_flight.len() as u32).saturating_sub(self.instant);
        self.limit(prefetch).saturating_sub(slot_work)
    }

    /// Tasks of the given kind this worker can take now: none while its window holds
    /// [`WINDOW_BYTES`] of job data, whatever the counts say.
    fn free(&self, prefetch: u32, instant: bool) -> u32 {
        if self.bytes >= WINDOW_BYTES {
            return 0;
        }
        if instant {
            return INSTANT_WINDOW.saturating_sub(self.instant);
        }
        let room = self.room(prefetch);
        match self.spec.capacity {
            Capacity::Slots => room,
            Capacity::Credits => self.credits.min(room),
        }
    }

    /// Forgets a task it held.
    fn release(&mut self, task: TaskId, job: &Job, now: Instant) {
        if self.in_flight.remove(&task) {
            self.bytes = self.bytes.saturating_sub(job.wire_weight());
            if job.finishes_at_once() {
                self.instant = self.instant.saturating_sub(1);
            }
        }
        if self.in_flight.is_empty() {
            self.idle_since = now;
        }
    }
}

/// The scheduler state machine.
pub struct SchedulerCore {
    config: CoreConfig,
    tasks: TaskMap<TaskEntry>,
    queues: queues::Queues,
    workers: BTreeMap<WorkerId, WorkerEntry>,
    next_worker: u32,
    placement: placement::Placer,
    counters: CoreCounters,
    /// A scheduling pass's functions by their head's age (empty between passes).
    pass_heads: std::collections::BinaryHeap<std::cmp::Reverse<(i64, Arc<str>)>>,
    /// A scheduling pass's placement rounds, one per function (empty between passes).
    pass_rounds: Vec<(Arc<str>, placement::Round)>,
    /// Rounds of passes past, reset, their heaps' storage kept.
    spare_rounds: Vec<placement::Round>,
    /// Idle time of instances that have left, µs, by function.
    departed_idle_us: BTreeMap<Arc<str>, u64>,
    /// Tasks per function whose code failed to load on a worker (`init_failed`).
    init_failures: BTreeMap<Arc<str>, u64>,
}

impl SchedulerCore {
    /// An empty core; `seed` drives the random policy.
    pub fn new(config: CoreConfig, seed: u64) -> Self {
        Self {
            placement: placement::Placer::new(config.policy, seed),
            config,
            tasks: TaskMap::default(),
            queues: queues::Queues::default(),
            workers: BTreeMap::new(),
            next_worker: 1,
            counters: CoreCounters::default(),
            pass_heads: std::collections::BinaryHeap::new(),
            pass_rounds: Vec::new(),
            spare_rounds: Vec::new(),
            departed_idle_us: BTreeMap::new(),
            init_failures: BTreeMap::new(),
        }
    }

    /// Registers a worker. Pull workers start with `prefetch` credits; their `Ready`
    /// messages add the rest.
    pub fn add_worker(&mut self, spec: WorkerSpec, now: Now, comm: &mut impl Comm) -> WorkerId {
        let id = WorkerId(self.next_worker);
        self.next_worker += 1;
        let label: Arc<str> = format!("{}#{}", spec.name, id.0).into();
        let credits = match spec.capacity {
            Capacity::Credits if spec.function.is_none() => self.config.prefetch,
            _ => 0,
        };
        self.workers.insert(
            id,
            WorkerEntry {
                spec,
                label,
                credits,
                in_flight: TaskSet::default(),
                instant: 0,
                bytes: 0,
                last_seen: now.instant,
                idle_since: now.instant,
                idle_us: 0,
            },
        );
        self.counters.workers_joined += 1;
        self.schedule(now, comm);
        id
    }

    /// Tasks enter the queue in order and are placed at once if capacity allows.
    pub fn submit(&mut self, tasks: Vec<NewTask>, now: Now, comm: &mut impl Comm) {
        // Consecutive tasks of one function join its queue together.
        let mut run: Option<(Arc<str>, Vec<TaskId>)> = None;
        for task in tasks {
            self.counters.submitted += 1;
            if self.tasks.contains_key(&task.id) {
                // The store handed out an id still in use: never silently dropped.
                self.counters.duplicate_ids += 1;
                tracing::error!(task_id = %task.id, "a new task has the id of a task this dispatcher still holds; the store's id counter went back");
                continue;
            }
            let entry = TaskEntry {
                function_id: task.function_id,
                function: task.function,
                job: task.job,
                attempts: task.attempts,
                submitted_us: task.submitted_us,
                state: TaskState::Queued { since_us: now.unix_us },
            };
            if entry.attempts >= self.config.max_attempts {
                // Recovered after its last attempt was lost with the old dispatcher.
                self.finish_lost(
                    task.id,
                    entry,
                    None,
                    LossReason::Disconnected.failure().to_owned(),
                    now,
                    comm,
                );
                continue;
            }
            match &mut run {
                Some((f, ids)) if Arc::ptr_eq(f, &entry.function) => ids.push(task.id),
                _ => {
                    if let Some((f, ids)) = run.take() {
                        self.queues.extend_back(&f, &ids);
                    }
                    run = Some((entry.function.clone(), vec![task.id]));
                }
            }
            self.tasks.insert(task.id, entry);
        }
        if let Some((f, ids)) = run {
            self.queues.extend_back(&f, &ids);
        }
        self.schedule(now, comm);
    }

    /// A pull worker grants more credits; never more than `slots + prefetch` in total.
    pub fn ready(&mut self, worker: WorkerId, credits: u32, now: Now, comm: &mut impl Comm) {
        let prefetch = self.config.prefetch;
        let Some(w) = self.workers.get_mut(&worker) else { return };
        w.last_seen = now.instant;
        w.credits = w.credits.saturating_add(credits).min(w.room(prefetch));
        self.schedule(now, comm);
    }

    /// Any message from a worker proves it alive.
    pub fn heard_from(&mut self, worker: WorkerId, now: Now) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.last_seen = now.instant;
        }
    }

    /// Results from a worker. Only the current attempt, from the worker holding it,
    /// counts; anything else is dropped and counted.
    ///
    /// In pull mode every result of slot work, current or stale, also returns the credit
    /// of the slot that ran it (capped like [`Self::ready`]); work that finished at once
    /// took no credit and returns none.
    pub fn results(&mut self, worker: WorkerId, results: Vec<TaskResult>, now: Now, comm: &mut impl Comm) {
        let mut returned = 0u32;
        match self.workers.get_mut(&worker) {
            Some(w) => w.last_seen = now.instant,
            None => {
                self.counters.duplicate_results += results.len() as u64;
                return;
            }
        }
        for r in results {
            let current = matches!(
                self.tasks.get(&r.task_id),
                Some(TaskEntry { attempts, state: TaskState::Assigned { worker: holder, .. }, .. })
                    if *holder == worker && *attempts == r.attempt
            );
            if !current {
                self.counters.duplicate_results += 1;
                returned += 1;
                continue;
            }
            let Some(entry) = self.tasks.remove(&r.task_id) else {
                continue;
            };
            let TaskState::Assigned { dispatched_us, .. } = entry.state else {
                continue;
            };
            let instant = entry.job.finishes_at_once();
            if !instant {
                returned += 1;
            }
            let (label, cold) = match self.workers.get_mut(&worker) {
                Some(w) => {
                    w.release(r.task_id, &entry.job, now.instant);
                    let cold = w
                        .spec
                        .start
                        .as_ref()
                        .filter(|s| s.delayed(entry.submitted_us))
                        .map(|s| Box::new(*s));
                    (Some(w.label.clone()), cold)
                }
                None => (None, None),
            };
            match r.outcome.error() {
                None => self.counters.completed += 1,
                Some(e) => {
                    self.counters.failed += 1;
                    if e.starts_with(INIT_FAILED) {
                        *self.init_failures.entry(entry.function.clone()).or_default() += 1;
                    }
                }
            }
            comm.record(Transition::Finished(Finished {
                task: r.task_id,
                function_id: entry.function_id,
                outcome: r.outcome,
                attempts: entry.attempts,
                worker: label,
                submitted_us: entry.submitted_us,
                dispatched_us,
                completed_us: now.unix_us,
                wait_us: r.wait_us,
                run_us: r.run_us,
                cold,
                log: r.log,
            }));
        }
        let prefetch = self.config.prefetch;
        if let Some(w) = self.workers.get_mut(&worker) {
            if w.spec.capacity == Capacity::Credits {
                w.credits = w.credits.saturating_add(returned).min(w.room(prefetch));
            }
        }
        self.schedule(now, comm);
    }

    /// A worker is gone: every task it held is requeued, or FAILED after its last attempt.
    pub fn remove_worker(&mut self, worker: WorkerId, reason: LossReason, now: Now, comm: &mut impl Comm) {
        let Some(w) = self.workers.remove(&worker) else { return };
        self.counters.workers_lost += 1;
        if let Some(f) = &w.spec.function {
            *self.departed_idle_us.entry(f.clone()).or_default() += w.idle_until(now.instant);
        }
        let mut held: Vec<TaskId> = w.in_flight.into_iter().collect();
        held.sort_unstable();
        for task in held.into_iter().rev() {
            self.abandon(task, Some(w.label.clone()), reason, now, comm);
        }
        comm.worker_removed(worker, reason);
        self.schedule(now, comm);
    }

    /// Periodic check: silent workers die, expired leases are abandoned.
    pub fn tick(&mut self, now: Now, comm: &mut impl Comm) {
        let silent: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.spec.monitored && now.instant.duration_since(w.last_seen) > self.config.liveness)
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            if let Some(w) = self.workers.get(&id) {
                let silence = now.instant.duration_since(w.last_seen);
                tracing::warn!(
                    worker_id = %id,
                    worker = %w.label,
                    silence_ms = silence.as_millis() as u64,
                    tasks = w.in_flight.len(),
                    "worker declared dead: silent longer than its liveness; its tasks are requeued"
                );
            }
            self.remove_worker(id, LossReason::Silent, now, comm);
        }
        let mut expired: Vec<(TaskId, WorkerId)> = Vec::new();
        for (wid, w) in &self.workers {
            for t in &w.in_flight {
                if let Some(TaskEntry {
                    state: TaskState::Assigned { deadline, .. },
                    ..
                }) = self.tasks.get(t)
                {
                    if *deadline <= now.instant {
                        expired.push((*t, *wid));
                    }
                }
            }
        }
        self.expire_queued(now, comm);
        expired.sort_unstable();
        for (task, wid) in expired {
            let label = match (self.workers.get_mut(&wid), self.tasks.get(&task)) {
                (Some(w), Some(e)) => {
                    w.release(task, &e.job, now.instant);
                    Some(w.label.clone())
                }
                (w, _) => w.map(|w| w.label.clone()),
            };
            self.abandon(task, label, LossReason::LeaseExpired, now, comm);
        }
        self.schedule(now, comm);
    }

    fn abandon(&mut self, task: TaskId, worker: Option<Arc<str>>, reason: LossReason, now: Now, comm: &mut impl Comm) {
        let Some(mut entry) = self.tasks.remove(&task) else {
            return;
        };
        if entry.attempts >= self.config.max_attempts {
            self.finish_lost(task, entry, worker, reason.failure().to_owned(), now, comm);
            return;
        }
        entry.state = TaskState::Queued { since_us: now.unix_us };
        self.counters.requeued += 1;
        comm.record(Transition::Requeued {
            task,
            attempts: entry.attempts,
        });
        self.queues.push_front(&entry.function, task);
        self.tasks.insert(task, entry);
    }
}
