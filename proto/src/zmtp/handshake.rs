//! The ZMTP 3 greeting and the NULL mechanism's READY exchange, the only security
//! mechanism Volley speaks (workers authenticate with the token in `Hello`).

use super::codec::{put_frame, Decoder, COMMAND};
use super::ZmtpError;
use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A greeting is always this long.
pub const GREETING_LEN: usize = 64;
/// The largest command frame accepted (READY with its properties, PING, ERROR).
pub const COMMAND_LIMIT: usize = 16 * 1024;

/// Our greeting: ZMTP 3.0, mechanism NULL.
pub fn greeting(as_server: bool) -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xff;
    g[8] = 0x01;
    g[9] = 0x7f;
    g[10] = 3;
    g[11] = 0;
    g[12..16].copy_from_slice(b"NULL");
    g[32] = u8::from(as_server);
    g
}

/// Checks a peer's greeting: the signature, a major version of at least 3, NULL.
pub fn check_greeting(g: &[u8; GREETING_LEN]) -> Result<(), ZmtpError> {
    if g[0] != 0xff || g[9] != 0x7f {
        return Err(ZmtpError::Handshake("not a ZMTP 3 greeting".into()));
    }
    if g[10] < 3 {
        return Err(ZmtpError::Handshake(format!(
            "ZMTP version {}.{}; 3.0 or later needed",
            g[10], g[11]
        )));
    }
    let mechanism = &g[12..32];
    let name_len = mechanism.iter().position(|&b| b == 0).unwrap_or(mechanism.len());
    if &mechanism[..name_len] != b"NULL" || mechanism[name_len..].iter().any(|&b| b != 0) {
        return Err(ZmtpError::Handshake(format!(
            "security mechanism {:?}; only NULL is spoken here",
            String::from_utf8_lossy(&mechanism[..name_len])
        )));
    }
    Ok(())
}

/// A READY command announcing `socket_type`.
pub fn ready(socket_type: &str) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_u8(5);
    body.put_slice(b"READY");
    body.put_u8(11);
    body.put_slice(b"Socket-Type");
    body.put_u32(socket_type.len() as u32);
    body.put_slice(socket_type.as_bytes());
    let mut out = BytesMut::new();
    put_frame(&mut out, COMMAND, &body);
    out
}

/// A command's name and data.
pub fn split_command(body: &[u8]) -> Result<(&[u8], &[u8]), ZmtpError> {
    let Some((&len, rest)) = body.split_first() else {
        return Err(ZmtpError::Handshake("empty command".into()));
    };
    if rest.len() < len as usize {
        return Err(ZmtpError::Handshake("command name runs past its frame".into()));
    }
    Ok(rest.split_at(len as usize))
}

/// The value of `Socket-Type` in a READY's properties.
pub fn socket_type(mut props: &[u8]) -> Result<Option<&[u8]>, ZmtpError> {
    let bad = || ZmtpError::Handshake("malformed READY properties".into());
    let mut found = None;
    while props.has_remaining() {
        let name_len = props.get_u8() as usize;
        if props.len() < name_len + 4 {
            return Err(bad());
        }
        let (name, rest) = props.split_at(name_len);
        props = rest;
        let value_len = props.get_u32() as usize;
        if props.len() < value_len {
            return Err(bad());
        }
        let (value, rest) = props.split_at(value_len);
        props = rest;
        if name.eq_ignore_ascii_case(b"Socket-Type") {
            found = Some(value);
        }
    }
    Ok(found)
}

/// Runs the whole handshake on a fresh connection: greetings both ways, then READY both
/// ways, accepting only a peer of `peer_type`. Bytes the peer sent after its READY stay
/// in `buf` for the message reader.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    as_server: bool,
    our_type: &str,
    peer_type: &str,
) -> Result<(), ZmtpError> {
    // READY goes only to a peer whose greeting passed: a stranger learns 64 bytes.
    stream.write_all(&greeting(as_server)).await?;
    let mut theirs = [0u8; GREETING_LEN];
    stream.read_exact(&mut theirs).await?;
    check_greeting(&theirs)?;
    stream.write_all(&ready(our_type)).await?;

    let mut decoder = Decoder::default();
    let frame = loop {
        if let Some(f) = decoder.decode(buf, 0, COMMAND_LIMIT)? {
            break f;
        }
        buf.reserve(decoder.reserve(buf));
        if stream.read_buf(buf).await? == 0 {
            return Err(ZmtpError::Closed);
        }
    };
    if !frame.is_command() {
        return Err(ZmtpError::Handshake("a message before READY".into()));
    }
    let (name, data) = split_command(&frame.body)?;
    match name {
        b"READY" => {}
        b"ERROR" => {
            let reason = data.get(1..).map(String::from_utf8_lossy).unwrap_or_default();
            return Err(ZmtpError::Handshake(format!(
                "peer refused: {}",
                crate::text::escaped(&reason, 200)
            )));
        }
        other => {
            return Err(ZmtpError::Handshake(format!(
                "expected READY, got command {}",
                crate::text::escaped(&String::from_utf8_lossy(other), 40)
            )))
        }
    }
    match socket_type(data)? {
        Some(t) if t.eq_ignore_ascii_case(peer_type.as_bytes()) => Ok(()),
        Some(t) => Err(ZmtpError::Handshake(format!(
            "peer socket type {}; only {peer_type} may connect",
            crate::text::escaped(&String::from_utf8_lossy(t), 40)
        ))),
        None => Err(ZmtpError::Handshake("READY without Socket-Type".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_greeting_passes_our_check_and_others_do_not() {
        assert!(check_greeting(&greeting(true)).is_ok());
        let mut old = greeting(false);
        old[10] = 2;
        assert!(check_greeting(&old).is_err());
        let mut curve = greeting(false);
        curve[12..17].copy_from_slice(b"CURVE");
        assert!(check_greeting(&curve).is_err());
        let mut junk = greeting(false);
        junk[9] = 0;
        assert!(check_greeting(&junk).is_err());
    }

    #[test]
    fn ready_properties_round_trip_and_truncation_is_caught() {
        let frame = ready("DEALER");
        let body = &frame[2..];
        let (name, data) = split_command(body).unwrap();
        assert_eq!(name, b"READY");
        assert_eq!(socket_type(data).unwrap(), Some(&b"DEALER"[..]));
        for cut in 0..data.len() {
            let _ = socket_type(&data[..cut]);
        }
        assert!(socket_type(&data[..data.len() - 1]).is_err());
    }

    #[tokio::test]
    async fn two_sides_shake_hands_over_a_pipe() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            handshake(&mut a, &mut buf, true, "ROUTER", "DEALER").await
        });
        let mut buf = BytesMut::new();
        handshake(&mut b, &mut buf, false, "DEALER", "ROUTER").await.unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_wrong_socket_type_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            handshake(&mut a, &mut buf, true, "ROUTER", "DEALER").await
        });
        let mut buf = BytesMut::new();
        let _ = handshake(&mut b, &mut buf, false, "PUB", "ROUTER").await;
        assert!(matches!(server.await.unwrap(), Err(ZmtpError::Handshake(_))));
    }
}
