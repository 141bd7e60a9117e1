//! Fuzzing both ports of a real dispatcher: valid sessions (a worker's ZMTP session, a
//! gRPC call over HTTP/2), mutated at random — bits flipped, bytes overwritten, length
//! fields replaced, chunks cut or repeated — each sent on a fresh connection. The
//! dispatcher must stay up, keep serving real clients and workers, and keep its memory.
//!
//! Seeded and time-bounded: `VOLLEY_FUZZ_SECS` (default 8 per port) and `VOLLEY_FUZZ_SEED`
//! (printed, so a failure can be replayed). `.ci/run` runs it at the default.

use volley_testbed::fixtures as common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use volley_client::{register_spec, run_batch};
use volley_proto::wire::{self, FromWorker, Outcome, TaskResult};
use volley_proto::Mode;
use volley_testbed::procstat::rss_bytes;
use volley_testbed::{Cluster, ClusterSpec};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seed() -> u64 {
    std::env::var("VOLLEY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d_cafe_0001)
}

fn budget() -> Duration {
    let secs = std::env::var("VOLLEY_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    Duration::from_secs(secs)
}

fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut b = valid.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(b.len());
                let n = rng.below(16).min(b.len() - i);
                for x in &mut b[i..i + n] {
                    *x = rng.next() as u8;
                }
            }
            2 => {
                // A length field claiming anything at all.
                let i = rng.below(b.len());
                let claim = match rng.below(3) {
                    0 => rng.next(),
                    1 => u64::MAX,
                    _ => 1 << rng.below(63),
                };
                let mut field = vec![[0x02u8, 0x06, 0x00, 0x01][rng.below(4)]];
                field.extend_from_slice(&claim.to_be_bytes());
                b.splice(i..i, field);
            }
            3 => b.truncate(rng.below(b.len()) + 1),
            4 => {
                let i = rng.below(b.len());
                let n = rng.below(64).min(b.len() - i);
                let chunk = b[i..i + n].to_vec();
                b.splice(i..i, chunk);
            }
            _ => b.extend((0..rng.below(256)).map(|_| rng.next() as u8)),
        }
        if b.is_empty() {
            b.push(0);
        }
    }
    b
}

/// Sends each input on its own connection, reading whatever comes back for a moment.
fn fire(addr: &str, input: &[u8]) {
    let Ok(mut s) = TcpStream::connect(addr) else { return };
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let _ = s.write_all(input);
    let mut sink = [0u8; 4096];
    let _ = s.read(&mut sink);
}

fn zmtp_frame(out: &mut Vec<u8>, flags: u8, body: &[u8]) {
    if body.len() > 255 {
        out.push(flags | 0x02);
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    } else {
        out.push(flags);
        out.push(body.len() as u8);
    }
    out.extend_from_slice(body);
}

fn worker_session() -> Vec<u8> {
    let mut s = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0];
    s.extend_from_slice(b"NULL");
    s.resize(64, 0);
    let mut ready = vec![5];
    ready.extend_from_slice(b"READY");
    ready.push(11);
    ready.extend_from_slice(b"Socket-Type");
    ready.extend_from_slice(&6u32.to_be_bytes());
    ready.extend_from_slice(b"DEALER");
    zmtp_frame(&mut s, 0x04, &ready);
    let messages = [
        FromWorker::Hello {
            name: "fuzz".into(),
            slots: 2,
            pid: 1,
            host: "h".into(),
            version: volley_proto::VERSION.into(),
            expect_mode: None,
            token: None,
            function: None,
            start: None,
        },
        FromWorker::Ready { credits: 4 },
        FromWorker::Results(vec![TaskResult {
            task_id: volley_proto::ids::TaskId(1),
            attempt: 1,
            outcome: Outcome::Completed("null".into()),
            wait_us: 1,
            run_us: 1,
            log: String::new(),
        }]),
        FromWorker::Heartbeat { in_flight: 0 },
        FromWorker::Goodbye { reason: "bye".into() },
    ];
    for m in &messages {
        zmtp_frame(&mut s, 0, &wire::encode(m).expect("encode"));
    }
    s
}

fn h2_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HPACK block for a gRPC POST to `path`: literals only, no Huffman, no table.
fn grpc_headers(path: &str) -> Vec<u8> {
    let mut h = vec![0x83, 0x86, 0x04, path.len() as u8];
    h.extend_from_slice(path.as_bytes());
    for (name, value) in [("content-type", "application/grpc"), ("te", "trailers")] {
        h.push(0x00);
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(value.len() as u8);
        h.extend_from_slice(value.as_bytes());
    }
    h
}

fn grpc_session() -> Vec<u8> {
    let mut s = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2_frame(&mut s, 0x4, 0, 0, &[]);
    h2_frame(&mut s, 0x1, 0x4, 1, &grpc_headers("/volley.v1.Dispatcher/ClusterInfo"));
    h2_frame(&mut s, 0x0, 0x1, 1, &[0, 0, 0, 0, 0]);
    h2_frame(&mut s, 0x1, 0x4, 3, &grpc_headers("/volley.v1.Dispatcher/GetStatus"));
    h2_frame(&mut s, 0x0, 0x1, 3, &[0, 0, 0, 0, 2, 0x08, 0x01]);
    s
}

async fn survive(cluster: &mut Cluster) {
    cluster.check_dispatcher().expect("the dispatcher is up");
    common::serves_noops(&cluster.connect().await.expect("client"), 20).await;
}

async fn fuzz(port: &str, valid: Vec<u8>, addr_of: impl Fn(&Cluster) -> String) {
    let mut cluster = Cluster::start(ClusterSpec::new(Mode::Push, 1, 2).label(format!("fuzz-{port}")))
        .await
        .expect("cluster");
    let addr = addr_of(&cluster);
    let pid = cluster.dispatcher_pid().expect("pid");
    let rss_before = rss_bytes(pid).expect("rss");
    let seed = seed();
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut inputs = 0u64;
    // The valid session itself first: it must be taken as it is.
    fire(&addr, &valid);
    while started.elapsed() < budget() {
        let input = mutate(&mut rng, &valid);
        tokio::task::block_in_place(|| fire(&addr, &input));
        inputs += 1;
        if inputs.is_multiple_of(500) {
            survive(&mut cluster).await;
        }
    }
    survive(&mut cluster).await;
    let grown = rss_bytes(pid).expect("rss").saturating_sub(rss_before);
    eprintln!(
        "{port} port: {inputs} mutated sessions (seed {seed}), dispatcher RSS grew {} KiB",
        grown / 1024
    );
    assert!(inputs > 100, "only {inputs} inputs in the time given");
    assert!(grown < 64 << 20, "RSS grew {} MiB", grown >> 20);
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_port_survives_mutated_sessions() {
    fuzz("worker", worker_session(), |c| {
        c.worker_endpoint()
            .expect("endpoint")
            .trim_start_matches("tcp://")
            .to_owned()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_port_survives_mutated_calls() {
    fuzz("gRPC", grpc_session(), |c| {
        c.grpc_url().trim_start_matches("http://").to_owned()
    })
    .await;
}

/// One connection opens 50,000 streams that never finish their request (HEADERS only),
/// and never reads what the dispatcher answers: streams past `--max-streams` are refused,
/// and memory stays bounded during and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_flood_on_one_connection_is_bounded() {
    let mut cluster = Cluster::start(ClusterSpec::new(Mode::Local, 0, 1).label("stream-flood"))
        .await
        .expect("cluster");
    let addr = cluster.grpc_url().trim_start_matches("http://").to_owned();
    let pid = cluster.dispatcher_pid().expect("pid");
    let rss_before = rss_bytes(pid).expect("rss");
    let mut flood = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2_frame(&mut flood, 0x4, 0, 0, &[]);
    let headers = grpc_headers("/volley.v1.Dispatcher/WatchResults");
    for i in 0..50_000u32 {
        h2_frame(&mut flood, 0x1, 0x4, 2 * i + 1, &headers);
    }
    let mut s = TcpStream::connect(&addr).expect("tcp");
    s.set_write_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let sent = tokio::task::block_in_place(|| s.write_all(&flood));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = rss_bytes(pid).expect("rss").saturating_sub(rss_before);
    drop(s);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_bytes(pid).expect("rss").saturating_sub(rss_before);
    eprintln!(
        "50,000 HEADERS-only streams ({}): RSS +{} KiB during, +{} KiB after close",
        if sent.is_ok() { "all sent" } else { "connection cut" },
        during / 1024,
        after / 1024
    );
    assert!(during < 100 << 20, "RSS grew {} MiB", during >> 20);
    survive(&mut cluster).await;
    cluster.stop().await.expect("stop");
}

/// A client that never reads: its window is zero, so no response can leave, and it asks
/// for a 1 MiB result on as many streams as the dispatcher allows. What waits is bounded
/// by `--max-streams` × the message, on one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_holds_a_bounded_amount() {
    let mut cluster = Cluster::start(ClusterSpec::new(Mode::Local, 0, 1).label("never-reads"))
        .await
        .expect("cluster");
    let mut client = cluster.connect().await.expect("client");
    let (echo, _) = register_spec(&mut client, "echo").await.expect("register");
    let payload = format!("\"{}\"", "x".repeat(1_000_000));
    let outcome = run_batch(&client, vec![(echo, payload)], 1, Duration::from_secs(20))
        .await
        .expect("a 1 MB result");
    let task = outcome.tasks[0].task_id;
    let addr = cluster.grpc_url().trim_start_matches("http://").to_owned();
    let pid = cluster.dispatcher_pid().expect("pid");
    let rss_before = rss_bytes(pid).expect("rss");

    let mut attack = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: nothing may be sent on any stream.
    h2_frame(&mut attack, 0x4, 0, 0, &[0x00, 0x04, 0, 0, 0, 0]);
    let headers = grpc_headers("/volley.v1.Dispatcher/GetResult");
    let mut request = vec![0u8, 0, 0, 0, 0];
    let mut field = vec![0x08];
    let mut id = task;
    while id >= 0x80 {
        field.push((id as u8) | 0x80);
        id >>= 7;
    }
    field.push(id as u8);
    request[4] = field.len() as u8;
    request.extend_from_slice(&field);
    for i in 0..2_000u32 {
        h2_frame(&mut attack, 0x1, 0x4, 2 * i + 1, &headers);
        h2_frame(&mut attack, 0x0, 0x1, 2 * i + 1, &request);
    }
    let mut s = TcpStream::connect(&addr).expect("tcp");
    s.set_write_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let _ = tokio::task::block_in_place(|| s.write_all(&attack));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = rss_bytes(pid).expect("rss").saturating_sub(rss_before);
    drop(s);
    eprintln!(
        "a never-reading client asking 2,000 times for a 1 MB result: RSS +{} MiB",
        held >> 20
    );
    assert!(held < 160 << 20, "RSS grew {} MiB", held >> 20);
    cluster.check_dispatcher().expect("up");
    cluster.stop().await.expect("stop");
}
