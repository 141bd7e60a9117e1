//! Function-bound workers: each task goes only to a worker that serves its function; a
//! function with no free instance waits in its own queue without holding up another's;
//! across functions the longest-waiting task goes first.

use super::*;

fn bound(name: &str, slots: u32, function: &str) -> WorkerSpec {
    WorkerSpec {
        function: Some(function.into()),
        ..spec(name, slots, Capacity::Slots)
    }
}

fn of(function: &str, ids: std::ops::Range<u64>) -> Vec<NewTask> {
    let name: Arc<str> = function.into();
    tasks(ids)
        .into_iter()
        .map(|t| NewTask {
            function: name.clone(),
            ..t
        })
        .collect()
}

#[test]
fn a_bound_worker_gets_only_its_function_and_others_wait_without_blocking() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 0), 1);
    let mut comm = TestComm::default();
    let now = Now::current();
    let resize = core.add_worker(bound("resize-1", 2, "resize"), now, &mut comm);
    // Thumbnail tasks first, then resize tasks: thumbnails have no instance yet.
    core.submit(of("thumbnail", 1..4), now, &mut comm);
    core.submit(of("resize", 4..6), now, &mut comm);
    let sent = comm.take_assigned();
    assert_eq!(
        sent,
        [(resize, 4, 1), (resize, 5, 1)],
        "resize went past the waiting thumbnails"
    );
    assert_eq!(core.queued(), 3);
    let loads = core.functions(now.instant);
    assert_eq!(
        loads,
        [
            FunctionLoad {
                function: "resize".into(),
                queued: 0,
                running: 2,
                instances: 1,
                starting: 0,
                failed_starts: 0,
                init_failures: 0,
                idle_instance_us: 0,
            },
            FunctionLoad {
                function: "thumbnail".into(),
                queued: 3,
                running: 0,
                instances: 0,
                starting: 0,
                failed_starts: 0,
                init_failures: 0,
                idle_instance_us: 0,
            },
        ]
    );
    // An instance of thumbnail joins: the waiting tasks go to it, in order.
    let thumb = core.add_worker(bound("thumb-1", 3, "thumbnail"), now, &mut comm);
    assert_eq!(comm.take_assigned(), [(thumb, 1, 1), (thumb, 2, 1), (thumb, 3, 1)]);
    // A free resize slot never takes thumbnail work.
    core.results(resize, vec![ok(4, 1)], now, &mut comm);
    core.submit(of("thumbnail", 6..7), now, &mut comm);
    assert!(comm.take_assigned().is_empty());
    assert_eq!(core.queued(), 1);
}

#[test]
fn an_unbound_worker_serves_every_function_longest_waiting_first() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 0), 1);
    let mut comm = TestComm::default();
    let now = Now::current();
    // Interleaved arrivals of two functions, then one general worker with one slot.
    core.submit(of("a", 1..2), now, &mut comm);
    core.submit(of("b", 2..3), now, &mut comm);
    core.submit(of("a", 3..4), now, &mut comm);
    core.submit(of("b", 4..5), now, &mut comm);
    let w = core.add_worker(spec("general", 1, Capacity::Slots), now, &mut comm);
    let mut order = Vec::new();
    for _ in 0..4 {
        let sent = comm.take_assigned();
        assert_eq!(sent.len(), 1);
        let (_, task, attempt) = sent[0];
        order.push(task);
        core.results(w, vec![ok(task, attempt)], now, &mut comm);
    }
    assert_eq!(order, [1, 2, 3, 4], "not first come, first served across functions");
}

#[test]
fn a_requeued_task_goes_before_everything_waiting_and_only_to_its_function() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 0), 1);
    let mut comm = TestComm::default();
    let now = Now::current();
    let first = core.add_worker(bound("f-1", 1, "f"), now, &mut comm);
    core.submit(of("f", 1..3), now, &mut comm);
    assert_eq!(comm.take_assigned(), [(first, 1, 1)]);
    let other = core.add_worker(bound("g-1", 1, "g"), now, &mut comm);
    core.remove_worker(first, LossReason::Disconnected, now, &mut comm);
    comm.take_records();
    comm.take_removed();
    // Its task is requeued ahead of task 2, and the g instance does not take it.
    assert!(comm.take_assigned().is_empty());
    let second = core.add_worker(bound("f-2", 1, "f"), now, &mut comm);
    assert_eq!(comm.take_assigned(), [(second, 1, 2)]);
    let _ = other;
}

#[test]
fn shared_workers_are_never_filled_beyond_their_slots_by_two_functions() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 0), 1);
    let mut comm = TestComm::default();
    let now = Now::current();
    let a = core.add_worker(bound("a-1", 1, "a"), now, &mut comm);
    let general = core.add_worker(spec("general", 2, Capacity::Slots), now, &mut comm);
    // Both functions compete for the general worker's two slots in one pass.
    let mut batch = of("a", 1..4);
    batch.extend(of("b", 4..7));
    core.submit(batch, now, &mut comm);
    let sent = comm.take_assigned();
    let on = |w: WorkerId| sent.iter().filter(|(id, _, _)| *id == w).count();
    assert_eq!(on(a), 1);
    assert_eq!(on(general), 2);
    assert!(sent.iter().all(|(id, task, _)| *id == general || *task < 4), "{sent:?}");
}

#[test]
fn an_instance_holds_no_more_than_its_slots_and_the_rest_waits_where_the_scaler_sees_it() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 16), 1);
    let mut comm = TestComm::default();
    let now = Now::current();
    let one = core.add_worker(bound("inst-1", 1, "f"), now, &mut comm);
    core.submit(of("f", 1..5), now, &mut comm);
    assert_eq!(comm.take_assigned(), [(one, 1, 1)]);
    assert_eq!(core.queued(), 3);
    // An unbound worker still gets its prefetch.
    let general = core.add_worker(spec("general", 1, Capacity::Slots), now, &mut comm);
    assert_eq!(comm.take_assigned().iter().filter(|(w, _, _)| *w == general).count(), 3);
}

#[test]
fn a_task_is_cold_when_the_instance_that_ran_it_registered_after_it_was_submitted() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 0), 1);
    let mut comm = TestComm::default();
    let now = Now::current();
    let submitted = |ids: std::ops::Range<u64>, at_us: u64| -> Vec<NewTask> {
        of("f", ids)
            .into_iter()
            .map(|t| NewTask {
                submitted_us: at_us,
                ..t
            })
            .collect()
    };
    // Task 1 arrives with no instance; the instance registers at 1,000 µs.
    core.submit(submitted(1..2, 100), now, &mut comm);
    let start = InstanceStart::from_report(&report(150, 200, 250, 700, None), 1_000);
    assert_eq!(
        start,
        InstanceStart {
            decided_us: 150,
            spawned_us: 200,
            process_us: 300,
            runtime_began_us: 300,
            runtime_up_us: 300,
            init_done_us: 550,
            registered_us: 1_000
        }
    );
    // A user function's runtime: spawned 20 µs after main, up 200 µs after.
    let runtime = Some(volley_proto::wire::RuntimeStart {
        began_after_us: 20,
        up_after_us: 200,
    });
    let s = InstanceStart::from_report(&report(150, 200, 250, 700, runtime), 1_000);
    assert_eq!((s.runtime_began_us, s.runtime_up_us, s.init_done_us), (320, 500, 550));
    let inst = core.add_worker(
        WorkerSpec {
            start: Some(start),
            ..bound("inst-1", 1, "f")
        },
        now,
        &mut comm,
    );
    core.results(inst, vec![ok(1, 1)], now, &mut comm);
    // Task 2 arrives once it is ready: warm.
    core.submit(submitted(2..3, 2_000), now, &mut comm);
    core.results(inst, vec![ok(2, 1)], now, &mut comm);
    let colds: Vec<(u64, Option<InstanceStart>)> = comm
        .take_records()
        .into_iter()
        .filter_map(|t| match t {
            Transition::Finished(f) => Some((f.task.0, f.cold.map(|s| *s))),
            _ => None,
        })
        .collect();
    assert_eq!(colds, [(1, Some(start)), (2, None)]);
}

fn report(
    decided_us: u64,
    spawned_us: u64,
    init_done_after_us: u64,
    hello_after_us: u64,
    runtime: Option<volley_proto::wire::RuntimeStart>,
) -> volley_proto::wire::StartReport {
    volley_proto::wire::StartReport {
        decided_us,
        spawned_us,
        init_done_after_us,
        runtime,
        code: None,
        hello_after_us,
    }
}

#[test]
fn reported_start_times_out_of_order_are_clamped_into_order() {
    // A Hello claiming more time since main than since the spawn, and an init longer
    // than its whole life: every stage still lies between decision and registration.
    let runtime = Some(volley_proto::wire::RuntimeStart {
        began_after_us: 20_000,
        up_after_us: 10,
    });
    let s = InstanceStart::from_report(&report(500, 400, 10_000, 5_000, runtime), 1_000);
    assert!(s.decided_us <= s.spawned_us && s.spawned_us <= s.process_us);
    assert!(s.process_us <= s.runtime_began_us && s.runtime_began_us <= s.runtime_up_us);
    assert!(s.runtime_up_us <= s.init_done_us && s.init_done_us <= s.registered_us);
    assert_eq!((s.decided_us, s.registered_us), (500, 1_000));
}

#[test]
fn idle_instance_time_counts_registered_idle_spans_and_outlives_the_instance() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 0), 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    let at = |ms: u64| t0.after(Duration::from_millis(ms));
    let inst = core.add_worker(bound("inst-1", 1, "f"), t0, &mut comm);
    core.submit(of("f", 1..2), at(1_000), &mut comm);
    core.results(inst, vec![ok(1, 1)], at(1_500), &mut comm);
    let idle = |core: &SchedulerCore, ms: u64| {
        core.functions(at(ms).instant)
            .iter()
            .find(|l| l.function == "f")
            .map(|l| l.idle_instance_us)
    };
    assert_eq!(idle(&core, 1_200), Some(1_000_000), "busy time is not idle");
    assert_eq!(idle(&core, 2_000), Some(1_500_000));
    core.remove_worker(inst, LossReason::Goodbye, at(3_000), &mut comm);
    assert_eq!(idle(&core, 9_000), Some(2_500_000), "a retired instance stops counting");
}
