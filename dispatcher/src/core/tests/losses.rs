//! Lost workers, expired leases, recovered and failing tasks: every attempt accounted for.

use super::*;

#[test]
fn a_dead_workers_tasks_are_requeued_and_run_elsewhere_as_the_next_attempt() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 0), 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    let a = core.add_worker(spec("a", 1, Capacity::Slots), t0, &mut comm);
    core.submit(tasks(1..2), t0, &mut comm);
    assert_eq!(comm.take_assigned(), vec![(a, 1, 1)]);
    comm.take_records();

    core.remove_worker(a, LossReason::Disconnected, t0, &mut comm);
    assert_eq!(
        comm.take_records(),
        vec![Transition::Requeued {
            task: TaskId(1),
            attempts: 1
        }]
    );
    assert_eq!(comm.take_removed(), vec![(a, LossReason::Disconnected)]);
    comm.assert_empty();

    let b = core.add_worker(spec("b", 1, Capacity::Slots), t0, &mut comm);
    assert_eq!(comm.take_assigned(), vec![(b, 1, 2)]);
    comm.take_records();
    // The dead worker's late result, and a result for the wrong attempt, are dropped.
    core.results(a, vec![ok(1, 1)], t0, &mut comm);
    core.results(b, vec![ok(1, 1)], t0, &mut comm);
    comm.assert_empty();
    assert_eq!(core.counters().duplicate_results, 2);

    core.results(b, vec![ok(1, 2)], t0, &mut comm);
    assert_eq!(
        finished(&comm.take_records()),
        vec![(1, Outcome::Completed("null".into()))]
    );
    // A duplicate of the accepted result changes nothing.
    core.results(b, vec![ok(1, 2)], t0, &mut comm);
    comm.assert_empty();
    assert_eq!(core.counters().duplicate_results, 3);
    assert_eq!(core.counters().requeued, 1);
}

#[test]
fn after_max_attempts_the_task_fails_with_worker_lost() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 0), 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    core.submit(tasks(9..10), t0, &mut comm);
    for attempt in 1..=3 {
        let w = core.add_worker(spec("doomed", 1, Capacity::Slots), t0, &mut comm);
        assert_eq!(comm.take_assigned(), vec![(w, 9, attempt)]);
        comm.take_records();
        core.remove_worker(w, LossReason::Silent, t0, &mut comm);
        comm.take_removed();
        let recs = comm.take_records();
        if attempt < 3 {
            assert_eq!(
                recs,
                vec![Transition::Requeued {
                    task: TaskId(9),
                    attempts: attempt
                }]
            );
        } else {
            assert_eq!(finished(&recs), vec![(9, Outcome::Failed("worker_lost".into()))]);
        }
        comm.assert_empty();
    }
    assert_eq!(core.queued() + core.running(), 0);
    assert_eq!(core.counters().failed, 1);
}

#[test]
fn silent_workers_die_on_tick_and_the_local_pool_never_does() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 0), 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    let a = core.add_worker(spec("a", 1, Capacity::Slots), t0, &mut comm);
    let mut local = spec("local", 1, Capacity::Slots);
    local.monitored = false;
    core.add_worker(local, t0, &mut comm);

    core.tick(t0.after(Duration::from_millis(900)), &mut comm);
    comm.assert_empty();
    core.heard_from(a, t0.after(Duration::from_millis(900)));
    core.tick(t0.after(Duration::from_millis(1800)), &mut comm);
    comm.assert_empty();
    core.tick(t0.after(Duration::from_millis(2000)), &mut comm);
    assert_eq!(comm.take_removed(), vec![(a, LossReason::Silent)]);
    comm.assert_empty();
    assert_eq!(core.workers().len(), 1);
}

#[test]
fn expired_leases_are_requeued_then_fail_as_lease_expired() {
    let mut cfg = config(Policy::LeastLoaded, 0);
    cfg.max_attempts = 2;
    cfg.lease = Duration::from_millis(100);
    let mut core = SchedulerCore::new(cfg, 1);
    let mut comm = TestComm::default();
    let mut now = Now::current();
    let mut local = spec("local", 1, Capacity::Slots);
    local.monitored = false;
    let w = core.add_worker(local, now, &mut comm);
    core.submit(tasks(5..6), now, &mut comm);
    assert_eq!(comm.take_assigned(), vec![(w, 5, 1)]);
    comm.take_records();

    now = now.after(Duration::from_millis(150));
    core.tick(now, &mut comm);
    // Requeued and, the slot being free again, sent straight back as attempt 2.
    let recs = comm.take_records();
    assert_eq!(
        recs[0],
        Transition::Requeued {
            task: TaskId(5),
            attempts: 1
        }
    );
    assert_eq!(comm.take_assigned(), vec![(w, 5, 2)]);
    comm.assert_empty();

    now = now.after(Duration::from_millis(150));
    core.tick(now, &mut comm);
    assert_eq!(
        finished(&comm.take_records()),
        vec![(5, Outcome::Failed("lease_expired".into()))]
    );
    comm.assert_empty();
}

#[test]
fn recovered_tasks_keep_their_attempt_count() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 0), 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    let mut recovered = tasks(1..3);
    recovered[0].attempts = 1;
    recovered[1].attempts = 3;
    core.submit(recovered, t0, &mut comm);
    assert_eq!(
        finished(&comm.take_records()),
        vec![(2, Outcome::Failed("worker_lost".into()))]
    );
    comm.assert_empty();
    let w = core.add_worker(spec("a", 1, Capacity::Slots), t0, &mut comm);
    assert_eq!(comm.take_assigned(), vec![(w, 1, 2)]);
}

#[test]
fn function_failures_are_terminal_not_retried() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 0), 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    let w = core.add_worker(spec("a", 1, Capacity::Slots), t0, &mut comm);
    core.submit(tasks(1..2), t0, &mut comm);
    comm.take_assigned();
    comm.take_records();
    let mut r = ok(1, 1);
    r.outcome = Outcome::Failed("boom".into());
    core.results(w, vec![r], t0, &mut comm);
    assert_eq!(
        finished(&comm.take_records()),
        vec![(1, Outcome::Failed("boom".into()))]
    );
    comm.assert_empty();
    assert_eq!(core.counters().requeued, 0);
}

#[test]
fn a_lease_covers_the_wait_in_the_workers_queue() {
    // The reproduction: 8 slow tasks on one slot with a prefetch queue; each runs
    // within its lease, so none may expire however long it waited behind the others.
    let mut cfg = config(Policy::LeastLoaded, 16);
    cfg.lease = Duration::from_secs(2);
    let mut core = SchedulerCore::new(cfg, 1);
    let mut comm = TestComm::default();
    let mut now = Now::current();
    let mut one = spec("one", 1, Capacity::Slots);
    one.monitored = false;
    let w = core.add_worker(one, now, &mut comm);
    core.submit(tasks(1..9), now, &mut comm);
    assert_eq!(comm.take_assigned().len(), 8);
    comm.take_records();
    // 600 ms each, one after the other: task k finishes at k × 600 ms.
    for k in 1..=8u64 {
        now = now.after(Duration::from_millis(600));
        core.tick(now, &mut comm);
        assert!(
            comm.take_records().is_empty(),
            "a lease expired before task {k} finished"
        );
        core.results(w, vec![ok(k, 1)], now, &mut comm);
        comm.take_records();
    }
    comm.assert_empty();

    // A task that never finishes still expires, after the leases of those ahead of it.
    core.submit(tasks(20..22), now, &mut comm);
    comm.take_assigned();
    comm.take_records();
    now = now.after(Duration::from_millis(2100));
    core.tick(now, &mut comm);
    let recs = comm.take_records();
    assert!(
        matches!(recs[0], Transition::Requeued { task: TaskId(20), .. }),
        "{recs:?}"
    );
    assert!(!recs
        .iter()
        .any(|r| matches!(r, Transition::Requeued { task: TaskId(21), .. })));
}

#[test]
fn a_task_no_worker_takes_within_the_queue_bound_fails_and_others_still_run() {
    let mut cfg = config(Policy::LeastLoaded, 0);
    cfg.max_queue_wait = Some(Duration::from_secs(1));
    let mut core = SchedulerCore::new(cfg, 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    core.submit(tasks(1..3), t0, &mut comm);
    core.tick(t0.after(Duration::from_millis(900)), &mut comm);
    comm.assert_empty();
    core.submit(tasks(3..4), t0.after(Duration::from_millis(900)), &mut comm);

    core.tick(t0.after(Duration::from_millis(1100)), &mut comm);
    let lost = finished(&comm.take_records());
    assert_eq!(lost.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![1, 2]);
    assert!(
        lost.iter()
            .all(|(_, o)| o.error().is_some_and(|e| e.starts_with(NO_WORKER))),
        "{lost:?}"
    );
    assert_eq!(core.queued(), 1);
    assert_eq!(core.counters().failed, 2);

    // The task that has not waited so long still runs once a worker comes.
    let a = core.add_worker(
        spec("a", 1, Capacity::Slots),
        t0.after(Duration::from_millis(1200)),
        &mut comm,
    );
    assert_eq!(comm.take_assigned(), vec![(a, 3, 1)]);
    core.tick(t0.after(Duration::from_secs(5)), &mut comm);
    assert!(
        finished(&comm.take_records()).is_empty(),
        "a dispatched task never expires from the queue"
    );
}
