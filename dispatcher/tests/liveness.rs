//! Heartbeats and silence on both ends of a worker's connection, on tokio's paused clock:
//! seconds of virtual time pass in milliseconds, and nothing depends on the machine's pace.

mod common;

use common::{registered, Dispatcher};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use volley_proto::connection::{bind_router, RouterReceiver};
use volley_proto::function::FunctionKind;
use volley_proto::ids::WorkerId;
use volley_proto::wire::{self, FromWorker, ToWorker};
use volley_proto::zmtp::RouterLimits;
use volley_proto::Mode;

const HEARTBEAT: Duration = Duration::from_millis(250);
const LIVENESS: u32 = 4;

#[tokio::test(start_paused = true)]
async fn a_silent_worker_is_declared_dead_and_its_task_moves_to_one_that_heartbeats() {
    let mut d = Dispatcher::start(Mode::Push, |c| {
        c.heartbeat = HEARTBEAT;
        c.liveness = LIVENESS;
    })
    .await;
    let endpoint = d.endpoint();
    let (mut mute, _) = registered(&endpoint, "mute", 1).await;
    let noop = d.register(FunctionKind::Noop).await;
    let ids = d.submit(noop, 1).await;
    match common::next_not_heartbeat(&mut mute).await {
        ToWorker::Tasks(tasks) => assert_eq!(tasks[0].task_id.0, ids[0]),
        other => panic!("expected the task, got {other:?}"),
    }

    // A real worker joins; the mute one holds the task and says nothing from now on.
    let stop = CancellationToken::new();
    let mut config = volley_worker::WorkerConfig::new(1, endpoint.clone());
    config.name = "alive".into();
    let worker = tokio::spawn(volley_worker::run(config, stop.clone()));
    let silenced = Instant::now();
    let info = d
        .wait_for("the mute worker to be declared dead", Duration::from_secs(60), |i| {
            i.counters
                .as_ref()
                .is_some_and(|c| c.workers_lost == 1 && c.completed == 1)
        })
        .await;
    let took = silenced.elapsed();
    let limit = HEARTBEAT * LIVENESS;
    assert!(
        took >= limit,
        "declared dead after {took:?}, before the {limit:?} of silence allowed"
    );
    assert!(took <= limit + 3 * HEARTBEAT, "declared dead only after {took:?}");
    assert_eq!(info.workers.len(), 1);
    assert_eq!(info.workers[0].name, "alive");
    assert_eq!(info.counters.expect("counters").requeued, 1);

    // A minute of virtual time: the worker that heartbeats stays registered.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let info = d.info().await;
    assert_eq!(info.workers.len(), 1, "{:?}", info.workers);
    assert_eq!(info.counters.expect("counters").workers_lost, 1);
    stop.cancel();
    worker.await.expect("worker task").expect("worker exits cleanly");
    drop(mute);
    d.stop().await;
}

/// The next `Hello` a fake dispatcher receives, answering heartbeats with nothing.
async fn next_hello(rx: &mut RouterReceiver) -> volley_proto::connection::PeerId {
    loop {
        let (peer, msg) = rx.recv().await.expect("socket");
        if let Ok(FromWorker::Hello { .. }) = msg {
            return peer;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_worker_whose_dispatcher_falls_silent_registers_again() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let router = bind_router(listener, RouterLimits::default(), CancellationToken::new()).expect("router");
    let (mut tx, mut rx) = (router.sender, router.receiver);
    let stop = CancellationToken::new();
    let config = volley_worker::WorkerConfig::new(1, router.endpoint.clone());
    let worker = tokio::spawn(volley_worker::run(config, stop.clone()));

    let heartbeat = Duration::from_millis(100);
    let liveness = 3;
    let peer = next_hello(&mut rx).await;
    tx.admit(&peer);
    let welcome = ToWorker::Welcome {
        worker_id: WorkerId(1),
        mode: Mode::Push,
        heartbeat_ms: heartbeat.as_millis() as u64,
        liveness,
        prefetch: 0,
    };
    let frame = |m: &ToWorker| bytes::Bytes::from(wire::encode(m).expect("encode"));
    tx.send_frame(&peer, frame(&welcome)).await.expect("welcome");

    // Ten seconds of our heartbeats: the worker stays.
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        tokio::select! {
            r = rx.recv() => {
                let (_, msg) = r.expect("socket");
                assert!(!matches!(msg, Ok(FromWorker::Hello { .. })), "registered again while heard");
            }
            _ = tokio::time::sleep(heartbeat) => {
                tx.send_frame(&peer, frame(&ToWorker::Heartbeat)).await.expect("heartbeat");
            }
        }
    }

    // Silence: it gives up on this session after heartbeat × liveness and registers again.
    let silent = Instant::now();
    next_hello(&mut rx).await;
    let took = silent.elapsed();
    let limit = heartbeat * liveness;
    assert!(took >= limit, "gave up after {took:?}, within the {limit:?} allowed");
    assert!(took <= limit + Duration::from_secs(3), "gave up only after {took:?}");
    stop.cancel();
    worker.await.expect("worker task").expect("worker exits cleanly");
}
