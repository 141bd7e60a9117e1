//! The gRPC port's own bounds, below tonic: what one connection, and all of them, may
//! hold before a single call is made.
//!
//! - accept errors (out of descriptors) back off instead of spinning a core;
//! - connections over [`EdgeLimits::grpc_connections`] are closed on accept;
//! - a connection must make its first call within [`EdgeLimits::handshake_timeout`]
//!   (TLS handshake, HTTP/2 preface, headers): an idle, preface-only or stalled-TLS peer
//!   is closed, not kept forever.
//!
//! Streams per connection, keep-alive pings and reset floods are HTTP/2's and are set on
//! the tonic builder (see `lib.rs`).

use crate::config::EdgeLimits;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::warn;

/// Counters of what the gRPC port refused.
#[derive(Debug, Default)]
pub struct EdgeStats {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections closed on accept because the cap was reached.
    pub over_capacity: AtomicU64,
    /// Connections closed for making no call within the handshake timeout.
    pub handshake_timeouts: AtomicU64,
    /// `accept` errors, each followed by a back-off.
    pub accept_errors: AtomicU64,
}

/// Connections by peer address, so the call layer can mark a connection as past its
/// handshake.
#[derive(Default)]
pub struct Connections {
    by_addr: Mutex<HashMap<SocketAddr, Arc<AtomicBool>>>,
    /// What was refused.
    pub stats: EdgeStats,
}

impl EdgeStats {
    /// Every refusal counter as `(name, help, count)`, for `/metrics`.
    pub fn counters(&self) -> [(&'static str, &'static str, u64); 3] {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            (
                "grpc_connections_over_capacity",
                "gRPC connections closed on accept: --max-connections were open.",
                load(&self.over_capacity),
            ),
            (
                "grpc_handshake_timeouts",
                "gRPC connections closed for making no call within --handshake-timeout-ms.",
                load(&self.handshake_timeouts),
            ),
            (
                "grpc_accept_errors",
                "Errors accepting gRPC connections (each followed by a back-off).",
                load(&self.accept_errors),
            ),
        ]
    }
}

impl Connections {
    /// A call arrived on the connection from `peer`: its handshake is done.
    pub fn called(&self, peer: Option<SocketAddr>) {
        if let Some(flag) = peer.and_then(|p| self.by_addr.lock().get(&p).cloned()) {
            flag.store(true, Ordering::Release);
        }
    }
}

/// Accepted connections as tonic wants them, bounded as the module says.
pub fn incoming(
    listener: TcpListener,
    limits: EdgeLimits,
    connections: Arc<Connections>,
) -> impl futures::Stream<Item = std::io::Result<Guarded>> {
    futures::stream::unfold((listener, Duration::from_millis(5)), move |(listener, mut backoff)| {
        let connections = connections.clone();
        let limits = limits.clone();
        async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        backoff = Duration::from_millis(5);
                        let stats = &connections.stats;
                        if stats.open.load(Ordering::Acquire) >= limits.grpc_connections {
                            let n = stats.over_capacity.fetch_add(1, Ordering::Relaxed) + 1;
                            if n.is_power_of_two() {
                                warn!(limit = limits.grpc_connections, refused = n, "gRPC port at its connection limit; closed a new connection (logged at powers of two)");
                            }
                            continue;
                        }
                        let _ = stream.set_nodelay(true);
                        let called = Arc::new(AtomicBool::new(false));
                        connections.by_addr.lock().insert(peer, called.clone());
                        stats.open.fetch_add(1, Ordering::AcqRel);
                        let guarded = Guarded {
                            inner: stream,
                            peer,
                            called,
                            deadline: Box::pin(tokio::time::sleep(limits.handshake_timeout)),
                            connections: connections.clone(),
                        };
                        return Some((Ok(guarded), (listener, backoff)));
                    }
                    Err(e) => {
                        let n = connections.stats.accept_errors.fetch_add(1, Ordering::Relaxed) + 1;
                        if n.is_power_of_two() {
                            warn!(
                                errors = n,
                                "gRPC port cannot accept: {e}; backing off {backoff:?} (logged at powers of two)"
                            );
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            }
        }
    })
}

/// A TCP connection that must make a call before its deadline.
pub struct Guarded {
    inner: TcpStream,
    peer: SocketAddr,
    called: Arc<AtomicBool>,
    deadline: Pin<Box<Sleep>>,
    connections: Arc<Connections>,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.connections.by_addr.lock().remove(&self.peer);
        self.connections.stats.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Guarded {
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        if self.called.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            if self.called.load(Ordering::Acquire) {
                // Called just now: push the deadline far out so it never fires again.
                self.deadline
                    .as_mut()
                    .reset(Instant::now() + Duration::from_secs(86_400 * 365));
                return Ok(());
            }
            self.connections
                .stats
                .handshake_timeouts
                .fetch_add(1, Ordering::Relaxed);
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no gRPC call within the handshake timeout",
            ));
        }
        Ok(())
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        self.check_deadline(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
