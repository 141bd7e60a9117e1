use super::*;
use crate::store::memory::MemoryStore;
use volley_proto::connection::WorkerConnection;

async fn recv(worker: &mut WorkerConnection) -> ToWorker {
    tokio::time::timeout(Duration::from_secs(5), worker.recv())
        .await
        .expect("a frame within 5 s")
        .expect("a decodable frame")
}

/// A link with one connected worker, and that worker's identity on it.
async fn linked_worker() -> (WorkerLink, WorkerConnection, PeerId) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let shared = Arc::new(Shared::new(Arc::new(MemoryStore::new(10)), 10, 10));
    let mut link = start(
        listener,
        RouterLimits::default(),
        shared,
        &TaskTracker::new(),
        CancellationToken::new(),
    )
    .unwrap();
    let timeout = Duration::from_secs(5);
    let mut worker = WorkerConnection::connect(&link.endpoint, timeout).await.unwrap();
    worker.send(&FromWorker::Heartbeat { in_flight: 0 }).await.unwrap();
    let peer = match tokio::time::timeout(timeout, link.inbound.next()).await.unwrap() {
        Some(Inbound::Message(peer, _)) => peer,
        other => panic!("expected the worker's heartbeat, got {other:?}"),
    };
    (link, worker, peer)
}

#[tokio::test]
async fn a_worker_sent_frames_since_the_last_round_gets_no_heartbeat() {
    let (mut link, mut worker, peer) = linked_worker().await;

    let tasks = ToWorker::Tasks(vec![TaskAssignment {
        task_id: volley_proto::ids::TaskId(1),
        attempt: 1,
        job: volley_proto::function::Job::Noop,
        report_start: false,
    }]);
    link.outgoing.send(&peer, &tasks);
    // The round after a frame skips the worker; the one after that does not.
    link.outgoing.heartbeat([&peer]);
    link.outgoing.heartbeat([&peer]);
    assert_eq!(recv(&mut worker).await, tasks);
    assert_eq!(recv(&mut worker).await, ToWorker::Heartbeat);
    let more = tokio::time::timeout(Duration::from_millis(200), worker.recv()).await;
    assert!(more.is_err(), "one heartbeat in two rounds, got {more:?}");
}

#[tokio::test]
async fn a_batch_over_the_frame_limit_leaves_in_frames_that_fit() {
    let (mut link, mut worker, peer) = linked_worker().await;
    // 200 tasks of 100 KB: 20 MB, over the 16 MiB frame limit.
    let payload = "x".repeat(100_000);
    let tasks: Vec<_> = (1..=200)
        .map(|i| TaskAssignment {
            task_id: volley_proto::ids::TaskId(i),
            attempt: 1,
            job: volley_proto::function::Job::Echo {
                payload: payload.clone(),
            },
            report_start: false,
        })
        .collect();
    link.outgoing.send_tasks(&peer, &tasks);
    let mut ids = Vec::new();
    let mut frames = 0;
    while ids.len() < 200 {
        match recv(&mut worker).await {
            ToWorker::Tasks(t) => {
                frames += 1;
                ids.extend(t.iter().map(|a| a.task_id.0));
            }
            other => panic!("expected tasks, got {other:?}"),
        }
    }
    assert!(frames >= 2, "{frames} frames");
    assert_eq!(ids, (1..=200).collect::<Vec<_>>(), "every task once, in order");
}

#[test]
fn a_wildcard_bind_is_reported_by_host_name() {
    let name = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    assert_eq!(reachable("tcp://0.0.0.0:5555"), format!("tcp://{name}:5555"));
    assert_eq!(reachable("tcp://[::]:5555"), format!("tcp://{name}:5555"));
    assert_eq!(reachable("tcp://127.0.0.1:5555"), "tcp://127.0.0.1:5555");
    assert_eq!(reachable("tcp://10.1.2.3:7"), "tcp://10.1.2.3:7");
}
