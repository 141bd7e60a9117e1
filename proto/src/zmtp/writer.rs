//! The writing side of a ZMTP connection: a frame straight into the socket when nothing
//! is queued before it, frames out in batches otherwise, and a refused connection closed
//! politely.

use super::codec::{header, put_header};
use super::limits::RouterStats;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Closes a refused connection with a FIN rather than a reset: what the peer already sent
/// is read and dropped first, within a small bound of bytes and time.
pub async fn hang_up(mut stream: TcpStream) {
    use tokio::io::AsyncReadExt;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let draining = async {
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(200), draining).await;
}

/// Frames at or above this size are written straight from their buffer, not copied.
pub const COPY_BELOW: usize = 32 * 1024;

/// What a peer's writer task is handed.
#[derive(Debug)]
pub enum Outbound {
    /// A message body, to be framed.
    Frame(Bytes),
    /// Bytes already framed: what a direct send left unwritten.
    Framed(Bytes),
}

/// One peer's way out: its socket, written by a direct send when the writer task holds
/// nothing (no task hop, no wake-up of the writer), and by the writer task otherwise.
pub struct PeerOut {
    socket: OwnedWriteHalf,
    /// Whether the writer task has frames queued or in hand; a direct send would then
    /// overtake them. Sends set it while they queue, the writer clears it once it has
    /// written everything, both under this lock, so no frame is left unwritten or reordered.
    busy: Mutex<bool>,
    /// Cancelled when a direct write fails, as the writer does: the connection closes.
    close: CancellationToken,
}

/// What became of a send.
pub enum Sent {
    /// Handed to the socket or queued for the writer.
    Done,
    /// The writer's queue is full; the frame is handed back.
    Full(Bytes),
    /// The connection is gone.
    Gone,
}

impl PeerOut {
    /// A peer's way out, idle; a failed write cancels `close`.
    pub fn new(socket: OwnedWriteHalf, close: CancellationToken) -> Self {
        Self {
            socket,
            busy: Mutex::new(false),
            close,
        }
    }

    /// Writes `frame` into the socket at once if the writer holds nothing and the socket
    /// takes it; queues it (or what of it the socket did not take) for the writer
    /// otherwise. Never waits.
    pub fn send(&self, queue: &mpsc::Sender<Outbound>, frame: Bytes) -> Sent {
        if queue.is_closed() {
            return Sent::Gone;
        }
        let mut busy = self.busy.lock();
        if *busy {
            return match queue.try_send(Outbound::Frame(frame)) {
                Ok(()) => Sent::Done,
                Err(mpsc::error::TrySendError::Full(Outbound::Frame(f) | Outbound::Framed(f))) => Sent::Full(f),
                Err(mpsc::error::TrySendError::Closed(_)) => Sent::Gone,
            };
        }
        let (header, n) = header(0, frame.len());
        let parts = [IoSlice::new(&header[..n]), IoSlice::new(&frame)];
        let written = match self.socket.try_write_vectored(&parts) {
            Ok(w) => w,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                self.close.cancel();
                return Sent::Gone;
            }
        };
        if written == n + frame.len() {
            return Sent::Done;
        }
        // The writer holds nothing, so its queue is empty and takes this.
        match queue.try_send(Outbound::Framed(unwritten(&header[..n], &frame, written))) {
            Ok(()) => {
                *busy = true;
                Sent::Done
            }
            Err(_) => Sent::Gone,
        }
    }
}

/// What a write of `written` bytes left of a frame (`header`, then `body`).
fn unwritten(header: &[u8], body: &Bytes, written: usize) -> Bytes {
    if written < header.len() {
        let mut rest = BytesMut::with_capacity(header.len() - written + body.len());
        rest.extend_from_slice(&header[written..]);
        rest.extend_from_slice(body);
        rest.freeze()
    } else {
        body.slice(written - header.len()..)
    }
}

/// One peer's writer: whatever has queued up at each wake-up goes out in one write, under
/// `timeout`; a peer that reads nothing for that long is closed (`close` is cancelled).
pub async fn write(
    out: Arc<PeerOut>,
    mut frames: mpsc::Receiver<Outbound>,
    close: CancellationToken,
    timeout: Duration,
    stats: Arc<RouterStats>,
) {
    let mut batch = Vec::with_capacity(64);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // One waiter on `close` for the writer's life, not one joined and left per frame.
    let closed = close.cancelled();
    tokio::pin!(closed);
    loop {
        let n = tokio::select! {
            _ = &mut closed => break,
            n = frames.recv_many(&mut batch, 64) => n,
        };
        if n == 0 {
            break;
        }
        let sending = async {
            for item in batch.drain(..) {
                let (framed, body) = match item {
                    Outbound::Frame(body) => (false, body),
                    Outbound::Framed(bytes) => (true, bytes),
                };
                if !framed {
                    put_header(&mut buf, 0, body.len());
                }
                if body.len() < COPY_BELOW {
                    buf.extend_from_slice(&body);
                } else {
                    write_all(&out.socket, &buf).await?;
                    buf.clear();
                    write_all(&out.socket, &body).await?;
                }
            }
            if !buf.is_empty() {
                write_all(&out.socket, &buf).await?;
                buf.clear();
            }
            Ok::<(), std::io::Error>(())
        };
        let result = tokio::select! {
            _ = &mut closed => break,
            r = tokio::time::timeout(timeout, sending) => r,
        };
        match result {
            Ok(Ok(())) => {
                let mut busy = out.busy.lock();
                if frames.is_empty() {
                    *busy = false;
                }
            }
            Ok(Err(_)) => break,
            Err(_) => {
                stats.write_timeouts.fetch_add(1, Ordering::Relaxed);
                warn!("a worker read nothing for {timeout:?}; its connection is closed");
                break;
            }
        }
    }
    close.cancel();
}

/// Writes all of `bytes`, waiting for the socket to take them.
async fn write_all(socket: &OwnedWriteHalf, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match socket.try_write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => socket.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_partial_write_leaves_is_the_frame_from_that_byte_on() {
        for len in [3, 300] {
            let body = Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>());
            let (h, n) = header(0, len);
            let whole: Vec<u8> = h[..n].iter().chain(body.iter()).copied().collect();
            for written in 0..whole.len() {
                assert_eq!(
                    &unwritten(&h[..n], &body, written)[..],
                    &whole[written..],
                    "{written} of {len}"
                );
            }
        }
    }
}
