//! The dispatcher's ZeroMQ endpoint: one ROUTER socket for every worker, served by
//! three small tasks so the reactor never awaits a socket.
//!
//! - receive: decodes frames; bad ones are dropped, counted and logged once per peer;
//! - events: turns closed connections into [`Inbound::Disconnected`] (fast death detection);
//! - send: writes frames the reactor queued, each bounded by a timeout, so a stalled
//!   worker cannot stall anyone else.

use crate::shared::{EdgeCounters, Shared};
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};
use volley_proto::connection::{bind_router, ConnectionError, PeerEvent, PeerId};
use volley_proto::wire::{self, CodecError, FromWorker, ToWorker};

/// How long one send may wait for a worker's queue.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// Peers remembered for once-per-peer logging before the memory is reset.
const LOGGED_PEERS_CAP: usize = 10_000;

/// Something a worker's connection produced.
#[derive(Debug)]
pub enum Inbound {
    /// A decoded message.
    Message(PeerId, FromWorker),
    /// The connection closed.
    Disconnected(PeerId),
}

/// The reactor's handles on the worker endpoint.
pub struct WorkerLink {
    /// Where workers connect.
    pub endpoint: String,
    /// Frames to send: `(peer, encoded message)`.
    pub outgoing: mpsc::UnboundedSender<(PeerId, Bytes)>,
    /// What workers said.
    pub inbound: mpsc::Receiver<Inbound>,
}

/// Binds the worker endpoint on `listener` and starts its tasks on `tracker`.
pub async fn start(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<WorkerLink, ConnectionError> {
    let conn = bind_router(listener).await?;
    let (in_tx, in_rx) = mpsc::channel(4096);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<(PeerId, Bytes)>();

    let mut receiver = conn.receiver;
    let replies = out_tx.clone();
    let messages = in_tx.clone();
    let stop = shutdown.clone();
    tracker.spawn(async move {
        let mut logged: HashSet<PeerId> = HashSet::new();
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                n = receiver.recv() => n,
            };
            match next {
                Ok((peer, Ok(msg))) => {
                    if messages.send(Inbound::Message(peer, msg)).await.is_err() {
                        return;
                    }
                }
                Ok((peer, Err(e))) => {
                    EdgeCounters::bump(&shared.counters.dropped_frames);
                    if logged.len() >= LOGGED_PEERS_CAP {
                        logged.clear();
                    }
                    if logged.insert(peer.clone()) {
                        warn!(peer = %peer, "dropped a bad frame from a worker connection: {e} (further ones from this peer are counted, not logged)");
                    }
                    if let ConnectionError::Codec(CodecError::Version { got }) = e {
                        let reject = ToWorker::Reject {
                            reason: format!(
                                "this dispatcher speaks protocol version {}, the worker sent version {got}",
                                wire::PROTOCOL_VERSION
                            ),
                        };
                        if let Ok(frame) = wire::encode(&reject) {
                            let _ = replies.send((peer, Bytes::from(frame)));
                        }
                    }
                }
                Err(e) => {
                    error!("worker socket failed: {e}");
                    return;
                }
            }
        }
    });

    let mut events = conn.events;
    let stop = shutdown.clone();
    tracker.spawn(async move {
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => return,
                e = events.next() => e,
            };
            match event {
                Some(PeerEvent::Disconnected(peer)) => {
                    if in_tx.send(Inbound::Disconnected(peer)).await.is_err() {
                        return;
                    }
                }
                Some(PeerEvent::Accepted(peer)) => debug!(peer = %peer, "worker connection accepted"),
                None => return,
            }
        }
    });

    let mut sender = conn.sender;
    tracker.spawn(async move {
        // Ends when the reactor drops its sender, after every queued frame is written.
        while let Some((peer, frame)) = out_rx.recv().await {
            match tokio::time::timeout(SEND_TIMEOUT, sender.send_frame(&peer, frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(peer = %peer, "send to worker failed: {e}"),
                Err(_) => warn!(peer = %peer, "send to worker timed out after {SEND_TIMEOUT:?}; frame dropped"),
            }
        }
    });

    Ok(WorkerLink {
        endpoint: conn.endpoint,
        outgoing: out_tx,
        inbound: in_rx,
    })
}
