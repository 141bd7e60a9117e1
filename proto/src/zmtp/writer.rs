//! The writing side of a ZMTP connection: frames out in batches, and a refused
//! connection closed politely.

use super::codec::put_header;
use super::limits::RouterStats;
use bytes::{Bytes, BytesMut};
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

/// One peer's writer: whatever has queued up at each wake-up goes out in one write, under
/// `timeout`; a peer that reads nothing for that long is closed (`close` is cancelled).
pub async fn write(
    mut wr: OwnedWriteHalf,
    mut frames: mpsc::Receiver<Bytes>,
    close: CancellationToken,
    timeout: Duration,
    stats: Arc<RouterStats>,
) {
    let mut batch = Vec::with_capacity(64);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        let n = tokio::select! {
            _ = close.cancelled() => break,
            n = frames.recv_many(&mut batch, 64) => n,
        };
        if n == 0 {
            break;
        }
        let sending = async {
            for frame in batch.drain(..) {
                put_header(&mut out, 0, frame.len());
                if frame.len() < COPY_BELOW {
                    out.extend_from_slice(&frame);
                } else {
                    wr.write_all(&out).await?;
                    out.clear();
                    wr.write_all(&frame).await?;
                }
            }
            if !out.is_empty() {
                wr.write_all(&out).await?;
                out.clear();
            }
            Ok::<(), std::io::Error>(())
        };
        let result = tokio::select! {
            _ = close.cancelled() => break,
            r = tokio::time::timeout(timeout, sending) => r,
        };
        match result {
            Ok(Ok(())) => {}
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
