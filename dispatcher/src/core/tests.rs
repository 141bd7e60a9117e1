use super::*;
use std::time::Duration;
use volley_proto::wire::Outcome;

#[derive(Default)]
struct TestComm {
    assigned: Vec<(WorkerId, TaskAssignment)>,
    records: Vec<Transition>,
    removed: Vec<(WorkerId, LossReason)>,
}

impl Comm for TestComm {
    fn assign(&mut self, worker: WorkerId, task: TaskAssignment) {
        self.assigned.push((worker, task));
    }
    fn record(&mut self, transition: Transition) {
        self.records.push(transition);
    }
    fn worker_removed(&mut self, worker: WorkerId, reason: LossReason) {
        self.removed.push((worker, reason));
    }
}

impl TestComm {
    fn take_assigned(&mut self) -> Vec<(WorkerId, u64, u32)> {
        self.assigned
            .drain(..)
            .map(|(w, t)| (w, t.task_id.0, t.attempt))
            .collect()
    }
    fn take_records(&mut self) -> Vec<Transition> {
        std::mem::take(&mut self.records)
    }
    fn take_removed(&mut self) -> Vec<(WorkerId, LossReason)> {
        std::mem::take(&mut self.removed)
    }
    fn assert_empty(&self) {
        assert!(self.assigned.is_empty(), "unexpected assignments {:?}", self.assigned);
        assert!(self.records.is_empty(), "unexpected records {:?}", self.records);
        assert!(self.removed.is_empty(), "unexpected removals {:?}", self.removed);
    }
}

fn config(policy: Policy, prefetch: u32) -> CoreConfig {
    CoreConfig {
        max_attempts: 3,
        prefetch,
        policy,
        lease: Duration::from_secs(10),
        liveness: Duration::from_secs(1),
        max_queue_wait: None,
        report_starts: true,
    }
}

fn spec(name: &str, slots: u32, capacity: Capacity) -> WorkerSpec {
    WorkerSpec {
        name: name.into(),
        host: "h".into(),
        pid: 1,
        slots,
        capacity,
        monitored: true,
        function: None,
        start: None,
    }
}

/// Tasks that occupy a slot: what `slots + prefetch` and credits govern.
fn tasks(ids: std::ops::Range<u64>) -> Vec<NewTask> {
    jobs(ids, Job::Sleep { ms: 5 })
}

fn jobs(ids: std::ops::Range<u64>, job: Job) -> Vec<NewTask> {
    let function: Arc<str> = "f".into();
    ids.map(|i| NewTask {
        id: TaskId(i),
        function_id: FunctionId(1),
        function: function.clone(),
        job: job.clone(),
        attempts: 0,
        submitted_us: 0,
    })
    .collect()
}

fn ok(task: u64, attempt: u32) -> TaskResult {
    TaskResult {
        task_id: TaskId(task),
        attempt,
        outcome: Outcome::Completed("null".into()),
        wait_us: 1,
        run_us: 2,
        log: String::new(),
    }
}

fn finished(records: &[Transition]) -> Vec<(u64, Outcome)> {
    records
        .iter()
        .filter_map(|t| match t {
            Transition::Finished(f) => Some((f.task.0, f.outcome.clone())),
            _ => None,
        })
        .collect()
}

fn running(records: &[Transition]) -> usize {
    records
        .iter()
        .filter(|t| matches!(t, Transition::Running { .. }))
        .count()
}

#[test]
fn tasks_wait_for_a_worker_then_run_and_complete() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 0), 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    core.submit(tasks(1..3), t0, &mut comm);
    comm.assert_empty();
    assert_eq!(core.queued(), 2);

    let w = core.add_worker(spec("a", 2, Capacity::Slots), t0, &mut comm);
    assert_eq!(comm.take_assigned(), vec![(w, 1, 1), (w, 2, 1)]);
    assert_eq!(running(&comm.take_records()), 2);
    comm.assert_empty();

    core.results(w, vec![ok(1, 1), ok(2, 1)], t0, &mut comm);
    let recs = comm.take_records();
    assert_eq!(finished(&recs).len(), 2);
    comm.assert_empty();
    assert_eq!(core.queued() + core.running(), 0);
    let c = core.counters();
    assert_eq!((c.submitted, c.dispatched, c.completed, c.failed), (2, 2, 2, 0));
}

#[test]
fn push_never_exceeds_slots_plus_prefetch_and_spreads_by_load() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 1), 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    let a = core.add_worker(spec("a", 2, Capacity::Slots), t0, &mut comm);
    let b = core.add_worker(spec("b", 1, Capacity::Slots), t0, &mut comm);
    core.submit(tasks(1..11), t0, &mut comm);
    let assigned = comm.take_assigned();
    let on_a = assigned.iter().filter(|(w, _, _)| *w == a).count();
    let on_b = assigned.iter().filter(|(w, _, _)| *w == b).count();
    assert_eq!((on_a, on_b), (3, 2), "slots + prefetch each");
    assert_eq!(core.queued(), 5);
    comm.take_records();
    comm.assert_empty();

    // One result frees one place on that worker, and exactly one task moves.
    let first_on_b = assigned.iter().find(|(w, _, _)| *w == b).map(|(_, t, _)| *t).unwrap();
    core.results(b, vec![ok(first_on_b, 1)], t0, &mut comm);
    let next = comm.take_assigned();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].0, b);
    comm.take_records();
    comm.assert_empty();
}

#[test]
fn round_robin_and_random_place_every_task() {
    for policy in [Policy::RoundRobin, Policy::Random] {
        let mut core = SchedulerCore::new(config(policy, 100), 7);
        let mut comm = TestComm::default();
        let t0 = Now::current();
        let ws: Vec<_> = (0..3)
            .map(|i| core.add_worker(spec(&format!("w{i}"), 1, Capacity::Slots), t0, &mut comm))
            .collect();
        core.submit(tasks(0..30), t0, &mut comm);
        let assigned = comm.take_assigned();
        assert_eq!(assigned.len(), 30);
        for w in &ws {
            let n = assigned.iter().filter(|(x, _, _)| x == w).count();
            if policy == Policy::RoundRobin {
                assert_eq!(n, 10);
            } else {
                assert!(n > 0, "random never picked {w}");
            }
        }
    }
}

#[test]
fn pull_workers_get_only_what_they_asked_for() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 0), 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    let w = core.add_worker(spec("p", 2, Capacity::Credits), t0, &mut comm);
    core.submit(tasks(1..6), t0, &mut comm);
    comm.assert_empty();

    core.ready(w, 1, t0, &mut comm);
    assert_eq!(comm.take_assigned(), vec![(w, 1, 1)]);
    comm.take_records();
    // A flood of credits is clamped to slots + prefetch minus what it holds.
    core.ready(w, 1_000_000, t0, &mut comm);
    assert_eq!(comm.take_assigned(), vec![(w, 2, 1)]);
    comm.take_records();
    comm.assert_empty();
    assert_eq!(core.queued(), 3);
}

#[test]
fn prefetch_gives_pull_workers_credit_up_front() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 2), 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    core.submit(tasks(1..6), t0, &mut comm);
    let w = core.add_worker(spec("p", 1, Capacity::Credits), t0, &mut comm);
    assert_eq!(comm.take_assigned().len(), 2);
    comm.take_records();
    core.ready(w, 1, t0, &mut comm);
    assert_eq!(comm.take_assigned().len(), 1);
    comm.take_records();
    comm.assert_empty();
}

#[test]
fn each_pull_result_returns_its_credit_and_no_more() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 1), 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    core.submit(tasks(1..10), t0, &mut comm);
    let w = core.add_worker(spec("p", 2, Capacity::Credits), t0, &mut comm);
    core.ready(w, 2, t0, &mut comm);
    assert_eq!(comm.take_assigned().len(), 3, "prefetch 1 + 2 slots");
    comm.take_records();

    // Two results give back two credits: two more tasks, with no `Ready` in between.
    core.results(w, vec![ok(1, 1), ok(2, 1)], t0, &mut comm);
    assert_eq!(comm.take_assigned(), vec![(w, 4, 1), (w, 5, 1)]);
    comm.take_records();
    // A stale result still freed a slot, but credits never exceed slots + prefetch.
    core.results(w, vec![ok(1, 1), ok(3, 1), ok(4, 1)], t0, &mut comm);
    assert_eq!(comm.take_assigned(), vec![(w, 6, 1), (w, 7, 1)]);
    comm.take_records();
    comm.assert_empty();
    assert_eq!(core.running(), 3);
    assert_eq!(core.counters().duplicate_results, 1);
}

#[test]
fn least_loaded_fills_workers_in_proportion_to_their_slots() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 100), 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    let ids: Vec<WorkerId> = [1, 2, 4]
        .iter()
        .map(|&slots| core.add_worker(spec(&format!("w{slots}"), slots, Capacity::Slots), t0, &mut comm))
        .collect();
    core.submit(tasks(1..71), t0, &mut comm);
    let sent = comm.take_assigned();
    let on = |w: WorkerId| sent.iter().filter(|(x, _, _)| *x == w).count();
    assert_eq!((on(ids[0]), on(ids[1]), on(ids[2])), (10, 20, 40));
    // The first task goes to the lowest id among equally idle workers.
    assert_eq!(sent[0].0, ids[0]);
}

#[test]
fn instant_work_fills_one_frame_at_a_time_and_starts_on_the_least_loaded_worker() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 0), 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    let a = core.add_worker(spec("a", 1, Capacity::Slots), t0, &mut comm);
    let b = core.add_worker(spec("b", 1, Capacity::Slots), t0, &mut comm);
    core.submit(tasks(1..2), t0, &mut comm);
    assert_eq!(comm.take_assigned(), vec![(a, 1, 1)]);
    comm.take_records();
    // b holds less, so the noops start there and fill its window before a gets any.
    let n = INSTANT_WINDOW as u64 + 10;
    core.submit(jobs(2..2 + n, Job::Noop), t0, &mut comm);
    let sent = comm.take_assigned();
    assert_eq!(sent.len() as u64, n);
    assert!(sent[..INSTANT_WINDOW as usize].iter().all(|(w, _, _)| *w == b));
    assert!(sent[INSTANT_WINDOW as usize..].iter().all(|(w, _, _)| *w == a));
}

#[test]
fn instant_tasks_take_no_slot_or_credit_and_are_bounded_by_their_own_window() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 0), 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    // A pull worker with no credit at all still receives noops, a window at a time.
    let w = core.add_worker(spec("p", 1, Capacity::Credits), t0, &mut comm);
    core.submit(jobs(1..601, Job::Noop), t0, &mut comm);
    let mut rounds = Vec::new();
    loop {
        let sent = comm.take_assigned();
        comm.take_records();
        if sent.is_empty() {
            break;
        }
        rounds.push(sent.len());
        core.results(w, sent.iter().map(|(_, id, a)| ok(*id, *a)).collect(), t0, &mut comm);
    }
    assert_eq!(
        rounds,
        vec![
            INSTANT_WINDOW as usize,
            INSTANT_WINDOW as usize,
            600 - 2 * INSTANT_WINDOW as usize
        ]
    );
    // Their results returned no credit: slot work waits for the worker to ask.
    core.submit(tasks(601..603), t0, &mut comm);
    comm.assert_empty();
    core.ready(w, 1, t0, &mut comm);
    assert_eq!(comm.take_assigned(), vec![(w, 601, 1)]);
    comm.take_records();
    core.results(w, vec![ok(601, 1)], t0, &mut comm);
    assert_eq!(comm.take_assigned(), vec![(w, 602, 1)]);
}

mod functions;
mod losses;
mod starts;

#[test]
fn a_workers_window_is_bounded_in_bytes_as_well_as_tasks() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 1000), 1);
    let mut comm = TestComm::default();
    let now = Now::current();
    let w = core.add_worker(spec("w", 4, Capacity::Slots), now, &mut comm);
    let payload = "x".repeat(512 * 1024);
    core.submit(jobs(1..101, Job::Echo { payload }), now, &mut comm);
    let first = comm.take_assigned();
    let held = (WINDOW_BYTES as usize).div_ceil(512 * 1024 + 16);
    assert_eq!(
        first.len(),
        held,
        "instant tasks stop at the byte window, not the 256-task one"
    );
    // Results free the window, and the rest go.
    let done: Vec<_> = first.iter().map(|(_, id, a)| ok(*id, *a)).collect();
    core.results(w, done, now, &mut comm);
    assert_eq!(comm.take_assigned().len(), 100 - held);
}
