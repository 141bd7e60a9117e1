//! Typed ZeroMQ connections between dispatcher and workers, over [`crate::zmtp`].
//!
//! The dispatcher binds one ROUTER ([`bind_router`]); each worker connects one DEALER
//! ([`WorkerConnection`]). Both sides see [`FromWorker`]/[`ToWorker`] values, never bytes.
//! A successful send only means "queued locally": delivery is decided by leases.

use crate::wire::{self, CodecError, FromWorker, ToWorker, MAX_FRAME_BYTES};
use crate::zmtp::dealer::Dealer;
use crate::zmtp::reader::Message;
use crate::zmtp::router::{self, Inbound};
use crate::zmtp::{RouterLimits, RouterStats, ZmtpError};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::zmtp::router::{PeerEvent, PeerId};

/// Why a connection could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The transport failed (peer unreachable, socket closed, a limit broken).
    #[error("ZeroMQ: {0}")]
    Zmtp(#[from] ZmtpError),
    /// A message could not be encoded or a frame decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A message arrived with an unexpected number of frames.
    #[error("message of {0} frames; the protocol uses exactly one")]
    Frames(usize),
    /// The socket is gone.
    #[error("the worker socket is closed")]
    Closed,
}

fn single_frame(msg: Message) -> Result<Bytes, ConnectionError> {
    if !msg.rest.is_empty() {
        return Err(ConnectionError::Frames(msg.parts()));
    }
    Ok(msg.first)
}

/// A worker's connection to its dispatcher.
pub struct WorkerConnection {
    dealer: Dealer,
}

impl WorkerConnection {
    /// Connects and shakes hands; fails after `timeout` if nobody answers.
    pub async fn connect(endpoint: &str, timeout: Duration) -> Result<Self, ConnectionError> {
        Ok(Self {
            dealer: Dealer::connect(endpoint, timeout, MAX_FRAME_BYTES).await?,
        })
    }

    /// Sends one message.
    pub async fn send(&mut self, msg: &FromWorker) -> Result<(), ConnectionError> {
        self.send_frame(wire::encode(msg)?).await
    }

    /// Sends raw bytes as one frame; for tests that speak garbage on purpose.
    pub async fn send_frame(&mut self, frame: Vec<u8>) -> Result<(), ConnectionError> {
        Ok(self.dealer.send(&frame).await?)
    }

    /// Receives the next message. A frame that does not decode is returned as an error
    /// and the connection stays usable. Cancel-safe.
    pub async fn recv(&mut self) -> Result<ToWorker, ConnectionError> {
        let msg = self.dealer.recv().await?;
        Ok(wire::decode(&single_frame(msg)?)?)
    }
}

/// The dispatcher's end: one ROUTER socket for every worker.
pub struct RouterConnection {
    /// Sends to one worker by identity; cheap to clone.
    pub sender: RouterSender,
    /// Receives from every worker.
    pub receiver: RouterReceiver,
    /// Connection events: accepted and disconnected peers.
    pub events: PeerEvents,
    /// Where workers connect, e.g. `tcp://127.0.0.1:5555`.
    pub endpoint: String,
    /// What the socket refused, for `/metrics`.
    pub stats: Arc<RouterStats>,
}

/// Binds the dispatcher's ROUTER socket on a listener the caller bound; it serves until
/// `shutdown`.
pub fn bind_router(
    listener: std::net::TcpListener,
    limits: RouterLimits,
    shutdown: CancellationToken,
) -> Result<RouterConnection, ConnectionError> {
    let max_message = limits.max_message;
    let socket = router::bind(listener, limits, shutdown)?;
    Ok(RouterConnection {
        sender: RouterSender {
            inner: socket.sender,
            max_message,
        },
        receiver: RouterReceiver(socket.receiver),
        events: PeerEvents(socket.events),
        endpoint: socket.endpoint,
        stats: socket.stats,
    })
}

/// The sending half of the dispatcher's socket.
#[derive(Clone)]
pub struct RouterSender {
    inner: router::RouterSender,
    max_message: usize,
}

impl RouterSender {
    /// Sends an already-encoded frame to one worker. May wait while that worker's
    /// outgoing queue is full, so callers bound it with a timeout.
    pub async fn send_frame(&mut self, peer: &PeerId, frame: Bytes) -> Result<(), ConnectionError> {
        Ok(self.inner.send(peer, frame).await?)
    }

    /// The peer registered: it may send frames up to the full limit from now on.
    pub fn admit(&self, peer: &PeerId) {
        self.inner.admit(peer, self.max_message);
    }

    /// Closes a peer's connection.
    pub fn disconnect(&self, peer: &PeerId) {
        self.inner.disconnect(peer);
    }
}

/// The receiving half of the dispatcher's socket.
pub struct RouterReceiver(mpsc::Receiver<Inbound>);

impl RouterReceiver {
    /// Receives the next message and who sent it. The outer error means the socket
    /// itself is gone; the inner one is a bad frame from that peer, to drop and count.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Result<(PeerId, Result<FromWorker, ConnectionError>), ConnectionError> {
        let inbound = self.0.recv().await.ok_or(ConnectionError::Closed)?;
        let decoded = single_frame(inbound.message).and_then(|body| Ok(wire::decode(&body)?));
        Ok((inbound.peer, decoded))
    }
}

/// Connection events of the dispatcher's socket.
pub struct PeerEvents(mpsc::UnboundedReceiver<PeerEvent>);

impl PeerEvents {
    /// The next accepted or disconnected peer; `None` once the socket is gone. Cancel-safe.
    pub async fn next(&mut self) -> Option<PeerEvent> {
        self.0.recv().await
    }
}
