//! How an open-loop run's requests reach the dispatcher and its results come back.
//!
//! - [`Transport::Stream`]: one `ExecuteStream` call carries every request
//!   and every result of the run, one HTTP/2 DATA frame each way per request. Answers
//!   come back in request order on the same call, so no task id travels twice and no
//!   task is spawned per request.
//! - [`Transport::StreamWithOutcome`] (`client load`'s default): the same call, asking (`volley-accept:
//!   with-outcome`) that each acceptance wait for the call's next outcome, so a quick
//!   task's acceptance and outcome arrive in one write and wake the generator once. The
//!   generator needs ids only to match outcomes; the price is that a call that breaks
//!   leaves it not knowing whether the requests sent since the last outcome were taken.
//! - [`Transport::Unary`]: an `ExecuteBatch` call per due batch (a new HTTP/2 stream,
//!   headers both ways, a task per call) and one `WatchResults` stream of every
//!   completion: what a stock gRPC client does, kept to measure the difference.
//!
//! Either way a request gets exactly one answer: ids, a refusal, or lost in transit when
//! the connection broke before its answer (then the ledger says it is unknown whether
//! the dispatcher took it).

use super::pacer::Due;
use super::MAX_IN_FLIGHT;
use std::collections::VecDeque;
use tokio::sync::mpsc;
use tonic::Streaming;
use volley_client::Client;
use volley_proto::api::{self, execute_stream_response::Event};

/// How requests travel; see the module's documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// One `ExecuteStream` call for the whole run.
    #[default]
    Stream,
    /// One `ExecuteStream` call, each acceptance sent with the next outcome.
    #[value(name = "stream-with-outcome")]
    #[serde(rename = "stream-with-outcome")]
    StreamWithOutcome,
    /// `ExecuteBatch` per due batch, results from `WatchResults`.
    Unary,
}

impl Transport {
    /// The lower-case name, for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::StreamWithOutcome => "stream-with-outcome",
            Self::Unary => "unary",
        }
    }
}

/// A unary call's answer to the requests of `Due`.
type Answered = (Due, Result<Vec<u64>, tonic::Status>);

/// What came back.
pub enum Reply {
    /// The answer to the request of `Due`: its tasks' ids, or why not. A status with a
    /// source is the transport's failure, not the dispatcher's refusal.
    Answer(Due, Result<Vec<u64>, tonic::Status>),
    /// Tasks of the call that finished (stream only; unary results come from
    /// `WatchResults`).
    Finished(Vec<api::TaskInfo>),
    /// The request of `Due` was never sent: no call could be opened (no dispatcher
    /// reachable), so nothing of it was stored.
    Unsent(Due, String),
    /// The call broke: these requests will never be answered on it.
    Broke {
        /// Why.
        why: String,
        /// Requests sent on it and not answered.
        unanswered: Vec<Due>,
    },
}

/// The run's link to the dispatcher.
pub enum Link {
    /// See [`Transport::Unary`].
    Unary {
        /// Calls in flight.
        in_flight: usize,
        /// Their answers.
        answers: (mpsc::UnboundedSender<Answered>, mpsc::UnboundedReceiver<Answered>),
        /// The calls.
        calls: tokio::task::JoinSet<()>,
    },
    /// See [`Transport::Stream`] and [`Transport::StreamWithOutcome`].
    Stream {
        /// Whether acceptances come with outcomes.
        with_outcome: bool,
        /// Where requests go; `None` after a break until the next send reopens the call.
        requests: Option<mpsc::UnboundedSender<api::ExecuteBatchRequest>>,
        /// The call's events.
        events: Option<Box<Streaming<api::ExecuteStreamResponse>>>,
        /// Requests sent and not yet answered, in order.
        awaiting: VecDeque<Due>,
        /// Requests that could not be sent, and why.
        unsent: VecDeque<(Due, String)>,
    },
}

impl Link {
    /// A link of `transport`; a stream's call is opened now, so a dispatcher that cannot
    /// take it fails the run before it starts.
    pub async fn open(client: &Client, transport: Transport) -> Result<Self, tonic::Status> {
        Ok(match transport {
            Transport::Unary => Self::Unary {
                in_flight: 0,
                answers: mpsc::unbounded_channel(),
                calls: tokio::task::JoinSet::new(),
            },
            Transport::Stream | Transport::StreamWithOutcome => {
                let with_outcome = transport == Transport::StreamWithOutcome;
                let (requests, events) = call(client, with_outcome).await?;
                Self::Stream {
                    with_outcome,
                    requests: Some(requests),
                    events: Some(events),
                    awaiting: VecDeque::new(),
                    unsent: VecDeque::new(),
                }
            }
        })
    }

    /// Whether another request may leave now (unary calls in flight are bounded: an
    /// HTTP/2 connection with thousands of open streams fails as a whole).
    pub fn can_send(&self) -> bool {
        match self {
            Self::Unary { in_flight, .. } => *in_flight < MAX_IN_FLIGHT,
            Self::Stream { .. } => true,
        }
    }

    /// Sends `request`, the requests of `due`. A stream that broke is reopened first; if
    /// it cannot be, the request is answered as lost in transit.
    pub async fn send(&mut self, client: &Client, due: Due, request: api::ExecuteBatchRequest) {
        match self {
            Self::Unary {
                in_flight,
                answers,
                calls,
            } => {
                let (mut client, tx) = (client.clone(), answers.0.clone());
                calls.spawn(async move {
                    let r = client.execute_batch(request).await.map(|r| r.into_inner().task_ids);
                    let _ = tx.send((due, r));
                });
                *in_flight += 1;
            }
            Self::Stream {
                with_outcome,
                requests,
                events,
                awaiting,
                unsent,
            } => {
                // Reopened only once the old call's break was reported (its unanswered
                // requests settled), so answers on the new call never meet old requests.
                if requests.is_none() && events.is_none() {
                    match call(client, *with_outcome).await {
                        Ok((r, e)) => (*requests, *events) = (Some(r), Some(e)),
                        Err(s) => {
                            unsent.push_back((
                                due,
                                format!("no call could be opened: {} ({:?})", s.message(), s.code()),
                            ));
                            return;
                        }
                    }
                }
                if requests.as_ref().is_some_and(|r| r.send(request).is_ok()) {
                    awaiting.push_back(due);
                } else {
                    *requests = None;
                    unsent.push_back((due, "the call had ended".into()));
                }
            }
        }
    }

    /// The next reply; never, while nothing can come.
    pub async fn reply(&mut self) -> Reply {
        match self {
            Self::Unary { in_flight, answers, .. } => match answers.1.recv().await {
                Some((due, r)) => {
                    *in_flight -= 1;
                    Reply::Answer(due, r)
                }
                None => std::future::pending().await,
            },
            Self::Stream {
                requests,
                events,
                awaiting,
                unsent,
                ..
            } => {
                if let Some((due, why)) = unsent.pop_front() {
                    return Reply::Unsent(due, why);
                }
                let broke =
                    |why: String, requests: &mut Option<_>, events: &mut Option<_>, awaiting: &mut VecDeque<Due>| {
                        (*requests, *events) = (None, None);
                        Reply::Broke {
                            why,
                            unanswered: awaiting.drain(..).collect(),
                        }
                    };
                let Some(stream) = events else {
                    if awaiting.is_empty() {
                        return std::future::pending().await;
                    }
                    // Sent while the call could not be reopened.
                    return broke("the call could not be reopened".into(), requests, events, awaiting);
                };
                match stream.message().await {
                    Ok(Some(api::ExecuteStreamResponse { event: Some(event) })) => match event {
                        Event::Finished(w) => Reply::Finished(w.tasks),
                        Event::Accepted(a) => match awaiting.pop_front() {
                            Some(due) => Reply::Answer(due, Ok(a.task_ids)),
                            None => broke("an answer to no request".into(), requests, events, awaiting),
                        },
                        Event::Refused(r) => match awaiting.pop_front() {
                            Some(due) => Reply::Answer(due, Err(tonic::Status::new(r.code.into(), r.message))),
                            None => broke("a refusal of no request".into(), requests, events, awaiting),
                        },
                    },
                    Ok(Some(api::ExecuteStreamResponse { event: None })) => {
                        broke("an empty event".into(), requests, events, awaiting)
                    }
                    Ok(None) => broke("the dispatcher ended the call".into(), requests, events, awaiting),
                    Err(s) => broke(format!("{} ({:?})", s.message(), s.code()), requests, events, awaiting),
                }
            }
        }
    }

    /// Whether results come on the link itself (else from `WatchResults`).
    pub fn carries_results(&self) -> bool {
        matches!(self, Self::Stream { .. })
    }

    /// Ends every call.
    pub fn close(self) {
        if let Self::Unary { mut calls, .. } = self {
            calls.abort_all();
        }
    }

    /// Reaps unary calls that have ended.
    pub fn tidy(&mut self) {
        if let Self::Unary { calls, .. } = self {
            while calls.try_join_next().is_some() {}
        }
    }
}

/// Opens an `ExecuteStream` call: where its requests go, and its events.
async fn call(
    client: &Client,
    with_outcome: bool,
) -> Result<
    (
        mpsc::UnboundedSender<api::ExecuteBatchRequest>,
        Box<Streaming<api::ExecuteStreamResponse>>,
    ),
    tonic::Status,
> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut request = tonic::Request::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
    if with_outcome {
        request.metadata_mut().insert(
            "volley-accept",
            tonic::metadata::MetadataValue::from_static("with-outcome"),
        );
    }
    let events = client.clone().execute_stream(request).await?.into_inner();
    Ok((tx, Box::new(events)))
}
