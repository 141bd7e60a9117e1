//! Pickles as the course's clients send and read them, handled without unpickling:
//! payloads are checked for shape only (base64 of a pickle), and the failures the
//! platform itself reports (`Worker Failure`) are written as the smallest pickle of a
//! builtin exception, which any Python reads with nothing of Volley's installed.
//!
//! Nothing here ever loads a pickle: loading one runs code, and that happens only in a
//! Python runtime on a worker.

use base64::Engine;

/// Pickle opcodes this module reads or writes.
mod op {
    pub const PROTO: u8 = 0x80;
    pub const GLOBAL: u8 = b'c';
    pub const BINUNICODE: u8 = b'X';
    pub const TUPLE1: u8 = 0x85;
    pub const REDUCE: u8 = b'R';
    pub const EMPTY_DICT: u8 = b'}';
    pub const BININT2: u8 = b'M';
    pub const SETITEM: u8 = b's';
    pub const BUILD: u8 = b'b';
    pub const STOP: u8 = b'.';
}

/// The pickle protocols accepted: 2 (Python 2.3+) to 5 (Python 3.8+); dill writes 4.
const PROTOCOLS: std::ops::RangeInclusive<u8> = 2..=5;

/// The `error_code` every failure carries, as the course's clients read it.
pub const ERROR_CODE: u16 = 500;

/// The bytes of a base64-encoded pickle, or why the text is not one. Line breaks and
/// spaces are ignored, as Python's base64 decoder ignores them.
pub fn decode_payload(text: &str) -> Result<Vec<u8>, String> {
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|e| format!("the payload is not base64 ({e}); send serialize(obj), base64 of dill.dumps(obj)"))?;
    match (bytes.first(), bytes.get(1), bytes.last()) {
        (Some(&op::PROTO), Some(p), Some(&op::STOP)) if PROTOCOLS.contains(p) && bytes.len() > 3 => Ok(bytes),
        _ => Err(format!(
            "the payload is base64 but not of a pickle (protocol {}–{}): {} bytes that do not start with PROTO and end with STOP",
            PROTOCOLS.start(),
            PROTOCOLS.end(),
            bytes.len()
        )),
    }
}

/// `bytes` in base64 as Python's `base64.encodebytes` (and `codecs.encode(…, "base64")`)
/// writes it: a line break after every 76 characters and at the end.
pub fn encode_lines(bytes: &[u8]) -> String {
    let flat = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(flat.len() + flat.len() / 76 + 1);
    for line in flat.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// A pickle of `builtins.Exception(message)` with `error_code` set to 500: what the
/// course's clients read back for a task the platform failed (lost worker, crash,
/// timeout, no worker), in base64 lines.
pub fn platform_failure(message: &str) -> String {
    let mut p = vec![op::PROTO, 4, op::GLOBAL];
    p.extend_from_slice(b"builtins\nException\n");
    unicode(&mut p, message);
    p.extend_from_slice(&[op::TUPLE1, op::REDUCE, op::EMPTY_DICT]);
    unicode(&mut p, "error_code");
    p.push(op::BININT2);
    p.extend_from_slice(&ERROR_CODE.to_le_bytes());
    p.extend_from_slice(&[op::SETITEM, op::BUILD, op::STOP]);
    encode_lines(&p)
}

fn unicode(p: &mut Vec<u8>, text: &str) {
    p.push(op::BINUNICODE);
    p.extend_from_slice(&(text.len() as u32).to_le_bytes());
    p.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_must_be_base64_of_a_pickle() {
        // dill.dumps(((2,), {})), as the course's serialize() sends it.
        let args = "gASVCQAAAAAAAABLAoWUfZSGlC4=\n";
        assert_eq!(decode_payload(args).map(|b| b.len()), Ok(20));
        assert!(decode_payload("payload").unwrap_err().contains("not base64"));
        assert!(decode_payload("aGVsbG8gd29ybGQ=")
            .unwrap_err()
            .contains("not of a pickle"));
        assert!(decode_payload("").is_err());
        assert!(
            decode_payload(&encode_lines(&[0x80, 9, b'N', b'.'])).is_err(),
            "protocol 9"
        );
    }

    #[test]
    fn base64_lines_are_pythons() {
        assert_eq!(encode_lines(b""), "");
        assert_eq!(encode_lines(b"abc"), "YWJj\n");
        let long = encode_lines(&[7u8; 100]);
        let lines: Vec<&str> = long.split_terminator('\n').collect();
        assert_eq!(lines.iter().map(|l| l.len()).collect::<Vec<_>>(), vec![76, 60]);
        assert!(long.ends_with('\n'));
    }

    #[test]
    fn a_platform_failure_is_a_pickle_the_payload_check_accepts() {
        let text = platform_failure("Worker Failure: crashed");
        let bytes = decode_payload(&text).expect("a pickle");
        assert!(bytes.windows(23).any(|w| w == b"Worker Failure: crashed"));
    }
}
