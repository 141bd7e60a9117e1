//! Hostile bytes and peers against the real binaries (issue 27): each break found on
//! 2026-12-04 as a regression test, raw sockets where the attack is below the protocol.
//! Memory is judged by the dispatcher's RSS before and after, not by time.

use volley_testbed::fixtures as common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use volley_client::{register_spec, run_batch};
use volley_proto::api;
use volley_proto::connection::WorkerConnection;
use volley_proto::wire::{FromWorker, ToWorker};
use volley_proto::Mode;
use volley_testbed::procstat::rss_bytes;
use volley_testbed::{Cluster, ClusterSpec, RedisServer};

const MIB: u64 = 1024 * 1024;

fn greeting() -> Vec<u8> {
    let mut g = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0];
    g.extend_from_slice(b"NULL");
    g.resize(64, 0);
    g
}

fn ready_dealer() -> Vec<u8> {
    let mut body = vec![5];
    body.extend_from_slice(b"READY");
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&6u32.to_be_bytes());
    body.extend_from_slice(b"DEALER");
    let mut frame = vec![0x04, body.len() as u8];
    frame.extend_from_slice(&body);
    frame
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("tcp");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s
}

/// Greeting and READY both ways; the stream is then a stranger's ZMTP session.
fn shake_hands(addr: &str) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(&greeting()).expect("greeting");
    let mut theirs = [0u8; 64];
    s.read_exact(&mut theirs).expect("their greeting");
    s.write_all(&ready_dealer()).expect("ready");
    let mut header = [0u8; 2];
    s.read_exact(&mut header).expect("their READY");
    let mut body = vec![0u8; header[1] as usize];
    s.read_exact(&mut body).expect("their READY body");
    s
}

/// Whether the dispatcher closed the connection (EOF or reset, not the read timeout).
fn closed(s: &mut TcpStream) -> bool {
    let mut sink = [0u8; 4096];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn rss(cluster: &Cluster) -> u64 {
    rss_bytes(cluster.dispatcher_pid().expect("dispatcher pid")).expect("rss")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_headers_claiming_a_terabyte_cost_nothing_and_lose_nothing() {
    let mut cluster = Cluster::start(ClusterSpec::new(Mode::Push, 1, 2).label("terabyte"))
        .await
        .expect("cluster");
    let addr = cluster
        .worker_endpoint()
        .expect("endpoint")
        .trim_start_matches("tcp://")
        .to_owned();
    let client = cluster.connect().await.expect("client");
    let (sleep, _) = register_spec(&mut client.clone(), "sleep:300").await.expect("register");
    // Acknowledged before the attack, running during it.
    let before = tokio::spawn({
        let client = client.clone();
        async move { run_batch(&client, vec![(sleep, String::new()); 8], 8, Duration::from_secs(30)).await }
    });
    let rss_before = rss(&cluster);

    // The 73 bytes of the report: a greeting, then a command frame claiming 1 TiB.
    let mut s = connect(&addr);
    let mut attack = greeting();
    attack.push(0x06);
    attack.extend_from_slice(&(1u64 << 40).to_be_bytes());
    assert_eq!(attack.len(), 73);
    s.write_all(&attack).expect("write");
    assert!(closed(&mut s), "the connection stayed open");
    // After a full handshake, message frames claiming 1 TiB and u64::MAX.
    for claim in [1u64 << 40, u64::MAX] {
        let mut s = shake_hands(&addr);
        let mut frame = vec![0x02];
        frame.extend_from_slice(&claim.to_be_bytes());
        s.write_all(&frame).expect("write");
        assert!(closed(&mut s), "a {claim}-byte claim left the connection open");
    }
    // Seeded random bytes after a valid greeting and READY.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        let mut s = shake_hands(&addr);
        let junk: Vec<u8> = (0..256)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = s.write_all(&junk);
    }

    cluster.check_dispatcher().expect("the dispatcher survived");
    let outcome = before
        .await
        .expect("join")
        .expect("tasks acknowledged before the attack");
    assert_eq!(outcome.completed, 8, "{outcome:?}");
    let grown = rss(&cluster).saturating_sub(rss_before);
    eprintln!(
        "dispatcher RSS grew {} KiB under the terabyte and junk attacks",
        grown / 1024
    );
    assert!(grown < 64 * MIB, "RSS grew {} MiB", grown / MIB);
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_frames_from_strangers_hold_at_most_their_limit() {
    let cluster = Cluster::start(ClusterSpec::new(Mode::Pull, 1, 1).label("unfinished"))
        .await
        .expect("cluster");
    let addr = cluster
        .worker_endpoint()
        .expect("endpoint")
        .trim_start_matches("tcp://")
        .to_owned();
    let rss_before = rss(&cluster);
    // A stranger may not even start a frame over 64 KiB.
    let mut big = shake_hands(&addr);
    let mut header = vec![0x02];
    header.extend_from_slice(&(1024 * MIB).to_be_bytes());
    big.write_all(&header).expect("write");
    big.write_all(&vec![0u8; 1 << 20]).ok();
    assert!(closed(&mut big), "a 1 GiB frame from a stranger was read");
    // 100 strangers each hold a frame just under the limit, unfinished.
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut s = shake_hands(&addr);
        let mut frame = vec![0x02];
        frame.extend_from_slice(&(64u64 * 1024).to_be_bytes());
        frame.extend_from_slice(&[7u8; 64 * 1024 - 1]);
        s.write_all(&frame).expect("write");
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = rss(&cluster).saturating_sub(rss_before);
    eprintln!(
        "dispatcher RSS grew {} KiB with 100 unfinished 64 KiB frames",
        grown / 1024
    );
    assert!(grown < 64 * MIB, "RSS grew {} MiB", grown / MIB);
    // The real worker is unaffected.
    common::serves_noops(&cluster.connect().await.expect("client"), 100).await;
    drop(held);
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_fields_are_bounded_and_names_are_not_taken_over() {
    let mut cluster = Cluster::start(ClusterSpec::new(Mode::Push, 1, 1).label("hello-bounds"))
        .await
        .expect("cluster");
    cluster
        .wait_for_workers(1, Duration::from_secs(10))
        .await
        .expect("worker");
    let endpoint = cluster.worker_endpoint().expect("endpoint").to_owned();
    let real = cluster.info().await.expect("info").workers[0].clone();
    let hello = |name: String, pid: u32| FromWorker::Hello {
        name,
        slots: 1,
        pid,
        host: "h".into(),
        version: volley_proto::VERSION.into(),
        expect_mode: None,
        token: None,
        function: None,
        start: None,
    };
    let reply =
        |mut conn: WorkerConnection| async move { tokio::time::timeout(Duration::from_secs(5), conn.recv()).await };

    // 5 MiB of name: over what a stranger may send at all; the connection is closed.
    let mut conn = WorkerConnection::connect(&endpoint, Duration::from_secs(2))
        .await
        .expect("connect");
    let _ = conn.send(&hello("n".repeat(5 << 20), 9)).await;
    assert!(matches!(reply(conn).await, Ok(Err(_))), "a 5 MiB Hello was read");
    // A name that would forge a log line, and a live worker's name from another process.
    for name in ["w\nINFO forged".to_owned(), real.name.clone()] {
        let mut conn = WorkerConnection::connect(&endpoint, Duration::from_secs(2))
            .await
            .expect("connect");
        conn.send(&hello(name.clone(), real.pid + 1)).await.expect("send");
        match reply(conn).await {
            Ok(Ok(ToWorker::Reject { reason })) => assert!(!reason.contains('\n'), "{reason}"),
            other => panic!("expected a refusal of {name:?}, got {other:?}"),
        }
    }
    let info = cluster.info().await.expect("ClusterInfo still fits every client");
    assert_eq!(info.workers.len(), 1);
    assert_eq!(info.workers[0].id, real.id, "the real worker kept its registration");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_waiting_in_a_workers_queue_keep_their_lease() {
    let cluster = Cluster::start(
        ClusterSpec::new(Mode::Push, 1, 1)
            .args(["-t", "2"])
            .label("queued-lease"),
    )
    .await
    .expect("cluster");
    let client = cluster.connect().await.expect("client");
    let (sleep, _) = register_spec(&mut client.clone(), "sleep:600").await.expect("register");
    let outcome = run_batch(&client, vec![(sleep, String::new()); 8], 8, Duration::from_secs(30))
        .await
        .expect("batch");
    assert_eq!(outcome.completed, 8, "{:?}", outcome.tasks);
    assert!(outcome.tasks.iter().all(|t| t.attempts == 1), "a task ran twice");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_over_the_frame_limit_reach_a_late_worker() {
    let mut cluster = Cluster::start(
        ClusterSpec::new(Mode::Push, 0, 1)
            .args(["-t", "20"])
            .label("big-frames"),
    )
    .await
    .expect("cluster");
    let client = cluster.connect().await.expect("client");
    let (echo, _) = register_spec(&mut client.clone(), "echo").await.expect("register");
    let payload = format!("\"{}\"", "x".repeat(100_000));
    let batch = tokio::spawn({
        let client = client.clone();
        async move { run_batch(&client, vec![(echo, payload); 200], 50, Duration::from_secs(60)).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.add_worker(4, &[]).await.expect("late worker");
    let outcome = batch.await.expect("join").expect("batch");
    assert_eq!(outcome.completed, 200, "failed: {}", outcome.failed);
    assert!(outcome.tasks.iter().all(|t| t.attempts == 1));
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_never_reuses_a_task_id() {
    let mut redis = RedisServer::start(false).expect("redis-server");
    let cluster = Cluster::start(
        ClusterSpec::new(Mode::Pull, 1, 2)
            .store(redis.url())
            .label("redis-empty"),
    )
    .await
    .expect("cluster");
    let mut client = cluster.connect().await.expect("client");
    let (noop, _) = register_spec(&mut client, "noop").await.expect("register");
    let before = run_batch(&client, vec![(noop, String::new()); 50], 50, Duration::from_secs(20))
        .await
        .expect("batch");
    let highest = before.tasks.iter().map(|t| t.task_id).max().expect("ids");

    redis.restart().expect("restart empty");
    let request = || api::ExecuteBatchRequest {
        tasks: vec![
            api::ExecuteRequest {
                function_id: noop,
                args: String::new(),
            };
            1000
        ],
    };
    // Ids go on past every id handed out, and the loss is reported as DATA_LOSS (nothing
    // submitted) when the dispatcher next asks Redis for ids: within one block of 4096.
    let mut seen = std::collections::HashSet::new();
    let mut data_loss = None;
    for _ in 0..60 {
        match client.execute_batch(request()).await {
            Ok(r) => {
                for id in r.into_inner().task_ids {
                    assert!(id > highest, "id {id} reused (highest before: {highest})");
                    assert!(seen.insert(id), "id {id} handed out twice");
                }
            }
            Err(s) if s.code() == tonic::Code::Unavailable => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(s) => {
                data_loss = Some(s);
                break;
            }
        }
    }
    let status = data_loss.expect("the loss is reported");
    assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");
    assert!(status.message().contains("lost its data"), "{}", status.message());
    assert!(
        seen.len() <= 4096,
        "{} tasks accepted before the loss was seen",
        seen.len()
    );
    let ids = client
        .execute_batch(request())
        .await
        .expect("then it serves")
        .into_inner()
        .task_ids;
    assert!(ids.iter().all(|id| *id > highest && !seen.contains(id)), "{ids:?}");
    let counters = cluster.info().await.expect("info").counters.expect("counters");
    assert_eq!(counters.duplicate_ids, 0, "a reused id reached the core");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_connections_that_never_call_are_closed() {
    let cluster = Cluster::start(
        ClusterSpec::new(Mode::Local, 0, 1)
            .args(["--handshake-timeout-ms", "500"])
            .label("grpc-handshake"),
    )
    .await
    .expect("cluster");
    let addr = cluster.grpc_url().trim_start_matches("http://").to_owned();
    // Silent, preface-only, and half a TLS ClientHello: all closed after the deadline.
    let mut silent = connect(&addr);
    let mut preface = connect(&addr);
    preface.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").expect("preface");
    let mut half_tls = connect(&addr);
    half_tls.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).expect("tls");
    for (what, s) in [
        ("silent", &mut silent),
        ("preface-only", &mut preface),
        ("stalled TLS", &mut half_tls),
    ] {
        assert!(closed(s), "a {what} connection was kept open");
    }
    // A real client is served as before, and stays connected between calls.
    let client = cluster.connect().await.expect("client");
    common::serves_noops(&client, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    common::serves_noops(&client, 10).await;
    cluster.stop().await.expect("stop");
}

#[test]
fn a_refused_token_is_never_echoed() {
    for bin in ["dispatcher", "worker", "client"] {
        let path = volley_testbed::binaries::path(bin).expect("binary");
        let secret = "s3cret with a space";
        let mut cmd = std::process::Command::new(path);
        if bin == "client" {
            cmd.args(["info", "--token", secret]);
        } else {
            cmd.args(["--token", secret]);
        }
        let out = cmd.env_remove("VOLLEY_TOKEN").output().expect("run");
        assert!(!out.status.success(), "{bin} took a token with spaces");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("s3cret"), "{bin} printed the token: {stderr}");
        assert!(stderr.contains("visible ASCII"), "{bin}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_tls_certificate_is_served_with_a_warning() {
    use tokio::io::AsyncBufReadExt;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    let dir = std::env::temp_dir().join(format!("volley-expired-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("key");

    let mut child = tokio::process::Command::new(volley_testbed::binaries::path("dispatcher").expect("binary"))
        .args(["-m", "local", "--grpc", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(&cert_path)
        .arg("--tls-key")
        .arg(&key_path)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("dispatcher");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let warned = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("EXPIRED") {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("a warning within 20 s");
    assert!(warned.contains("2020"), "{warned}");
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_messages_are_bounded_and_shared() {
    let cluster = Cluster::start(ClusterSpec::new(Mode::Push, 1, 2).label("fail-messages"))
        .await
        .expect("cluster");
    let mut client = cluster.connect().await.expect("client");
    let fail = |message: String| api::RegisterFunctionRequest {
        name: "f".into(),
        spec: Some(
            volley_proto::function::FunctionKind::Fail {
                message: message.into(),
            }
            .to_api(),
        ),
    };
    let status = client
        .register_function(fail("m".repeat(8192)))
        .await
        .expect_err("8 KiB message");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("4096 bytes"), "{}", status.message());
    let id = client
        .register_function(fail("m".repeat(4096)))
        .await
        .expect("4 KiB")
        .into_inner()
        .function_id;
    let too_long = format!("{{\"message\": \"{}\"}}", "o".repeat(5000));
    let status = client
        .execute(api::ExecuteRequest {
            function_id: id,
            args: too_long,
        })
        .await
        .expect_err("an 5,000-byte override");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    // 20,000 tasks of the function: the message is shared while they wait, and each
    // reports it once.
    let rss_before = rss(&cluster);
    let outcome = run_batch(
        &client,
        vec![(id, String::new()); 20_000],
        10_000,
        Duration::from_secs(60),
    )
    .await
    .expect("batch");
    assert_eq!(outcome.failed, 20_000);
    assert!(
        outcome.tasks.iter().all(|t| t.error.len() == 4096),
        "the message reaches every task whole"
    );
    let grown = rss(&cluster).saturating_sub(rss_before);
    eprintln!(
        "20,000 failing tasks with a 4 KiB message: dispatcher RSS +{} MiB",
        grown >> 20
    );
    cluster.stop().await.expect("stop");
}
