//! What `WatchResults` promises: by ids, each task exactly once, finished ones first, and
//! the stream ends with the last; with no ids, every completion from the call on.

mod common;

use common::Dispatcher;
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use volley_proto::api;
use volley_proto::function::FunctionKind;
use volley_proto::Mode;

async fn completed(d: &mut Dispatcher, n: u64) {
    d.wait_for("completions", Duration::from_secs(10), |i| {
        i.counters.as_ref().is_some_and(|c| c.completed == n)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_ids_yields_each_once_finished_ones_first_and_ends() {
    let mut d = Dispatcher::start(Mode::Local, |c| c.local_slots = 2).await;
    let noop = d.register(FunctionKind::Noop).await;
    let sleep = d.register(FunctionKind::Sleep { ms: 150 }).await;
    let early = d.submit(noop, 50).await;
    completed(&mut d, 50).await;
    let late = d.submit(sleep, 4).await;

    // Every id twice: still one answer each.
    let mut ids: Vec<u64> = early.iter().chain(&late).copied().collect();
    ids.extend(ids.clone());
    let mut stream = d
        .client
        .watch_results(api::WatchResultsRequest { task_ids: ids })
        .await
        .expect("watch")
        .into_inner();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut order = Vec::new();
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream moves or ends")
    {
        for t in msg.expect("a message").tasks {
            assert_eq!(t.state, api::TaskState::Completed as i32, "{t:?}");
            *seen.entry(t.task_id).or_default() += 1;
            order.push(t.task_id);
        }
    }
    assert_eq!(seen.len(), early.len() + late.len());
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    let first: std::collections::HashSet<u64> = order[..early.len()].iter().copied().collect();
    assert!(
        early.iter().all(|id| first.contains(id)),
        "the finished tasks come first"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_is_not_found_and_a_watch_of_all_sees_only_what_finishes_after_it() {
    let mut d = Dispatcher::start(Mode::Local, |_| {}).await;
    let noop = d.register(FunctionKind::Noop).await;
    let before = d.submit(noop, 10).await;
    completed(&mut d, 10).await;

    let status = d
        .client
        .watch_results(api::WatchResultsRequest {
            task_ids: vec![before[0], 987_654_321],
        })
        .await
        .expect_err("an unknown id is refused");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(status.message().contains("987654321"), "{}", status.message());

    let mut all = d
        .client
        .watch_results(api::WatchResultsRequest { task_ids: vec![] })
        .await
        .expect("watch")
        .into_inner();
    let after = d.submit(noop, 5).await;
    let mut got = Vec::new();
    while got.len() < after.len() {
        let msg = tokio::time::timeout(Duration::from_secs(10), all.next())
            .await
            .expect("completions arrive")
            .expect("the stream stays open")
            .expect("a message");
        got.extend(msg.tasks.iter().map(|t| t.task_id));
    }
    got.sort();
    assert_eq!(got, after, "only the tasks submitted after the watch began");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_of_every_completion_are_bounded_and_their_places_come_back() {
    use volley_dispatcher::api::watch::MAX_WATCHERS_OF_ALL;
    // One connection carries every watcher here, so it may open more streams than the
    // default allows.
    let d = Dispatcher::start(Mode::Local, |c| {
        c.local_slots = 1;
        c.limits.grpc_streams = 1024;
    })
    .await;
    let mut streams = Vec::new();
    for _ in 0..MAX_WATCHERS_OF_ALL {
        let s = d
            .client
            .clone()
            .watch_results(api::WatchResultsRequest { task_ids: vec![] })
            .await;
        streams.push(s.expect("a watcher within the limit").into_inner());
    }
    let refused = d
        .client
        .clone()
        .watch_results(api::WatchResultsRequest { task_ids: vec![] })
        .await
        .expect_err("one watcher too many");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("watch the ids"), "{}", refused.message());
    // A watcher that goes gives its place back.
    drop(streams.pop());
    let mut again = None;
    for _ in 0..50 {
        match d
            .client
            .clone()
            .watch_results(api::WatchResultsRequest { task_ids: vec![] })
            .await
        {
            Ok(s) => {
                again = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(again.is_some(), "the place did not come back");
}
