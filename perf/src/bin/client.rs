//! The `client` binary: operator commands from `volley-client`, benchmark commands from
//! this crate. See `volley_perf::cli`.

use clap::Parser;
use std::process::ExitCode;
use volley_perf::cli::{self, Cli};

#[tokio::main]
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
