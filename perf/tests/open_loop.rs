//! Open-loop load and sweeps against real clusters.

use volley_testbed::fixtures as common;

use std::time::Duration;
use volley_perf::recording::tables::HEADER;
use volley_perf::studies::load::{self, Arrival, LoadSpec};
use volley_perf::studies::sweep::{self, Scaling, SweepSpec};
use volley_proto::Mode;
use volley_testbed::cluster::Signal;
use volley_testbed::{Cluster, ClusterSpec};

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
        function: None,
        transport: Default::default(),
        follow: None,
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
        function: None,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_overload_every_request_has_one_outcome_and_the_dispatcher_agrees() {
    // One slot of 5 ms sleeps (≤ 200/s) offered 600/s, and a queue bound of 300: some
    // requests are refused, some still queued when the drain ends, the rest complete.
    let spec = ClusterSpec::new(Mode::Push, 1, 1)
        .args(["--max-queued", "300"])
        .label("overload");
    let cluster = Cluster::start(spec).await.expect("cluster");
    let client = volley_client::connect(&cluster.grpc_url()).await.expect("connect");
    let load = LoadSpec {
        rate: 600.0,
        arrival: Arrival::Uniform,
        optype: volley_perf::workload::OpType::Sleep,
        task_ms: 5,
        duration: Duration::from_secs(3),
        warmup: Duration::ZERO,
        drain: Duration::from_millis(500),
        seed: 3,
        function: None,
        transport: Default::default(),
        follow: None,
    };
    let started = std::time::Instant::now();
    let r = load::run(&client, &load).await.expect("load");
    assert!(
        started.elapsed() < Duration::from_secs(3 + 1 + 4),
        "the run must end within --for + --drain and a bounded teardown: {:?}",
        started.elapsed()
    );
    assert!(r.adds_up(), "{r:?}");
    assert_eq!(r.sent, 1799, "3 s at 600/s, the first a gap after the start: {r:?}");
    assert_eq!((r.failed, r.unknown), (0, 0), "slow is not failed: {r:?}");
    assert!(r.refused > 0, "the queue bound refuses some: {r:?}");
    assert!(r.unfinished > 0, "some are still queued when the drain ends: {r:?}");
    assert!(r.completed > 0, "{r:?}");
    assert_eq!(r.agrees_with_dispatcher(), Some(true), "{r:?}");
    assert!(r.first_error.contains("ResourceExhausted"), "{}", r.first_error);

    // Once the dispatcher has worked off its queue, its counters account for every
    // request: what we saw complete, plus what was unfinished when we stopped waiting.
    let info = common::wait_until(&cluster, Duration::from_secs(20), "the queue to drain", |i| {
        i.queued + i.running == 0
    })
    .await;
    let c = info.counters.expect("counters");
    assert_eq!(c.completed, r.completed + r.unfinished, "{c:?} vs {r:?}");
    assert_eq!(c.failed, 0);
    assert_eq!(c.submitted, r.sent - r.refused, "{c:?} vs {r:?}");
    cluster.stop().await.expect("stop");
}

/// 600 sleeps of 10 ms a second for 2 s over `transport`, on a connection whose HTTP/2
/// window holds a few results, to a dispatcher whose watchers may fall 8 completion
/// batches behind; the client freezes for 2 s while the backlog completes. Returns the
/// run, its 1,199 requests all completed and agreed on by the dispatcher.
fn frozen_client_run(transport: load::transport::Transport) -> load::LoadResult {
    // The test's own runtime, on one thread, so the test can freeze it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let spec = ClusterSpec::new(Mode::Local, 0, 2)
            .args(["--watch-buffer", "8"])
            .label("lagging-watch");
        let cluster = Cluster::start(spec).await.expect("cluster");
        let channel = tonic::transport::Endpoint::from_shared(cluster.grpc_url())
            .expect("url")
            .initial_stream_window_size(Some(8 * 1024))
            .connect()
            .await
            .expect("channel");
        let client = volley_client::client_over(channel, None).expect("client");
        let load = LoadSpec {
            rate: 600.0,
            arrival: Arrival::Uniform,
            optype: volley_perf::workload::OpType::Sleep,
            task_ms: 10,
            duration: Duration::from_secs(2),
            warmup: Duration::ZERO,
            drain: Duration::from_secs(15),
            seed: 4,
            function: None,
            transport,
            follow: None,
        };
        let run = tokio::spawn(async move { load::run(&client, &load).await });
        tokio::time::sleep(Duration::from_millis(800)).await;
        // Freeze every task of this runtime while the backlog completes.
        std::thread::sleep(Duration::from_millis(2000));
        let r = run.await.expect("join").expect("load");
        assert_eq!(r.sent, 1199, "{r:?}");
        assert_eq!(
            (r.completed, r.failed, r.refused, r.unfinished, r.unknown),
            (1199, 0, 0, 0, 0),
            "{r:?}"
        );
        assert_eq!(r.agrees_with_dispatcher(), Some(true), "{r:?}");
        cluster.stop().await.expect("stop");
        r
    })
}

#[test]
fn a_result_stream_that_falls_far_behind_still_reports_every_result() {
    // The WatchResults stream loses the live feed while the client is frozen.
    let r = frozen_client_run(load::transport::Transport::Unary);
    assert!(r.stream_breaks >= 1, "the live stream must have broken: {r:?}");
    assert!(r.recovered > 0, "results read back by id: {r:?}");
}

#[test]
fn a_stream_call_that_falls_far_behind_catches_up_by_itself() {
    // The dispatcher's side of the ExecuteStream call catches up from the store: the call
    // never breaks, and nothing needs reading back.
    let r = frozen_client_run(load::transport::Transport::Stream);
    assert_eq!((r.stream_breaks, r.recovered), (0, 0), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_call_broken_by_a_restart_is_reopened_and_every_request_has_one_outcome() {
    let mut cluster = Cluster::start(ClusterSpec::new(Mode::Push, 1, 1).label("stream-restart"))
        .await
        .expect("cluster");
    let client = volley_client::connect(&cluster.grpc_url()).await.expect("connect");
    let spec = LoadSpec {
        rate: 100.0,
        arrival: Arrival::Uniform,
        optype: volley_perf::workload::OpType::Noop,
        task_ms: 0,
        duration: Duration::from_secs(3),
        warmup: Duration::ZERO,
        drain: Duration::from_secs(3),
        seed: 5,
        function: None,
        transport: load::transport::Transport::Stream,
        follow: None,
    };
    let run = tokio::spawn(async move { load::run(&client, &spec).await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.restart_dispatcher().await.expect("restart");
    let r = run.await.expect("join").expect("load");

    let summary = format!(
        "sent {} completed {} failed {} refused {} unfinished {} unknown {} breaks {} ({}) first error {}",
        r.sent, r.completed, r.failed, r.refused, r.unfinished, r.unknown, r.stream_breaks, r.last_break, r.first_error
    );
    assert!(r.adds_up(), "{summary}");
    assert_eq!(r.sent, 299, "{summary}");
    assert!(r.stream_breaks >= 1, "the call broke with the dispatcher: {summary}");
    // Before the restart, tasks complete. While no dispatcher listens, requests are not
    // sent (refused here, as UNAVAILABLE: nothing of them was stored). After it, the call
    // is reopened and the new dispatcher answers on it: a memory store forgot the
    // function, so each request is refused as NotFound, not lost.
    assert!(r.completed >= 80, "{summary}");
    assert!(r.refused >= 150, "{summary}");
    assert!(
        r.first_error.contains("NotFound") || r.first_error.contains("no call could be opened"),
        "{summary}"
    );
    assert!(
        r.unknown <= 5,
        "only requests in flight at the kill are unknown: {summary}"
    );
    assert_eq!(r.failed, 0, "{summary}");
    cluster.stop().await.expect("stop");
}

#[test]
fn the_cpu_curve_has_a_row_per_mode_shape_and_rate_with_every_task_accounted_for() {
    let dir = common::temp_dir("cpu-curve");
    let said = common::run_ok(
        std::process::Command::new(volley_testbed::binaries::path("client").expect("client binary"))
            .current_dir(&dir)
            .args(["load", "--curve", "--rates", "200,600", "--curve-modes", "pull,push"])
            .args([
                "--curve-shapes",
                "1x1,1x3",
                "--for",
                "1500ms",
                "--warmup",
                "300ms",
                "--drain",
                "3s",
                // One probe above the listed rates: 1,200/s, the search's ceiling.
                "--curve-probes",
                "1",
                "--curve-up-to",
                "1200",
            ]),
        "client load --curve",
    );
    let mut reader = csv::Reader::from_path(dir.join("cpu-curve.csv")).expect("cpu-curve.csv");
    let all: Vec<volley_perf::studies::load::curve::CurvePoint> =
        reader.deserialize().map(|r| r.expect("a row")).collect();
    let (highest, rows): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| r.point.starts_with("highest"));
    assert_eq!(rows.len(), 2 * 2 * 2, "{said}");
    // Each cluster's highest sustained rate: the probe at the ceiling if it met the SLO
    // (capped: the truth may lie higher), else the highest listed rate that did.
    assert_eq!(highest.len(), 2 * 2, "one per mode × shape: {highest:?}\n{said}");
    for h in &highest {
        let listed_best = rows
            .iter()
            .filter(|r| (&r.mode, r.slots) == (&h.mode, h.slots) && r.passed())
            .map(|r| r.target_rate)
            .fold(0.0, f64::max);
        assert!(h.passed(), "{h:?}");
        assert!(h.target_rate >= listed_best, "{h:?}");
        if h.point == "highest-capped" {
            assert_eq!(h.target_rate, 1200.0, "{h:?}");
        }
        if listed_best == 600.0 {
            // Every listed rate met the SLO: the one probe went to the ceiling.
            let probe = format!("curve-{}-1x{}: probe 1 at 1200/s", h.mode, h.slots);
            assert!(said.contains(&probe), "{probe}: {said}");
            assert!(h.target_rate == 600.0 || h.point == "highest-capped", "{h:?}");
        }
    }
    for r in rows.iter().chain(&highest) {
        // Every request completed (the study stops if the outcomes do not add up), and
        // every role's cost was read.
        assert_eq!(r.completed, r.sent, "{r:?}");
        assert!(r.sent >= (r.target_rate * 1.2) as u64, "{r:?}");
        assert!(
            r.generator_us > 0.0 && r.dispatcher_us > 0.0 && r.worker_us > 0.0,
            "{r:?}"
        );
        // The floor was measured at the same rate in the same run.
        assert!(
            r.floor_generator_us > 0.0 && r.floor_relay_us > 0.0 && r.floor_echo_us > 0.0 && r.floor_p50_ms > 0.0,
            "{r:?}"
        );
        assert!(r.p50_ms > 0.0 && r.p99_ms >= r.p50_ms, "{r:?}");
    }
    let mut seen: Vec<(String, u32, f64)> = rows.iter().map(|r| (r.mode.clone(), r.slots, r.target_rate)).collect();
    seen.dedup();
    assert_eq!(seen.len(), 8, "one row per mode × shape × rate: {seen:?}");
    for stem in [
        "cpu-curve-pull-1x1-stream-with-outcome",
        "cpu-curve-push-1x3-stream-with-outcome-latency",
    ] {
        assert!(dir.join(format!("{stem}.png")).is_file(), "{stem}.png: {said}");
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn the_floor_has_a_row_per_rate_with_every_message_back_and_each_role_costed() {
    let dir = common::temp_dir("floor");
    let said = common::run_ok(
        std::process::Command::new(volley_testbed::binaries::path("client").expect("client binary"))
            .current_dir(&dir)
            .args(["floor", "--rates", "300,900", "--for", "1s", "--arrival", "uniform"]),
        "client floor",
    );
    let mut reader = csv::Reader::from_path(dir.join("floor.csv")).expect("floor.csv");
    let rows: Vec<volley_perf::studies::floor::FloorPoint> = reader.deserialize().map(|r| r.expect("a row")).collect();
    assert_eq!(
        rows.iter().map(|r| (r.target_rate, r.sent)).collect::<Vec<_>>(),
        vec![(300.0, 299), (900.0, 899)],
        "one row per rate, each with every message of a uniform second (the generator fails if one does not come back): {said}"
    );
    for r in &rows {
        assert!(r.generator_us > 0.0 && r.relay_us > 0.0 && r.echo_us > 0.0, "{r:?}");
        assert!(r.relay_sys_us <= r.relay_us && r.echo_sys_us <= r.echo_us, "{r:?}");
        assert!(r.p50_ms > 0.0 && r.p99_ms >= r.p50_ms, "{r:?}");
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}
