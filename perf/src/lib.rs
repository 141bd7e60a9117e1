//! Volley's benchmark and the `client` binary (operator commands from `volley-client`,
//! benchmark commands here). The clusters it starts come from `volley-testbed`.
//!
//! One axis, top to bottom; each layer uses only those below it:
//! - [`cli`], [`commands`] — the `client` command line; one module per benchmark command.
//! - [`presentation`] — charts and the HTML page of a run.
//! - [`studies`] — sweep, open-loop load, trace replay and its simulation, cold starts,
//!   chaos, and the `cargo test --test perf` harness.
//! - [`recording`] — result files, the results database, the process sampler, verdicts,
//!   and what every run does around itself.
//! - [`stats`], [`workload`] — percentiles; the typed vocabulary of work
//!   ([`workload::OpType`]) and its spec strings.

pub mod cli;
pub mod commands;
pub mod presentation;
pub mod recording;
pub mod stats;
pub mod studies;
pub mod workload;
