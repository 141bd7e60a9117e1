//! How what a runtime says, or fails to say, reads in a task's error: bounded texts, the
//! frame that came instead of the one expected, the last words of a runtime that died.

use super::log::Log;
use volley_runtime::frame::{Failure, Frame};

/// The longest an error's type, message and traceback may be, each.
const MAX_KIND: usize = 256;
const MAX_MESSAGE: usize = 4096;
const MAX_TRACEBACK: usize = 16 * 1024;

/// `Type: message` and the traceback below, each bounded.
pub(super) fn failure_text(f: &Failure) -> String {
    let mut text = format!("{}: {}", clip(&f.kind, MAX_KIND), clip(&f.message, MAX_MESSAGE));
    if !f.traceback.trim().is_empty() {
        text.push('\n');
        text.push_str(&clip(f.traceback.trim_end(), MAX_TRACEBACK));
    }
    text
}

pub(super) fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes cut]", &s[..end], s.len() - end)
}

pub(super) fn kind_of(f: &Frame) -> &'static str {
    match f {
        Frame::Init { .. } => "INIT",
        Frame::Ready { .. } => "READY",
        Frame::InitFailed(_) => "INIT_FAILED",
        Frame::Invoke { .. } => "INVOKE",
        Frame::Result { .. } => "RESULT",
        Frame::Error { .. } => "ERROR",
    }
}

/// The end of what a runtime printed before dying, for an init failure's message.
pub(super) fn tail(log: &Log) -> String {
    let text = log.peek();
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let start = text.len().saturating_sub(2000);
    let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    format!("; it printed:\n{}", &text[start..])
}
