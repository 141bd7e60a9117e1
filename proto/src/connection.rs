//! Typed ZeroMQ connections between dispatcher and workers.
//!
//! The dispatcher binds one ROUTER ([`bind_router`]); each worker connects one DEALER
//! ([`WorkerConnection`]). Both sides see [`FromWorker`]/[`ToWorker`] values, never bytes.
//! A successful send only means "queued locally": delivery is decided by leases.

use crate::wire::{self, CodecError, FromWorker, ToWorker};
use bytes::Bytes;
use futures::StreamExt;
use std::time::Duration;
use zeromq::{
    DealerRecvHalf, DealerSendHalf, DealerSocket, RouterRecvHalf, RouterSendHalf, RouterSocket, Socket, SocketEvent,
    SocketOptions, SocketRecv, SocketSend, ZmqMessage,
};

/// A worker's ZeroMQ identity as the dispatcher's ROUTER socket sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerId(pub Bytes);

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0.iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a connection could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The socket failed (peer unreachable, socket closed).
    #[error("ZeroMQ: {0}")]
    Zmq(#[from] zeromq::ZmqError),
    /// Connecting took longer than allowed.
    #[error("no answer from {endpoint} within {timeout:?}")]
    Timeout {
        /// Where we tried to connect.
        endpoint: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// A message could not be encoded or a frame decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A message arrived with an unexpected number of frames.
    #[error("message of {0} frames; the protocol uses exactly one")]
    Frames(usize),
}

fn single_frame(msg: ZmqMessage) -> Result<Bytes, ConnectionError> {
    if msg.len() != 1 {
        return Err(ConnectionError::Frames(msg.len()));
    }
    Ok(msg.into_vec().pop().unwrap_or_default())
}

/// A worker's connection to its dispatcher.
pub struct WorkerConnection {
    tx: DealerSendHalf,
    rx: DealerRecvHalf,
}

impl WorkerConnection {
    /// Connects a fresh DEALER socket; fails after `timeout` if nobody answers.
    pub async fn connect(endpoint: &str, timeout: Duration) -> Result<Self, ConnectionError> {
        let mut options = SocketOptions::default();
        options.connect_timeout(timeout);
        let mut socket = DealerSocket::with_options(options);
        match tokio::time::timeout(timeout, socket.connect(endpoint)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(ConnectionError::Timeout {
                    endpoint: endpoint.to_owned(),
                    timeout,
                })
            }
        }
        let (tx, rx) = socket.split();
        Ok(Self { tx, rx })
    }

    /// Sends one message.
    pub async fn send(&mut self, msg: &FromWorker) -> Result<(), ConnectionError> {
        self.send_frame(wire::encode(msg)?).await
    }

    /// Sends raw bytes as one frame; for tests that speak garbage on purpose.
    pub async fn send_frame(&mut self, frame: Vec<u8>) -> Result<(), ConnectionError> {
        self.tx.send(ZmqMessage::from(frame)).await?;
        Ok(())
    }

    /// Receives the next message. A frame that does not decode is returned as an error
    /// and the connection stays usable. Cancel-safe.
    pub async fn recv(&mut self) -> Result<ToWorker, ConnectionError> {
        let msg = self.rx.recv().await?;
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
}

/// Binds the dispatcher's ROUTER socket on a listener the caller bound.
pub async fn bind_router(listener: std::net::TcpListener) -> Result<RouterConnection, ConnectionError> {
    let mut socket = RouterSocket::new();
    let events = socket.monitor();
    let endpoint = socket.bind_listener(listener).await?.to_string();
    let (tx, rx) = socket.split();
    Ok(RouterConnection {
        sender: RouterSender(tx),
        receiver: RouterReceiver(rx),
        events: PeerEvents(events),
        endpoint,
    })
}

/// The sending half of the dispatcher's socket.
#[derive(Clone)]
pub struct RouterSender(RouterSendHalf);

impl RouterSender {
    /// Sends an already-encoded frame to one worker. May wait while that worker's
    /// outgoing queue is full, so callers bound it with a timeout.
    pub async fn send_frame(&mut self, peer: &PeerId, frame: Bytes) -> Result<(), ConnectionError> {
        let mut msg = ZmqMessage::from(frame);
        msg.push_front(peer.0.clone());
        self.0.send(msg).await?;
        Ok(())
    }
}

/// The receiving half of the dispatcher's socket.
pub struct RouterReceiver(RouterRecvHalf);

impl RouterReceiver {
    /// Receives the next message and who sent it. The outer error means the socket
    /// itself failed; the inner one is a bad frame from that peer, to drop and count.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Result<(PeerId, Result<FromWorker, ConnectionError>), ConnectionError> {
        let msg = self.0.recv().await?;
        let mut frames = msg.into_vecdeque();
        let peer = PeerId(frames.pop_front().unwrap_or_default());
        let inner = if frames.len() == 1 {
            let body = frames.pop_front().unwrap_or_default();
            wire::decode(&body).map_err(ConnectionError::from)
        } else {
            Err(ConnectionError::Frames(frames.len()))
        };
        Ok((peer, inner))
    }
}

/// What happened to a worker's TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// A peer completed the ZeroMQ handshake.
    Accepted(PeerId),
    /// A peer's connection closed.
    Disconnected(PeerId),
}

/// Connection events of the dispatcher's socket.
pub struct PeerEvents(futures::channel::mpsc::Receiver<SocketEvent>);

impl PeerEvents {
    /// The next accepted or disconnected peer; `None` once the socket is gone. Cancel-safe.
    pub async fn next(&mut self) -> Option<PeerEvent> {
        loop {
            match self.0.next().await? {
                SocketEvent::Accepted(_, id) => return Some(PeerEvent::Accepted(PeerId(Bytes::copy_from_slice(&id)))),
                SocketEvent::Disconnected(id) => {
                    return Some(PeerEvent::Disconnected(PeerId(Bytes::copy_from_slice(&id))))
                }
                _ => continue,
            }
        }
    }
}
