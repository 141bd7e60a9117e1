//! The `client` command line: global flags, the command list, and dispatch to the
//! operator commands (`volley_client::commands`) and the benchmark ones ([`crate::commands`]).

use crate::commands::{chaos, coldstart, demo, failover, floor, load, plot, replay, runs, simulate, sweep};
use anyhow::Context;
use clap::{Parser, Subcommand};
use volley_client::commands::{self as operator, submit::SubmitArgs, Target};
use volley_client::Access;
use volley_proto::auth::Token;

/// Drives a Volley dispatcher.
#[derive(Debug, Parser)]
#[command(name = "client", version)]
pub struct Cli {
    /// The dispatcher's gRPC address.
    #[arg(
        long,
        global = true,
        env = "VOLLEY_DISPATCHER_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub dispatcher: String,
    /// The dispatcher's shared token, sent as `authorization: Bearer …` (prefer the
    /// variable: a flag shows in `ps`).
    #[arg(long, global = true, env = "VOLLEY_TOKEN", hide_env_values = true, value_parser = volley_proto::auth::TokenArg)]
    pub token: Option<Token>,
    /// PEM file of the CA that signed the dispatcher's TLS certificate (implies https).
    #[arg(long, global = true, env = "VOLLEY_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// The name the dispatcher's certificate must carry, if not the address's host.
    #[arg(long, global = true, env = "VOLLEY_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mode, store, workers, queue and counters of a running dispatcher.
    Info,
    /// Submits tasks: noop, sleep:<ms>, spin:<ms>, echo:<text> or fail:<message>.
    Submit(SubmitArgs),
    /// Deploys a user function: code in python, node, java or native, as a new version.
    Deploy(operator::deploy::DeployArgs),
    /// Runs a deployed function by name and prints its result (exit 0) or error (exit 1).
    Invoke(operator::invoke::InvokeArgs),
    /// Every registered function and version: runtimes, handlers, digests, sizes, limits.
    Functions,
    /// A task's state.
    Status {
        /// The task id.
        task_id: u64,
    },
    /// A task's full record: state, result or error, attempts, timings.
    Result {
        /// The task id.
        task_id: u64,
    },
    /// Closed-loop scaling sweep: a fresh cluster per point; one CSV row per point.
    Sweep(sweep::SweepArgs),
    /// Open-loop load at a target rate against the running dispatcher, or with `--grid`
    /// the rate × spin × arrival study on clusters it starts itself.
    Load(load::LoadArgs),
    /// Replays a trace in the Azure Functions 2019 schema open loop: exact per-minute
    /// counts, each invocation's duration and memory drawn from its function's percentiles.
    Replay(replay::ReplayArgs),
    /// Charts of result files, as PNG and SVG.
    Plot(plot::PlotArgs),
    /// Starts a cluster per mode on the embedded store, runs a batch through each, and
    /// prints a summary.
    Demo(demo::DemoArgs),
    /// Fault injection on clusters it starts (127.0.0.1, a private redis-server): a mixed
    /// workload while workers, the dispatcher and Redis are killed; then every task in
    /// the store is audited. Exits non-zero if anything was lost or wrong.
    Chaos(chaos::ChaosArgs),
    /// Two dispatchers under --ha on a private redis-server, workers and an open-loop
    /// load following the leader, and the leader SIGKILLed or SIGSTOPped mid-run: the
    /// takeover, the latency around it, and an audit of every task in Redis.
    Failover(failover::FailoverArgs),
    /// Scaling policies over a whole trace on a virtual clock (no processes), with the
    /// dispatcher's scaler core: cold starts against idle instance-time per policy.
    Simulate(simulate::SimulateArgs),
    /// The cold-start study on elastic pools it starts: scale from zero with every cold
    /// start explained stage by stage, a burst from nothing, concurrency 1 against many.
    Coldstart(coldstart::ColdstartArgs),
    /// The machine's floor for one invocation: three bare processes pass a message along a
    /// noop task's path at each rate; CPU per message of each, and the round trip.
    Floor(floor::FloorArgs),
    /// A process `client floor` starts.
    #[command(subcommand, hide = true)]
    FloorRole(floor::FloorRole),
    /// Lists the runs stored in a results database (`--db` of the benchmark commands).
    Runs(runs::RunsArgs),
    /// Two stored runs side by side: each measure, the relative change, and for sweep
    /// points whether the change is beyond the spread of the repeats.
    Compare(runs::CompareArgs),
    /// One stored run as a self-contained HTML page: metadata, verdicts, tables, charts.
    Report(runs::ReportArgs),
}

/// Runs one command; the exit code is non-zero when tasks failed.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let ca_pem = match &cli.ca {
        Some(path) => Some(std::fs::read(path).with_context(|| format!("reading the CA file {}", path.display()))?),
        None => None,
    };
    let target = Target {
        url: cli.dispatcher.clone(),
        access: Access {
            token: cli.token.clone(),
            ca_pem,
            tls_domain: cli.tls_domain.clone(),
        },
    };
    match cli.command {
        Command::Info => operator::info::run(&target, cli.json).await,
        Command::Submit(args) => operator::submit::run(&target, &args, cli.json).await,
        Command::Deploy(args) => operator::deploy::run(&target, &args, cli.json).await,
        Command::Invoke(args) => operator::invoke::run(&target, &args, cli.json).await,
        Command::Functions => operator::functions::run(&target, cli.json).await,
        Command::Status { task_id } => operator::status::run(&target, task_id, cli.json).await,
        Command::Result { task_id } => operator::result::run(&target, task_id, cli.json).await,
        Command::Sweep(args) => sweep::run(args).await,
        Command::Plot(args) => plot::run(&args),
        Command::Load(args) => load::run(&target, args, cli.json).await,
        Command::Replay(args) => replay::run(&target, &args, cli.json).await,
        Command::Demo(args) => demo::run(&args, cli.json).await,
        Command::Chaos(args) => chaos::run(args, cli.json).await,
        Command::Failover(args) => failover::run(&args, cli.json).await,
        Command::Simulate(args) => simulate::run(&args, cli.json),
        Command::Coldstart(args) => coldstart::run(&args, cli.json).await,
        Command::Floor(args) => floor::run(&args).await,
        Command::FloorRole(role) => floor::role(&role),
        Command::Runs(args) => runs::list(&args, cli.json),
        Command::Compare(args) => runs::run_compare(&args, cli.json),
        Command::Report(args) => runs::report(&args),
    }
}
