//! The shared token that admits workers (in `Hello`) and gRPC clients (in an
//! `authorization: Bearer …` header).
//!
//! A [`Token`] never prints itself: its `Debug` and `Display` are redacted, so a config
//! or a message logged whole cannot leak it. Comparison is constant-time in the
//! token's content (its length is not secret).

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// The longest token accepted; it travels in an HTTP header.
pub const MAX_TOKEN_BYTES: usize = 1024;

/// The gRPC metadata key a client's token travels in.
pub const AUTHORIZATION: &str = "authorization";

/// The scheme prefix of the `authorization` value.
pub const BEARER: &str = "Bearer ";

/// A shared secret.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

/// Why a string is not a usable token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// An empty token would admit anyone who sends an empty one.
    #[error("the token is empty")]
    Empty,
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("the token is {0} bytes long; the limit is {MAX_TOKEN_BYTES}")]
    TooLong(usize),
    /// It must fit in an HTTP header unchanged.
    #[error("the token may hold only visible ASCII characters (no spaces or control characters)")]
    NotVisibleAscii,
}

impl Token {
    /// Checks that `secret` can travel in a header and a `Hello`.
    pub fn new(secret: impl Into<String>) -> Result<Self, TokenError> {
        let secret = secret.into();
        if secret.is_empty() {
            return Err(TokenError::Empty);
        }
        if secret.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong(secret.len()));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotVisibleAscii);
        }
        Ok(Self(secret))
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }

    /// Whether a peer's token (or its absence) is this one.
    pub fn admits(&self, presented: Option<&Token>) -> bool {
        presented.is_some_and(|p| self.matches(&p.0))
    }

    /// The secret itself, for handing to a child process's environment. Nothing else
    /// should need it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value of the `authorization` header a client sends.
    pub fn bearer_header(&self) -> String {
        format!("{BEARER}{}", self.0)
    }

    /// Checks an `authorization` header value against this token.
    pub fn admits_header(&self, header: Option<&[u8]>) -> bool {
        let presented = header
            .and_then(|h| h.strip_prefix(BEARER.as_bytes()))
            .and_then(|t| std::str::from_utf8(t).ok());
        presented.is_some_and(|t| self.matches(t))
    }
}

impl std::str::FromStr for Token {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// Parses `--token` for clap without ever echoing it: clap's own error for a rejected
/// value quotes the value, which would print the secret to the terminal and its logs.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenArg;

impl clap::builder::TypedValueParser for TokenArg {
    type Value = Token;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Token, clap::Error> {
        let flag = arg.map(|a| a.to_string()).unwrap_or_else(|| "--token".into());
        let refuse =
            |why: String| clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{flag}: {why}\n"));
        let text = value
            .to_str()
            .ok_or_else(|| refuse("the token is not valid UTF-8".into()))?;
        Token::new(text).map_err(|e| refuse(e.to_string()))
    }
}

/// Constant-time, like [`Token::matches`].
impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        self.matches(&other.0)
    }
}

impl Eq for Token {}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_what_can_travel_in_a_header() {
        assert_eq!(Token::new("").err(), Some(TokenError::Empty));
        assert_eq!(Token::new("a b").err(), Some(TokenError::NotVisibleAscii));
        assert_eq!(Token::new("é").err(), Some(TokenError::NotVisibleAscii));
        assert_eq!(Token::new("x".repeat(1025)).err(), Some(TokenError::TooLong(1025)));
        assert!(Token::new("s3cr3t-._~+/=").is_ok());
    }

    #[test]
    fn matches_only_the_same_secret() {
        let t = Token::new("s3cr3t").expect("token");
        assert!(t.matches("s3cr3t"));
        assert!(!t.matches("s3cr3"));
        assert!(!t.matches("s3cr3t!"));
        assert!(!t.matches(""));
        assert!(t.admits(Some(&Token::new("s3cr3t").expect("token"))));
        assert!(!t.admits(None));
    }

    #[test]
    fn reads_bearer_headers() {
        let t = Token::new("s3cr3t").expect("token");
        assert!(t.admits_header(Some(b"Bearer s3cr3t")));
        assert!(t.admits_header(Some(t.bearer_header().as_bytes())));
        assert!(!t.admits_header(Some(b"bearer s3cr3t")));
        assert!(!t.admits_header(Some(b"Basic s3cr3t")));
        assert!(!t.admits_header(Some(b"s3cr3t")));
        assert!(!t.admits_header(None));
    }

    #[test]
    fn never_prints_the_secret() {
        let t = Token::new("s3cr3t").expect("token");
        assert!(!format!("{t:?} {t}").contains("s3cr3t"));
    }
}
