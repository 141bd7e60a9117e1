//! The store writer: applies the core's transitions in order, one round trip per batch,
//! and only then tells clients. While the store is down it retries, so nothing the core
//! decided is lost; clients simply hear later. A store that needs no I/O (the embedded
//! one) is written in the reactor's own turn instead ([`write_now`]): no hop to this task.

use crate::core::{Finished, Transition};
use crate::shared::Shared;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Most transitions written in one round trip.
const MAX_BATCH: usize = 20_000;
/// How long a stopping dispatcher keeps retrying a store that is down.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs until the reactor drops its sender and everything sent has been written.
pub async fn run(shared: Arc<Shared>, mut rx: UnboundedReceiver<Vec<Transition>>, shutdown: CancellationToken) {
    while let Some(mut batch) = rx.recv().await {
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        if !write(&shared, &batch, &shutdown).await {
            warn!(
                transitions = batch.len(),
                "gave up writing a batch to the store (stopping, or deposed)"
            );
            continue;
        }
        published(&shared, batch);
    }
}

/// What follows a batch's write: its finished tasks are counted, their admission
/// released, and their watchers told. Only ever after the batch is in the store.
pub fn published(shared: &Shared, batch: impl IntoIterator<Item = Transition>) {
    let finished: Vec<Finished> = batch
        .into_iter()
        .filter_map(|t| match t {
            Transition::Finished(f) => Some(f),
            _ => None,
        })
        .collect();
    if !finished.is_empty() {
        if let Some(m) = &shared.metrics {
            m.finished(&finished);
        }
        shared.admission.release(finished.len());
        // No watcher is not an error.
        let _ = shared.completions.send(Arc::new(finished));
    }
}

/// Writes `batch` at once if the store can (the embedded store), with what follows, and
/// empties it, keeping its buffer for the next turn; false, with `batch` untouched, when it
/// must go to the store writer.
pub fn write_now(shared: &Shared, batch: &mut Vec<Transition>) -> bool {
    let started = shared.metrics.as_ref().map(|_| std::time::Instant::now());
    if !shared.store.record_now(batch) {
        return false;
    }
    if let (Some(m), Some(started)) = (&shared.metrics, started) {
        m.store_write(started.elapsed());
    }
    published(shared, batch.drain(..));
    true
}

async fn write(shared: &Shared, batch: &[Transition], shutdown: &CancellationToken) -> bool {
    let mut delay = Duration::from_millis(20);
    let mut stopping_since = None;
    loop {
        let started = std::time::Instant::now();
        match shared.store.record(batch).await {
            Ok(()) => {
                if let Some(m) = &shared.metrics {
                    m.store_write(started.elapsed());
                }
                if !shared.store_healthy.swap(true, Ordering::AcqRel) {
                    info!("task store reachable again; pending transitions written");
                }
                return true;
            }
            Err(crate::store::StoreError::Fenced(epoch)) => {
                warn!(
                    epoch,
                    transitions = batch.len(),
                    "store write refused: another dispatcher leads"
                );
                shared.fenced();
                return false;
            }
            Err(e) => {
                if shared.store_healthy.swap(false, Ordering::AcqRel) {
                    warn!("task store write failed: {e}; retrying until it returns");
                }
                if shutdown.is_cancelled() {
                    let since = *stopping_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() > STOP_GRACE {
                        return false;
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        }
    }
}
