//! Why the front door refused a request, by what the caller should do: each edge maps
//! the kind to its own code (a gRPC status, an HTTP status) and keeps the message.

use crate::store::StoreError;

/// A refusal, with a message meant for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrontError {
    /// The request itself is wrong; sending it again will not help.
    #[error("{0}")]
    Invalid(String),
    /// It names a task or a function that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The dispatcher is full (queue, uploads, watchers); retry later.
    #[error("{0}")]
    Exhausted(String),
    /// Something it needs is down (the store, the dispatcher stopping); retry later.
    #[error("{0}")]
    Unavailable(String),
    /// Something it needs was lost (a function's code, the store's data).
    #[error("{0}")]
    Lost(String),
    /// It depends on an earlier step that did not happen (code not uploaded).
    #[error("{0}")]
    Precondition(String),
    /// The dispatcher is misconfigured.
    #[error("{0}")]
    Internal(String),
}

impl FrontError {
    /// The same refusal with `prefix` before its message (`task 3: …`).
    pub fn at(self, prefix: impl std::fmt::Display) -> Self {
        use FrontError::*;
        let p = |m: String| format!("{prefix}: {m}");
        match self {
            Invalid(m) => Invalid(p(m)),
            NotFound(m) => NotFound(p(m)),
            Exhausted(m) => Exhausted(p(m)),
            Unavailable(m) => Unavailable(p(m)),
            Lost(m) => Lost(p(m)),
            Precondition(m) => Precondition(p(m)),
            Internal(m) => Internal(p(m)),
        }
    }
}

impl From<StoreError> for FrontError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(why) => FrontError::Unavailable(format!("task store unavailable: {why}")),
            StoreError::Corrupt(why) => FrontError::Lost(format!("task store holds unreadable data: {why}")),
            StoreError::DataLoss(why) => FrontError::Lost(format!("nothing was submitted: {why}")),
            StoreError::Config(why) => FrontError::Internal(format!("task store misconfigured: {why}")),
            StoreError::Fenced(epoch) => FrontError::Unavailable(format!(
                "this dispatcher (epoch {epoch}) no longer leads: another took over; nothing was done, ask the leader"
            )),
        }
    }
}
