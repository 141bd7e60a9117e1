//! What a benchmark writes down: the rows it measured ([`rows`]) and the files they go
//! to ([`files`]).

pub mod files;
pub mod rows;

pub use files::{append, append_rows, append_tasks, write_meta, write_rows, RunMeta};
pub use rows::{PerfRow, PointSpec, TaskRow, HEADER};

#[cfg(test)]
pub(crate) use rows::sample_outcome;
