//! `ExecuteStream`: a client submits on one long-lived call and hears each of its tasks
//! finish on the same call. Each request is answered in order (accepted with ids, or
//! refused with a status, and the call goes on); each accepted task reports once.
//!
//! It exists for latency: a unary `Execute` costs HTTP/2 headers both ways and a new
//! stream per task, and a stock client writes its request's headers and body in two
//! syscalls. Here a task is one DATA frame each way.
//!
//! An acceptance may wait for an outcome to leave with, so that a quick task's acceptance
//! and outcome leave in one write and wake the client once: up to a linger the operator
//! sets (`--stream-ack-linger-us`), or, when the call asks with the `volley-accept:
//! with-outcome` header, until the next outcome of the call, with no timer at all.
//! Outcomes and refusals are never held.

use super::wake_gate::WakeGate;
use super::watch::{finished_in_store, for_each_message, recv_merged};
use super::{Api, MAX_WATCH};
use crate::core::{Finished, TaskSet};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::broadcast;
use tokio::time::{Duration, Instant};
use tokio_stream::Stream;
use tonic::{Status, Streaming};
use volley_proto::api::{self, execute_stream_response::Event};
use volley_proto::ids::TaskId;

/// The header a call names its [`Acceptances`] with.
pub const ACCEPT_HEADER: &str = "volley-accept";

/// When a request's acceptance leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptances {
    /// At once (the default), or after waiting up to this long for an outcome to leave with.
    Linger(Duration),
    /// With the call's next outcome (or refusal, or end): the client asked, with
    /// `volley-accept: with-outcome`, because it needs ids only to match outcomes. A
    /// task that runs long keeps its acceptance that long; a call that breaks meanwhile
    /// leaves the client not knowing the ids of what it sent since the last outcome.
    WithOutcome,
}

impl Acceptances {
    /// What a call's `volley-accept` header asks for, given the operator's linger.
    pub fn from_header(value: Option<&str>, linger: std::time::Duration) -> Result<Self, Status> {
        match value {
            None | Some("at-once") => Ok(Self::Linger(linger)),
            Some("with-outcome") => Ok(Self::WithOutcome),
            Some(other) => Err(Status::invalid_argument(format!(
                "{ACCEPT_HEADER}: {other:?} is neither at-once nor with-outcome"
            ))),
        }
    }
}

/// An `ExecuteStream` response stream.
pub type SessionStream = Pin<Box<dyn Stream<Item = Result<api::ExecuteStreamResponse, Status>> + Send>>;

struct Session {
    api: Api,
    /// `None` once the client closed its side.
    requests: Option<Streaming<api::ExecuteBatchRequest>>,
    completions: broadcast::Receiver<Arc<Vec<Finished>>>,
    /// Accepted on this call and not yet reported.
    pending: TaskSet,
    /// Events decided, not yet sent.
    out: VecDeque<api::ExecuteStreamResponse>,
    /// When acceptances leave.
    acceptances: Acceptances,
    /// Until when the acceptances in `out` wait, under a linger.
    hold_until: Option<Instant>,
}

fn event(event: Event) -> api::ExecuteStreamResponse {
    api::ExecuteStreamResponse { event: Some(event) }
}

fn refused(status: &Status) -> api::ExecuteStreamResponse {
    event(Event::Refused(api::Refused {
        code: status.code() as i32,
        message: status.message().to_owned(),
    }))
}

/// The call's events. `completions` must be subscribed before the first request is read,
/// so no task of the call finishes unseen.
pub fn run(
    api: Api,
    requests: Streaming<api::ExecuteBatchRequest>,
    completions: broadcast::Receiver<Arc<Vec<Finished>>>,
    acceptances: Acceptances,
) -> SessionStream {
    let session = Session {
        api,
        requests: Some(requests),
        completions,
        pending: TaskSet::default(),
        out: VecDeque::new(),
        acceptances,
        hold_until: None,
    };
    // Boxed: `unfold` moves its state in and out of each item's future, and a session
    // (the request stream above all) is hundreds of bytes.
    let events: SessionStream = Box::pin(futures::stream::unfold(Some(Box::new(session)), |state| async move {
        let mut s = state?;
        loop {
            if !s.holding() {
                if let Some(next) = s.out.pop_front() {
                    if s.out.is_empty() {
                        s.hold_until = None;
                    }
                    return Some((Ok(next), Some(s)));
                }
            }
            if s.requests.is_none() && s.pending.is_empty() {
                return None;
            }
            if let Err(status) = s.turn().await {
                return Some((Err(status), None));
            }
        }
    }));
    Box::pin(WakeGate::new(events))
}

impl Session {
    /// Whether what is queued waits: acceptances only, within their linger or until an
    /// outcome, with tasks of this call still to report.
    fn holding(&self) -> bool {
        let waits = match self.acceptances {
            Acceptances::Linger(_) => self.hold_until.is_some_and(|t| Instant::now() < t),
            Acceptances::WithOutcome => true,
        };
        waits && !self.pending.is_empty() && self.out.iter().all(|e| matches!(e.event, Some(Event::Accepted(_))))
    }

    /// Waits for the next request or the next completions of this call's tasks (or the
    /// end of a linger) and queues what they produce. An error ends the call.
    async fn turn(&mut self) -> Result<(), Status> {
        let waiting = !self.pending.is_empty();
        let (holding, until) = (self.holding(), self.hold_until);
        let pending = &mut self.pending;
        tokio::select! {
            biased;
            // Outcomes first: under load, requests are always ready, and outcomes (with
            // the acceptances that wait for them) would leave only when they ran out.
            done = recv_merged(&mut self.completions, |f| pending.remove(&f.task)), if waiting => match done {
                Ok(tasks) => self.finished(tasks),
                // Fell behind: the store has every terminal task, so catch up from it.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let tasks = finished_in_store(&self.api.front.shared, &mut self.pending, false).await?;
                    self.finished(tasks);
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(Status::unavailable("the dispatcher stopped before this call's tasks finished"));
                }
            },
            message = next_request(&mut self.requests) => match message {
                Ok(Some(request)) => self.submit(request).await,
                Ok(None) => self.requests = None,
                // The client's side broke (reset, bad frame): nobody is left to tell.
                Err(status) => return Err(status),
            },
            // Last: an outcome ready at the deadline still leaves with its acceptance. In
            // an async block, so a turn with no deadline reads no clock and makes no timer.
            _ = async {
                if let Some(until) = until {
                    tokio::time::sleep_until(until).await;
                }
            }, if holding && until.is_some() => {}
        }
        Ok(())
    }

    async fn submit(&mut self, request: api::ExecuteBatchRequest) {
        let n = request.tasks.len();
        if self.pending.len() + n > MAX_WATCH {
            let status = Status::resource_exhausted(format!(
                "{} tasks of this call have not reported yet; {n} more would pass the limit of {MAX_WATCH}",
                self.pending.len()
            ));
            self.out.push_back(refused(&status));
            return;
        }
        match self.api.submit(&request.tasks, true).await {
            Ok(ids) => {
                // With-outcome acceptances write nothing now: there is no reply to overtake.
                if self.acceptances != Acceptances::WithOutcome {
                    self.api.reactor_first().await;
                }
                self.pending.extend(ids.iter().copied());
                if let Acceptances::Linger(linger) = self.acceptances {
                    if !linger.is_zero() && self.hold_until.is_none() {
                        self.hold_until = Some(Instant::now() + linger);
                    }
                }
                self.out.push_back(event(Event::Accepted(api::ExecuteBatchResponse {
                    task_ids: ids.into_iter().map(|TaskId(id)| id).collect(),
                })));
            }
            Err(status) => self.out.push_back(refused(&status)),
        }
    }

    fn finished(&mut self, tasks: Vec<api::TaskInfo>) {
        for_each_message(tasks, |message| self.out.push_back(event(Event::Finished(message))));
    }
}

/// The next request, or never once the client closed its side.
async fn next_request(
    requests: &mut Option<Streaming<api::ExecuteBatchRequest>>,
) -> Result<Option<api::ExecuteBatchRequest>, Status> {
    match requests {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}
