//! `ExecuteStream`: a client submits on one long-lived call and hears each of its tasks
//! finish on the same call. Each request is answered in order (accepted with ids, or
//! refused with a status, and the call goes on); each accepted task reports once.
//!
//! It exists for latency: a unary `Execute` costs HTTP/2 headers both ways and a new
//! stream per task, and a stock client writes its request's headers and body in two
//! syscalls. Here a task is one DATA frame each way.
//!
//! With a linger (`--stream-ack-linger-us`), an acceptance waits up to that long for
//! the outcome of its tasks, so that a quick task's acceptance and outcome leave in one
//! write and wake the client once. Outcomes are never held.

use super::watch::{finished_in_store, recv_merged, split_messages};
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
    /// How long an acceptance may wait for an outcome to leave with.
    linger: Duration,
    /// Until when the acceptances in `out` wait.
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
    linger: Duration,
) -> SessionStream {
    let session = Session {
        api,
        requests: Some(requests),
        completions,
        pending: TaskSet::default(),
        out: VecDeque::new(),
        linger,
        hold_until: None,
    };
    Box::pin(futures::stream::unfold(Some(session), |state| async move {
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
    }))
}

impl Session {
    /// Whether what is queued waits: acceptances only, within their linger, with tasks
    /// of this call still to report.
    fn holding(&self) -> bool {
        self.hold_until.is_some_and(|t| Instant::now() < t)
            && !self.pending.is_empty()
            && !self.out.iter().any(|e| matches!(e.event, Some(Event::Finished(_))))
    }

    /// Waits for the next request or the next completions of this call's tasks (or the
    /// end of a linger) and queues what they produce. An error ends the call.
    async fn turn(&mut self) -> Result<(), Status> {
        let waiting = !self.pending.is_empty();
        let (holding, until) = (self.holding(), self.hold_until);
        let pending = &mut self.pending;
        tokio::select! {
            biased;
            message = next_request(&mut self.requests) => match message {
                Ok(Some(request)) => self.submit(request).await,
                Ok(None) => self.requests = None,
                // The client's side broke (reset, bad frame): nobody is left to tell.
                Err(status) => return Err(status),
            },
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
            // Last: an outcome ready at the deadline still leaves with its acceptance.
            _ = tokio::time::sleep_until(until.unwrap_or_else(Instant::now)), if holding => {}
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
                self.api.reactor_first().await;
                self.pending.extend(ids.iter().copied());
                if !self.linger.is_zero() && self.hold_until.is_none() {
                    self.hold_until = Some(Instant::now() + self.linger);
                }
                self.out.push_back(event(Event::Accepted(api::ExecuteBatchResponse {
                    task_ids: ids.into_iter().map(|TaskId(id)| id).collect(),
                })));
            }
            Err(status) => self.out.push_back(refused(&status)),
        }
    }

    fn finished(&mut self, tasks: Vec<api::TaskInfo>) {
        for message in split_messages(tasks) {
            self.out.push_back(event(Event::Finished(message)));
        }
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
