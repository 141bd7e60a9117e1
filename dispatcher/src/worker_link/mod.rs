//! The dispatcher's ZeroMQ endpoint: one ROUTER socket for every worker.
//!
//! - [`InboundReader`] — read by the reactor itself (no hop in between): decodes frames;
//!   bad ones are dropped, counted and logged once per peer; closed connections become
//!   [`Inbound::Disconnected`] (fast death detection);
//! - [`Outgoing`] — every message to a worker is encoded here, once, and queued on that
//!   worker's own bounded queue, drained by that worker's own writer task: a stalled or
//!   slow worker only ever delays itself, never the reactor or another worker.

use crate::shared::{EdgeCounters, Shared};
use bytes::Bytes;
use foldhash::{HashMap, HashSet};
use futures::FutureExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};
use volley_proto::connection::{bind_router, ConnectionError, PeerEvent, PeerId, RouterReceiver, RouterSender};
use volley_proto::function::{CodeDigest, Job};
use volley_proto::wire::{self, CodecError, FromWorker, TaskAssignment, ToWorker};
use volley_proto::zmtp::{RouterLimits, RouterStats};

/// How long one send may wait for a worker's socket before the worker counts as stalled.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// Frames queued for one worker at most; beyond it, frames to that worker are dropped
/// (leases recover the tasks in them) and nobody else notices.
pub const SEND_QUEUE_FRAMES: usize = 1024;
/// Peers remembered for once-per-peer logging before the memory is reset.
const LOGGED_PEERS_CAP: usize = 10_000;

/// Something a worker's connection produced.
#[derive(Debug)]
pub enum Inbound {
    /// A decoded message.
    Message(PeerId, FromWorker),
    /// The connection closed.
    Disconnected(PeerId),
    /// A peer spoke another protocol version; it should be told why it is refused.
    WrongVersion(PeerId, u16),
}

/// The reactor's handles on the worker endpoint.
pub struct WorkerLink {
    /// Where workers connect.
    pub endpoint: String,
    /// Messages to workers.
    pub outgoing: Outgoing,
    /// What workers say.
    pub inbound: InboundReader,
    /// What the socket refused (oversized frames, failed handshakes, connections over
    /// the cap), for `/metrics`.
    pub stats: Arc<RouterStats>,
}

/// Decoded messages and disconnections from every worker. Cancel-safe.
pub struct InboundReader {
    receiver: RouterReceiver,
    disconnects: mpsc::Receiver<PeerId>,
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
                Ok((peer, Err(e))) => {
                    if let Some(version) = self.bad_frame(&peer, e) {
                        return Some(Inbound::WrongVersion(peer, version));
                    }
                }
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

    /// Counts and logs a bad frame; returns the version a peer spoke if that was the fault.
    fn bad_frame(&mut self, peer: &PeerId, e: ConnectionError) -> Option<u16> {
        EdgeCounters::bump(&self.shared.counters.dropped_frames);
        if self.logged.len() >= LOGGED_PEERS_CAP {
            self.logged.clear();
        }
        if self.logged.insert(peer.clone()) {
            warn!(peer = %peer, "dropped a bad frame from a worker connection: {e} (further ones from this peer are counted, not logged)");
        }
        match e {
            ConnectionError::Codec(CodecError::Version { got }) => Some(got),
            _ => None,
        }
    }
}

/// The refusal a peer speaking protocol `got` is sent.
pub fn version_reject(got: u16) -> ToWorker {
    ToWorker::Reject {
        reason: format!(
            "this dispatcher speaks protocol version {}, the worker sent version {got}",
            wire::PROTOCOL_VERSION
        ),
    }
}

/// One worker's send queue, and how many of its frames the writer has not finished.
struct Lane {
    queue: mpsc::Sender<Bytes>,
    backlog: Arc<AtomicUsize>,
    /// User code already queued for this connection: sent once per digest.
    code_sent: HashSet<CodeDigest>,
}

/// Messages to workers: one bounded queue and one writer task per peer. A frame to a
/// worker with nothing queued goes straight into the socket, without waiting for its
/// writer to be scheduled: on an idle cluster that task hop let the gRPC reply overtake
/// the task on its way to the worker.
pub struct Outgoing {
    sender: RouterSender,
    queues: HashMap<PeerId, Lane>,
    tracker: TaskTracker,
    dropped: u64,
    /// Peers sent a frame since the last heartbeat round: any frame tells a worker the
    /// dispatcher is alive, so they need no heartbeat.
    recently_sent: HashSet<PeerId>,
    shared: Arc<Shared>,
}

impl Outgoing {
    fn new(sender: RouterSender, tracker: TaskTracker, shared: Arc<Shared>) -> Self {
        Self {
            sender,
            queues: HashMap::default(),
            tracker,
            dropped: 0,
            recently_sent: HashSet::default(),
            shared,
        }
    }

    /// Queues, ahead of `tasks`, the code of every user function among them that this
    /// connection was not sent yet, in pieces of [`wire::CODE_CHUNK_BYTES`].
    fn send_code(&mut self, peer: &PeerId, tasks: &[TaskAssignment]) {
        for task in tasks {
            let Job::User { code, .. } = &task.job else { continue };
            if self
                .queues
                .get(peer)
                .is_some_and(|l| l.code_sent.contains(&code.digest))
            {
                continue;
            }
            let Some(bytes) = self.shared.code.get(&code.digest) else {
                warn!(digest = %code.digest, "a task's code is not held; the worker will fail its init");
                continue;
            };
            let total = bytes.len() as u64;
            let mut offset = 0;
            for data in bytes.chunks(wire::CODE_CHUNK_BYTES) {
                let piece = ToWorker::Code {
                    digest: code.digest,
                    total,
                    offset,
                    data: data.to_vec(),
                };
                offset += data.len() as u64;
                if let Some(frame) = encode(&piece) {
                    self.enqueue(peer, frame);
                }
            }
            if let Some(lane) = self.queues.get_mut(peer) {
                lane.code_sent.insert(code.digest);
            }
        }
    }

    /// Notes that `peer` holds the code of `digest` already (a provisioned instance was
    /// given it), so it is never sent.
    pub fn holds_code(&mut self, peer: &PeerId, digest: CodeDigest) {
        if let Some(lane) = self.queues.get_mut(peer) {
            lane.code_sent.insert(digest);
        }
    }

    /// Sends a heartbeat to each of `peers` that was sent nothing since the last round:
    /// under load the frames themselves prove the dispatcher alive, and a thousand busy
    /// workers cost no heartbeat traffic.
    pub fn heartbeat<'a>(&mut self, peers: impl IntoIterator<Item = &'a PeerId>) {
        let Some(frame) = encode(&ToWorker::Heartbeat) else {
            return;
        };
        for peer in peers {
            if !self.recently_sent.contains(peer) {
                self.enqueue(peer, frame.clone());
            }
        }
        self.recently_sent.clear();
    }

    /// Encodes `msg` and queues it for `peer`.
    pub fn send(&mut self, peer: &PeerId, msg: &ToWorker) {
        if let Some(frame) = encode(msg) {
            if self.enqueue(peer, frame) && !self.recently_sent.contains(peer) {
                self.recently_sent.insert(peer.clone());
            }
        }
    }

    /// Queues `tasks` for `peer` in as many frames as their encoded size needs: a batch
    /// over [`wire::MAX_FRAME_BYTES`] is halved until each part fits, in order. A single
    /// task cannot be too large (arguments are bounded far below the frame limit).
    pub fn send_tasks(&mut self, peer: &PeerId, tasks: &[TaskAssignment]) {
        self.send_code(peer, tasks);
        match wire::encode(&wire::TasksRef(tasks)) {
            Ok(frame) => {
                if self.enqueue(peer, Bytes::from(frame)) {
                    self.recently_sent.insert(peer.clone());
                }
            }
            Err(CodecError::TooLarge { .. }) => {
                if tasks.len() < 2 {
                    warn!(peer = %peer, "a single task's frame exceeds the frame limit; its lease will fail it");
                    return;
                }
                let (first, second) = tasks.split_at(tasks.len() / 2);
                self.send_tasks(peer, first);
                self.send_tasks(peer, second);
            }
            Err(e) => warn!("cannot encode tasks for a worker: {e}"),
        }
    }

    /// Encodes `msg` once and queues it for every peer given.
    pub fn send_to_all<'a>(&mut self, peers: impl IntoIterator<Item = &'a PeerId>, msg: &ToWorker) {
        if let Some(frame) = encode(msg) {
            for peer in peers {
                self.enqueue(peer, frame.clone());
            }
        }
    }

    /// The peer registered: its frames may now be as large as the protocol allows.
    pub fn admit(&self, peer: &PeerId) {
        self.sender.admit(peer);
    }

    /// Closes the peer's connection (a worker declared dead, refused, or replaced).
    pub fn disconnect(&mut self, peer: &PeerId) {
        self.sender.disconnect(peer);
        self.forget(peer);
    }

    /// The peer's connection is gone: its queue closes and its writer ends.
    pub fn forget(&mut self, peer: &PeerId) {
        self.queues.remove(peer);
        self.recently_sent.remove(peer);
    }

    /// Sends or queues one frame for `peer`; whether it went.
    fn enqueue(&mut self, peer: &PeerId, frame: Bytes) -> bool {
        let lane = self.queues.entry(peer.clone()).or_insert_with(|| {
            let (queue, rx) = mpsc::channel(SEND_QUEUE_FRAMES);
            let backlog = Arc::new(AtomicUsize::new(0));
            self.tracker
                .spawn(write(self.sender.clone(), peer.clone(), rx, backlog.clone()));
            Lane {
                queue,
                backlog,
                code_sent: HashSet::default(),
            }
        });
        // Nothing of this peer's is queued or being sent, so order holds. The socket's
        // send only parks when its own queue to the peer is full; then the frame is
        // not sent and goes to the writer, which may wait.
        if lane.backlog.load(Ordering::Acquire) == 0 {
            match self.sender.send_frame(peer, frame.clone()).now_or_never() {
                Some(Ok(())) => return true,
                Some(Err(e)) => {
                    debug!(peer = %peer, "send to worker failed: {e}");
                    return false;
                }
                None => {}
            }
        }
        lane.backlog.fetch_add(1, Ordering::AcqRel);
        match lane.queue.try_send(frame) {
            Ok(()) => true,
            Err(e) => {
                lane.backlog.fetch_sub(1, Ordering::AcqRel);
                self.refused(peer, e)
            }
        }
    }

    /// A frame the peer's queue did not take; always `false`.
    fn refused(&mut self, peer: &PeerId, e: mpsc::error::TrySendError<Bytes>) -> bool {
        match e {
            mpsc::error::TrySendError::Full(_) => {
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    warn!(peer = %peer, dropped = self.dropped, "a worker's send queue is full; frame dropped, leases will recover its tasks (logged at powers of two)");
                }
                false
            }
            mpsc::error::TrySendError::Closed(_) => {
                // Its writer gave up; a new one starts with the next frame.
                self.queues.remove(peer);
                false
            }
        }
    }
}

fn encode(msg: &ToWorker) -> Option<Bytes> {
    match wire::encode(msg) {
        Ok(frame) => Some(Bytes::from(frame)),
        Err(e) => {
            warn!("cannot encode a message for a worker: {e}");
            None
        }
    }
}

/// Frames a writer takes from its queue per wake-up.
const WRITE_BATCH: usize = 64;

/// One worker's writer: sends its frames in order, whatever has queued up at each wake-up
/// under one timeout. A batch that times out marks the worker stalled: what it has queued
/// is dropped (leases recover the tasks), so a stalled worker holds nothing up, not even
/// a stopping dispatcher.
async fn write(mut sender: RouterSender, peer: PeerId, mut frames: mpsc::Receiver<Bytes>, backlog: Arc<AtomicUsize>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while frames.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        let taken = batch.len();
        let sending = async {
            for frame in batch.drain(..) {
                sender.send_frame(&peer, frame).await?;
            }
            Ok::<(), ConnectionError>(())
        };
        match tokio::time::timeout(SEND_TIMEOUT, sending).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!(peer = %peer, "send to worker failed: {e}"),
            Err(_) => {
                let mut skipped = 0;
                while frames.try_recv().is_ok() {
                    skipped += 1;
                }
                backlog.fetch_sub(skipped, Ordering::AcqRel);
                warn!(peer = %peer, skipped, "send to worker timed out after {SEND_TIMEOUT:?}; the rest of its batch and its queued frames are dropped");
            }
        }
        batch.clear();
        backlog.fetch_sub(taken, Ordering::AcqRel);
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
pub fn start(
    listener: std::net::TcpListener,
    limits: RouterLimits,
    shared: Arc<Shared>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<WorkerLink, ConnectionError> {
    let conn = bind_router(listener, limits, shutdown.clone())?;
    let outgoing = Outgoing::new(conn.sender, tracker.clone(), shared.clone());
    let (disconnect_tx, disconnects) = mpsc::channel(1024);

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

    Ok(WorkerLink {
        endpoint: reachable(&conn.endpoint),
        inbound: InboundReader {
            receiver: conn.receiver,
            disconnects,
            shared,
            logged: HashSet::default(),
        },
        outgoing,
        stats: conn.stats,
    })
}

#[cfg(test)]
mod tests;
