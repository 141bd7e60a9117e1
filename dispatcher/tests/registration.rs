//! Who may register, and what happens when a worker registers again.

mod common;

use common::{greet, greeting, next_not_heartbeat, registered, rejected, Dispatcher};
use volley_proto::auth::Token;
use volley_proto::function::FunctionKind;
use volley_proto::ids::TaskId;
use volley_proto::wire::{FromWorker, Outcome, TaskAssignment, TaskResult, ToWorker};
use volley_proto::Mode;

fn token() -> Token {
    Token::new("s3cret-token").expect("token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_why_are_counted_and_register_nobody() {
    let mut d = Dispatcher::start(Mode::Push, |c| c.token = Some(token())).await;
    let endpoint = d.endpoint();
    let cases = [
        ("no token", greeting("a", 1, None, None), "authentication failed"),
        (
            "wrong token",
            greeting("b", 1, None, Some(Token::new("guess").expect("token"))),
            "authentication failed",
        ),
        (
            "wrong mode",
            greeting("c", 1, Some(Mode::Pull), Some(token())),
            "runs in push mode, but the worker was started with --mode pull",
        ),
    ];
    for (case, greeting, expected) in &cases {
        let (_conn, reply) = greet(&endpoint, greeting).await;
        let reason = rejected(reply);
        assert!(reason.contains(expected), "{case}: {reason}");
        assert!(
            !reason.contains("s3cret"),
            "{case}: the refusal shows the token: {reason}"
        );
    }
    let info = d.info().await;
    assert!(info.workers.is_empty(), "{:?}", info.workers);
    assert_eq!(info.counters.expect("counters").rejected_workers, cases.len() as u64);

    // The right token and mode are welcomed.
    let good = greeting("d", 1, Some(Mode::Push), Some(token()));
    let (_conn, reply) = greet(&endpoint, &good).await;
    assert!(matches!(reply, ToWorker::Welcome { mode: Mode::Push, .. }), "{reply:?}");
    assert_eq!(d.info().await.workers.len(), 1);
    d.stop().await;
}

/// Tasks sent to `conn` until `n` have arrived.
async fn take_tasks(conn: &mut volley_proto::connection::WorkerConnection, n: usize) -> Vec<TaskAssignment> {
    let mut got = Vec::new();
    while got.len() < n {
        match next_not_heartbeat(conn).await {
            ToWorker::Tasks(tasks) => got.extend(tasks),
            other => panic!("expected tasks, got {other:?}"),
        }
    }
    got
}

fn done(task: &TaskAssignment) -> TaskResult {
    TaskResult {
        task_id: task.task_id,
        attempt: task.attempt,
        outcome: Outcome::Completed("null".into()),
        wait_us: 0,
        run_us: 0,
        log: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_registering_again_replaces_itself_and_gets_its_tasks_back() {
    let mut d = Dispatcher::start(Mode::Push, |_| {}).await;
    let endpoint = d.endpoint();
    let (mut first, first_id) = registered(&endpoint, "w", 2).await;
    let noop = d.register(FunctionKind::Noop).await;
    let mut ids = d.submit(noop, 3).await;
    let mut held = take_tasks(&mut first, 3).await;
    assert!(held.iter().all(|t| t.attempt == 1), "{held:?}");

    // The same name from a new connection (a restarted worker): the old registration goes,
    // and what it held is handed to the new one as a second attempt.
    let (mut second, second_id) = registered(&endpoint, "w", 2).await;
    assert_ne!(first_id, second_id);
    let again = take_tasks(&mut second, 3).await;
    let mut again_ids: Vec<TaskId> = again.iter().map(|t| t.task_id).collect();
    again_ids.sort();
    ids.sort();
    assert_eq!(again_ids, ids.iter().map(|&i| TaskId(i)).collect::<Vec<_>>());
    assert!(again.iter().all(|t| t.attempt == 2), "{again:?}");
    let info = d.info().await;
    assert_eq!(info.workers.len(), 1, "{:?}", info.workers);
    assert_eq!(info.workers[0].id, second_id.0);
    assert_eq!(info.counters.as_ref().expect("counters").requeued, 3);

    // The old connection's late results are stale: counted, not applied.
    held.sort_by_key(|t| t.task_id);
    first
        .send(&FromWorker::Results(held.iter().map(done).collect()))
        .await
        .expect("send");
    second
        .send(&FromWorker::Results(again.iter().map(done).collect()))
        .await
        .expect("send");
    let info = d
        .wait_for(
            "three completions and three stale results",
            std::time::Duration::from_secs(5),
            |i| {
                i.counters
                    .as_ref()
                    .is_some_and(|c| c.completed == 3 && c.duplicate_results == 3)
            },
        )
        .await;
    let c = info.counters.expect("counters");
    // The replaced registration counts as a lost worker (its tasks were requeued).
    assert_eq!((c.completed, c.failed, c.workers_lost), (3, 0, 1), "{c:?}");
    d.stop().await;
}
