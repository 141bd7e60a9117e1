//! The Volley client library: everything a Rust program needs to drive a dispatcher
//! over gRPC, and the operator commands of the `client` binary.
//!
//! - [`connection`] — connect with the shared token and TLS ([`Access`], [`connect_with`]).
//! - [`batch`] — register spec strings and run batches to their last outcome
//!   ([`run_batch`]), in requests and watch streams within gRPC's default 4 MiB.
//! - [`commands`] — `info`, `submit`, `status`, `result`, one module each.
//!
//! The benchmark commands (`sweep`, `load`, `plot`, `chaos`, `demo`) live in
//! `volley-perf`, which builds the `client` binary on top of this crate; this crate never
//! depends on the benchmark.

pub mod batch;
pub mod commands;
pub mod connection;

pub use batch::{register_spec, run_batch, state_name, BatchOutcome};
pub use connection::{client_over, connect, connect_with, Access, Client};
