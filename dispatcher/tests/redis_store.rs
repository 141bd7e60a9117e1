//! The Redis store against the machine's Redis (`REDIS_URL`): what each transition
//! leaves readable, what a restart recovers, what a waiting client is told, and that a
//! fenced store writes nothing once another epoch leads.

use std::sync::Arc;
use volley_dispatcher::core::{Finished, Transition};
use volley_dispatcher::store::redis::{Fence, RedisStore};
use volley_dispatcher::store::{Settled, StoreError, Submission, TaskState, TaskStore};
use volley_proto::ids::{FunctionId, TaskId};
use volley_proto::wire::Outcome;

fn url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

fn prefix(test: &str) -> String {
    format!("volley-test:store:{test}:{}:", std::process::id())
}

fn submission(i: u64) -> Submission {
    Submission {
        function_id: FunctionId(7),
        args: format!("{{\"i\":{i}}}"),
        submitted_us: 100 + i,
    }
}

fn running(task: TaskId, attempt: u32) -> Transition {
    Transition::Running {
        task,
        attempt,
        worker: Arc::from("w-1"),
        at_us: 500,
    }
}

fn finished(task: TaskId, outcome: Outcome, worker: Option<&str>) -> Transition {
    Transition::Finished(Finished {
        task,
        function_id: FunctionId(7),
        outcome,
        attempts: 2,
        worker: worker.map(Arc::from),
        submitted_us: 100,
        dispatched_us: 500,
        completed_us: 900,
        wait_us: 3,
        run_us: 4,
        cold: None,
        log: String::new(),
    })
}

#[tokio::test]
async fn each_transition_reads_back_and_a_restart_recovers_only_the_unfinished() {
    let p = prefix("transitions");
    let store = RedisStore::connect(&url(), &p).await.expect("redis");
    let ids = store
        .enqueue(&[submission(1), submission(2), submission(3)])
        .await
        .expect("enqueue");
    let [a, b, c] = ids[..] else { panic!("three ids") };
    let queued = store.get(a).await.expect("get").expect("stored");
    assert_eq!(
        (queued.state, queued.args.as_str(), queued.submitted_us),
        (TaskState::Queued, "{\"i\":1}", 101)
    );

    store
        .record(&[running(a, 1), running(b, 1), running(c, 1)])
        .await
        .expect("running");
    let r = store.get(a).await.expect("get").expect("stored");
    assert_eq!((r.state, r.attempts, r.worker.as_str()), (TaskState::Running, 1, "w-1"));

    store
        .record(&[
            finished(a, Outcome::Completed("42".into()), Some("w-1")),
            Transition::Requeued { task: b, attempts: 1 },
            running(b, 2),
            finished(c, Outcome::Failed("worker_lost".into()), None),
        ])
        .await
        .expect("finish");
    let done = store.get(a).await.expect("get").expect("stored");
    assert_eq!(
        (done.state, done.result.as_str(), done.run_us),
        (TaskState::Completed, "42", 4)
    );
    let lost = store.get(c).await.expect("get").expect("stored");
    assert_eq!(
        (lost.state, lost.error.as_str(), lost.worker.as_str()),
        (TaskState::Failed, "worker_lost", "w-1"),
        "a loss names the worker of the last attempt"
    );

    let settled = store.settled(&[a, b, TaskId(999_999)]).await.expect("settled");
    assert!(matches!(&settled[0], Settled::Finished(r) if r.result == "42"));
    assert_eq!(settled[1], Settled::Unfinished);
    assert_eq!(settled[2], Settled::Unknown);

    // A new process knows nothing of what the old one dispatched: b is QUEUED again,
    // with the attempt its requeue recorded.
    let restarted = RedisStore::connect(&url(), &p).await.expect("redis");
    let recovered = restarted.recover_unfinished().await.expect("recover");
    assert_eq!(recovered.len(), 1);
    assert_eq!(
        (
            recovered[0].id,
            recovered[0].state,
            recovered[0].attempts,
            recovered[0].args.as_str()
        ),
        (b, TaskState::Queued, 1, "{\"i\":2}")
    );
    assert_eq!(restarted.unfinished_count().await.expect("count"), 1);
    restarted.purge().await.expect("purge");
}

/// A worker lost, its task requeued, run again and finished before the batch was sent:
/// the record is finished, not queued behind its own result.
#[tokio::test]
async fn a_task_requeued_and_finished_in_one_batch_reads_finished_and_is_not_recovered() {
    let p = prefix("requeue-finish");
    let store = RedisStore::connect(&url(), &p).await.expect("redis");
    let ids = store
        .enqueue(&[Submission {
            function_id: FunctionId(1),
            args: "{}".into(),
            submitted_us: 1,
        }])
        .await
        .expect("enqueue");
    let t = ids[0];
    store.record(&[running(t, 1)]).await.expect("running");
    store
        .record(&[
            Transition::Requeued { task: t, attempts: 1 },
            running(t, 2),
            finished(t, Outcome::Completed("ok".into()), Some("w-2")),
        ])
        .await
        .expect("requeue and finish");
    let r = store.get(t).await.expect("get").expect("stored");
    assert_eq!((r.state, r.result.as_str()), (TaskState::Completed, "ok"));
    let restarted = RedisStore::connect(&url(), &p).await.expect("redis");
    assert!(restarted.recover_unfinished().await.expect("recover").is_empty());
    restarted.purge().await.expect("purge");
}

#[tokio::test]
async fn a_store_fenced_by_an_old_lease_writes_nothing_even_at_a_reused_epoch() {
    let p = prefix("fence");
    let fence_key = format!("{p}leader:fence");
    let client = redis::Client::open(url()).expect("url");
    let conn = client.get_multiplexed_async_connection().await.expect("redis");
    let set_fence = |token: &'static str| {
        let mut conn = conn.clone();
        let key = fence_key.clone();
        async move {
            redis::cmd("SET")
                .arg(key)
                .arg(token)
                .query_async::<()>(&mut conn)
                .await
                .expect("set the fence")
        }
    };
    set_fence("4:aaaa").await;
    let fence = |epoch, token: &str| Fence {
        key: fence_key.clone(),
        token: token.to_owned(),
        epoch,
    };
    let leader = RedisStore::connect(&url(), &p)
        .await
        .expect("redis")
        .with_fence(Some(fence(4, "4:aaaa")));
    let ids = leader.enqueue(&[submission(1)]).await.expect("the leader writes");
    let (f, _) = leader
        .register_function("noop", &volley_proto::function::FunctionKind::Noop)
        .await
        .expect("the leader registers");

    // Another dispatcher took over.
    set_fence("5:bbbb").await;
    let before = leader.get(ids[0]).await.expect("get");
    let refused = leader
        .record(&[finished(ids[0], Outcome::Completed("1".into()), Some("w"))])
        .await
        .expect_err("fenced");
    assert!(matches!(refused, StoreError::Fenced(4)), "{refused:?}");
    assert!(matches!(
        leader.enqueue(&[submission(2)]).await,
        Err(StoreError::Fenced(4))
    ));
    assert!(matches!(
        leader
            .register_function("noop", &volley_proto::function::FunctionKind::Noop)
            .await,
        Err(StoreError::Fenced(4))
    ));
    assert_eq!(
        leader.get(ids[0]).await.expect("get"),
        before,
        "the record is untouched"
    );
    assert_eq!(leader.unfinished_count().await.expect("count"), 1);
    assert_eq!(leader.functions().await.expect("functions").len(), 1);
    assert_eq!(f, FunctionId(1));

    let successor = RedisStore::connect(&url(), &p)
        .await
        .expect("redis")
        .with_fence(Some(fence(5, "5:bbbb")));
    successor
        .record(&[finished(ids[0], Outcome::Completed("1".into()), Some("w"))])
        .await
        .expect("the new leader writes");

    // Redis lost its data and counted epochs again: a third leader took the same epoch
    // number. Its nonce is not the successor's, so the successor writes nothing.
    set_fence("5:cccc").await;
    assert!(matches!(
        successor.enqueue(&[submission(3)]).await,
        Err(StoreError::Fenced(5))
    ));
    successor.purge().await.expect("purge");
}
