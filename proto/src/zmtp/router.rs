//! The dispatcher's ROUTER socket: one listener, a reader and a writer task per peer. A
//! send to a peer whose writer holds nothing goes straight into its socket, in the
//! sender's turn: on an idle cluster that saves a task hop and a wake-up per frame.
//!
//! What a peer may cost is bounded at every step: connections by [`RouterLimits::max_peers`]
//! (more are closed at once and counted); the handshake by a timeout; a peer the
//! application has not [admitted](RouterSender::admit) may send messages of at most
//! [`RouterLimits::stranger_message`] bytes and must be admitted within
//! [`RouterLimits::admit_timeout`]; messages read but not yet taken by the application by
//! [`RouterLimits::inbound_bytes`] in all (readers wait, TCP pushes back); what is queued
//! to one peer by [`RouterLimits::peer_queue`] frames. Accept errors (out of descriptors)
//! back off instead of spinning.

use super::handshake::handshake;
use super::limits::{RouterLimits, RouterStats};
use super::reader::{Message, MessageReader};
use super::writer::{hang_up, write, Outbound, PeerOut, Sent};
use super::ZmtpError;
use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// A peer's identity on this socket: assigned here, never taken from the peer, never
/// reused while the socket lives.
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

/// Connection events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// A peer completed the handshake.
    Accepted(PeerId),
    /// A peer's connection closed.
    Disconnected(PeerId),
}

struct Peer {
    queue: mpsc::Sender<Outbound>,
    out: Arc<PeerOut>,
    limit: Arc<AtomicUsize>,
    close: CancellationToken,
}

type Peers = Arc<RwLock<HashMap<PeerId, Peer>>>;

/// One message and the share of the inbound budget it holds until dropped.
pub struct Inbound {
    /// Who sent it.
    pub peer: PeerId,
    /// The message.
    pub message: Message,
    _budget: OwnedSemaphorePermit,
}

/// The bound socket.
pub struct Router {
    /// Sends to peers; cheap to clone.
    pub sender: RouterSender,
    /// Messages from every peer. Cancel-safe.
    pub receiver: mpsc::Receiver<Inbound>,
    /// Accepted and disconnected peers.
    pub events: mpsc::UnboundedReceiver<PeerEvent>,
    /// The address bound, as `tcp://ip:port`.
    pub endpoint: String,
    /// Counters of what was refused.
    pub stats: Arc<RouterStats>,
}

/// Starts serving on a listener the caller bound; the socket lives until `shutdown`.
pub fn bind(
    listener: std::net::TcpListener,
    limits: RouterLimits,
    shutdown: CancellationToken,
) -> Result<Router, ZmtpError> {
    listener.set_nonblocking(true)?;
    let endpoint = format!("tcp://{}", listener.local_addr()?);
    let listener = TcpListener::from_std(listener)?;
    let peers: Peers = Arc::default();
    let stats = Arc::new(RouterStats::default());
    let (inbound_tx, receiver) = mpsc::channel(1024);
    let (events_tx, events) = mpsc::unbounded_channel();
    let accept = Acceptor {
        shared: Connection {
            budget: Arc::new(Semaphore::new(limits.inbound_bytes)),
            limits: Arc::new(limits),
            peers: peers.clone(),
            stats: stats.clone(),
            inbound: inbound_tx,
            events: events_tx,
        },
        next_id: 0,
    };
    tokio::spawn(accept.run(listener, shutdown));
    Ok(Router {
        sender: RouterSender { peers },
        receiver,
        events,
        endpoint,
        stats,
    })
}

/// The sending half: frames to peers by identity, admission and disconnection.
#[derive(Clone)]
pub struct RouterSender {
    peers: Peers,
}

impl RouterSender {
    /// Sends one single-part message to `peer`: straight into its socket when nothing is
    /// queued for it, else queued for its writer, waiting while that queue is full.
    pub async fn send(&self, peer: &PeerId, frame: Bytes) -> Result<(), ZmtpError> {
        let (queue, frame) = {
            let peers = self.peers.read();
            let Some(p) = peers.get(peer) else {
                return Err(ZmtpError::UnknownPeer);
            };
            match p.out.send(&p.queue, frame) {
                Sent::Done => return Ok(()),
                Sent::Gone => return Err(ZmtpError::UnknownPeer),
                Sent::Full(frame) => (p.queue.clone(), frame),
            }
        };
        queue
            .send(Outbound::Frame(frame))
            .await
            .map_err(|_| ZmtpError::UnknownPeer)
    }

    /// The peer is known to the application now: it may send messages up to the full
    /// limit, and no admission deadline applies.
    pub fn admit(&self, peer: &PeerId, max_message: usize) {
        if let Some(p) = self.peers.read().get(peer) {
            p.limit.store(max_message, Ordering::Release);
        }
    }

    /// Closes the peer's connection (what was queued for it is dropped).
    pub fn disconnect(&self, peer: &PeerId) {
        if let Some(p) = self.peers.read().get(peer) {
            p.close.cancel();
        }
    }
}

/// What every connection task of the socket shares.
#[derive(Clone)]
struct Connection {
    limits: Arc<RouterLimits>,
    peers: Peers,
    stats: Arc<RouterStats>,
    inbound: mpsc::Sender<Inbound>,
    events: mpsc::UnboundedSender<PeerEvent>,
    budget: Arc<Semaphore>,
}

struct Acceptor {
    shared: Connection,
    next_id: u64,
}

impl Acceptor {
    async fn run(mut self, listener: TcpListener, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(5);
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let stream = match accepted {
                Ok((stream, _)) => {
                    backoff = Duration::from_millis(5);
                    stream
                }
                Err(e) => {
                    // Out of descriptors or memory: accepting again at once would spin.
                    let n = self.shared.stats.accept_errors.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_power_of_two() {
                        warn!(
                            errors = n,
                            "worker socket cannot accept: {e}; backing off {backoff:?} (logged at powers of two)"
                        );
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            if self.shared.stats.open.load(Ordering::Acquire) >= self.shared.limits.max_peers {
                let n = self.shared.stats.over_capacity.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    warn!(
                        limit = self.shared.limits.max_peers,
                        refused = n,
                        "worker socket at its connection limit; closed a new connection (logged at powers of two)"
                    );
                }
                drop(stream);
                continue;
            }
            self.shared.stats.open.fetch_add(1, Ordering::AcqRel);
            self.next_id += 1;
            let id = PeerId(Bytes::copy_from_slice(&self.next_id.to_be_bytes()));
            tokio::spawn(self.connection(id, stream, shutdown.child_token()));
        }
        for peer in self.shared.peers.read().values() {
            peer.close.cancel();
        }
    }

    fn connection(
        &self,
        id: PeerId,
        stream: TcpStream,
        close: CancellationToken,
    ) -> impl std::future::Future<Output = ()> {
        let conn = self.shared.clone();
        async move {
            conn.serve(id, stream, close).await;
            conn.stats.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Connection {
    async fn serve(&self, id: PeerId, mut stream: TcpStream, close: CancellationToken) {
        let _ = stream.set_nodelay(true);
        let mut buf = BytesMut::new();
        let shaken = tokio::select! {
            _ = close.cancelled() => return,
            r = tokio::time::timeout(self.limits.handshake_timeout, handshake(&mut stream, &mut buf, true, "ROUTER", "DEALER")) => r,
        };
        let failure = match shaken {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no handshake within {:?}", self.limits.handshake_timeout)),
        };
        if let Some(why) = failure {
            self.stats.bad_handshakes.fetch_add(1, Ordering::Relaxed);
            debug!(peer = %id, "worker connection handshake failed: {why}");
            hang_up(stream).await;
            return;
        }
        let (rd, wr) = stream.into_split();
        let out = Arc::new(PeerOut::new(wr, close.clone()));
        let (queue, frames) = mpsc::channel(self.limits.peer_queue.max(1));
        let limit = Arc::new(AtomicUsize::new(self.limits.stranger_message));
        self.peers.write().insert(
            id.clone(),
            Peer {
                queue,
                out: out.clone(),
                limit: limit.clone(),
                close: close.clone(),
            },
        );
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = self.events.send(PeerEvent::Accepted(id.clone()));

        let writer = tokio::spawn(write(
            out,
            frames,
            close.clone(),
            self.limits.write_timeout,
            self.stats.clone(),
        ));
        self.read(&id, rd, MessageReader::with_buffer(buf), &limit, &close)
            .await;
        close.cancel();
        self.peers.write().remove(&id);
        let _ = writer.await;
        let _ = self.events.send(PeerEvent::Disconnected(id));
    }

    async fn read(
        &self,
        id: &PeerId,
        mut rd: OwnedReadHalf,
        mut reader: MessageReader,
        limit: &AtomicUsize,
        close: &CancellationToken,
    ) {
        let admit_by = tokio::time::Instant::now() + self.limits.admit_timeout;
        // One waiter on `close` for the connection's life, not three per message.
        let closed = close.cancelled();
        tokio::pin!(closed);
        loop {
            let stranger = limit.load(Ordering::Acquire) <= self.limits.stranger_message;
            let admit_deadline = async {
                if stranger {
                    tokio::time::sleep_until(admit_by).await
                } else {
                    std::future::pending().await
                }
            };
            let received = tokio::select! {
                _ = &mut closed => return,
                _ = admit_deadline => {
                    // Only a peer that stays a stranger past its deadline is closed; one
                    // admitted meanwhile is let through on the next turn.
                    if limit.load(Ordering::Acquire) <= self.limits.stranger_message {
                        self.stats.not_admitted.fetch_add(1, Ordering::Relaxed);
                        debug!(peer = %id, "worker connection not admitted within {:?}; closed", self.limits.admit_timeout);
                        return;
                    }
                    continue;
                }
                m = reader.next(&mut rd, limit) => m,
            };
            let message = match received {
                Ok(m) => m,
                Err(ZmtpError::Closed) => return,
                Err(e @ (ZmtpError::Frame(_) | ZmtpError::TooManyParts(_) | ZmtpError::Handshake(_))) => {
                    let n = self.stats.bad_frames.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_power_of_two() {
                        warn!(peer = %id, bad = n, "closed a worker connection: {e} (logged at powers of two)");
                    }
                    return;
                }
                Err(e) => {
                    debug!(peer = %id, "worker connection failed: {e}");
                    return;
                }
            };
            let cost = message.len().clamp(1, self.limits.inbound_bytes) as u32;
            let budget = tokio::select! {
                _ = &mut closed => return,
                p = self.budget.clone().acquire_many_owned(cost) => p,
            };
            let Ok(budget) = budget else { return };
            let item = Inbound {
                peer: id.clone(),
                message,
                _budget: budget,
            };
            tokio::select! {
                _ = &mut closed => return,
                sent = self.inbound.send(item) => if sent.is_err() { return },
            }
        }
    }
}
