//! Every mode on every store runs a mixed batch to the right terminal states.

mod common;

use common::*;
use volley_perf::{Cluster, ClusterSpec};
use volley_proto::Mode;

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
