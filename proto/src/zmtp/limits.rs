//! What one peer, and all of them, may cost on the ROUTER socket, and the counters of
//! what it refused.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// What one peer, and all of them together, may cost.
#[derive(Debug, Clone)]
pub struct RouterLimits {
    /// The largest message an admitted peer may send.
    pub max_message: usize,
    /// The largest message a peer not yet admitted may send.
    pub stranger_message: usize,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_peers: usize,
    /// Greeting and READY must be done within this.
    pub handshake_timeout: Duration,
    /// After the handshake, the application must admit the peer within this.
    pub admit_timeout: Duration,
    /// Bytes of messages read but not yet taken by the application, over all peers.
    pub inbound_bytes: usize,
    /// Frames queued to one peer at most; a full queue refuses the frame.
    pub peer_queue: usize,
    /// A write to a peer that takes longer than this closes its connection.
    pub write_timeout: Duration,
}

impl Default for RouterLimits {
    fn default() -> Self {
        Self {
            max_message: crate::wire::MAX_FRAME_BYTES,
            stranger_message: 64 * 1024,
            max_peers: 10_000,
            handshake_timeout: Duration::from_secs(5),
            admit_timeout: Duration::from_secs(10),
            inbound_bytes: 256 * 1024 * 1024,
            peer_queue: 1024,
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// What the socket refused or saw, for `/metrics` and the log.
#[derive(Debug, Default)]
pub struct RouterStats {
    /// Connections that completed the handshake.
    pub accepted: AtomicU64,
    /// Connections closed at once because `max_peers` were open.
    pub over_capacity: AtomicU64,
    /// Handshakes that failed or timed out.
    pub bad_handshakes: AtomicU64,
    /// Connections closed for a frame over its limit or against the grammar.
    pub bad_frames: AtomicU64,
    /// Peers closed for not being admitted in time.
    pub not_admitted: AtomicU64,
    /// Peers closed because writing to them timed out.
    pub write_timeouts: AtomicU64,
    /// Errors from `accept` (each followed by a back-off).
    pub accept_errors: AtomicU64,
    /// Connections open now.
    pub open: AtomicUsize,
}

impl RouterStats {
    /// Every refusal counter as `(name, help, count)`, for `/metrics` (the ROUTER is the
    /// dispatcher's worker port, hence the names).
    pub fn counters(&self) -> [(&'static str, &'static str, u64); 6] {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            (
                "worker_connections_over_capacity",
                "Worker-port connections closed on accept: --max-worker-connections were open.",
                load(&self.over_capacity),
            ),
            (
                "worker_bad_handshakes",
                "Worker-port connections whose ZMTP handshake failed or timed out.",
                load(&self.bad_handshakes),
            ),
            (
                "worker_oversized_or_malformed_frames",
                "Worker-port connections closed for a frame over its limit or against ZMTP's grammar.",
                load(&self.bad_frames),
            ),
            (
                "worker_not_admitted",
                "Worker-port connections closed for not registering in time.",
                load(&self.not_admitted),
            ),
            (
                "worker_write_timeouts",
                "Worker-port connections closed because the worker read nothing for too long.",
                load(&self.write_timeouts),
            ),
            (
                "worker_accept_errors",
                "Errors accepting worker-port connections (each followed by a back-off).",
                load(&self.accept_errors),
            ),
        ]
    }
}
