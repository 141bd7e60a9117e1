//! The Volley client: drives a dispatcher over gRPC.
//!
//! - [`cli`] — the operator commands: `info`, `submit`, `status`, `result`, `demo`.
//! - the driver it uses (connect, register, run a batch) is [`volley_perf::driver`],
//!   shared with the sweeps, the tests and the benchmarks.

pub mod cli;

pub use volley_perf::driver::{
    connect, connect_with, register_spec, run_batch, state_name, Access, BatchOutcome, Client,
};
