//! The benchmark commands of the `client` binary, one module each: flags and the code
//! that turns them into a run of [`crate::studies::sweep`], [`crate::studies::load`], [`crate::studies::replay`], [`crate::studies::chaos`] or
//! [`crate::presentation::plot`]. Each returns the process exit code.

pub mod chaos;
pub mod coldstart;
pub mod demo;
pub mod failover;
pub mod floor;
pub mod load;
pub mod plot;
pub mod replay;
pub mod runs;
pub mod simulate;
pub mod sweep;
