//! The runtime protocol between a Volley worker and the process that runs a user's
//! function (`docs/runtime-protocol.md` is the specification), and an SDK for writing
//! native functions in Rust.
//!
//! - [`frame`] — the frames and their codec, shared by the worker and every Rust runtime;
//!   no dependency beyond `serde_json`, so a function binary stays small;
//! - [`serve`] — the loop a native function's `main` calls with its handler.

pub mod frame;
mod sdk;

pub use sdk::{serve, HandlerError};
