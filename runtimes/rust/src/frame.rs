//! Runtime frames: a 4-byte big-endian length, then a kind byte, then the kind's fields.
//!
//! Fields are big-endian integers (`u32`, `u64`) and texts (a `u32` length, then that many
//! bytes of UTF-8). A decoder judges a frame's length before it buffers the body, so a
//! runtime that writes garbage costs the worker at most [`MAX_FRAME_BYTES`].

use std::fmt;

/// The protocol's version, sent in [`Frame::Init`]; a runtime that speaks another answers
/// [`Frame::InitFailed`].
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame either side sends or accepts (length field excluded).
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// The descriptor a runtime reads frames from (the worker writes it).
pub const TO_RUNTIME_FD: i32 = 3;
/// The descriptor a runtime writes frames to (the worker reads it).
pub const FROM_RUNTIME_FD: i32 = 4;

const INIT: u8 = 1;
const READY: u8 = 2;
const INIT_FAILED: u8 = 3;
const INVOKE: u8 = 4;
const RESULT: u8 = 5;
const ERROR: u8 = 6;
const ERROR_VALUE: u8 = 7;

/// An error a user's code raised, or why it could not load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failure {
    /// The error's type (`ValueError`, `TypeError`, `java.lang.IllegalStateException`).
    pub kind: String,
    /// Its message.
    pub message: String,
    /// Where it was raised, as the language prints it; may be empty.
    pub traceback: String,
}

/// One message between a worker and a runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Worker → runtime, once, first: what to load.
    Init {
        /// [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The function's registered name, for messages.
        function: String,
        /// The entry point: `handle`, `module.handle`, `pkg.Class`, as the language reads it.
        handler: String,
        /// The code's path on the worker's disk (a file or an archive).
        code: String,
    },
    /// Runtime → worker: the code is loaded and the handler found.
    Ready {
        /// The language (`python`, `node`, `java`, `native`).
        runtime: String,
        /// The interpreter's or SDK's version.
        version: String,
        /// Microseconds spent loading the user's code (its module's top level included).
        init_us: u64,
    },
    /// Runtime → worker: the code could not load; the runtime exits after sending it.
    InitFailed(Failure),
    /// Worker → runtime: run one task.
    Invoke {
        /// The task.
        task_id: u64,
        /// Which attempt (1-based).
        attempt: u32,
        /// When the worker kills the runtime if no answer came, ms since the Unix epoch.
        deadline_ms: u64,
        /// The task's arguments, a JSON text (`null` when none were given).
        args: String,
    },
    /// Runtime → worker: the task's result, a JSON text.
    Result {
        /// The task answered.
        task_id: u64,
        /// The handler's return value, JSON-encoded.
        result: String,
    },
    /// Runtime → worker: the handler raised. Sent as ERROR, or as ERROR_VALUE when it
    /// carries `value`.
    Error {
        /// The task answered.
        task_id: u64,
        /// What was raised.
        failure: Failure,
        /// The error as a value of the function's own serialization, for clients that read
        /// failures in it (a dill function's pickled exception, base64); `None` for most.
        value: Option<String>,
    },
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length field exceeds [`MAX_FRAME_BYTES`], or is zero.
    Length(usize),
    /// An unknown kind byte.
    Kind(u8),
    /// The frame ends inside a field, or has bytes after its last field.
    Shape(&'static str),
    /// A text is not UTF-8.
    Text,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Length(n) => write!(
                f,
                "a frame of {n} bytes (the limit is {MAX_FRAME_BYTES}, and 0 is no frame)"
            ),
            FrameError::Kind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::Shape(what) => write!(f, "malformed frame: {what}"),
            FrameError::Text => f.write_str("a text field is not UTF-8"),
        }
    }
}

impl std::error::Error for FrameError {}

impl Frame {
    /// The frame's bytes, length field included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0; 4];
        match self {
            Frame::Init {
                protocol,
                function,
                handler,
                code,
            } => {
                out.push(INIT);
                out.extend_from_slice(&protocol.to_be_bytes());
                for text in [function, handler, code] {
                    put_text(&mut out, text);
                }
            }
            Frame::Ready {
                runtime,
                version,
                init_us,
            } => {
                out.push(READY);
                put_text(&mut out, runtime);
                put_text(&mut out, version);
                out.extend_from_slice(&init_us.to_be_bytes());
            }
            Frame::InitFailed(failure) => {
                out.push(INIT_FAILED);
                put_failure(&mut out, failure);
            }
            Frame::Invoke {
                task_id,
                attempt,
                deadline_ms,
                args,
            } => {
                out.push(INVOKE);
                out.extend_from_slice(&task_id.to_be_bytes());
                out.extend_from_slice(&attempt.to_be_bytes());
                out.extend_from_slice(&deadline_ms.to_be_bytes());
                put_text(&mut out, args);
            }
            Frame::Result { task_id, result } => {
                out.push(RESULT);
                out.extend_from_slice(&task_id.to_be_bytes());
                put_text(&mut out, result);
            }
            Frame::Error {
                task_id,
                failure,
                value,
            } => {
                out.push(if value.is_some() { ERROR_VALUE } else { ERROR });
                out.extend_from_slice(&task_id.to_be_bytes());
                put_failure(&mut out, failure);
                if let Some(value) = value {
                    put_text(&mut out, value);
                }
            }
        }
        let len = (out.len() - 4) as u32;
        out[..4].copy_from_slice(&len.to_be_bytes());
        out
    }

    /// Parses one frame's body (the bytes after its length field).
    pub fn decode(body: &[u8]) -> Result<Frame, FrameError> {
        let (&kind, rest) = body.split_first().ok_or(FrameError::Shape("no kind byte"))?;
        let mut r = Fields(rest);
        let frame = match kind {
            INIT => Frame::Init {
                protocol: r.u32()?,
                function: r.text()?,
                handler: r.text()?,
                code: r.text()?,
            },
            READY => Frame::Ready {
                runtime: r.text()?,
                version: r.text()?,
                init_us: r.u64()?,
            },
            INIT_FAILED => Frame::InitFailed(r.failure()?),
            INVOKE => Frame::Invoke {
                task_id: r.u64()?,
                attempt: r.u32()?,
                deadline_ms: r.u64()?,
                args: r.text()?,
            },
            RESULT => Frame::Result {
                task_id: r.u64()?,
                result: r.text()?,
            },
            ERROR => Frame::Error {
                task_id: r.u64()?,
                failure: r.failure()?,
                value: None,
            },
            ERROR_VALUE => Frame::Error {
                task_id: r.u64()?,
                failure: r.failure()?,
                value: Some(r.text()?),
            },
            other => return Err(FrameError::Kind(other)),
        };
        if !r.0.is_empty() {
            return Err(FrameError::Shape("bytes after the last field"));
        }
        Ok(frame)
    }
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn put_failure(out: &mut Vec<u8>, failure: &Failure) {
    for text in [&failure.kind, &failure.message, &failure.traceback] {
        put_text(out, text);
    }
}

struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Shape("the frame ends inside a field"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn text(&mut self) -> Result<String, FrameError> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| FrameError::Text)
    }

    fn failure(&mut self) -> Result<Failure, FrameError> {
        Ok(Failure {
            kind: self.text()?,
            message: self.text()?,
            traceback: self.text()?,
        })
    }
}

/// Frames out of a byte stream that arrives in pieces: push what was read, take frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` until one has arrived. After an error the stream is
    /// not trusted any more: the caller ends it.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len == 0 || len > MAX_FRAME_BYTES {
            return Err(FrameError::Length(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let frame = Frame::decode(&self.buf[4..4 + len]);
        self.buf.drain(..4 + len);
        frame.map(Some)
    }

    /// Bytes held that are not yet a whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Reads one frame from a blocking reader: `Ok(None)` at a clean end of stream.
pub fn read_frame(reader: &mut impl std::io::Read) -> Result<Option<Frame>, std::io::Error> {
    let mut len = [0; 4];
    match reader.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            FrameError::Length(len),
        ));
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Frame::decode(&body)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
