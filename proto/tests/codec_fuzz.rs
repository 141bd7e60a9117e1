//! Property tests of the worker-protocol decoder: whatever bytes a peer sends, decoding
//! returns an error or a message, never panics; every message survives a round trip.

use proptest::prelude::*;
use volley_proto::auth::Token;
use volley_proto::function::Job;
use volley_proto::ids::{TaskId, WorkerId};
use volley_proto::wire::{self, FromWorker, Outcome, StartReport, TaskAssignment, TaskResult, ToWorker};
use volley_proto::Mode;

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Local), Just(Mode::Pull), Just(Mode::Push)]
}

fn job() -> impl Strategy<Value = Job> {
    prop_oneof![
        Just(Job::Noop),
        any::<u64>().prop_map(|ms| Job::Sleep { ms }),
        any::<u64>().prop_map(|ms| Job::Spin { ms }),
        ".{0,64}".prop_map(|payload| Job::Echo { payload }),
        ".{0,64}".prop_map(|message: String| Job::Fail {
            message: message.into()
        }),
    ]
}

fn result() -> impl Strategy<Value = TaskResult> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<bool>(),
        ".{0,32}",
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(id, attempt, ok, text, wait_us, run_us)| TaskResult {
            task_id: TaskId(id),
            attempt,
            outcome: if ok {
                Outcome::Completed(text)
            } else {
                Outcome::Failed(text)
            },
            wait_us,
            run_us,
            log: String::new(),
        })
}

fn from_worker() -> impl Strategy<Value = FromWorker> {
    prop_oneof![
        (
            ".{0,32}",
            any::<u32>(),
            any::<u32>(),
            ".{0,32}",
            ".{0,8}",
            proptest::option::of(mode()),
            proptest::option::of("[!-~]{1,64}"),
            proptest::option::of(".{0,32}"),
            proptest::option::of(any::<[u64; 4]>())
        )
            .prop_map(
                |(name, slots, pid, host, version, expect_mode, token, function, start)| FromWorker::Hello {
                    name,
                    slots,
                    pid,
                    host,
                    version,
                    expect_mode,
                    token: token.map(|t| Token::new(t).expect("visible ASCII is a valid token")),
                    function,
                    start: start.map(|[decided_us, spawned_us, init_done_after_us, hello_after_us]| Box::new(
                        StartReport {
                            decided_us,
                            spawned_us,
                            init_done_after_us,
                            runtime: (decided_us % 2 == 0).then_some(volley_proto::wire::RuntimeStart {
                                began_after_us: spawned_us / 2,
                                up_after_us: spawned_us,
                            }),
                            code: None,
                            hello_after_us,
                        }
                    )),
                }
            ),
        any::<u32>().prop_map(|credits| FromWorker::Ready { credits }),
        proptest::collection::vec(result(), 0..32).prop_map(FromWorker::Results),
        proptest::collection::vec((any::<u64>().prop_map(TaskId), any::<u32>()), 0..32).prop_map(FromWorker::Started),
        any::<u32>().prop_map(|in_flight| FromWorker::Heartbeat { in_flight }),
        ".{0,32}".prop_map(|reason| FromWorker::Goodbye { reason }),
    ]
}

fn to_worker() -> impl Strategy<Value = ToWorker> {
    prop_oneof![
        (any::<u32>(), mode(), any::<u64>(), any::<u32>(), any::<u32>()).prop_map(
            |(id, mode, heartbeat_ms, liveness, prefetch)| {
                ToWorker::Welcome {
                    worker_id: WorkerId(id),
                    mode,
                    heartbeat_ms,
                    liveness,
                    prefetch,
                }
            }
        ),
        proptest::collection::vec(
            (any::<u64>(), any::<u32>(), job(), any::<bool>()).prop_map(|(id, attempt, job, report_start)| {
                TaskAssignment {
                    task_id: TaskId(id),
                    attempt,
                    job,
                    report_start,
                }
            }),
            0..32
        )
        .prop_map(ToWorker::Tasks),
        Just(ToWorker::Heartbeat),
        ".{0,32}".prop_map(|reason| ToWorker::Reject { reason }),
        Just(ToWorker::Shutdown),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = wire::decode::<FromWorker>(&bytes);
        let _ = wire::decode::<ToWorker>(&bytes);
    }

    #[test]
    fn a_valid_version_prefix_with_garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut frame = vec![wire::PROTOCOL_VERSION as u8];
        frame.extend(tail);
        let _ = wire::decode::<FromWorker>(&frame);
        let _ = wire::decode::<ToWorker>(&frame);
    }

    #[test]
    fn worker_messages_round_trip(msg in from_worker()) {
        let frame = wire::encode(&msg).unwrap();
        prop_assert_eq!(wire::decode::<FromWorker>(&frame).unwrap(), msg);
        // Every strict prefix is an error, never a different message.
        for cut in 0..frame.len() {
            prop_assert!(wire::decode::<FromWorker>(&frame[..cut]).is_err());
        }
    }

    #[test]
    fn dispatcher_messages_round_trip(msg in to_worker()) {
        let frame = wire::encode(&msg).unwrap();
        prop_assert_eq!(wire::decode::<ToWorker>(&frame).unwrap(), msg);
    }
}
