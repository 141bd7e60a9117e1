//! Open-loop load and sweeps against real clusters.

use std::time::Duration;
use volley_perf::cluster::Signal;
use volley_perf::load::{self, Arrival, LoadSpec};
use volley_perf::report::HEADER;
use volley_perf::sweep::{self, Scaling, SweepSpec};
use volley_perf::{Cluster, ClusterSpec};
use volley_proto::Mode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_dispatcher_shows_up_in_latency_from_intended_send_time() {
    let cluster = Cluster::start(ClusterSpec::new(Mode::Push, 2, 1).label("stall"))
        .await
        .expect("cluster");
    let client = volley_client::connect(&cluster.grpc_url()).await.expect("connect");
    let spec = LoadSpec {
        rate: 50.0,
        arrival: Arrival::Uniform,
        optype: volley_perf::workload::OpType::Noop,
        task_ms: 0,
        duration: Duration::from_millis(2500),
        warmup: Duration::ZERO,
        drain: Duration::from_secs(10),
        seed: 1,
    };
    let run = tokio::spawn(async move { load::run(&client, &spec).await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.signal_dispatcher(Signal::SIGSTOP).expect("stop");
    tokio::time::sleep(Duration::from_millis(600)).await;
    cluster.signal_dispatcher(Signal::SIGCONT).expect("continue");
    let r = run.await.expect("join").expect("load");

    // The client kept sending on schedule through the stall...
    assert!(r.rate_ok, "offered {} of {}", r.offered_rate, r.target_rate);
    assert_eq!(r.success_rate, 1.0, "{r:?}");
    // ...so the requests meant for the stalled 600 ms carry its cost: about 30 of ~125
    // requests waited up to 600 ms.
    assert!(r.max_ms >= 450.0, "the stall must show in the worst latency: {r:?}");
    assert!(r.p90_ms >= 100.0, "a tenth of the requests fell into the stall: {r:?}");
    assert!(r.p50_ms < 100.0, "outside the stall latency is small: {r:?}");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_sweep_writes_one_row_per_point_and_task_records() {
    let dir = std::env::temp_dir().join(format!("volley-sweep-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let spec = SweepSpec {
        scaling: Scaling::Weak,
        workers: vec![1, 2],
        modes: vec![Mode::Local, Mode::Pull],
        optypes: vec![
            volley_perf::workload::OpType::Noop,
            volley_perf::workload::OpType::Sleep,
        ],
        task_ms: vec![20],
        tasks_per_worker: 3,
        strong_tasks: 0,
        repeats: 1,
        store: "memory".into(),
        slots: 1,
        out: dir.join("performance_test.csv"),
        tasks_csv: Some(dir.join("tasks.csv")),
    };
    let rows = sweep::run(&spec).await.expect("sweep");
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r.failed() == 0));
    let text = std::fs::read_to_string(&spec.out).expect("csv");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], HEADER.join(","));
    assert_eq!(lines.len(), 9);
    assert!(lines[1..].iter().all(|l| l.split(',').count() == HEADER.len()));
    let tasks = std::fs::read_to_string(dir.join("tasks.csv")).expect("tasks csv");
    // 2 modes × (3 + 6 tasks) × 2 optypes, plus the header.
    assert_eq!(tasks.lines().count(), 1 + 2 * 9 * 2);
    assert!(dir.join("performance_test.csv.meta.json").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
