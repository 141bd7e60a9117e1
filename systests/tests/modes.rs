//! Every mode on every store runs a mixed batch to the right terminal states.

use volley_testbed::fixtures as common;

use common::*;
use volley_proto::Mode;
use volley_testbed::{Cluster, ClusterSpec};

async fn mixed(mode: Mode, store: Option<&str>) {
    let mut spec = ClusterSpec::new(mode, 2, 2).label(format!("mixed-{mode}"));
    let prefix = unique_prefix(&format!("mixed-{mode}"));
    if let Some(url) = store {
        spec = spec.store(url).args(["--redis-prefix", prefix.as_str()]);
    }
    let cluster = Cluster::start(spec).await.expect("cluster");
    let mut client = volley_client::connect(&cluster.grpc_url()).await.expect("connect");
    run_mixed(&mut client).await;
    let info = cluster.info().await.expect("info");
    let c = info.counters.expect("counters");
    assert_eq!(c.completed + c.failed, c.submitted);
    assert_eq!((c.requeued, c.duplicate_results, c.dropped_frames), (0, 0, 0));
    assert_eq!(info.mode, mode.as_str());
    cluster.stop().await.expect("stop");
    if let Some(url) = store {
        purge(url, &prefix).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_on_memory() {
    mixed(Mode::Local, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_mode_on_memory() {
    mixed(Mode::Pull, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_mode_on_memory() {
    mixed(Mode::Push, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_on_redis() {
    mixed(Mode::Local, Some(&redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_mode_on_redis() {
    mixed(Mode::Pull, Some(&redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_mode_on_redis() {
    mixed(Mode::Push, Some(&redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_request_reply_with_prefetch_zero() {
    let cluster = Cluster::start(
        ClusterSpec::new(Mode::Pull, 2, 1)
            .args(["--prefetch", "0"])
            .label("prefetch0"),
    )
    .await
    .expect("cluster");
    let mut client = volley_client::connect(&cluster.grpc_url()).await.expect("connect");
    run_mixed(&mut client).await;
    cluster.stop().await.expect("stop");
}

/// Workers' tasks, one at a time on one `ExecuteStream` call, then a batch on the same call.
async fn on_one_execute_stream(mode: Mode) {
    use volley_proto::api::{self, execute_stream_response::Event};
    let cluster = Cluster::start(ClusterSpec::new(mode, 2, 1).label(format!("stream-{mode}")))
        .await
        .expect("cluster");
    let mut client = volley_client::connect(&cluster.grpc_url()).await.expect("connect");
    let (echo, _) = volley_client::register_spec(&mut client, "echo:x")
        .await
        .expect("register");
    let request = |args: Vec<String>| api::ExecuteBatchRequest {
        tasks: args
            .into_iter()
            .map(|args| api::ExecuteRequest {
                function_id: echo,
                args,
            })
            .collect(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let requests = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut events = client.execute_stream(requests).await.expect("opens").into_inner();
    let mut next = async || {
        tokio::time::timeout(std::time::Duration::from_secs(10), events.message())
            .await
            .expect("an event in time")
            .expect("the call is healthy")
            .and_then(|e| e.event)
    };
    for i in 0..50 {
        tx.send(request(vec![format!("\"t{i}\"")])).await.expect("send");
        let event = next().await;
        let Some(Event::Accepted(a)) = event else {
            panic!("accepted first, got {event:?}")
        };
        let event = next().await;
        let Some(Event::Finished(f)) = event else {
            panic!("then its outcome, got {event:?}")
        };
        assert_eq!(f.tasks.len(), 1);
        assert_eq!(f.tasks[0].task_id, a.task_ids[0]);
        assert_eq!(f.tasks[0].result, format!("\"t{i}\""), "each task's own result");
    }
    tx.send(request((0..200).map(|i| format!("\"b{i}\"")).collect()))
        .await
        .expect("send");
    drop(tx);
    let Some(Event::Accepted(a)) = next().await else {
        panic!("accepted first")
    };
    let mut results = std::collections::HashMap::new();
    while let Some(event) = next().await {
        let Event::Finished(f) = event else {
            panic!("only outcomes are left: {event:?}")
        };
        for t in f.tasks {
            assert!(results.insert(t.task_id, t.result).is_none(), "reported twice");
        }
    }
    assert_eq!(results.len(), 200);
    for (i, id) in a.task_ids.iter().enumerate() {
        assert_eq!(results[id], format!("\"b{i}\""));
    }
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_mode_on_one_execute_stream() {
    on_one_execute_stream(Mode::Pull).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_mode_on_one_execute_stream() {
    on_one_execute_stream(Mode::Push).await;
}
