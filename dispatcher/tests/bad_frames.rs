//! Garbage on the worker port is dropped and counted, and costs nobody else anything.

mod common;

use common::{next, rejected, Dispatcher};
use std::io::Write;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use volley_proto::connection::WorkerConnection;
use volley_proto::function::FunctionKind;
use volley_proto::wire::{self, FromWorker};
use volley_proto::Mode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_worker_port_is_dropped_and_counted() {
    let mut d = Dispatcher::start(Mode::Push, |_| {}).await;
    let endpoint = d.endpoint();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(volley_worker::run(
        volley_worker::WorkerConfig::new(2, endpoint.clone()),
        stop.clone(),
    ));
    let addr = endpoint.trim_start_matches("tcp://").to_owned();

    // Raw TCP that never speaks ZMTP.
    let mut raw = std::net::TcpStream::connect(&addr).expect("tcp");
    raw.write_all(b"GET / HTTP/1.1\r\nHost: volley\r\n\r\n\xff\x00\x13garbage")
        .expect("write");

    // A real ZeroMQ peer sending undecodable frames and another protocol version.
    let mut peer = WorkerConnection::connect(&endpoint, Duration::from_secs(2))
        .await
        .expect("connect");
    for junk in [vec![], vec![0xff; 9], b"not postcard at all".to_vec()] {
        peer.send_frame(junk).await.expect("send");
    }
    let future = common::hello("from-the-future", 1);
    peer.send_frame(wire::encode_with_version(wire::PROTOCOL_VERSION + 1, &future).expect("encode"))
        .await
        .expect("send");
    let reason = rejected(next(&mut peer).await);
    assert!(reason.contains("protocol version"), "{reason}");

    // Results for tasks it never held, from a peer that never registered.
    peer.send(&FromWorker::Results(vec![wire::TaskResult {
        task_id: volley_proto::ids::TaskId(424242),
        attempt: 1,
        outcome: wire::Outcome::Completed("null".into()),
        wait_us: 0,
        run_us: 0,
        log: String::new(),
    }]))
    .await
    .expect("send");
    // A worker announcing absurd slots is refused.
    let mut greedy = WorkerConnection::connect(&endpoint, Duration::from_secs(2))
        .await
        .expect("connect");
    for slots in [0, 1_000_000] {
        greedy
            .send(&common::hello(&format!("greedy-{slots}"), slots))
            .await
            .expect("send");
        let reason = rejected(next(&mut greedy).await);
        assert!(reason.contains("slots"), "{reason}");
    }

    // Everyone else is still served.
    let noop = d.register(FunctionKind::Noop).await;
    assert_eq!(d.run(noop, 200).await, 200);
    let info = d
        .wait_for("frames to be counted", Duration::from_secs(5), |i| {
            i.counters.as_ref().is_some_and(|c| c.dropped_frames >= 4)
        })
        .await;
    let c = info.counters.expect("counters");
    assert!(c.duplicate_results >= 1, "{c:?}");
    assert_eq!(info.workers.len(), 1, "only the real worker is registered");
    drop(raw);
    stop.cancel();
    worker.await.expect("worker task").expect("worker exits cleanly");
    d.stop().await;
}
