//! Whole messages off a byte stream, bounded in bytes and in parts. All state lives in
//! the reader, so [`MessageReader::next`] is cancel-safe.

use super::codec::Decoder;
use super::handshake::{split_command, COMMAND_LIMIT};
use super::ZmtpError;
use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Parts one message may have; Volley's own messages have one.
pub const MAX_PARTS: usize = 16;

/// One message: its first part and any others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The first frame's body.
    pub first: Bytes,
    /// The other frames' bodies, in order (empty for a one-part message).
    pub rest: Vec<Bytes>,
}

impl Message {
    /// Parts in all.
    pub fn parts(&self) -> usize {
        1 + self.rest.len()
    }

    /// Bytes in all parts.
    pub fn len(&self) -> usize {
        self.first.len() + self.rest.iter().map(Bytes::len).sum::<usize>()
    }

    /// Whether every part is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads messages; commands after the handshake are read within their own limit and
/// skipped, except ERROR, which ends the connection.
#[derive(Debug, Default)]
pub struct MessageReader {
    decoder: Decoder,
    buf: BytesMut,
    first: Option<Bytes>,
    rest: Vec<Bytes>,
    total: usize,
}

impl MessageReader {
    /// A reader that starts with bytes already read (what followed the handshake).
    pub fn with_buffer(buf: BytesMut) -> Self {
        Self { buf, ..Self::default() }
    }

    /// The next whole message, of at most `limit` bytes in all. The limit is read at each
    /// frame's header, so raising it (admitting a peer) holds for a read already waiting.
    /// Cancel-safe.
    pub async fn next<R: AsyncRead + Unpin>(
        &mut self,
        stream: &mut R,
        limit: &AtomicUsize,
    ) -> Result<Message, ZmtpError> {
        loop {
            while let Some(frame) = self.decoder.decode(
                &mut self.buf,
                limit.load(Ordering::Acquire).saturating_sub(self.total),
                COMMAND_LIMIT,
            )? {
                if frame.is_command() {
                    let (name, data) = split_command(&frame.body)?;
                    if name == b"ERROR" {
                        let reason = data.get(1..).map(String::from_utf8_lossy).unwrap_or_default();
                        return Err(ZmtpError::Handshake(format!(
                            "peer sent ERROR: {}",
                            crate::text::escaped(&reason, 200)
                        )));
                    }
                    continue;
                }
                let more = frame.more();
                self.total += frame.body.len();
                match self.first {
                    None => self.first = Some(frame.body),
                    Some(_) if self.rest.len() + 2 > MAX_PARTS => return Err(ZmtpError::TooManyParts(MAX_PARTS)),
                    Some(_) => self.rest.push(frame.body),
                }
                if !more {
                    self.total = 0;
                    return Ok(Message {
                        first: self.first.take().unwrap_or_default(),
                        rest: std::mem::take(&mut self.rest),
                    });
                }
            }
            let want = self.decoder.reserve(&self.buf);
            self.buf.reserve(want);
            if stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ZmtpError::Closed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zmtp::codec::{put_frame, COMMAND, MORE};
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn parts_assemble_and_commands_are_skipped() {
        let mut wire = BytesMut::new();
        put_frame(&mut wire, COMMAND, b"\x04PING\x00\x00");
        put_frame(&mut wire, MORE, b"a");
        put_frame(&mut wire, 0, b"bc");
        put_frame(&mut wire, 0, b"d");
        let (mut tx, mut rx) = tokio::io::duplex(1024);
        tx.write_all(&wire).await.unwrap();
        let mut r = MessageReader::default();
        let m = r.next(&mut rx, &AtomicUsize::new(100)).await.unwrap();
        assert_eq!((m.first.as_ref(), m.rest.len(), m.len()), (&b"a"[..], 1, 3));
        let m = r.next(&mut rx, &AtomicUsize::new(100)).await.unwrap();
        assert_eq!(m.first.as_ref(), b"d");
        drop(tx);
        assert!(matches!(
            r.next(&mut rx, &AtomicUsize::new(100)).await,
            Err(ZmtpError::Closed)
        ));
    }

    #[tokio::test]
    async fn the_limit_counts_every_part_and_parts_are_bounded() {
        let mut wire = BytesMut::new();
        put_frame(&mut wire, MORE, &[0; 60]);
        put_frame(&mut wire, 0, &[0; 60]);
        let (mut tx, mut rx) = tokio::io::duplex(1024);
        tx.write_all(&wire).await.unwrap();
        let e = MessageReader::default()
            .next(&mut rx, &AtomicUsize::new(100))
            .await
            .unwrap_err();
        assert!(matches!(e, ZmtpError::Frame(_)), "{e}");

        let mut wire = BytesMut::new();
        for _ in 0..=MAX_PARTS {
            put_frame(&mut wire, MORE, b"x");
        }
        let (mut tx, mut rx) = tokio::io::duplex(4096);
        tx.write_all(&wire).await.unwrap();
        let e = MessageReader::default()
            .next(&mut rx, &AtomicUsize::new(1000))
            .await
            .unwrap_err();
        assert!(matches!(e, ZmtpError::TooManyParts(_)), "{e}");
    }
}
