//! The elastic pool end to end (`dispatcher --autoscale … --provision local`): instances
//! start for a function's tasks and retire after the keep-alive; a SIGKILLed instance is
//! replaced while work remains; a start that cannot succeed is counted and leaves the
//! tasks queued, never FAILED; a SIGKILLed dispatcher leaves no instance behind.

use volley_testbed::fixtures as common;

use std::collections::BTreeSet;
use std::time::Duration;
use volley_client::run_batch;
use volley_proto::api;
use volley_proto::Mode;
use volley_testbed::{Cluster, ClusterSpec};

async fn elastic(label: &str, policy: &str, max: u32, worker_bin: &str) -> Cluster {
    Cluster::start(elastic_spec(label, policy, max, worker_bin))
        .await
        .expect("cluster")
}

fn elastic_spec(label: &str, policy: &str, max: u32, worker_bin: &str) -> ClusterSpec {
    ClusterSpec::new(Mode::Push, 0, 1)
        .args([
            "--autoscale",
            policy,
            "--provision",
            "local",
            "--worker-bin",
            worker_bin,
        ])
        .args([
            "--max-instances".to_owned(),
            max.to_string(),
            "--init-ms".to_owned(),
            "50".to_owned(),
        ])
        .args(["--metrics", "127.0.0.1:0"])
        .label(label)
}

async fn register(cluster: &Cluster, spec: &str) -> (volley_client::Client, u64, String) {
    let mut client = cluster.connect().await.expect("client");
    let (id, args) = common::register_named(&mut client, "resize", spec).await;
    (client, id, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_start_for_work_retire_when_idle_and_are_replaced_when_killed() {
    let bin = volley_testbed::binaries::path("worker").expect("worker binary");
    let bin = bin.to_str().expect("utf-8 path");
    let logs = volley_testbed::fixtures::temp_dir("autoscale-instance-logs");
    let spec = elastic_spec("autoscale", "fixed:keepalive=2s", 3, bin)
        .args(["--instance-logs".to_owned(), logs.display().to_string()]);
    let cluster = Cluster::start(spec).await.expect("cluster");
    let (client, f, args) = register(&cluster, "sleep:20").await;
    let outcome = run_batch(&client, vec![(f, args); 30], 30, Duration::from_secs(60))
        .await
        .expect("batch");
    assert_eq!((outcome.completed, outcome.failed), (30, 0));
    let instances: BTreeSet<&str> = outcome.tasks.iter().map(|t| t.worker.as_str()).collect();
    assert!(instances.iter().all(|w| w.starts_with("inst-")), "{instances:?}");
    assert!(
        instances.len() <= 3,
        "more instances than --max-instances: {instances:?}"
    );
    // Every task was submitted before any instance registered: all were cold starts, and
    // each record explains its start in order, the 50 ms init included.
    for t in &outcome.tasks {
        let s = t
            .cold_start
            .unwrap_or_else(|| panic!("task {} has no cold start: {t:?}", t.task_id));
        assert!(t.cold);
        let stages = [
            s.decided_us,
            s.spawned_us,
            s.process_us,
            s.init_done_us,
            s.registered_us,
            t.dispatched_us,
            t.completed_us,
        ];
        assert!(stages.windows(2).all(|w| w[0] <= w[1]), "{s:?} {t:?}");
        assert!(s.init_done_us - s.process_us >= 50_000, "{s:?}");
        assert!(t.submitted_us < s.registered_us);
    }
    // The stored record says the same as the completion stream.
    let first = &outcome.tasks[0];
    let mut c = cluster.connect().await.expect("client");
    let stored = c
        .get_result(api::GetResultRequest { task_id: first.task_id })
        .await
        .expect("result")
        .into_inner()
        .task
        .expect("task");
    assert_eq!((stored.cold, stored.cold_start), (true, first.cold_start));
    // Each instance kept its log.
    let first = std::fs::read_to_string(logs.join("inst-1-resize.log")).expect("instance log");
    assert!(first.contains("registered with the dispatcher"), "{first}");
    // Idle past the keep-alive: every instance is retired.
    common::wait_until(&cluster, Duration::from_secs(15), "scale to zero", |i| {
        i.workers.is_empty()
    })
    .await;

    // Long tasks on two instances; one is SIGKILLed: its task is requeued and a new
    // instance takes it, because work remains.
    let (client, f, args) = register(&cluster, "sleep:1500").await;
    let run = tokio::spawn(async move { run_batch(&client, vec![(f, args); 4], 4, Duration::from_secs(60)).await });
    let info = common::wait_until(&cluster, Duration::from_secs(15), "three busy instances", |i| {
        i.workers.len() == 3 && i.workers.iter().all(|w| w.in_flight > 0)
    })
    .await;
    let victim = info.workers[0].pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let outcome = run.await.expect("join").expect("batch");
    assert_eq!((outcome.completed, outcome.failed), (4, 0));
    let info = cluster.info().await.expect("info");
    assert!(info.counters.expect("counters").requeued >= 1);
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_cannot_succeed_is_counted_and_the_tasks_wait() {
    let cluster = elastic("autoscale-broken", "fixed:keepalive=10s", 2, "/nonexistent/worker").await;
    let (mut client, f, args) = register(&cluster, "noop").await;
    let ids = client
        .execute_batch(api::ExecuteBatchRequest {
            tasks: vec![api::ExecuteRequest { function_id: f, args }; 2],
        })
        .await
        .expect("submit")
        .into_inner()
        .task_ids;
    let info = common::wait_until(&cluster, Duration::from_secs(10), "failed starts", |i| {
        i.functions.iter().any(|f| f.name == "resize" && f.failed_starts >= 2)
    })
    .await;
    let row = info.functions.iter().find(|f| f.name == "resize").expect("row");
    assert_eq!((row.queued, row.ready), (2, 0));
    let (_, page) = common::http_get(cluster.metrics_url().expect("metrics"))
        .await
        .expect("scrape");
    let failed: f64 = page
        .lines()
        .find_map(|l| l.strip_prefix(r#"volley_function_failed_starts_total{function="resize"} "#))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no failed starts on the page:\n{page}"));
    assert!(failed >= 2.0);
    for id in ids {
        let state = client
            .get_status(api::GetStatusRequest { task_id: id })
            .await
            .expect("status")
            .into_inner()
            .state;
        assert_eq!(state, api::TaskState::Queued as i32);
    }
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_dispatcher_leaves_no_instance_behind() {
    let bin = volley_testbed::binaries::path("worker").expect("worker binary");
    let mut cluster = elastic("autoscale-kill", "fixed:keepalive=60s", 2, bin.to_str().expect("utf-8")).await;
    let (client, f, args) = register(&cluster, "sleep:10").await;
    run_batch(&client, vec![(f, args); 4], 4, Duration::from_secs(60))
        .await
        .expect("batch");
    let pids: Vec<u32> = cluster
        .info()
        .await
        .expect("info")
        .workers
        .iter()
        .map(|w| w.pid)
        .collect();
    assert!(!pids.is_empty());
    cluster.kill_dispatcher().await.expect("SIGKILL");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| common::alive(*p)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        pids.iter().all(|p| !common::alive(*p)),
        "instances outlived their dispatcher: {pids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_is_kept_by_redis_as_reported_and_idle_time_is_exported() {
    let bin = volley_testbed::binaries::path("worker").expect("worker binary");
    let prefix = common::unique_prefix("autoscale-redis");
    let spec = elastic_spec(
        "autoscale-redis",
        "fixed:keepalive=30s",
        1,
        bin.to_str().expect("utf-8"),
    )
    .store(common::redis_url())
    .args(["--redis-prefix", prefix.as_str()]);
    let cluster = Cluster::start(spec).await.expect("cluster");
    let (mut client, f, args) = register(&cluster, "noop").await;
    let outcome = run_batch(&client, vec![(f, args.clone()); 1], 1, Duration::from_secs(60))
        .await
        .expect("batch");
    let cold = &outcome.tasks[0];
    assert!(cold.cold && cold.cold_start.is_some(), "{cold:?}");
    let warm = run_batch(&client, vec![(f, args); 1], 1, Duration::from_secs(60))
        .await
        .expect("batch");
    assert!(!warm.tasks[0].cold && warm.tasks[0].cold_start.is_none());
    let stored = client
        .get_result(api::GetResultRequest { task_id: cold.task_id })
        .await
        .expect("result")
        .into_inner()
        .task
        .expect("task");
    assert_eq!((stored.cold, stored.cold_start), (true, cold.cold_start));
    // Idle between the two tasks and after: counted, and on the metrics page.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = cluster.info().await.expect("info");
    let row = info.functions.iter().find(|r| r.name == "resize").expect("row");
    assert!(row.idle_instance_us >= 300_000, "{row:?}");
    let (_, page) = common::http_get(cluster.metrics_url().expect("metrics"))
        .await
        .expect("scrape");
    assert!(
        page.contains(r#"volley_function_idle_instance_seconds_total{function="resize"}"#),
        "{page}"
    );
    cluster.stop().await.expect("stop");
}
