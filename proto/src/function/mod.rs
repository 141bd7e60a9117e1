//! Functions and the jobs they become once a task's arguments are applied.

use crate::api;
use crate::text::quote;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

pub mod user;
pub use user::{CodeDigest, Language, UserCode, DEFAULT_MEMORY_MB};

/// A registered function: one of the built-ins, with its default parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FunctionKind {
    /// Does nothing; measures pure runtime overhead.
    Noop,
    /// Sleeps for `ms` milliseconds.
    Sleep {
        /// Default duration, overridable per task.
        ms: u64,
    },
    /// Busy-loops on a CPU core for `ms` milliseconds of wall time.
    Spin {
        /// Default duration, overridable per task.
        ms: u64,
    },
    /// Returns the task's arguments as its result.
    Echo,
    /// Always fails with `message`.
    Fail {
        /// Default error message, overridable per task; shared by every task that does
        /// not override it, never copied per task.
        message: Arc<str>,
    },
    /// A function of a replayed trace: each task says how long it runs and how much
    /// memory it touches first (`{"ms": …, "mb": …}`).
    Trace {
        /// Spin (CPU-bound) instead of sleeping.
        spin: bool,
        /// The most memory one task may allocate, MiB.
        max_memory_mb: u64,
    },
    /// A user's code, run by a language runtime on the workers.
    User(Arc<UserCode>),
}

/// The most memory a trace function may allow its tasks, MiB.
pub const MAX_TRACE_MEMORY_MB: u64 = 4096;

/// What a worker runs: a function with the task's arguments applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Job {
    /// See [`FunctionKind::Noop`].
    Noop,
    /// See [`FunctionKind::Sleep`].
    Sleep {
        /// Milliseconds to sleep.
        ms: u64,
    },
    /// See [`FunctionKind::Spin`].
    Spin {
        /// Milliseconds to spin.
        ms: u64,
    },
    /// See [`FunctionKind::Echo`].
    Echo {
        /// The JSON text returned as the result.
        payload: String,
    },
    /// See [`FunctionKind::Fail`].
    Fail {
        /// The error the task fails with (at most [`MAX_FAIL_MESSAGE_BYTES`]).
        message: Arc<str>,
    },
    /// See [`FunctionKind::Trace`].
    Trace {
        /// Milliseconds to run, memory touching included.
        ms: u64,
        /// MiB to allocate and touch first.
        mb: u64,
        /// Spin instead of sleeping.
        spin: bool,
    },
    /// See [`FunctionKind::User`].
    User {
        /// Which code, and how to run it.
        code: Arc<UserCode>,
        /// The task's arguments, a JSON text (`null` when none were given).
        args: String,
    },
}

impl Job {
    /// Whether the job takes no time worth a slot (`noop`, `echo`, `fail`, zero-length
    /// `sleep` and `spin`): workers run such jobs where they arrive, and the dispatcher
    /// bounds them by their own window rather than by slots.
    pub fn finishes_at_once(&self) -> bool {
        match self {
            Job::Noop | Job::Echo { .. } | Job::Fail { .. } => true,
            Job::Sleep { ms } | Job::Spin { ms } => *ms == 0,
            Job::Trace { .. } | Job::User { .. } => false,
        }
    }

    /// Roughly the bytes this job takes in a frame: its text, or a small constant.
    pub fn wire_weight(&self) -> u64 {
        match self {
            Job::Echo { payload } => payload.len() as u64 + 16,
            Job::Fail { message } => message.len() as u64 + 16,
            Job::User { code, args } => (args.len() + code.function.len() + code.handler.len()) as u64 + 80,
            _ => 16,
        }
    }
}

/// Why a function spec or a task's arguments were refused; the text is meant for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidFunction(pub String);

fn invalid(msg: impl Into<String>) -> InvalidFunction {
    InvalidFunction(msg.into())
}

impl FunctionKind {
    /// The lower-case name of the built-in.
    pub fn name(&self) -> &'static str {
        match self {
            FunctionKind::Noop => "noop",
            FunctionKind::Sleep { .. } => "sleep",
            FunctionKind::Spin { .. } => "spin",
            FunctionKind::Echo => "echo",
            FunctionKind::Fail { .. } => "fail",
            FunctionKind::Trace { .. } => "trace",
            FunctionKind::User(code) => code.language.name(),
        }
    }

    /// A short name for registering this function: the built-in and its duration
    /// (`sleep:100`), never a payload or message, so it stays short whatever was typed.
    pub fn label(&self) -> String {
        match self {
            FunctionKind::Sleep { ms } | FunctionKind::Spin { ms } => format!("{}:{ms}", self.name()),
            FunctionKind::Trace { spin: true, .. } => "trace:spin".to_owned(),
            FunctionKind::User(code) => code.function.to_string(),
            _ => self.name().to_owned(),
        }
    }

    /// Converts the gRPC spec, refusing a missing kind.
    pub fn from_api(spec: Option<&api::FunctionSpec>) -> Result<Self, InvalidFunction> {
        use api::function_spec::Kind;
        let kind = spec
            .and_then(|s| s.kind.as_ref())
            .ok_or_else(|| invalid("spec is missing: give one of noop, sleep, spin, echo, fail, trace, runtime"))?;
        Ok(match kind {
            Kind::Noop(_) => FunctionKind::Noop,
            Kind::Sleep(s) => FunctionKind::Sleep { ms: s.ms },
            Kind::Spin(s) => FunctionKind::Spin { ms: s.ms },
            Kind::Echo(_) => FunctionKind::Echo,
            Kind::Fail(f) => FunctionKind::Fail {
                message: Arc::from(f.message.as_str()),
            },
            Kind::Trace(t) => FunctionKind::Trace {
                spin: t.spin,
                max_memory_mb: t.max_memory_mb,
            },
            Kind::Runtime(_) => {
                return Err(invalid(
                    "a runtime function is checked with its code: RuntimeSpec::from_api",
                ))
            }
        })
    }

    /// The gRPC form of this function.
    pub fn to_api(&self) -> api::FunctionSpec {
        use api::function_spec::Kind;
        let kind = match self {
            FunctionKind::Noop => Kind::Noop(api::Noop {}),
            FunctionKind::Sleep { ms } => Kind::Sleep(api::Sleep { ms: *ms }),
            FunctionKind::Spin { ms } => Kind::Spin(api::Spin { ms: *ms }),
            FunctionKind::Echo => Kind::Echo(api::Echo {}),
            FunctionKind::Fail { message } => Kind::Fail(api::Fail {
                message: message.to_string(),
            }),
            FunctionKind::Trace { spin, max_memory_mb } => Kind::Trace(api::Trace {
                spin: *spin,
                max_memory_mb: *max_memory_mb,
            }),
            FunctionKind::User(code) => Kind::Runtime(code.to_api()),
        };
        api::FunctionSpec { kind: Some(kind) }
    }

    /// Parses the spec strings people type: `noop`, `sleep:<ms>`, `spin:<ms>`,
    /// `echo[:<text>]`, `fail[:<message>]`, `trace[:spin]` (tasks may touch up to 256 MiB).
    /// Returns the function and the task
    /// arguments the string implies (the echo text, as JSON).
    pub fn parse_spec(spec: &str) -> Result<(Self, String), InvalidFunction> {
        let (name, param) = match spec.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (spec, None),
        };
        let ms = |p: Option<&str>| -> Result<u64, InvalidFunction> {
            let p = p.ok_or_else(|| invalid(format!("'{}' needs a duration: {}:<ms>", quote(name), quote(name))))?;
            p.trim()
                .parse()
                .map_err(|_| invalid(format!("'{}' is not a duration in whole milliseconds", quote(p))))
        };
        Ok(match name {
            "noop" => (FunctionKind::Noop, String::new()),
            "sleep" => (FunctionKind::Sleep { ms: ms(param)? }, String::new()),
            "spin" => (FunctionKind::Spin { ms: ms(param)? }, String::new()),
            "echo" => (
                FunctionKind::Echo,
                Value::String(param.unwrap_or_default().to_owned()).to_string(),
            ),
            "fail" => (
                FunctionKind::Fail {
                    message: Arc::from(param.unwrap_or("failed on purpose")),
                },
                String::new(),
            ),
            "trace" => {
                let spin = match param.map(str::trim) {
                    None | Some("sleep") => false,
                    Some("spin") => true,
                    Some(other) => {
                        return Err(invalid(format!(
                            "'{}' is not a way to run a trace function: trace:sleep or trace:spin",
                            quote(other)
                        )))
                    }
                };
                (
                    FunctionKind::Trace {
                        spin,
                        max_memory_mb: 256,
                    },
                    String::new(),
                )
            }
            other => {
                return Err(invalid(format!(
                    "unknown function '{}': expected noop, sleep:<ms>, spin:<ms>, echo:<text>, fail:<message> or trace[:spin]",
                    quote(other)
                )))
            }
        })
    }

    /// Checks the function's own parameters against the longest job allowed.
    pub fn validate(&self, max_ms: u64) -> Result<(), InvalidFunction> {
        match self {
            FunctionKind::Sleep { ms } | FunctionKind::Spin { ms } => check_ms(self.name(), *ms, max_ms),
            FunctionKind::Fail { message } => check_message(message),
            FunctionKind::Trace { max_memory_mb, .. } if *max_memory_mb > MAX_TRACE_MEMORY_MB => Err(invalid(format!(
                "a trace function may allow at most {MAX_TRACE_MEMORY_MB} MiB a task, not {max_memory_mb}"
            ))),
            _ => Ok(()),
        }
    }

    /// Applies a task's arguments (empty, or a JSON text) and returns the job to run.
    /// Durations above `max_ms` are refused, so no task can outlive its lease by design.
    pub fn resolve(&self, args: &str, max_ms: u64) -> Result<Job, InvalidFunction> {
        let parsed = if args.trim().is_empty() {
            None
        } else {
            Some(serde_json::from_str::<Value>(args).map_err(|e| invalid(format!("args are not valid JSON: {e}")))?)
        };
        let job = match self {
            FunctionKind::Noop => Job::Noop,
            FunctionKind::Echo => Job::Echo {
                payload: if parsed.is_some() {
                    args.to_owned()
                } else {
                    "null".to_owned()
                },
            },
            FunctionKind::Sleep { ms } => Job::Sleep {
                ms: override_ms(self.name(), *ms, parsed.as_ref(), max_ms)?,
            },
            FunctionKind::Spin { ms } => Job::Spin {
                ms: override_ms(self.name(), *ms, parsed.as_ref(), max_ms)?,
            },
            FunctionKind::Fail { message } => Job::Fail {
                message: override_message(message, parsed.as_ref())?,
            },
            FunctionKind::Trace { spin, max_memory_mb } => {
                let (ms, mb) = trace_args(parsed.as_ref())?;
                check_ms("trace", ms, max_ms)?;
                if mb > *max_memory_mb {
                    return Err(invalid(format!(
                        "\"mb\" of {mb} exceeds this trace function's limit of {max_memory_mb} MiB"
                    )));
                }
                Job::Trace { ms, mb, spin: *spin }
            }
            FunctionKind::User(code) => Job::User {
                code: code.clone(),
                args: if parsed.is_some() {
                    args.to_owned()
                } else {
                    "null".to_owned()
                },
            },
        };
        Ok(job)
    }
}

fn check_ms(name: &str, ms: u64, max_ms: u64) -> Result<(), InvalidFunction> {
    if ms > max_ms {
        return Err(invalid(format!(
            "{name} of {ms} ms exceeds the longest task this dispatcher allows ({max_ms} ms, its task timeout)"
        )));
    }
    Ok(())
}

fn object<'a>(
    name: &str,
    args: &'a Value,
    allowed: &str,
) -> Result<&'a serde_json::Map<String, Value>, InvalidFunction> {
    let map = args.as_object().ok_or_else(|| {
        invalid(format!(
            "args for {name} must be a JSON object like {{\"{allowed}\": ...}}"
        ))
    })?;
    if let Some(unknown) = map.keys().find(|k| k.as_str() != allowed) {
        return Err(invalid(format!(
            "unknown argument '{}' for {name}; the only argument is \"{allowed}\"",
            quote(unknown)
        )));
    }
    Ok(map)
}

fn override_ms(name: &str, default: u64, args: Option<&Value>, max_ms: u64) -> Result<u64, InvalidFunction> {
    let ms = match args {
        None => default,
        Some(args) => match object(name, args, "ms")?.get("ms") {
            None => default,
            Some(v) => v.as_u64().ok_or_else(|| {
                invalid(format!(
                    "\"ms\" for {name} must be a whole number of milliseconds ≥ 0, got {}",
                    quote(&v.to_string())
                ))
            })?,
        },
    };
    check_ms(name, ms, max_ms)?;
    Ok(ms)
}

fn trace_args(args: Option<&Value>) -> Result<(u64, u64), InvalidFunction> {
    let usage = "args for trace must be a JSON object like {\"ms\": 120, \"mb\": 64}";
    let map = args.and_then(Value::as_object).ok_or_else(|| invalid(usage))?;
    if let Some(unknown) = map.keys().find(|k| !matches!(k.as_str(), "ms" | "mb")) {
        return Err(invalid(format!(
            "unknown argument '{}' for trace; {usage}",
            quote(unknown)
        )));
    }
    let whole = |key: &str| {
        map.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid(format!("\"{key}\" for trace must be a whole number ≥ 0; {usage}")))
    };
    Ok((whole("ms")?, whole("mb")?))
}

/// Bytes of a `fail` function's message: every task of the function reports it, so
/// its size is multiplied by the tasks that fail with it.
pub const MAX_FAIL_MESSAGE_BYTES: usize = 4096;

fn check_message(message: &str) -> Result<(), InvalidFunction> {
    if message.len() > MAX_FAIL_MESSAGE_BYTES {
        return Err(invalid(format!(
            "a fail message may have at most {MAX_FAIL_MESSAGE_BYTES} bytes, not {}",
            message.len()
        )));
    }
    Ok(())
}

fn override_message(default: &Arc<str>, args: Option<&Value>) -> Result<Arc<str>, InvalidFunction> {
    match args {
        None => Ok(default.clone()),
        Some(args) => match object("fail", args, "message")?.get("message") {
            None => Ok(default.clone()),
            Some(Value::String(s)) => {
                check_message(s)?;
                Ok(Arc::from(s.as_str()))
            }
            Some(v) => Err(invalid(format!(
                "\"message\" for fail must be a string, got {}",
                quote(&v.to_string())
            ))),
        },
    }
}

#[cfg(test)]
mod tests;
