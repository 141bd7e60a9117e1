//! `WatchResults`: completions as they are published, or a given set of tasks exactly once.
//!
//! Every message stays under [`MAX_MESSAGE_BYTES`] (and [`MAX_TASKS_PER_MESSAGE`] tasks),
//! so a stock gRPC client with its default 4 MiB receive limit never loses the stream.

use super::{finished_info, store_status, task_info};
use crate::core::{Finished, TaskSet};
use crate::shared::Shared;
use crate::store::Settled;
use futures::StreamExt;
use prost::Message;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::broadcast;
use tokio_stream::Stream;
use tonic::Status;
use volley_proto::api;
use volley_proto::ids::TaskId;

/// The default receive limit of gRPC clients in every language (4 MiB), less room for
/// the message's own framing.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024 - 1024;
/// Tasks per `WatchResults` message at most, however small they are.
pub const MAX_TASKS_PER_MESSAGE: usize = 4096;

/// A `WatchResults` response stream.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<api::WatchResultsResponse, Status>> + Send>>;

/// Reads the pending tasks from the store, removes the finished ones from `pending` and
/// returns them. With `strict`, an id the store does not know is NOT_FOUND.
pub async fn finished_in_store(
    shared: &Shared,
    pending: &mut TaskSet,
    strict: bool,
) -> Result<Vec<api::TaskInfo>, Status> {
    let ids: Vec<TaskId> = pending.iter().copied().collect();
    let settled = shared.store.settled(&ids).await.map_err(store_status)?;
    let mut done = Vec::new();
    for (id, s) in ids.iter().zip(settled) {
        match s {
            Settled::Finished(r) => {
                pending.remove(id);
                done.push(task_info(&r));
            }
            Settled::Unfinished => {}
            Settled::Unknown if strict => return Err(Status::not_found(format!("no task with id {id}"))),
            Settled::Unknown => {
                pending.remove(id);
            }
        }
    }
    Ok(done)
}

/// Splits `tasks` into messages of at most [`MAX_MESSAGE_BYTES`] encoded and
/// [`MAX_TASKS_PER_MESSAGE`] tasks, in order. A task is never split; none is larger than
/// the limit alone: submission bounds arguments, and the reactor bounds what a worker
/// returns to `wire::MAX_RESULT_BYTES`, both far below it.
pub fn split_messages(tasks: Vec<api::TaskInfo>) -> Vec<api::WatchResultsResponse> {
    let mut messages = Vec::new();
    for_each_message(tasks, |m| messages.push(m));
    messages
}

/// [`split_messages`], each message handed to `emit` as it is cut. Tasks that fit in one
/// message (nearly always) leave in their own vector: nothing is copied or allocated.
pub fn for_each_message(tasks: Vec<api::TaskInfo>, mut emit: impl FnMut(api::WatchResultsResponse)) {
    if tasks.is_empty() {
        return;
    }
    let costs = || tasks.iter().map(|task| entry_cost(task.encoded_len()));
    if tasks.len() <= MAX_TASKS_PER_MESSAGE && costs().sum::<usize>() <= MAX_MESSAGE_BYTES {
        emit(api::WatchResultsResponse { tasks });
        return;
    }
    let mut current = Vec::new();
    let mut bytes = 0;
    for task in tasks {
        let cost = entry_cost(task.encoded_len());
        if !current.is_empty() && (bytes + cost > MAX_MESSAGE_BYTES || current.len() >= MAX_TASKS_PER_MESSAGE) {
            emit(api::WatchResultsResponse {
                tasks: std::mem::take(&mut current),
            });
            bytes = 0;
        }
        bytes += cost;
        current.push(task);
    }
    if !current.is_empty() {
        emit(api::WatchResultsResponse { tasks: current });
    }
}

/// Field tag, length prefix, body: what one repeated entry of `len` bytes costs on the wire.
fn entry_cost(len: usize) -> usize {
    1 + prost::length_delimiter_len(len) + len
}

fn chunked(tasks: Vec<api::TaskInfo>) -> impl Stream<Item = Result<api::WatchResultsResponse, Status>> {
    futures::stream::iter(split_messages(tasks).into_iter().map(Ok))
}

/// Batches of completions taken off the broadcast at once, at most: a watcher that woke
/// late gets what piled up as one message, not one message per batch.
const MERGED_BATCHES: usize = 64;

/// The next batch of completions and every batch already waiting behind it, all kept by
/// `keep`. A lag is reported only when nothing was taken before it.
pub(super) async fn recv_merged(
    rx: &mut broadcast::Receiver<Arc<Vec<Finished>>>,
    mut keep: impl FnMut(&Finished) -> bool,
) -> Result<Vec<api::TaskInfo>, broadcast::error::RecvError> {
    let first = rx.recv().await?;
    let mut out: Vec<api::TaskInfo> = first.iter().filter(|f| keep(f)).map(finished_info).collect();
    for _ in 1..MERGED_BATCHES {
        match rx.try_recv() {
            Ok(batch) => out.extend(batch.iter().filter(|f| keep(f)).map(finished_info)),
            // A lag or a close shows up again at the next `recv`.
            Err(_) => break,
        }
    }
    Ok(out)
}

pub use crate::shared::MAX_WATCHERS_OF_ALL;

/// Every completion from now on, read straight off the broadcast (no task in between).
/// `slot` is this watcher's place among [`MAX_WATCHERS_OF_ALL`], given back when the
/// stream ends (a reader that falls 1,024 batches behind is cut with DATA_LOSS).
pub fn all(
    completions: broadcast::Receiver<Arc<Vec<Finished>>>,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> impl Stream<Item = Result<api::WatchResultsResponse, Status>> {
    futures::stream::unfold(Some((completions, slot)), |state| async move {
        let (mut rx, slot) = state?;
        match recv_merged(&mut rx, |_| true).await {
            Ok(tasks) => Some((chunked(tasks).left_stream(), Some((rx, slot)))),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let status = Status::data_loss(format!(
                    "this watcher fell {n} batches behind and missed completions; watch specific task ids to never miss one"
                ));
                Some((futures::stream::iter(vec![Err(status)]).right_stream(), None))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
    .flatten()
}

struct Watch {
    shared: Arc<Shared>,
    completions: broadcast::Receiver<Arc<Vec<Finished>>>,
    pending: TaskSet,
    /// The smallest and largest id watched: most completions fall outside a watcher's
    /// span (clients watch the ids of one batch), and a comparison rejects them without
    /// hashing.
    span: (TaskId, TaskId),
}

/// The given tasks, each exactly once: those already finished first, then the rest as
/// they finish; the stream ends with the last one.
pub fn some(
    shared: Arc<Shared>,
    completions: broadcast::Receiver<Arc<Vec<Finished>>>,
    pending: TaskSet,
    already: Vec<api::TaskInfo>,
) -> impl Stream<Item = Result<api::WatchResultsResponse, Status>> {
    let span = (
        pending.iter().min().copied().unwrap_or(TaskId(0)),
        pending.iter().max().copied().unwrap_or(TaskId(0)),
    );
    let rest = futures::stream::unfold(
        Some(Watch {
            shared,
            completions,
            pending,
            span,
        }),
        |state| async move {
            let mut w = state?;
            loop {
                if w.pending.is_empty() {
                    return None;
                }
                let (pending, (lo, hi)) = (&mut w.pending, w.span);
                let mine = recv_merged(&mut w.completions, |f| {
                    (lo..=hi).contains(&f.task) && pending.remove(&f.task)
                });
                let mine: Vec<api::TaskInfo> = match mine.await {
                    Ok(tasks) => tasks,
                    // Fell behind: the store has every terminal task, so catch up from it.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        match finished_in_store(&w.shared, &mut w.pending, false).await {
                            Ok(done) => done,
                            Err(status) => {
                                return Some((futures::stream::iter(vec![Err(status)]).right_stream(), None))
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        let status = Status::unavailable("the dispatcher stopped before these tasks finished");
                        return Some((futures::stream::iter(vec![Err(status)]).right_stream(), None));
                    }
                };
                if !mine.is_empty() {
                    return Some((chunked(mine).left_stream(), Some(w)));
                }
            }
        },
    );
    chunked(already).chain(rest.flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u64, result_bytes: usize) -> api::TaskInfo {
        api::TaskInfo {
            task_id: id,
            result: "x".repeat(result_bytes),
            ..Default::default()
        }
    }

    #[test]
    fn large_results_are_spread_over_messages_under_the_limit_in_order() {
        // 300 results of 120 KB: 36 MB in all, once sent as a single message.
        let tasks: Vec<_> = (1..=300).map(|i| task(i, 120_000)).collect();
        let messages = split_messages(tasks);
        assert!(messages.len() >= 9, "{} messages", messages.len());
        for m in &messages {
            assert!(m.encoded_len() <= MAX_MESSAGE_BYTES, "{} bytes", m.encoded_len());
        }
        let ids: Vec<u64> = messages
            .iter()
            .flat_map(|m| m.tasks.iter().map(|t| t.task_id))
            .collect();
        assert_eq!(ids, (1..=300).collect::<Vec<_>>());
    }

    #[test]
    fn many_small_results_are_cut_by_count() {
        let messages = split_messages((1..=10_000).map(|i| task(i, 0)).collect());
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0].tasks.len(), MAX_TASKS_PER_MESSAGE);
        assert!(split_messages(Vec::new()).is_empty());
    }

    #[test]
    fn tasks_that_fit_leave_as_one_message_in_order() {
        let messages = split_messages((1..=3).map(|i| task(i, 100)).collect());
        assert_eq!(messages.len(), 1);
        let ids: Vec<u64> = messages[0].tasks.iter().map(|t| t.task_id).collect();
        assert_eq!(ids, [1, 2, 3]);
    }

    #[test]
    fn a_result_near_the_limit_travels_alone() {
        let messages = split_messages(vec![task(1, 10), task(2, MAX_MESSAGE_BYTES - 20), task(3, 10)]);
        assert_eq!(messages.len(), 3);
        assert!(messages.iter().all(|m| m.encoded_len() <= MAX_MESSAGE_BYTES));
    }
}
