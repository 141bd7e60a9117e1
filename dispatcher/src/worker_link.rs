//! The dispatcher's ZeroMQ endpoint: one ROUTER socket for every worker.
//!
//! - [`InboundReader`] — read by the reactor itself (no hop in between): decodes frames;
//!   bad ones are dropped, counted and logged once per peer; closed connections become
//!   [`Inbound::Disconnected`] (fast death detection);
//! - the send task writes frames the reactor queued, each bounded by a timeout, so a
//!   stalled worker can never stall the reactor or anyone else.

use crate::shared::{EdgeCounters, Shared};
use bytes::Bytes;
use futures::FutureExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};
use volley_proto::connection::{bind_router, ConnectionError, PeerEvent, PeerId, RouterReceiver};
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
    /// What workers say.
    pub inbound: InboundReader,
}

/// Decoded messages and disconnections from every worker. Cancel-safe.
pub struct InboundReader {
    receiver: RouterReceiver,
    disconnects: mpsc::Receiver<PeerId>,
    replies: mpsc::UnboundedSender<(PeerId, Bytes)>,
    shared: Arc<Shared>,
    logged: HashSet<PeerId>,
}

impl InboundReader {
    /// The next message or disconnection; `None` once the socket failed.
    pub async fn next(&mut self) -> Option<Inbound> {
        loop {
            let received = tokio::select! {
                biased;
                Some(peer) = self.disconnects.recv() => return Some(Inbound::Disconnected(peer)),
                r = self.receiver.recv() => r,
            };
            match received {
                Ok((peer, Ok(msg))) => return Some(Inbound::Message(peer, msg)),
                Ok((peer, Err(e))) => self.bad_frame(peer, e),
                Err(e) => {
                    error!("worker socket failed: {e}");
                    return None;
                }
            }
        }
    }

    /// The next message if one is ready now.
    pub fn try_next(&mut self) -> Option<Inbound> {
        self.next().now_or_never().flatten()
    }

    fn bad_frame(&mut self, peer: PeerId, e: ConnectionError) {
        EdgeCounters::bump(&self.shared.counters.dropped_frames);
        if self.logged.len() >= LOGGED_PEERS_CAP {
            self.logged.clear();
        }
        if self.logged.insert(peer.clone()) {
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
                let _ = self.replies.send((peer, Bytes::from(frame)));
            }
        }
    }
}

/// The endpoint as a worker can dial it: bound to every interface (`0.0.0.0`, `[::]`),
/// the socket is reachable at this host's name, not at the wildcard address.
pub fn reachable(endpoint: &str) -> String {
    let Some(rest) = endpoint.strip_prefix("tcp://") else {
        return endpoint.to_owned();
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return endpoint.to_owned();
    };
    if !matches!(host, "0.0.0.0" | "[::]" | "::") {
        return endpoint.to_owned();
    }
    match hostname::get().ok().and_then(|h| h.into_string().ok()) {
        Some(name) if !name.is_empty() => format!("tcp://{name}:{port}"),
        _ => endpoint.to_owned(),
    }
}

/// Binds the worker endpoint on `listener` and starts its tasks on `tracker`.
pub async fn start(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<WorkerLink, ConnectionError> {
    let conn = bind_router(listener).await?;
    let (disconnect_tx, disconnects) = mpsc::channel(1024);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<(PeerId, Bytes)>();

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
                    if disconnect_tx.send(peer).await.is_err() {
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
        endpoint: reachable(&conn.endpoint),
        inbound: InboundReader {
            receiver: conn.receiver,
            disconnects,
            replies: out_tx.clone(),
            shared,
            logged: HashSet::new(),
        },
        outgoing: out_tx,
    })
}

#[cfg(test)]
mod tests {
    use super::reachable;

    #[test]
    fn a_wildcard_bind_is_reported_by_host_name() {
        let name = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        assert_eq!(reachable("tcp://0.0.0.0:5555"), format!("tcp://{name}:5555"));
        assert_eq!(reachable("tcp://[::]:5555"), format!("tcp://{name}:5555"));
        assert_eq!(reachable("tcp://127.0.0.1:5555"), "tcp://127.0.0.1:5555");
        assert_eq!(reachable("tcp://10.1.2.3:7"), "tcp://10.1.2.3:7");
    }
}
