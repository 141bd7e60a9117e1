//! RUNNING means executing: a task sent while every slot of its worker is taken is not
//! RUNNING until the worker says a slot began it.

use super::*;

fn assigned_with_flags(comm: &mut TestComm) -> Vec<(u64, bool)> {
    comm.assigned
        .drain(..)
        .map(|(_, t)| (t.task_id.0, t.report_start))
        .collect()
}

fn running_tasks(records: &[Transition]) -> Vec<u64> {
    records
        .iter()
        .filter_map(|t| match t {
            Transition::Running { task, .. } => Some(task.0),
            _ => None,
        })
        .collect()
}

#[test]
fn tasks_beyond_free_slots_run_only_once_their_worker_says_they_began() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 2), 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    let a = core.add_worker(spec("a", 1, Capacity::Slots), t0, &mut comm);
    core.submit(tasks(1..4), t0, &mut comm);
    assert_eq!(assigned_with_flags(&mut comm), vec![(1, false), (2, true), (3, true)]);
    assert_eq!(running_tasks(&comm.take_records()), vec![1]);

    core.results(a, vec![ok(1, 1)], t0, &mut comm);
    comm.take_records();
    core.started(a, &[(TaskId(2), 1)], &mut comm);
    assert_eq!(running_tasks(&comm.take_records()), vec![2]);
    // A start of another attempt, of an unknown task, or from another worker changes nothing.
    core.started(a, &[(TaskId(3), 2), (TaskId(99), 1)], &mut comm);
    core.started(WorkerId(77), &[(TaskId(3), 1)], &mut comm);
    comm.assert_empty();
    // A start reported after the result is stale.
    core.results(a, vec![ok(3, 1)], t0, &mut comm);
    comm.take_records();
    core.started(a, &[(TaskId(3), 1)], &mut comm);
    comm.assert_empty();
}

#[test]
fn tasks_that_finish_at_once_are_running_when_sent() {
    let mut core = SchedulerCore::new(config(Policy::LeastLoaded, 2), 1);
    let mut comm = TestComm::default();
    let t0 = Now::current();
    core.add_worker(spec("a", 1, Capacity::Slots), t0, &mut comm);
    core.submit(jobs(1..4, Job::Noop), t0, &mut comm);
    assert!(assigned_with_flags(&mut comm).iter().all(|(_, flag)| !flag));
    assert_eq!(running_tasks(&comm.take_records()), vec![1, 2, 3]);
}
