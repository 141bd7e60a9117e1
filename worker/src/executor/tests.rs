//! The slot pool's tests: instant tasks run where submitted, slots take the rest.

use super::*;
use volley_proto::ids::TaskId;

fn runtimes() -> Arc<Runtimes> {
    Arc::new(Runtimes::new(crate::runtime::Interpreters::default()).unwrap())
}

fn assignment(id: u64, job: Job) -> TaskAssignment {
    TaskAssignment {
        task_id: TaskId(id),
        attempt: 1,
        job,
        report_start: false,
    }
}

#[tokio::test]
async fn instant_tasks_run_where_submitted_and_report_as_one_batch_before_a_sleep() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let pool = SlotPool::start(1, tx, runtimes()).unwrap();
    let mut frame: Vec<_> = (0..500).map(|i| assignment(i, Job::Noop)).collect();
    frame.push(assignment(500, Job::Sleep { ms: 200 }));
    pool.submit_all(frame);
    // The noops ran inside `submit_all`: their results are already sent, as one batch,
    // while the sleep went to the slot.
    let mut ids = Vec::new();
    let mut batches = 0;
    while ids.len() < 500 {
        ids.extend(rx.recv().await.unwrap().iter().map(|r| r.task_id.0));
        batches += 1;
    }
    assert_eq!(ids, (0..500).collect::<Vec<_>>());
    assert_eq!(batches, 1);
    assert_eq!(
        rx.recv().await.unwrap().iter().map(|r| r.task_id.0).collect::<Vec<_>>(),
        vec![500]
    );
}

#[tokio::test]
async fn slots_run_concurrently() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let pool = SlotPool::start(4, tx, runtimes()).unwrap();
    let start = Instant::now();
    for i in 0..4 {
        pool.submit(assignment(i, Job::Sleep { ms: 300 }));
    }
    let mut ids = Vec::new();
    while ids.len() < 4 {
        ids.extend(rx.recv().await.unwrap().iter().map(|r| r.task_id.0));
    }
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2, 3]);
    // Four 300 ms sleeps in four slots take one sleep, not four (1.2 s): generous bound.
    assert!(
        start.elapsed() < std::time::Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(pool.executed(), 4);
}
