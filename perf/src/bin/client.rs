//! The `client` binary: operator commands from `volley-client`, benchmark commands from
//! this crate. See `volley_perf::cli`.

use clap::Parser;
use std::process::ExitCode;
use volley_perf::cli::{self, Cli};

// One thread: a load generator's every hop between runtime threads is a futex wake-up,
// and on a 2-core machine those cycles are taken from the dispatcher being measured.
// Measured at 40,000 noop/s (pull, 2 × 2 slots): 16.6 µs of client CPU per request
// against 21.0 µs multi-threaded, and p99 10.6 ms against 89 ms.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(code.clamp(1, 255) as u8),
        Err(e) => {
            eprintln!("client: {e:#}");
            ExitCode::from(2)
        }
    }
}
