//! Volley's benchmark and the `client` binary (operator commands from `volley-client`,
//! benchmark commands here). The clusters it starts come from `volley-testbed`.
//!
//! - [`cli`], [`commands`] — the `client` command line; one module per benchmark command.
//! - [`workload`] — the typed vocabulary of work ([`workload::OpType`]) and its spec strings.
//! - [`report`] — `performance_test.csv` rows and their definitions.
//! - [`harness`] — the `cargo test --test perf` harness: against a running cluster, or
//!   self-contained.
//! - [`load`] — open-loop load at a target rate, latency from intended send times.
//! - [`plot`] — PNG and SVG charts of the result files.
//! - [`observe`] — around every benchmark run: `--db`, `--assert`, process telemetry.
//! - [`results`] — the SQLite results database, `client runs` and `compare`.
//! - [`telemetry`] — CPU and RSS of every process of a run, sampled at 10 Hz.
//! - [`verdict`] — `--assert` expressions, judged at the end (exit 99).
//! - [`simulate`] — the scaler over a whole trace on a virtual clock (`client simulate`).
//! - [`sweep`] — closed-loop weak and strong scaling sweeps.
//! - [`chaos`] — the fault-injection scenario (workers, dispatcher and Redis killed
//!   mid-run) and its audit of every task in the store.
//! - [`replay`] — the Azure Functions trace: reading it, sampling it, its exact schedule.

pub mod chaos;
pub mod cli;
pub mod coldstart;
pub mod commands;
pub mod harness;
pub mod load;
pub mod observe;
pub mod plot;
pub mod replay;
pub mod report;
pub mod results;
pub mod simulate;
pub mod sweep;
pub mod telemetry;
pub mod verdict;
pub mod workload;
