//! Trace-driven load: the Azure Functions 2019 trace (and anything in its schema) turned
//! into an exact, seeded schedule of invocations.
//!
//! - [`trace`] — reading `invocations.csv`, `durations.csv` and `memory.csv`;
//! - [`percentiles`] — durations and memory known by their percentiles, and draws from them;
//! - [`schedule`] — per function and count column, exactly the trace's count of timestamps;
//! - [`select`] — which functions and columns to replay;
//! - [`run`] — the replay itself: work drawn per invocation, sent through the load engine;
//! - [`records`] — one row per invocation and per minute, the summary, invitro's verdict;
//! - [`elastic`] — a replay on an elastic pool, and its row beside the simulation's;
//! - [`fixture`] — a small synthetic trace in the same schema, for tests;
//! - [`simulate`] — the scaler over a whole trace on a virtual clock (`client simulate`).

pub mod elastic;
pub mod fixture;
pub mod percentiles;
pub mod records;
pub mod run;
pub mod schedule;
pub mod select;
pub mod simulate;
mod table;
pub mod trace;

pub use schedule::{Iat, Invocation, ScheduleSpec};
pub use trace::{Granularity, Trace, TraceError, TraceFunction};
