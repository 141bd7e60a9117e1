//! Bad input gets a clear error, is counted, and costs nobody else anything.

use volley_testbed::fixtures as common;

use std::io::Write;
use std::time::Duration;
use volley_client::{connect, register_spec, run_batch};
use volley_proto::api;
use volley_proto::connection::WorkerConnection;
use volley_proto::wire::{self, FromWorker, ToWorker};
use volley_proto::Mode;
use volley_testbed::{Cluster, ClusterSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_get_the_right_status_and_a_useful_message() {
    // No workers and a queue of 3: submissions stay queued, so the bound is reached.
    let spec = ClusterSpec::new(Mode::Push, 0, 1)
        .args(["--max-queued", "3", "-t", "60"])
        .label("grpc-errors");
    let cluster = Cluster::start(spec).await.expect("cluster");
    let mut client = connect(&cluster.grpc_url()).await.expect("connect");
    let (sleep, _) = register_spec(&mut client, "sleep:10").await.expect("register");
    use tonic::Code;
    let register = |name: &str, spec: Option<api::FunctionSpec>| api::RegisterFunctionRequest {
        name: name.into(),
        spec,
    };
    let exec = |function_id: u64, args: &str| api::ExecuteRequest {
        function_id,
        args: args.into(),
    };
    let noop_spec = Some(volley_proto::function::FunctionKind::Noop.to_api());
    let long_sleep = Some(volley_proto::function::FunctionKind::Sleep { ms: 61_000 }.to_api());

    let cases: Vec<(&str, tonic::Status, Code, &str)> = vec![
        (
            "empty name",
            client
                .register_function(register("  ", noop_spec.clone()))
                .await
                .expect_err(""),
            Code::InvalidArgument,
            "name",
        ),
        (
            "no spec",
            client.register_function(register("x", None)).await.expect_err(""),
            Code::InvalidArgument,
            "spec is missing",
        ),
        (
            "sleep past the timeout",
            client.register_function(register("x", long_sleep)).await.expect_err(""),
            Code::InvalidArgument,
            "exceeds",
        ),
        (
            "unknown function",
            client.execute(exec(999, "")).await.expect_err(""),
            Code::NotFound,
            "no function with id 999",
        ),
        (
            "malformed args",
            client.execute(exec(sleep, "{oops")).await.expect_err(""),
            Code::InvalidArgument,
            "not valid JSON",
        ),
        (
            "negative duration",
            client.execute(exec(sleep, r#"{"ms": -1}"#)).await.expect_err(""),
            Code::InvalidArgument,
            "whole number",
        ),
        (
            "absurd duration",
            client
                .execute(exec(sleep, r#"{"ms": 99999999999}"#))
                .await
                .expect_err(""),
            Code::InvalidArgument,
            "exceeds",
        ),
        (
            "unknown argument",
            client.execute(exec(sleep, r#"{"seconds": 1}"#)).await.expect_err(""),
            Code::InvalidArgument,
            "unknown argument",
        ),
        (
            "empty batch",
            client
                .execute_batch(api::ExecuteBatchRequest { tasks: vec![] })
                .await
                .expect_err(""),
            Code::InvalidArgument,
            "no tasks",
        ),
        (
            "batch naming the bad task",
            client
                .execute_batch(api::ExecuteBatchRequest {
                    tasks: vec![exec(sleep, ""), exec(sleep, "[]")],
                })
                .await
                .expect_err(""),
            Code::InvalidArgument,
            "task 1:",
        ),
        (
            "unknown task",
            client
                .get_status(api::GetStatusRequest { task_id: 77 })
                .await
                .expect_err(""),
            Code::NotFound,
            "no task with id 77",
        ),
        (
            "task id zero",
            client
                .get_result(api::GetResultRequest { task_id: 0 })
                .await
                .expect_err(""),
            Code::InvalidArgument,
            "task_id is required",
        ),
        (
            "watching an unknown task",
            client
                .watch_results(api::WatchResultsRequest { task_ids: vec![123456] })
                .await
                .map(|_| ())
                .expect_err(""),
            Code::NotFound,
            "no task with id 123456",
        ),
    ];
    for (what, status, code, text) in cases {
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(
            status.message().contains(text),
            "{what}: message {:?} lacks {text:?}",
            status.message()
        );
    }

    // The bounded queue refuses the whole batch that would overflow it, and says why.
    client
        .execute_batch(api::ExecuteBatchRequest {
            tasks: vec![exec(sleep, ""); 3],
        })
        .await
        .expect("3 fit");
    let full = client.execute(exec(sleep, "")).await.expect_err("queue is full");
    assert_eq!(full.code(), Code::ResourceExhausted);
    assert!(full.message().contains("queue full"), "{}", full.message());
    let info = cluster.info().await.expect("info");
    assert_eq!(info.queued, 3);
    assert_eq!(info.counters.expect("counters").rejected_submissions, 1);
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_faster_than_the_queue_bound_is_held_back_not_dropped() {
    let spec = ClusterSpec::new(Mode::Pull, 2, 1)
        .args(["--max-queued", "50"])
        .label("backpressure");
    let cluster = Cluster::start(spec).await.expect("cluster");
    let mut client = connect(&cluster.grpc_url()).await.expect("connect");
    // 2 ms tasks on 2 slots drain 50 in 50 ms, while the client sends 50 a round trip:
    // it outpaces the bound whatever the machine. Noop tasks drained as fast as they came.
    let (f, args) = register_spec(&mut client, "sleep:2").await.expect("register");
    let outcome = run_batch(&client, vec![(f, args); 1000], 50, Duration::from_secs(60))
        .await
        .expect("batch");
    assert_eq!((outcome.completed, outcome.failed), (1000, 0));
    let c = cluster.info().await.expect("info").counters.expect("counters");
    assert_eq!(c.submitted, 1000, "every task entered exactly once");
    assert!(c.rejected_submissions > 0, "the bound pushed back: {c:?}");
    cluster.stop().await.expect("stop");
}

/// `RegisterFunctionRequest` with its name as raw bytes, to send what a typed client cannot.
#[derive(Clone, PartialEq, prost::Message)]
struct RawRegister {
    #[prost(bytes = "vec", tag = "1")]
    name: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_grpc_requests_are_refused_and_the_dispatcher_keeps_serving() {
    use tonic::Code;
    let cluster = Cluster::start(ClusterSpec::new(Mode::Local, 0, 2).label("grpc-hostile"))
        .await
        .expect("cluster");
    let mut client = connect(&cluster.grpc_url()).await.expect("connect");
    let (echo, _) = register_spec(&mut client, "echo").await.expect("register");
    let exec = |args: String| api::ExecuteRequest {
        function_id: echo,
        args,
    };

    // Invalid UTF-8 where the schema says string: a request that does not parse.
    // gRPC's status-code table maps "error parsing request proto" to INTERNAL.
    let channel = tonic::transport::Endpoint::from_shared(cluster.grpc_url())
        .expect("url")
        .connect()
        .await
        .expect("channel");
    let mut raw = tonic::client::Grpc::new(channel);
    raw.ready().await.expect("ready");
    let status = raw
        .unary(
            tonic::Request::new(RawRegister {
                name: vec![b'f', 0xff, 0xfe, b'n'],
            }),
            tonic::codegen::http::uri::PathAndQuery::from_static("/volley.v1.Dispatcher/RegisterFunction"),
            tonic_prost::ProstCodec::<RawRegister, api::RegisterFunctionResponse>::default(),
        )
        .await
        .expect_err("invalid UTF-8");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(status.message().contains("UTF-8"), "{}", status.message());

    // Args past the per-task limit, and a message past the transport's limit.
    let big = format!("\"{}\"", "x".repeat(volley_dispatcher::api::MAX_ARGS_BYTES + 1024));
    let status = client.execute(exec(big)).await.expect_err("args past the limit");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("exceed the limit"), "{}", status.message());
    let huge = format!("\"{}\"", "x".repeat(8 * 1024 * 1024));
    let status = client.execute(exec(huge)).await.expect_err("8 MiB message");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("too large"), "{}", status.message());

    // A batch past the limit is refused whole, naming the limit.
    let status = client
        .execute_batch(api::ExecuteBatchRequest {
            tasks: vec![exec(String::new()); 100_001],
        })
        .await
        .expect_err("huge batch");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("split it"), "{}", status.message());

    // Nothing was admitted, and the dispatcher still serves.
    let outcome = run_batch(
        &client,
        vec![(echo, "{\"still\":\"here\"}".into()); 50],
        25,
        Duration::from_secs(20),
    )
    .await
    .expect("batch");
    assert_eq!(outcome.completed, 50);
    assert!(outcome.tasks.iter().all(|t| t.result == "{\"still\":\"here\"}"));
    let c = cluster.info().await.expect("info").counters.expect("counters");
    assert_eq!(c.submitted, 50);
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_greeting_and_a_results_flood_cost_nobody_else_anything() {
    use std::io::Read;
    let mut cluster = Cluster::start(ClusterSpec::new(Mode::Push, 1, 2).label("greeting-flood"))
        .await
        .expect("cluster");
    let endpoint = cluster.worker_endpoint().expect("endpoint").to_owned();
    let addr = endpoint.trim_start_matches("tcp://").to_owned();

    // A ZMTP greeting asking for version 1.0 and the CURVE mechanism, then junk.
    let mut stranger = std::net::TcpStream::connect(&addr).expect("tcp");
    stranger
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut greeting = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 1, 0];
    greeting.extend_from_slice(b"CURVE");
    greeting.resize(64, 0);
    greeting.extend_from_slice(&[0x04, 0xff, 0xff, 0xff, 0xff]);
    stranger.write_all(&greeting).expect("write");
    // The dispatcher answers with its own greeting at most, then hangs up (EOF, not the
    // read timeout).
    let mut sink = Vec::new();
    let read = stranger.read_to_end(&mut sink);
    assert!(read.is_ok(), "the connection was left open: {read:?}");
    assert!(sink.len() <= 64, "{} bytes sent to a stranger", sink.len());

    // A registered worker floods results for tasks it never held.
    let mut flooder = WorkerConnection::connect(&endpoint, Duration::from_secs(2))
        .await
        .expect("connect");
    flooder
        .send(&FromWorker::Hello {
            name: "flooder".into(),
            slots: 1,
            pid: 3,
            host: "h".into(),
            version: volley_proto::VERSION.into(),
            expect_mode: None,
            token: None,
            function: None,
            start: None,
        })
        .await
        .expect("hello");
    let welcome = tokio::time::timeout(Duration::from_secs(5), flooder.recv())
        .await
        .expect("answered")
        .expect("welcome");
    assert!(matches!(welcome, ToWorker::Welcome { .. }), "{welcome:?}");
    const FLOOD: u64 = 20_000;
    for batch in 0..FLOOD / 1000 {
        let results = (0..1000)
            .map(|i| wire::TaskResult {
                task_id: volley_proto::ids::TaskId(1_000_000 + batch * 1000 + i),
                attempt: 1,
                outcome: wire::Outcome::Completed("\"forged\"".into()),
                wait_us: 0,
                run_us: 0,
                log: String::new(),
            })
            .collect();
        flooder.send(&FromWorker::Results(results)).await.expect("flood");
    }

    // A fresh worker still joins, and real tasks run with their own results.
    let fresh = cluster.add_worker(2, &[]).await.expect("worker");
    let name = format!("worker-{fresh}");
    common::wait_until(&cluster, Duration::from_secs(10), "a fresh worker", |i| {
        i.workers.iter().any(|w| w.name == name)
    })
    .await;
    let mut client = connect(&cluster.grpc_url()).await.expect("connect");
    let (echo, _) = register_spec(&mut client, "echo").await.expect("register");
    let tasks = (0..300).map(|i| (echo, format!("{{\"i\":{i}}}"))).collect();
    let outcome = run_batch(&client, tasks, 50, Duration::from_secs(20))
        .await
        .expect("batch");
    assert_eq!(outcome.completed, 300);
    assert!(outcome.tasks.iter().all(|t| !t.result.contains("forged")));
    let info = common::wait_until(&cluster, Duration::from_secs(10), "the flood to be counted", |i| {
        i.counters.is_some_and(|c| c.duplicate_results >= FLOOD)
    })
    .await;
    let c = info.counters.expect("counters");
    assert_eq!(c.completed, 300);
    drop(flooder);
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_with_no_worker_says_so_and_how_to_start_one() {
    let cluster = Cluster::start(ClusterSpec::new(Mode::Pull, 0, 1).label("no-workers"))
        .await
        .expect("cluster");
    let out = tokio::process::Command::new(volley_testbed::binaries::path("client").expect("client binary"))
        .args([
            "--dispatcher",
            &cluster.grpc_url(),
            "submit",
            "noop",
            "--count",
            "3",
            "--wait",
        ])
        .args(["--timeout-s", "2"])
        .output()
        .await
        .expect("client runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nothing can finish: {stderr}");
    assert!(stderr.contains("no worker is connected"), "{stderr}");
    let endpoint = cluster.worker_endpoint().expect("endpoint");
    assert!(stderr.contains(&format!("worker 1 {endpoint}")), "{stderr}");
    assert!(stderr.contains("0 of 3 tasks finished"), "{stderr}");
    cluster.stop().await.expect("stop");
}
