//! User functions: code in a language, run by a runtime process on the workers.
//!
//! The code itself travels once per worker (by its [`CodeDigest`]); tasks carry only a
//! [`UserCode`], which names the code and says how to run it.

use super::{invalid, InvalidFunction};
use crate::api;
use crate::text::quote;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// The most code one function may have: a Python package with its dependencies fits.
pub const MAX_CODE_BYTES: usize = 64 * 1024 * 1024;
/// The most code `RegisterFunction` takes inline (the rest goes through `UploadCode`):
/// under the 4 MiB message every gRPC client accepts by default.
pub const MAX_INLINE_CODE_BYTES: usize = 3 * 1024 * 1024;
/// A task's deadline when the function names none.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// A runtime process's memory limit when the function names none.
pub const DEFAULT_MEMORY_MB: u64 = 512;
/// The range a function's memory limit may take: below 32 MiB no interpreter starts.
pub const MEMORY_MB_RANGE: std::ops::RangeInclusive<u64> = 32..=65_536;
/// The longest handler name.
pub const MAX_HANDLER_CHARS: usize = 256;

/// The languages Volley ships a runtime for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// CPython 3, `def handle(event)`.
    Python,
    /// Node.js, `exports.handle = async (event) => …`.
    Node,
    /// Java 17+, `public static String handle(String eventJson)`.
    Java,
    /// An executable built on the `volley-runtime` crate.
    Native,
}

impl Language {
    /// Every language, in the order users see them.
    pub const ALL: [Language; 4] = [Language::Python, Language::Node, Language::Java, Language::Native];

    /// Its lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Node => "node",
            Language::Java => "java",
            Language::Native => "native",
        }
    }

    /// The code formats (file extensions) its runtime loads; the first is the default.
    pub fn formats(self) -> &'static [&'static str] {
        match self {
            Language::Python => &["py", "zip", "dill"],
            Language::Node => &["js"],
            Language::Java => &["jar"],
            Language::Native => &["bin"],
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Language {
    type Err = InvalidFunction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Language::ALL
            .into_iter()
            .find(|l| l.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                invalid(format!(
                    "unknown runtime '{}': expected python, node, java or native",
                    quote(s)
                ))
            })
    }
}

/// The SHA-256 of a function's code: its name on the wire, in the store and in caches.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CodeDigest(pub [u8; 32]);

impl CodeDigest {
    /// The digest of `code`.
    pub fn of(code: &[u8]) -> Self {
        Self(Sha256::digest(code).into())
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, InvalidFunction> {
        let s = s.trim();
        let bad = || invalid(format!("'{}' is not a SHA-256 digest (64 hex digits)", quote(s)));
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for CodeDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CodeDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CodeDigest({self})")
    }
}

/// How to run a user function, without its code: what every task of it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCode {
    /// The function's registered name, for the runtime's messages.
    pub function: Arc<str>,
    /// Which runtime runs it.
    pub language: Language,
    /// The entry point, as the runtime reads it.
    pub handler: String,
    /// What the code is (`py`, `zip`, `js`, `jar`, `bin`).
    pub format: String,
    /// The code.
    pub digest: CodeDigest,
    /// The code's size in bytes.
    pub size: u64,
    /// The longest one task may run.
    pub timeout_ms: u64,
    /// The most resident memory its runtime process may use.
    pub memory_mb: u64,
}

/// A `Runtime` spec as a client sent it: the function to store, and its code when sent
/// inline (otherwise it must already be stored under the digest).
#[derive(Debug)]
pub struct RuntimeSpec {
    /// The function, with its digest.
    pub code: UserCode,
    /// The code's bytes, when given inline.
    pub inline: Option<Vec<u8>>,
}

impl RuntimeSpec {
    /// Checks a `Runtime` spec; `max_ms` is the dispatcher's task timeout.
    pub fn from_api(function: &str, spec: &api::Runtime, max_ms: u64) -> Result<Self, InvalidFunction> {
        let language: Language = spec.language.parse()?;
        let handler = spec.handler.trim();
        if handler.chars().count() > MAX_HANDLER_CHARS || handler.chars().any(char::is_control) {
            return Err(invalid(format!(
                "a handler is at most {MAX_HANDLER_CHARS} characters with no control characters"
            )));
        }
        if language == Language::Java && handler.is_empty() {
            return Err(invalid(
                "a java function needs --handler: the class (pkg.Class) or pkg.Class::method",
            ));
        }
        let format = match spec.code_format.trim().trim_start_matches('.') {
            "" => language.formats()[0],
            f => language.formats().iter().find(|ok| **ok == f).copied().ok_or_else(|| {
                invalid(format!(
                    "{language} runs code in {} form, not '{}'",
                    language.formats().join(" or "),
                    quote(f)
                ))
            })?,
        };
        let timeout_ms = match spec.timeout_ms {
            0 => DEFAULT_TIMEOUT_MS.min(max_ms),
            ms if ms > max_ms => {
                return Err(invalid(format!(
                "a timeout of {ms} ms exceeds the longest task this dispatcher allows ({max_ms} ms, its task timeout)"
            )))
            }
            ms => ms,
        };
        let memory_mb = match spec.memory_mb {
            0 => DEFAULT_MEMORY_MB,
            mb if !MEMORY_MB_RANGE.contains(&mb) => {
                return Err(invalid(format!(
                    "a memory limit of {mb} MiB is outside {}..={} MiB",
                    MEMORY_MB_RANGE.start(),
                    MEMORY_MB_RANGE.end()
                )))
            }
            mb => mb,
        };
        let (digest, size, inline) = match (spec.code.is_empty(), spec.code_digest.trim().is_empty()) {
            (false, true) => {
                if spec.code.len() > MAX_INLINE_CODE_BYTES {
                    return Err(invalid(format!(
                        "{} bytes of code inline exceed the limit of {MAX_INLINE_CODE_BYTES}; send it with UploadCode (up to {MAX_CODE_BYTES} bytes)",
                        spec.code.len()
                    )));
                }
                (
                    CodeDigest::of(&spec.code),
                    spec.code.len() as u64,
                    Some(spec.code.clone()),
                )
            }
            (true, false) => (CodeDigest::from_hex(&spec.code_digest)?, 0, None),
            (true, true) => return Err(invalid("a runtime function needs its code, inline or by code_digest")),
            (false, false) => return Err(invalid("give the code inline or by code_digest, not both")),
        };
        Ok(Self {
            code: UserCode {
                function: Arc::from(function),
                language,
                handler: handler.to_owned(),
                format: format.to_owned(),
                digest,
                size,
                timeout_ms,
                memory_mb,
            },
            inline,
        })
    }
}

impl UserCode {
    /// The gRPC form, without the code.
    pub fn to_api(&self) -> api::Runtime {
        api::Runtime {
            language: self.language.name().to_owned(),
            handler: self.handler.clone(),
            code: Vec::new(),
            code_digest: self.digest.to_string(),
            code_format: self.format.clone(),
            timeout_ms: self.timeout_ms,
            memory_mb: self.memory_mb,
            code_size: self.size,
        }
    }
}
