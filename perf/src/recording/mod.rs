//! What a study writes down, and how it is judged.
//!
//! - [`tables`] — `performance_test.csv` and the other result files: rows, their
//!   definitions and their writers.
//! - [`db`] — the SQLite results database, `client runs` and `compare`.
//! - [`sampler`] — CPU and RSS of every process of a run, sampled at 10 Hz from `/proc`.
//! - [`verdict`] — `--assert` expressions, judged at the end (exit 99).
//! - [`observe`] — around every run: checks `--db` and `--assert`, samples, then judges
//!   and stores.

pub mod db;
pub mod observe;
pub mod sampler;
pub mod tables;
pub mod verdict;
