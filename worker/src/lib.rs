//! A Volley worker: runs tasks the dispatcher hands it, in `N` slots.
//!
//! - [`executor`] — the slot pool: `N` slots that run [`volley_proto::function::Job`]s,
//!   user functions in runtime processes ([`runtime`]), built-ins ([`builtins`]) on threads.
//!   The dispatcher's local mode runs the same pool in-process.
//! - [`session`] — connecting, registering, heartbeats, credits and results; rebuilds
//!   the connection when the dispatcher goes silent.
//! - [`leader`] — which dispatcher of a list of addresses to serve: the one that answers.
//! - [`stem_cell`] — a worker started before its function is known, made an instance of
//!   one by its provisioner.
//! - [`template`] — a worker that forks instances' workers on request (a zygote), so
//!   a cold start skips the worker's exec.
//! - [`metrics`] — the Prometheus page a worker serves with `--metrics ADDR`.
//! - [`cli`] — the command line and its [`session::WorkerConfig`].

pub mod builtins;
pub mod cli;
pub mod executor;
pub mod leader;
pub mod metrics;
pub mod provisioned;
pub mod runtime;
pub mod session;
pub mod stem_cell;
pub mod template;

pub use provisioned::ProcessStart;
pub use session::{run, WorkerConfig, WorkerError};
