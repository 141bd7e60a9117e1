//! Workers, dispatchers and Redis die; no task is lost.

use volley_testbed::fixtures as common;

use common::*;
use std::time::Duration;
use volley_client::{connect, register_spec, run_batch};
use volley_proto::api;
use volley_proto::Mode;
use volley_testbed::cluster::Signal;
use volley_testbed::{Cluster, ClusterSpec, RedisServer};

fn holding(info: &api::ClusterInfoResponse, name: &str) -> bool {
    info.workers.iter().any(|w| w.name == name && w.in_flight > 0)
}

/// Starts `count` tasks of `spec` in the background and returns once worker-0 holds some.
async fn batch_held_by_worker_0(
    cluster: &Cluster,
    spec: &str,
    count: usize,
) -> tokio::task::JoinHandle<anyhow::Result<volley_client::BatchOutcome>> {
    let mut client = connect(&cluster.grpc_url()).await.expect("connect");
    let (f, args) = register_spec(&mut client, spec).await.expect("register");
    let batch =
        tokio::spawn(async move { run_batch(&client, vec![(f, args); count], count, Duration::from_secs(60)).await });
    wait_until(cluster, Duration::from_secs(10), "worker-0 to hold tasks", |i| {
        holding(i, "worker-0")
    })
    .await;
    batch
}

async fn kill_worker_mid_batch(mode: Mode) {
    let mut cluster = Cluster::start(ClusterSpec::new(mode, 2, 2).label(format!("kill-{mode}")))
        .await
        .expect("cluster");
    let batch = batch_held_by_worker_0(&cluster, "sleep:300", 24).await;
    cluster.kill_worker(0).await.expect("kill");
    let outcome = batch.await.expect("join").expect("every task finished");
    assert_eq!(
        (outcome.completed, outcome.failed),
        (24, 0),
        "logs in {}",
        cluster.log_dir().display()
    );
    assert!(
        outcome.tasks.iter().any(|t| t.attempts > 1),
        "some task must have been retried"
    );
    let c = cluster.info().await.expect("info").counters.expect("counters");
    assert!(c.requeued > 0 && c.workers_lost == 1, "{c:?}");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_push_worker_loses_no_task() {
    kill_worker_mid_batch(Mode::Push).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_pull_worker_loses_no_task() {
    kill_worker_mid_batch(Mode::Pull).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_workers_keep_dying_fails_as_worker_lost() {
    let spec = ClusterSpec::new(Mode::Push, 1, 1)
        .args(["--max-attempts", "2"])
        .label("keeps-dying");
    let mut cluster = Cluster::start(spec).await.expect("cluster");
    let mut client = connect(&cluster.grpc_url()).await.expect("connect");
    let (f, _) = register_spec(&mut client, "sleep:30000").await.expect("register");
    let id = client
        .execute(api::ExecuteRequest {
            function_id: f,
            args: String::new(),
        })
        .await
        .expect("execute")
        .into_inner()
        .task_id;
    let mut victim = 0;
    for attempt in 1..=2 {
        let name = format!("worker-{victim}");
        wait_until(&cluster, Duration::from_secs(10), "the worker to hold the task", |i| {
            holding(i, &name)
        })
        .await;
        cluster.kill_worker(victim).await.expect("kill");
        if attempt < 2 {
            victim = cluster.add_worker(1, &[]).await.expect("respawn");
        }
    }
    let task = loop {
        let t = client
            .get_result(api::GetResultRequest { task_id: id })
            .await
            .expect("result")
            .into_inner()
            .task
            .expect("task");
        if t.state == api::TaskState::Failed as i32 {
            break t;
        }
        assert_ne!(t.state, api::TaskState::Completed as i32);
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!((task.error.as_str(), task.attempts), ("worker_lost", 2));
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_makes_a_worker_say_goodbye_and_its_tasks_move_on() {
    // A long liveness window: only the goodbye can requeue the tasks in time.
    let spec = ClusterSpec::new(Mode::Push, 2, 2)
        .args(["--liveness", "400"])
        .label("goodbye");
    let mut cluster = Cluster::start(spec).await.expect("cluster");
    let batch = batch_held_by_worker_0(&cluster, "sleep:500", 8).await;
    cluster.signal_worker(0, Signal::SIGTERM).expect("sigterm");
    assert_eq!(
        cluster.wait_worker(0, Duration::from_secs(5)).await.expect("exit"),
        Some(0)
    );
    let outcome = batch.await.expect("join").expect("batch");
    assert_eq!(outcome.completed, 8);
    let info = cluster.info().await.expect("info");
    assert_eq!(info.workers.len(), 1);
    assert!(info.counters.expect("counters").requeued > 0);
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_restarted_on_redis_finishes_every_task() {
    let url = redis_url();
    let prefix = unique_prefix("restart");
    let spec = ClusterSpec::new(Mode::Push, 2, 2)
        .store(url.as_str())
        .args(["--redis-prefix", prefix.as_str()])
        .label("restart");
    let mut cluster = Cluster::start(spec).await.expect("cluster");
    let mut client = connect(&cluster.grpc_url()).await.expect("connect");
    let (f, args) = register_spec(&mut client, "sleep:150").await.expect("register");
    let ids = client
        .execute_batch(api::ExecuteBatchRequest {
            tasks: vec![api::ExecuteRequest { function_id: f, args }; 40],
        })
        .await
        .expect("submit")
        .into_inner()
        .task_ids;
    wait_until(&cluster, Duration::from_secs(10), "some tasks to finish", |i| {
        i.counters.is_some_and(|c| c.completed >= 4)
    })
    .await;
    cluster.restart_dispatcher().await.expect("restart");
    // The new dispatcher recovered what was unfinished; its workers came back by themselves.
    cluster
        .wait_for_workers(2, Duration::from_secs(15))
        .await
        .expect("workers reconnect");
    let mut client = connect(&cluster.grpc_url()).await.expect("reconnect");
    let mut done = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while done.len() < ids.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} finished; logs in {}",
            done.len(),
            ids.len(),
            cluster.log_dir().display()
        );
        for id in &ids {
            let t = client
                .get_result(api::GetResultRequest { task_id: *id })
                .await
                .expect("get")
                .into_inner()
                .task
                .expect("task");
            if t.state == api::TaskState::Completed as i32 || t.state == api::TaskState::Failed as i32 {
                done.insert(*id, t);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        done.values().all(|t| t.state == api::TaskState::Completed as i32),
        "every task completes"
    );
    cluster.stop().await.expect("stop");
    purge(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_unavailable_and_the_dispatcher_recovers() {
    let mut redis = RedisServer::start(true).expect("redis-server");
    let spec = ClusterSpec::new(Mode::Pull, 1, 2)
        .store(redis.url())
        .label("redis-outage");
    let cluster = Cluster::start(spec).await.expect("cluster");
    let mut client = connect(&cluster.grpc_url()).await.expect("connect");
    let (f, args) = register_spec(&mut client, "sleep:200").await.expect("register");
    let before = client
        .execute_batch(api::ExecuteBatchRequest {
            tasks: vec![
                api::ExecuteRequest {
                    function_id: f,
                    args: args.clone()
                };
                4
            ],
        })
        .await
        .expect("submit")
        .into_inner()
        .task_ids;

    redis.stop();
    let refused = client
        .execute(api::ExecuteRequest {
            function_id: f,
            args: args.clone(),
        })
        .await
        .expect_err("store is down");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("nothing was submitted") && refused.message().contains("submitting again is safe"),
        "{}",
        refused.message()
    );
    let status = client
        .get_status(api::GetStatusRequest { task_id: before[0] })
        .await
        .expect_err("store is down");
    assert_eq!(status.code(), tonic::Code::Unavailable);

    redis.restart().expect("redis back");
    // Outcomes decided while Redis was down were held and are written now.
    let outcome = run_batch(&client, vec![(f, args); 4], 4, Duration::from_secs(30))
        .await
        .expect("works again");
    assert_eq!(outcome.completed, 4);
    let mut watch = client
        .watch_results(api::WatchResultsRequest {
            task_ids: before.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    let mut seen = 0;
    while let Some(msg) = futures::StreamExt::next(&mut watch).await {
        let msg = msg.expect("watch message");
        assert!(msg.tasks.iter().all(|t| t.state == api::TaskState::Completed as i32));
        seen += msg.tasks.len();
    }
    assert_eq!(seen, before.len());
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_first_waits_for_its_dispatcher() {
    let port = volley_testbed::free_port().expect("port");
    let log = std::env::temp_dir().join(format!("volley-early-worker-{}.log", std::process::id()));
    let mut worker = tokio::process::Command::new(volley_testbed::binaries::path("worker").expect("worker binary"))
        .args([
            "2",
            &format!("tcp://127.0.0.1:{port}"),
            "--mode",
            "push",
            "--name",
            "early",
        ])
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).expect("log"))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn worker");
    let says_retrying = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("not reachable") && text.contains("retrying")
    };
    for _ in 0..100 {
        if says_retrying() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        says_retrying(),
        "the worker says it is retrying:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let spec = ClusterSpec::new(Mode::Push, 0, 1)
        .worker_port(port)
        .label("early-worker");
    let mut cluster = Cluster::start(spec).await.expect("cluster");
    cluster
        .wait_for_workers(1, Duration::from_secs(10))
        .await
        .expect("the early worker registers");
    let mut client = connect(&cluster.grpc_url()).await.expect("connect");
    let (f, args) = register_spec(&mut client, "noop").await.expect("register");
    assert_eq!(
        run_batch(&client, vec![(f, args); 10], 10, Duration::from_secs(10))
            .await
            .expect("batch")
            .completed,
        10
    );
    cluster.stop().await.expect("stop");
    let _ = tokio::time::timeout(Duration::from_secs(5), worker.wait()).await;
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_forgets_finished_tasks_after_their_ttl_and_only_then() {
    let url = redis_url();
    let prefix = unique_prefix("ttl");
    let spec = ClusterSpec::new(Mode::Local, 0, 2)
        .store(url.as_str())
        .args(["--redis-prefix", prefix.as_str(), "--redis-finished-ttl", "1"])
        .label("redis-ttl");
    let cluster = Cluster::start(spec).await.expect("cluster");
    let mut client = connect(&cluster.grpc_url()).await.expect("connect");
    let (noop, args) = register_spec(&mut client, "noop").await.expect("register");
    let (sleep, _) = register_spec(&mut client, "sleep:3000").await.expect("register");
    let long = client
        .execute(api::ExecuteRequest {
            function_id: sleep,
            args: String::new(),
        })
        .await
        .expect("submit")
        .into_inner()
        .task_id;
    let outcome = run_batch(&client, vec![(noop, args); 20], 10, Duration::from_secs(10))
        .await
        .expect("batch");
    assert_eq!(outcome.completed, 20);

    let redis = redis::Client::open(url.as_str()).expect("url");
    let mut conn = redis.get_multiplexed_async_connection().await.expect("redis");
    let ttl = |id: u64| redis::cmd("TTL").arg(format!("{prefix}task:{id}")).to_owned();
    let finished = outcome.tasks[0].task_id;
    let t: i64 = ttl(finished).query_async(&mut conn).await.expect("TTL");
    assert!((0..=1).contains(&t), "a finished task expires within 1 s, TTL {t}");
    let t: i64 = ttl(long).query_async(&mut conn).await.expect("TTL");
    assert_eq!(t, -1, "an unfinished task never expires");

    tokio::time::sleep(Duration::from_millis(2200)).await;
    let gone = client
        .get_status(api::GetStatusRequest { task_id: finished })
        .await
        .expect_err("expired");
    assert_eq!(gone.code(), tonic::Code::NotFound, "{gone:?}");
    let running = client
        .get_status(api::GetStatusRequest { task_id: long })
        .await
        .expect("the running task is kept")
        .into_inner();
    assert_eq!(running.state, api::TaskState::Running as i32);
    cluster.stop().await.expect("stop");
    purge(&url, &prefix).await;
}

/// A stalled worker only delays itself: with one push worker SIGSTOPped while large tasks
/// are pushed to it, the others keep completing theirs with no pause as long as a
/// heartbeat interval, until the stalled one is declared dead and its tasks requeued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_push_worker_delays_only_itself() {
    const HEARTBEAT_MS: u64 = 500;
    let cluster = Cluster::start(
        ClusterSpec::new(Mode::Push, 3, 1)
            .label("stall-push")
            .args(["--heartbeat-ms", &HEARTBEAT_MS.to_string()]),
    )
    .await
    .expect("cluster");
    cluster.signal_worker(0, Signal::SIGSTOP).expect("SIGSTOP worker-0");
    let mut client = connect(&cluster.grpc_url()).await.expect("connect");
    let payload = "x".repeat(256 * 1024);
    let (echo, args) = register_spec(&mut client, &format!("echo:{payload}"))
        .await
        .expect("register");

    // 4 tasks of 256 KB every 100 ms for 3 s: work keeps coming for every worker.
    let started = std::time::Instant::now();
    let mut batches = Vec::new();
    while started.elapsed() < Duration::from_secs(3) {
        let (client, args) = (client.clone(), args.clone());
        batches.push(tokio::spawn(async move {
            run_batch(&client, vec![(echo, args); 4], 4, Duration::from_secs(60)).await
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let submitted_until_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as u64;
    let mut tasks = Vec::new();
    for b in batches {
        let outcome = b.await.expect("join").expect("every task finished");
        assert_eq!(outcome.failed, 0, "logs in {}", cluster.log_dir().display());
        tasks.extend(outcome.tasks);
    }
    assert!(
        tasks.iter().all(|t| t.result.len() == args.len()),
        "every echo came back whole"
    );
    let mut others: Vec<u64> = tasks
        .iter()
        .filter(|t| !t.worker.starts_with("worker-0#") && t.completed_us <= submitted_until_us)
        .map(|t| t.completed_us)
        .collect();
    others.sort_unstable();
    assert!(others.len() > 40, "the healthy workers ran {} tasks", others.len());
    let longest_pause_ms = others.windows(2).map(|w| (w[1] - w[0]) / 1000).max().unwrap_or(0);
    assert!(
        longest_pause_ms < HEARTBEAT_MS,
        "the healthy workers paused {longest_pause_ms} ms while worker-0 was stalled; logs in {}",
        cluster.log_dir().display()
    );
    let c = cluster.info().await.expect("info").counters.expect("counters");
    assert!(c.workers_lost >= 1, "the stalled worker was declared dead: {c:?}");
    cluster.signal_worker(0, Signal::SIGCONT).expect("SIGCONT");
    cluster.stop().await.expect("stop");
}

/// A TCP relay in front of Redis that, once muted, passes requests on but never their
/// replies: the connection closes as the reply arrives, the way a Redis killed between
/// applying a write and answering it looks to its client. While muted it also refuses
/// new connections.
struct ReplyEater {
    port: u16,
    muted: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl ReplyEater {
    async fn start(upstream: u16) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let muted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = muted.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (mut client_rx, mut client_tx) = client.into_split();
                let (mut server_rx, mut server_tx) = server.into_split();
                // Set before the client sees its connection close: nothing it sends after
                // that reaches Redis.
                let eaten = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let stop = eaten.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = client_rx.read(&mut buf).await {
                        if n == 0 || stop.load(Ordering::SeqCst) || server_tx.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let flag = flag.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = server_rx.read(&mut buf).await {
                        if flag.load(Ordering::SeqCst) {
                            eaten.store(true, Ordering::SeqCst);
                            break;
                        }
                        if n == 0 || client_tx.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { port, muted, task }
    }

    fn mute(&self, on: bool) {
        self.muted.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for ReplyEater {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_redis_applied_but_never_answered_leaves_nothing_behind() {
    use volley_dispatcher::store::redis::RedisStore;
    use volley_dispatcher::store::{Submission, TaskStore};
    use volley_proto::ids::FunctionId;

    let redis = RedisServer::start(false).expect("redis-server");
    let port: u16 = redis
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next()?.parse().ok())
        .expect("port");
    let relay = ReplyEater::start(port).await;
    let store = RedisStore::connect(&format!("redis://127.0.0.1:{}/0", relay.port), "eaten:")
        .await
        .expect("connect through the relay");
    let direct = RedisStore::connect(&redis.url(), "eaten:").await.expect("connect");
    let submission = |i: u64| Submission {
        function_id: FunctionId(1),
        args: format!("{{\"i\":{i}}}"),
        submitted_us: 1,
    };
    let kept = store.enqueue(&[submission(0), submission(1)]).await.expect("enqueue");

    relay.mute(true);
    store
        .enqueue(&[submission(2), submission(3), submission(4)])
        .await
        .expect_err("the reply never came");
    // Redis applied it: without a withdrawal these three would stay QUEUED for ever.
    assert_eq!(direct.unfinished_count().await.expect("count"), 5);

    relay.mute(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ids: Vec<u64> = direct
            .all_tasks()
            .await
            .expect("tasks")
            .iter()
            .map(|t| t.id.0)
            .collect();
        if ids == kept.iter().map(|t| t.0).collect::<Vec<_>>() && direct.unfinished_count().await.expect("count") == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the failed submission is still stored: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    direct.purge().await.expect("purge");
}
