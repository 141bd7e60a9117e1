//! `client floor`: the machine's floor for carrying one invocation (see
//! [`crate::studies::floor`]), per rate, as a table and `floor.csv`; and `client
//! floor-role`, the processes it starts.

use crate::studies::floor::{self, roles, FloorPoint};
use crate::studies::load::Arrival;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `client floor`.
#[derive(Debug, Args)]
pub struct FloorArgs {
    /// Offered rates, messages/s, comma-separated.
    #[arg(long, default_value = "1000,5000,20000,40000")]
    pub rates: String,
    /// Sending time per rate.
    #[arg(long = "for", default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// uniform or poisson arrivals.
    #[arg(long, default_value = "poisson")]
    pub arrival: Arrival,
    /// Seed of the arrival process.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// CSV the points are appended to.
    #[arg(long, default_value = "floor.csv")]
    pub out: PathBuf,
}

/// The processes `client floor` starts (not for use by hand).
#[derive(Debug, Subcommand)]
pub enum FloorRole {
    /// Passes messages between the generator and the echo.
    Relay,
    /// Sends back what it reads.
    Echo {
        /// The relay's address.
        relay: String,
    },
}

/// Measures each rate and prints and records its point.
pub async fn run(a: &FloorArgs) -> anyhow::Result<i32> {
    let rates = super::load::parse_rates(&a.rates)?;
    for (i, rate) in rates.into_iter().enumerate() {
        let (arrival, duration, seed) = (a.arrival, a.duration, a.seed.wrapping_add(i as u64));
        let point = tokio::task::spawn_blocking(move || floor::measure(rate, arrival, duration, seed)).await??;
        println!("{}", describe(&point));
        crate::recording::tables::append_rows(&a.out, std::slice::from_ref(&point))?;
    }
    println!("points appended to {}", a.out.display());
    Ok(0)
}

/// One point as a line of the table.
pub fn describe(p: &FloorPoint) -> String {
    format!(
        "floor {:>8.0}/s  p50 {:>6.3} ms p99 {:>6.3} ms  CPU µs/message (kernel): generator {:>5.1} ({:.1}) relay {:>5.1} ({:.1}) echo {:>5.1} ({:.1})",
        p.target_rate,
        p.p50_ms,
        p.p99_ms,
        p.generator_us,
        p.generator_sys_us,
        p.relay_us,
        p.relay_sys_us,
        p.echo_us,
        p.echo_sys_us
    )
}

/// Runs one role until its peer hangs up.
pub fn role(r: &FloorRole) -> anyhow::Result<i32> {
    match r {
        FloorRole::Relay => roles::relay()?,
        FloorRole::Echo { relay } => roles::echo(relay)?,
    }
    Ok(0)
}
