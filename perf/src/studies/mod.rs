//! The studies: each drives real clusters and measures one question.
//!
//! - [`sweep`] — closed-loop weak and strong scaling sweeps.
//! - [`load`] — open-loop load at a target rate, latency from intended send times.
//! - [`replay`] — the Azure Functions trace: reading it, sampling it, its exact schedule,
//!   replaying it (on fixed workers or an elastic pool), and simulating it.
//! - [`coldstart`] — cold starts explained stage by stage on an elastic pool.
//! - [`chaos`] — workers, dispatcher and Redis killed mid-run, and the audit of every task.
//! - [`floor`] — what carrying one invocation costs with nothing but the kernel in the way.
//! - [`harness`] — the `cargo test --test perf` harness: against a running cluster, or
//!   self-contained.

pub mod chaos;
pub mod coldstart;
pub mod failover;
pub mod floor;
pub mod harness;
pub mod load;
pub mod replay;
pub mod sweep;
