//! The native SDK: a function binary's `main` calls [`serve`] with its initialisation,
//! and the SDK speaks the protocol on descriptors 3 and 4 until the worker closes them.

use crate::frame::{read_frame, Failure, Frame, FROM_RUNTIME_FD, PROTOCOL_VERSION, TO_RUNTIME_FD};
use serde_json::Value;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Write};
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

/// An error a handler (or its initialisation) returns: a type name and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    /// A short type name, as other languages give one (`InvalidInput`).
    pub kind: String,
    /// What went wrong.
    pub message: String,
}

impl HandlerError {
    /// An error of type `kind`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(e: E) -> Self {
        let kind = std::any::type_name::<E>().rsplit("::").next().unwrap_or("Error");
        HandlerError::new(kind, e.to_string())
    }
}

/// Where the last panic was and what it said, kept by the hook for the error frame.
static LAST_PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);

/// Runs a native function: `init` loads what the handler needs (its time is reported as
/// the code's load time), then each task's arguments are passed to the handler and its
/// value or error goes back. A panic fails that task only. Returns when the worker closes
/// the stream; `main` returns what this returns.
pub fn serve<H, I>(init: I) -> ExitCode
where
    I: FnOnce() -> Result<H, HandlerError>,
    H: FnMut(Value) -> Result<Value, HandlerError>,
{
    match run(init) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("volley runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run<H, I>(init: I) -> std::io::Result<()>
where
    I: FnOnce() -> Result<H, HandlerError>,
    H: FnMut(Value) -> Result<Value, HandlerError>,
{
    let mut input = BufReader::new(File::open(format!("/proc/self/fd/{TO_RUNTIME_FD}"))?);
    let mut output = OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{FROM_RUNTIME_FD}"))?;
    let Some(Frame::Init { protocol, .. }) = read_frame(&mut input)? else {
        return Err(std::io::Error::other("the worker's first frame was not INIT"));
    };
    if protocol != PROTOCOL_VERSION {
        let failure = Failure {
            kind: "ProtocolMismatch".into(),
            message: format!("this runtime speaks protocol {PROTOCOL_VERSION}, the worker {protocol}"),
            traceback: String::new(),
        };
        return send(&mut output, &Frame::InitFailed(failure));
    }
    std::panic::set_hook(Box::new(|info| {
        let message = match info.payload().downcast_ref::<&str>() {
            Some(s) => (*s).to_owned(),
            None => info.payload().downcast_ref::<String>().cloned().unwrap_or_default(),
        };
        let location = info
            .location()
            .map(|l| format!("at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        *LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner()) = Some((message, location));
    }));
    let started = Instant::now();
    let mut handler = match catch(init) {
        Ok(handler) => handler,
        Err(failure) => return send(&mut output, &Frame::InitFailed(failure)),
    };
    send(
        &mut output,
        &Frame::Ready {
            runtime: "native".into(),
            version: concat!("volley-runtime ", env!("CARGO_PKG_VERSION")).into(),
            init_us: started.elapsed().as_micros() as u64,
        },
    )?;
    while let Some(frame) = read_frame(&mut input)? {
        let Frame::Invoke { task_id, args, .. } = frame else {
            return Err(std::io::Error::other("expected INVOKE"));
        };
        let reply = match serde_json::from_str::<Value>(&args) {
            Err(e) => Frame::Error {
                task_id,
                failure: Failure {
                    kind: "InvalidArgs".into(),
                    message: format!("args are not JSON: {e}"),
                    traceback: String::new(),
                },
                value: None,
            },
            Ok(event) => match catch(|| handler(event)) {
                Ok(value) => Frame::Result {
                    task_id,
                    result: value.to_string(),
                },
                Err(failure) => Frame::Error {
                    task_id,
                    failure,
                    value: None,
                },
            },
        };
        std::io::stdout().flush()?;
        send(&mut output, &reply)?;
    }
    Ok(())
}

/// Runs `f`, turning its error or its panic into a failure.
fn catch<T>(f: impl FnOnce() -> Result<T, HandlerError>) -> Result<T, Failure> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Failure {
            kind: e.kind,
            message: e.message,
            traceback: String::new(),
        }),
        Err(_) => {
            let (message, location) = LAST_PANIC
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_default();
            Err(Failure {
                kind: "panic".into(),
                message,
                traceback: location,
            })
        }
    }
}

fn send(output: &mut File, frame: &Frame) -> std::io::Result<()> {
    output.write_all(&frame.encode())
}
