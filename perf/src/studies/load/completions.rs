//! Where an open-loop run learns its results.
//!
//! A single `WatchResults` stream of every completion is the cheap way (one stream, no
//! ids to send), but the dispatcher ends it with DATA_LOSS when the watcher falls behind
//! its completion broadcast — exactly what happens under overload on a shared machine.
//! A lagging stream is therefore reopened at once and the break is reported; the results
//! it may have missed are then read back by id ([`catch_up`]: the store first, then as
//! they finish). A result is never inferred from silence.

use super::ledger::Finish;
use futures::StreamExt;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use volley_client::Client;
use volley_proto::api;

/// Task ids per by-id watch: well under the 4 MiB request limit (≤ 10 bytes an id).
const IDS_PER_WATCH: usize = 100_000;

/// What the result watchers report.
#[derive(Debug)]
pub enum Event {
    /// Tasks finished.
    Finished(Vec<(u64, Finish)>),
    /// The live stream broke (it is being reopened); results may have been missed.
    Broke(String),
    /// The dispatcher does not know these tasks.
    Unknown(Vec<u64>),
}

/// The clock results are stamped with: offsets from the run's start.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    /// The run's start on this machine's monotonic clock.
    pub start: Instant,
    /// The same moment in Unix microseconds, to place the dispatcher's timestamps.
    pub start_unix_us: u64,
}

impl RunClock {
    /// A run starting `lead` from now.
    pub fn starting_in(lead: Duration) -> Self {
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Self {
            start: Instant::now() + lead,
            start_unix_us: unix_now + lead.as_micros() as u64,
        }
    }

    /// Now, as an offset from the start.
    pub fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.start)
    }

    /// A dispatcher timestamp as an offset from the start (same-host clocks).
    pub fn from_unix_us(&self, us: u64) -> Duration {
        Duration::from_micros(us.saturating_sub(self.start_unix_us))
    }
}

/// A finished task's record, seen at `at` (`recovered`: read back by id).
pub fn finish(t: api::TaskInfo, clock: RunClock, at: Duration, recovered: bool) -> (u64, Finish) {
    (
        t.task_id,
        Finish {
            completed: t.state == api::TaskState::Completed as i32,
            error: t.error,
            at,
            done_at: clock.from_unix_us(t.completed_us),
            recovered,
            worker: t.worker,
            run_us: t.run_us,
            cold: t.cold,
        },
    )
}

/// Opens the stream of every completion (failing if the first subscription fails) and
/// keeps it open, reopening it whenever it breaks, until aborted.
pub async fn watch_all(
    client: &Client,
    clock: RunClock,
    tx: mpsc::UnboundedSender<Event>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut client = client.clone();
    let all = || api::WatchResultsRequest { task_ids: vec![] };
    let first = client
        .watch_results(all())
        .await
        .map_err(|s| anyhow::anyhow!("WatchResults: {} ({:?})", s.message(), s.code()))?
        .into_inner();
    Ok(tokio::spawn(async move {
        let mut stream = first;
        loop {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(msg) => {
                        let at = clock.now();
                        let done = msg.tasks.into_iter().map(|t| finish(t, clock, at, false)).collect();
                        if tx.send(Event::Finished(done)).is_err() {
                            return;
                        }
                    }
                    Err(s) => {
                        let _ = tx.send(Event::Broke(format!("{} ({:?})", s.message(), s.code())));
                        break;
                    }
                }
            }
            // Ended or broke: reopen, retrying while the dispatcher is unreachable.
            stream = loop {
                match client.watch_results(all()).await {
                    Ok(s) => break s.into_inner(),
                    Err(s) => {
                        let _ = tx.send(Event::Broke(format!("reopening: {} ({:?})", s.message(), s.code())));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            };
        }
    }))
}

/// Reads back the results of `ids` by id: those already finished from the store, the
/// rest as they finish. Ids the dispatcher refuses to watch as unknown are asked one by
/// one, so one forgotten task cannot hide the others.
pub fn catch_up(
    client: &Client,
    clock: RunClock,
    ids: Vec<u64>,
    tx: &mpsc::UnboundedSender<Event>,
) -> Vec<JoinHandle<()>> {
    ids.chunks(IDS_PER_WATCH)
        .map(|chunk| {
            let (mut client, tx, chunk) = (client.clone(), tx.clone(), chunk.to_vec());
            tokio::spawn(async move {
                let refused = match watch_ids(&mut client, clock, chunk.clone(), &tx).await {
                    Err(s) if s.code() == tonic::Code::NotFound => {
                        let pending = one_by_one(&mut client, clock, chunk, &tx).await;
                        if pending.is_empty() {
                            return;
                        }
                        watch_ids(&mut client, clock, pending, &tx).await.err()
                    }
                    other => other.err(),
                };
                if let Some(s) = refused {
                    let _ = tx.send(Event::Broke(format!("catching up: {} ({:?})", s.message(), s.code())));
                }
            })
        })
        .collect()
}

/// Streams the results of `ids` until the last one; a refusal of the watch is returned.
async fn watch_ids(
    client: &mut Client,
    clock: RunClock,
    ids: Vec<u64>,
    tx: &mpsc::UnboundedSender<Event>,
) -> Result<(), tonic::Status> {
    let mut stream = client
        .watch_results(api::WatchResultsRequest { task_ids: ids })
        .await?
        .into_inner();
    while let Some(item) = stream.next().await {
        match item {
            Ok(msg) => {
                let done = msg
                    .tasks
                    .into_iter()
                    .map(|t| {
                        let at = clock.from_unix_us(t.completed_us);
                        finish(t, clock, at, true)
                    })
                    .collect();
                if tx.send(Event::Finished(done)).is_err() {
                    break;
                }
            }
            Err(s) => {
                let _ = tx.send(Event::Broke(format!("catching up: {} ({:?})", s.message(), s.code())));
                break;
            }
        }
    }
    Ok(())
}

/// Asks for each task alone; reports the finished and the unknown, returns the rest.
async fn one_by_one(
    client: &mut Client,
    clock: RunClock,
    ids: Vec<u64>,
    tx: &mpsc::UnboundedSender<Event>,
) -> Vec<u64> {
    let (mut unknown, mut pending) = (Vec::new(), Vec::new());
    for id in ids {
        match client.get_result(api::GetResultRequest { task_id: id }).await {
            Ok(r) => match r.into_inner().task {
                Some(t) if t.state == api::TaskState::Completed as i32 || t.state == api::TaskState::Failed as i32 => {
                    let at = clock.from_unix_us(t.completed_us);
                    let _ = tx.send(Event::Finished(vec![finish(t, clock, at, true)]));
                }
                _ => pending.push(id),
            },
            Err(s) if s.code() == tonic::Code::NotFound => unknown.push(id),
            Err(_) => pending.push(id),
        }
    }
    if !unknown.is_empty() {
        let _ = tx.send(Event::Unknown(unknown));
    }
    pending
}
