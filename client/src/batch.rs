//! Running work: registering spec strings, and [`run_batch`], which submits tasks with
//! `ExecuteBatch` and collects every outcome through `WatchResults`. The client CLI, the
//! sweeps, the tests and the benchmarks all use it.

use crate::connection::Client;
use anyhow::bail;
use futures::StreamExt;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use volley_proto::api;
use volley_proto::function::FunctionKind;
use volley_proto::text::quote;

/// Bytes of arguments one `ExecuteBatch` carries at most: under the 4 MiB a dispatcher
/// (like any gRPC server with default limits) accepts in one message.
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;

/// Registers the function a spec string names (`noop`, `sleep:100`, `echo:hi`, …) and
/// returns its id with the task arguments the spec implies. The function is named by
/// its kind (`echo`, `sleep:100`), never by a payload, however long the spec.
pub async fn register_spec(client: &mut Client, spec: &str) -> anyhow::Result<(u64, String)> {
    let (kind, args) = FunctionKind::parse_spec(spec)?;
    let id = client
        .register_function(api::RegisterFunctionRequest {
            name: kind.label(),
            spec: Some(kind.to_api()),
        })
        .await
        .map_err(|s| anyhow::anyhow!("registering '{}': {}", quote(spec), s.message()))?
        .into_inner()
        .function_id;
    Ok((id, args))
}

/// What a batch came to.
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    /// Tasks submitted.
    pub submitted: usize,
    /// Tasks COMPLETED.
    pub completed: usize,
    /// Tasks FAILED.
    pub failed: usize,
    /// From the first submission to the last outcome.
    pub elapsed: Duration,
    /// Every task's final record, in completion order.
    pub tasks: Vec<api::TaskInfo>,
}

impl BatchOutcome {
    /// Tasks per second over the whole batch.
    pub fn throughput(&self) -> f64 {
        self.submitted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Splits `tasks` into requests of at most `chunk` tasks and [`MAX_REQUEST_BYTES`] of
/// arguments, in order.
fn requests(tasks: &[(u64, String)], chunk: usize) -> Vec<api::ExecuteBatchRequest> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for (function_id, args) in tasks {
        if !current.is_empty() && (current.len() >= chunk.max(1) || bytes + args.len() > MAX_REQUEST_BYTES) {
            out.push(api::ExecuteBatchRequest {
                tasks: std::mem::take(&mut current),
            });
            bytes = 0;
        }
        bytes += args.len();
        current.push(api::ExecuteRequest {
            function_id: *function_id,
            args: args.clone(),
        });
    }
    if !current.is_empty() {
        out.push(api::ExecuteBatchRequest { tasks: current });
    }
    out
}

/// Submits `tasks` (function id, args) in chunks of `chunk` and waits for every outcome.
/// Chunks are submitted while earlier ones run; each chunk is watched by id, so no
/// outcome can be missed however fast it arrives. A chunk refused with
/// `RESOURCE_EXHAUSTED` (the dispatcher's queue bound) is retried with backoff.
pub async fn run_batch(
    client: &Client,
    tasks: Vec<(u64, String)>,
    chunk: usize,
    timeout: Duration,
) -> anyhow::Result<BatchOutcome> {
    let submitted = tasks.len();
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<anyhow::Result<Vec<api::TaskInfo>>>();
    let mut submitter = client.clone();
    let mut watchers = Vec::new();
    for request in requests(&tasks, chunk) {
        // A full queue is backpressure, not failure: wait for room while earlier chunks
        // drain, up to the batch's deadline.
        let mut pause = Duration::from_millis(2);
        let ids = loop {
            match submitter.execute_batch(request.clone()).await {
                Ok(r) => break r.into_inner().task_ids,
                Err(s) if s.code() == tonic::Code::ResourceExhausted && started.elapsed() < timeout => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(s) => bail!("ExecuteBatch failed ({:?}): {}", s.code(), s.message()),
            }
        };
        let mut watcher = client.clone();
        let tx = tx.clone();
        watchers.push(tokio::spawn(async move {
            let watched: HashSet<u64> = ids.iter().copied().collect();
            let stream = watcher.watch_results(api::WatchResultsRequest { task_ids: ids }).await;
            let mut stream = match stream {
                Ok(s) => s.into_inner(),
                Err(s) => {
                    let _ = tx.send(Err(anyhow::anyhow!("WatchResults failed: {}", s.message())));
                    return;
                }
            };
            let mut seen = 0;
            while let Some(msg) = stream.next().await {
                match msg {
                    Ok(m) => {
                        seen += m.tasks.len();
                        let _ = tx.send(Ok(m.tasks));
                    }
                    Err(s) => {
                        let _ = tx.send(Err(anyhow::anyhow!("WatchResults stream broke: {}", s.message())));
                        return;
                    }
                }
            }
            if seen < watched.len() {
                let _ = tx.send(Err(anyhow::anyhow!(
                    "WatchResults ended after {seen} of {} tasks",
                    watched.len()
                )));
            }
        }));
    }
    drop(tx);
    let mut outcome = BatchOutcome {
        submitted,
        completed: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        tasks: Vec::with_capacity(submitted),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    while outcome.tasks.len() < submitted {
        let next = tokio::time::timeout_at(deadline, rx.recv()).await;
        let batch = match next {
            Err(_) => bail!(
                "timed out after {timeout:?} with {} of {submitted} tasks finished",
                outcome.tasks.len()
            ),
            Ok(None) => bail!(
                "watchers ended with {} of {submitted} tasks finished",
                outcome.tasks.len()
            ),
            Ok(Some(b)) => b?,
        };
        for t in batch {
            if t.state == api::TaskState::Completed as i32 {
                outcome.completed += 1;
            } else {
                outcome.failed += 1;
            }
            outcome.tasks.push(t);
        }
    }
    outcome.elapsed = started.elapsed();
    for w in watchers {
        w.abort();
    }
    Ok(outcome)
}

/// The lower-case name of a task state.
pub fn state_name(state: i32) -> &'static str {
    match api::TaskState::try_from(state) {
        Ok(api::TaskState::Queued) => "QUEUED",
        Ok(api::TaskState::Running) => "RUNNING",
        Ok(api::TaskState::Completed) => "COMPLETED",
        Ok(api::TaskState::Failed) => "FAILED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_stay_under_the_byte_limit_and_keep_order() {
        let tasks: Vec<(u64, String)> = (0..300).map(|i| (i, "x".repeat(120_000))).collect();
        let reqs = requests(&tasks, 10_000);
        assert!(reqs.len() >= 12);
        for r in &reqs {
            assert!(r.tasks.iter().map(|t| t.args.len()).sum::<usize>() <= MAX_REQUEST_BYTES);
        }
        let ids: Vec<u64> = reqs
            .iter()
            .flat_map(|r| r.tasks.iter().map(|t| t.function_id))
            .collect();
        assert_eq!(ids, (0..300).collect::<Vec<_>>());
        assert_eq!(requests(&vec![(1, String::new()); 25], 10).len(), 3);
    }
}
