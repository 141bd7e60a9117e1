//! ZMTP 3 framing: a frame's header is read and judged against the limit before a
//! single byte of its body is buffered, so a header claiming a terabyte costs nothing.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Flag bit: more frames of this message follow.
pub const MORE: u8 = 0x01;
/// Flag bit: the size is eight bytes, not one.
pub const LONG: u8 = 0x02;
/// Flag bit: a command, not part of a message.
pub const COMMAND: u8 = 0x04;

/// How much buffer one read may add when a frame's body is still arriving: memory
/// grows with the bytes a peer really sent, never with what its header claimed.
pub const READ_CHUNK: usize = 64 * 1024;

/// One frame as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The flags byte (`MORE`, `LONG`, `COMMAND`).
    pub flags: u8,
    /// The frame's body.
    pub body: Bytes,
}

impl Frame {
    /// Whether this frame is a command (READY, PING, ERROR…).
    pub fn is_command(&self) -> bool {
        self.flags & COMMAND != 0
    }

    /// Whether more frames of the same message follow.
    pub fn more(&self) -> bool {
        self.flags & MORE != 0
    }
}

/// A frame the limits or the grammar refuse; the connection cannot go on after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header claims more bytes than this side accepts.
    #[error("frame header claims {claimed} bytes; the limit is {limit}")]
    TooLarge {
        /// The claimed size.
        claimed: u64,
        /// The limit in force for this peer.
        limit: usize,
    },
    /// Reserved flag bits set, or a command with the MORE bit.
    #[error("invalid frame flags {0:#04x}")]
    Flags(u8),
}

/// Where a decoder stands: the header it has read, if any.
#[derive(Debug, Default)]
pub struct Decoder {
    header: Option<(u8, usize)>,
}

impl Decoder {
    /// Takes the next whole frame out of `buf`, if it is there. `limit` bounds a message
    /// frame's body, `command_limit` a command's; both are checked on the header alone.
    /// When `None` is returned, [`Decoder::reserve`] says how much room the next read wants.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        limit: usize,
        command_limit: usize,
    ) -> Result<Option<Frame>, FrameError> {
        let (flags, len) = match self.header {
            Some(h) => h,
            None => {
                let Some(&flags) = buf.first() else { return Ok(None) };
                if flags & !(MORE | LONG | COMMAND) != 0 || (flags & COMMAND != 0 && flags & MORE != 0) {
                    return Err(FrameError::Flags(flags));
                }
                let (header_len, claimed) = if flags & LONG != 0 {
                    if buf.len() < 9 {
                        return Ok(None);
                    }
                    let mut size = [0u8; 8];
                    size.copy_from_slice(&buf[1..9]);
                    (9, u64::from_be_bytes(size))
                } else {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    (2, u64::from(buf[1]))
                };
                let limit = if flags & COMMAND != 0 { command_limit } else { limit };
                if claimed > limit as u64 {
                    return Err(FrameError::TooLarge { claimed, limit });
                }
                buf.advance(header_len);
                let h = (flags, claimed as usize);
                self.header = Some(h);
                h
            }
        };
        if buf.len() < len {
            return Ok(None);
        }
        self.header = None;
        Ok(Some(Frame {
            flags: flags & !LONG,
            body: buf.split_to(len).freeze(),
        }))
    }

    /// Room the buffer should have before the next read: the rest of the frame under
    /// way, but never more than [`READ_CHUNK`] at a time.
    pub fn reserve(&self, buf: &BytesMut) -> usize {
        match self.header {
            Some((_, len)) => len.saturating_sub(buf.len()).clamp(1, READ_CHUNK),
            None => 4096,
        }
    }
}

/// Appends a frame's header for a body of `len` bytes.
pub fn put_header(out: &mut BytesMut, flags: u8, len: usize) {
    let (header, n) = header(flags, len);
    out.put_slice(&header[..n]);
}

/// A frame's header for a body of `len` bytes, and how many of the 9 bytes it uses.
pub fn header(flags: u8, len: usize) -> ([u8; 9], usize) {
    let mut header = [0u8; 9];
    if len > 255 {
        header[0] = flags | LONG;
        header[1..9].copy_from_slice(&(len as u64).to_be_bytes());
        (header, 9)
    } else {
        header[0] = flags & !LONG;
        header[1] = len as u8;
        (header, 2)
    }
}

/// Appends a whole frame.
pub fn put_frame(out: &mut BytesMut, flags: u8, body: &[u8]) {
    put_header(out, flags, body.len());
    out.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(v: &[u8]) -> BytesMut {
        BytesMut::from(v)
    }

    #[test]
    fn a_huge_claim_is_refused_on_the_header_alone() {
        let mut d = Decoder::default();
        let mut buf = bytes(&[0x02, 0, 0, 1, 0, 0, 0, 0, 0]);
        let e = d.decode(&mut buf, 1024, 64).unwrap_err();
        assert_eq!(
            e,
            FrameError::TooLarge {
                claimed: 1 << 40,
                limit: 1024
            }
        );
        let mut buf = bytes(&[0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(d.decode(&mut buf, 1024, 64), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn commands_have_their_own_limit() {
        let mut d = Decoder::default();
        let mut buf = bytes(&[0x04, 200]);
        assert!(matches!(
            d.decode(&mut buf, 1 << 20, 100),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn frames_arrive_in_pieces_and_memory_follows_the_bytes() {
        let mut wire = BytesMut::new();
        put_frame(&mut wire, MORE, b"first");
        put_frame(&mut wire, 0, &vec![7u8; 1000]);
        let mut d = Decoder::default();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            while let Some(f) = d.decode(&mut buf, 4096, 64).unwrap() {
                frames.push(f);
            }
            assert!(d.reserve(&buf) <= READ_CHUNK);
        }
        assert_eq!(frames.len(), 2);
        assert!(frames[0].more() && !frames[0].is_command());
        assert_eq!(&frames[0].body[..], b"first");
        assert_eq!(frames[1].body.len(), 1000);
        assert_eq!(frames[1].flags, 0);
    }

    #[test]
    fn reserved_flags_and_commands_with_more_are_refused() {
        let mut d = Decoder::default();
        assert_eq!(d.decode(&mut bytes(&[0x08, 0]), 10, 10), Err(FrameError::Flags(0x08)));
        assert_eq!(d.decode(&mut bytes(&[0x05, 0]), 10, 10), Err(FrameError::Flags(0x05)));
    }
}
