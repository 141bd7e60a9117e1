//! A ZMTP 3 transport of our own, with its limits built in: the part of ZeroMQ Volley
//! speaks (NULL mechanism, one ROUTER bound by the dispatcher, a DEALER per worker),
//! wire-compatible with libzmq.
//!
//! Why not the `zeromq` crate: its codec reserves whatever length a frame header claims
//! before the frame arrives (one 73-byte packet aborted the dispatcher), and it has no
//! per-peer bounds. Why not libzmq: its blocking API needs a thread hop per message beside
//! tokio, and its `ZMQ_MAXMSGSIZE` is one number for every peer, where Volley wants a
//! stranger to hold far less than a registered worker. What is left to write is small:
//!
//! - [`codec`] — frames; a header is judged against the limit before its body is read,
//!   and buffers grow with the bytes that arrived, never with a claim;
//! - [`handshake`] — the greeting and the NULL mechanism's READY, under a timeout;
//! - [`limits`] — what a peer may cost, and counters of what was refused;
//! - [`reader`] — whole (multi-part) messages, bounded in bytes and parts;
//! - [`router`] — the dispatcher's socket: connection cap, accept back-off, per-peer
//!   writer, a small frame limit until the application admits a peer, and a deadline for
//!   that admission; counters for everything it refuses ([`RouterStats`]);
//! - [`writer`] — frames out in batches under a timeout; refused connections closed with
//!   a FIN after a bounded drain;
//! - [`dealer`] — the worker's socket, with the same frame limit and send timeouts.
//!
//! We announce ZMTP 3.0, so libzmq peers send no PING; commands other than READY and
//! ERROR are read (within their own small limit) and ignored.

pub mod codec;
pub mod dealer;
pub mod handshake;
pub mod limits;
pub mod reader;
pub mod router;
pub mod writer;

pub use codec::FrameError;
pub use limits::{RouterLimits, RouterStats};

use std::time::Duration;

/// Why a ZMTP connection or socket failed.
#[derive(Debug, thiserror::Error)]
pub enum ZmtpError {
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection.
    #[error("connection closed by the peer")]
    Closed,
    /// The greeting or READY exchange failed.
    #[error("handshake: {0}")]
    Handshake(String),
    /// A frame broke the limits or the grammar.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A message of more parts than this side accepts.
    #[error("message of more than {0} parts")]
    TooManyParts(usize),
    /// Something took longer than allowed.
    #[error("{what} took longer than {after:?}")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long.
        after: Duration,
    },
    /// The endpoint is not `tcp://host:port`.
    #[error("endpoint {0:?}: only tcp://host:port is supported")]
    Endpoint(String),
    /// No connected peer has that identity (never had, or it left).
    #[error("no connected peer with that identity")]
    UnknownPeer,
}

/// `host:port` of a `tcp://host:port` endpoint.
pub fn tcp_address(endpoint: &str) -> Result<&str, ZmtpError> {
    endpoint
        .strip_prefix("tcp://")
        .filter(|a| a.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && !p.is_empty()))
        .ok_or_else(|| ZmtpError::Endpoint(endpoint.to_owned()))
}
