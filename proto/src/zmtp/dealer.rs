//! A worker's DEALER: one TCP connection to the dispatcher's ROUTER, no background tasks.
//! Sends write straight to the socket under a timeout (a dispatcher that stops reading
//! is a lost dispatcher, not a worker stuck forever); receives are cancel-safe.

use super::codec::put_header;
use super::handshake::handshake;
use super::reader::{Message, MessageReader};
use super::writer::COPY_BELOW;
use super::{tcp_address, ZmtpError};
use bytes::{Buf, BytesMut};
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A connected, handshaken DEALER.
pub struct Dealer {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    reader: MessageReader,
    out: BytesMut,
    max_message: AtomicUsize,
    send_timeout: Duration,
}

impl Dealer {
    /// Connects to `endpoint` (`tcp://host:port`) and shakes hands, all within `timeout`.
    /// Messages from the peer over `max_message` bytes end the connection.
    pub async fn connect(endpoint: &str, timeout: Duration, max_message: usize) -> Result<Self, ZmtpError> {
        let address = tcp_address(endpoint)?;
        let connecting = async {
            let mut stream = TcpStream::connect(address).await?;
            let _ = stream.set_nodelay(true);
            let mut buf = BytesMut::new();
            handshake(&mut stream, &mut buf, false, "DEALER", "ROUTER").await?;
            Ok::<_, ZmtpError>((stream, buf))
        };
        let (stream, buf) = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| ZmtpError::Timeout {
                what: "connecting and the ZMTP handshake",
                after: timeout,
            })??;
        let (rd, wr) = stream.into_split();
        Ok(Self {
            rd,
            wr,
            reader: MessageReader::with_buffer(buf),
            out: BytesMut::with_capacity(4096),
            max_message: AtomicUsize::new(max_message),
            send_timeout: timeout.max(Duration::from_secs(5)),
        })
    }

    /// Sends one single-part message. Not cancel-safe: a send cut short leaves the stream
    /// in the middle of a frame, so a caller that gives up on one must drop the connection.
    pub async fn send(&mut self, body: &[u8]) -> Result<(), ZmtpError> {
        self.out.clear();
        put_header(&mut self.out, 0, body.len());
        let copied = body.len() < COPY_BELOW;
        if copied {
            self.out.extend_from_slice(body);
            // Nearly always the socket takes a small frame whole: no timer, no clock read.
            match self.wr.try_write(&self.out) {
                Ok(n) if n == self.out.len() => return Ok(()),
                Ok(n) => self.out.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        let writing = async {
            self.wr.write_all(&self.out).await?;
            if !copied {
                self.wr.write_all(body).await?;
            }
            Ok::<_, std::io::Error>(())
        };
        match tokio::time::timeout(self.send_timeout, writing).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ZmtpError::Timeout {
                what: "a send to the dispatcher",
                after: self.send_timeout,
            }),
        }
    }

    /// The next message. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Message, ZmtpError> {
        self.reader.next(&mut self.rd, &self.max_message).await
    }
}
