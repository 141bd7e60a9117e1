//! The dispatcher↔worker protocol: messages named by direction, and their codec.
//!
//! A frame is a postcard-encoded [`Envelope`]: the protocol version first (so a peer of
//! another version is recognised before its message is parsed), then the message.
//! Messages carry batches: whatever is ready is sent together, with no timer.

use crate::auth::Token;
use crate::function::{CodeDigest, Job};
use crate::ids::{TaskId, WorkerId};
use crate::Mode;
use serde::{Deserialize, Serialize};

/// Bumped whenever a message changes shape or meaning (4: results return credits;
/// 5: `Hello.function`; 6: `Hello.start`; 7: user code, `ToWorker::Code`, task logs).
pub const PROTOCOL_VERSION: u16 = 8;

/// The most code one [`ToWorker::Code`] frame carries: a function's code is sent in
/// as many such chunks as it needs, well inside the frame limit.
pub const CODE_CHUNK_BYTES: usize = 1024 * 1024;

/// How the error of a task whose function's code failed to load begins: the dispatcher
/// counts these per function.
pub const INIT_FAILED: &str = "init_failed: ";

/// The most of a task's stdout and stderr a worker keeps as its log.
pub const MAX_LOG_BYTES: usize = 64 * 1024;

/// The largest frame either side accepts or sends.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// The largest result or error text one task may return: the same bound as a task's
/// arguments, so a result always fits every client's default 4 MiB message, and a
/// worker cannot break others' result streams with one huge answer.
pub const MAX_RESULT_BYTES: usize = 1024 * 1024;

impl Outcome {
    /// The error, if the task failed.
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Completed(_) => None,
            Outcome::Failed(error) | Outcome::Raised { error, .. } => Some(error),
        }
    }

    /// Replaces an outcome over [`MAX_RESULT_BYTES`] with a failure saying so: what the
    /// dispatcher keeps of a worker's answer.
    pub fn bound(&mut self) {
        let len = match self {
            Outcome::Completed(s) | Outcome::Failed(s) => s.len(),
            Outcome::Raised { error, value } => error.len().max(value.len()),
        };
        if len > MAX_RESULT_BYTES {
            *self = Outcome::Failed(format!(
                "the function's result had {len} bytes; the limit is {MAX_RESULT_BYTES}"
            ));
        }
    }
}

/// What a worker says to the dispatcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// Registration, the first message of every connection.
    Hello {
        /// A name stable across reconnects of one worker process.
        name: String,
        /// Tasks the worker runs at once.
        slots: u32,
        /// The worker's process id, for operators.
        pid: u32,
        /// The worker's host name, for operators.
        host: String,
        /// The worker's release.
        version: String,
        /// The mode the worker was told to expect, if any; a mismatch is rejected.
        expect_mode: Option<Mode>,
        /// The shared token, if the worker was given one; a dispatcher started with
        /// `--token` rejects a missing or wrong one.
        token: Option<Token>,
        /// The one function this worker serves (`worker --function`); `None`: all.
        function: Option<String>,
        /// How this process came to be, when a provisioner started it; sent with the
        /// process's first registration only.
        start: Option<Box<StartReport>>,
    },
    /// Pull mode: the worker can take `credits` more tasks. Sent when a session starts;
    /// after that each result returns its own credit, so no `Ready` follows `Results`.
    Ready {
        /// Additional tasks the worker asks for.
        credits: u32,
    },
    /// Finished tasks; in pull mode, also one credit per result.
    Results(Vec<TaskResult>),
    /// Tasks sent with `report_start` that a slot has begun: the task and its attempt.
    Started(Vec<(TaskId, u32)>),
    /// Liveness, sent every heartbeat interval.
    Heartbeat {
        /// Tasks the worker holds (queued inside it or running).
        in_flight: u32,
    },
    /// The worker leaves; its unfinished tasks should be requeued at once.
    Goodbye {
        /// Why, for the log.
        reason: String,
    },
}

/// A provisioned instance's start, for the cold-start breakdown. The dispatcher's two
/// times are echoed back as it gave them; the worker's are durations on its own monotonic
/// clock, so no two clocks are ever compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartReport {
    /// When the dispatcher decided to start this instance (µs since the epoch, its clock).
    pub decided_us: u64,
    /// When it spawned the process (µs since the epoch, its clock).
    pub spawned_us: u64,
    /// From the process's `main` to the end of its runtime initialisation.
    pub init_done_after_us: u64,
    /// For an instance of a user function, its runtime's start: from `main` to the
    /// runtime's spawn (or, prewarmed, to its being given the code), and to its being up
    /// (READY less the code's loading). The runtime that was ready last, when several.
    pub runtime: Option<RuntimeStart>,
    /// The code the provisioner gave it (`worker --code`), which it holds already: the
    /// dispatcher need not send it again.
    pub code: Option<crate::function::CodeDigest>,
    /// From the process's `main` to sending this `Hello`.
    pub hello_after_us: u64,
}

/// A runtime's start inside a provisioned instance, µs after the instance's `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeStart {
    /// The runtime was spawned, forked, or (prewarmed) given its code.
    pub began_after_us: u64,
    /// It was up: its interpreter started, ready for code.
    pub up_after_us: u64,
}

/// What the dispatcher says to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Registration accepted.
    Welcome {
        /// The id of this registration.
        worker_id: WorkerId,
        /// The dispatcher's mode.
        mode: Mode,
        /// How often both sides send heartbeats.
        heartbeat_ms: u64,
        /// Heartbeats missed before the peer is considered dead.
        liveness: u32,
        /// Tasks the worker may hold beyond its slots.
        prefetch: u32,
    },
    /// Work to run.
    Tasks(Vec<TaskAssignment>),
    /// A piece of a user function's code, sent before the first task that needs it;
    /// the pieces of one digest arrive in order, `offset` 0 first.
    Code {
        /// The code's SHA-256: the worker checks the whole against it.
        digest: CodeDigest,
        /// The code's whole size.
        total: u64,
        /// Where this piece starts.
        offset: u64,
        /// The piece, at most [`CODE_CHUNK_BYTES`].
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Liveness, sent every heartbeat interval.
    Heartbeat,
    /// Registration refused, or a message not understood; the worker should stop.
    Reject {
        /// What was wrong, in words for the operator.
        reason: String,
    },
    /// The dispatcher is stopping; the worker should exit.
    Shutdown,
}

/// One attempt at one task, sent to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskAssignment {
    /// The task.
    pub task_id: TaskId,
    /// Which attempt this is (1-based); the result must carry it back.
    pub attempt: u32,
    /// What to run.
    pub job: Job,
    /// Say when a slot begins it ([`FromWorker::Started`]): the dispatcher sent it while
    /// every slot was taken, and a task is RUNNING only once it executes.
    pub report_start: bool,
}

/// The outcome of one attempt, sent back by a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The task.
    pub task_id: TaskId,
    /// The attempt this result belongs to.
    pub attempt: u32,
    /// Its result or error.
    pub outcome: Outcome,
    /// Microseconds the task waited inside the worker before a slot took it.
    pub wait_us: u64,
    /// Microseconds the function ran.
    pub run_us: u64,
    /// What a runtime function printed, at most [`MAX_LOG_BYTES`] (empty for built-ins).
    pub log: String,
}

/// A function's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The function returned this JSON text.
    Completed(String),
    /// The function failed with this error.
    Failed(String),
    /// The function raised: the error, and the error as a value of the function's own
    /// serialization (a dill function's pickled exception), which its clients read back.
    Raised {
        /// The error, as [`Outcome::Failed`] holds it.
        error: String,
        /// The error as a value, a JSON text.
        value: String,
    },
}

/// A `ToWorker::Tasks` frame over borrowed tasks: encodes to the same bytes, so a sender
/// can keep its buffer of assignments from one batch to the next.
pub struct TasksRef<'a>(pub &'a [TaskAssignment]);

/// `Tasks`' place among `ToWorker`'s variants; `a_borrowed_tasks_frame_is_the_owned_one`
/// checks it.
const TASKS_VARIANT: u32 = 1;

impl Serialize for TasksRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_variant("ToWorker", TASKS_VARIANT, "Tasks", self.0)
    }
}

#[derive(Serialize)]
struct EnvelopeRef<'a, M> {
    version: u16,
    msg: &'a M,
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The peer speaks another protocol version.
    #[error("protocol version {got} (this side speaks {PROTOCOL_VERSION})")]
    Version {
        /// The version the peer sent.
        got: u16,
    },
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    #[error("frame of {len} bytes exceeds the limit of {MAX_FRAME_BYTES}")]
    TooLarge {
        /// The frame's size.
        len: usize,
    },
    /// The bytes are not a message of this protocol.
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
}

/// The buffer a frame is encoded into starts this large: a task, a result or a
/// heartbeat fits.
const ENCODE_CAPACITY: usize = 128;

/// Encodes a message into one frame.
pub fn encode<M: Serialize>(msg: &M) -> Result<Vec<u8>, CodecError> {
    // Sized for a typical frame up front: grown from empty, it would be reallocated four
    // or five times on the way.
    let bytes = postcard::to_extend(
        &EnvelopeRef {
            version: PROTOCOL_VERSION,
            msg,
        },
        Vec::with_capacity(ENCODE_CAPACITY),
    )?;
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge { len: bytes.len() });
    }
    Ok(bytes)
}

/// Decodes one frame. Never panics; postcard never allocates more than the frame's
/// own length implies, and the frame is bounded by [`MAX_FRAME_BYTES`].
pub fn decode<M: for<'de> Deserialize<'de>>(frame: &[u8]) -> Result<M, CodecError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge { len: frame.len() });
    }
    let (version, rest): (u16, &[u8]) = postcard::take_from_bytes(frame)?;
    if version != PROTOCOL_VERSION {
        return Err(CodecError::Version { got: version });
    }
    let (msg, trailing): (M, &[u8]) = postcard::take_from_bytes(rest)?;
    if !trailing.is_empty() {
        return Err(CodecError::Malformed(postcard::Error::DeserializeBadEncoding));
    }
    Ok(msg)
}

/// Encodes a message as if it came from another protocol version; for tests of
/// version handling.
pub fn encode_with_version<M: Serialize>(version: u16, msg: &M) -> Result<Vec<u8>, CodecError> {
    Ok(postcard::to_stdvec(&EnvelopeRef { version, msg })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_tasks_frame_is_the_owned_one() {
        let (_, to) = samples();
        let tasks: Vec<TaskAssignment> = to
            .into_iter()
            .flat_map(|m| match m {
                ToWorker::Tasks(t) => t,
                _ => Vec::new(),
            })
            .collect();
        assert!(!tasks.is_empty());
        let owned = encode(&ToWorker::Tasks(tasks.clone())).expect("encodes");
        assert_eq!(encode(&TasksRef(&tasks)).expect("encodes"), owned);
        assert_eq!(decode::<ToWorker>(&owned).expect("decodes"), ToWorker::Tasks(tasks));
    }

    fn samples() -> (Vec<FromWorker>, Vec<ToWorker>) {
        let from = vec![
            FromWorker::Hello {
                name: "w-1".into(),
                slots: 4,
                pid: 42,
                host: "h".into(),
                version: "0.1.0".into(),
                expect_mode: Some(Mode::Pull),
                token: Some(Token::new("t0ken").expect("token")),
                function: Some("resize".into()),
                start: Some(Box::new(StartReport {
                    decided_us: 1,
                    spawned_us: 2,
                    init_done_after_us: 250_000,
                    runtime: Some(RuntimeStart {
                        began_after_us: 100,
                        up_after_us: 200_000,
                    }),
                    code: Some(crate::function::CodeDigest([7; 32])),
                    hello_after_us: 250_400,
                })),
            },
            FromWorker::Ready { credits: 3 },
            FromWorker::Results(vec![TaskResult {
                task_id: TaskId(7),
                attempt: 2,
                outcome: Outcome::Failed("boom".into()),
                wait_us: 5,
                run_us: 9,
                log: "hello\n".into(),
            }]),
            FromWorker::Heartbeat { in_flight: 1 },
            FromWorker::Goodbye {
                reason: "SIGTERM".into(),
            },
        ];
        let to = vec![
            ToWorker::Welcome {
                worker_id: WorkerId(3),
                mode: Mode::Push,
                heartbeat_ms: 250,
                liveness: 4,
                prefetch: 8,
            },
            ToWorker::Tasks(vec![TaskAssignment {
                task_id: TaskId(1),
                attempt: 1,
                job: Job::Sleep { ms: 10 },
                report_start: false,
            }]),
            ToWorker::Code {
                digest: CodeDigest::of(b"print(1)"),
                total: 8,
                offset: 0,
                data: b"print(1)".to_vec(),
            },
            ToWorker::Heartbeat,
            ToWorker::Reject { reason: "no".into() },
            ToWorker::Shutdown,
        ];
        (from, to)
    }

    #[test]
    fn every_message_round_trips() {
        let (from, to) = samples();
        for m in from {
            assert_eq!(decode::<FromWorker>(&encode(&m).unwrap()).unwrap(), m);
        }
        for m in to {
            assert_eq!(decode::<ToWorker>(&encode(&m).unwrap()).unwrap(), m);
        }
    }

    #[test]
    fn other_versions_are_named() {
        let frame = encode_with_version(9, &FromWorker::Ready { credits: 1 }).unwrap();
        assert!(matches!(
            decode::<FromWorker>(&frame),
            Err(CodecError::Version { got: 9 })
        ));
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let frame = encode(&FromWorker::Heartbeat { in_flight: 3 }).unwrap();
        for cut in 0..frame.len() {
            assert!(decode::<FromWorker>(&frame[..cut]).is_err());
        }
        let mut trailing = frame.clone();
        trailing.push(0);
        assert!(decode::<FromWorker>(&trailing).is_err());
        // A vector length claiming billions of elements must fail, not allocate.
        let bogus = [PROTOCOL_VERSION as u8, 2, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode::<FromWorker>(&bogus).is_err());
        assert!(decode::<FromWorker>(&[1, 200]).is_err());
    }
}
