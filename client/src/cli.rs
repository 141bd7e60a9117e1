//! The operator commands.

use crate::{connect, connect_with, register_spec, run_batch, state_name, Access, BatchOutcome, Client};
use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;
use std::time::Duration;
use volley_perf::{Cluster, ClusterSpec};
use volley_proto::api;
use volley_proto::auth::Token;
use volley_proto::Mode;

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
    #[arg(long, global = true, env = "VOLLEY_TOKEN", hide_env_values = true)]
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
    Submit {
        /// The function spec.
        spec: String,
        /// How many tasks.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Wait for every outcome and summarise; exit non-zero if any failed.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
    },
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
    Sweep(SweepArgs),
    /// Open-loop load at a target rate against the running dispatcher, or with `--grid`
    /// the rate × spin × arrival study on clusters it starts itself.
    Load(LoadArgs),
    /// Charts of result files, as PNG and SVG.
    Plot {
        /// A performance CSV (weak and strong scaling charts).
        csv: Option<std::path::PathBuf>,
        /// Per-task records (stage breakdown and latency CDFs).
        #[arg(long)]
        tasks: Option<std::path::PathBuf>,
        /// Open-loop results (heatmaps of the grid).
        #[arg(long)]
        load: Option<std::path::PathBuf>,
        /// Where the charts go.
        #[arg(long, default_value = "plots")]
        out: std::path::PathBuf,
    },
    /// Starts a cluster per mode on the embedded store, runs a batch through each, and
    /// prints a summary.
    Demo {
        /// Workers in pull and push mode.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Slots per worker (and of the local pool).
        #[arg(long, default_value_t = 2)]
        slots: u32,
        /// Noop tasks per mode.
        #[arg(long, default_value_t = 50_000)]
        noop_tasks: usize,
        /// Sleep tasks (100 ms) per mode.
        #[arg(long, default_value_t = 40)]
        sleep_tasks: usize,
    },
    /// Fault injection on clusters it starts (127.0.0.1, a private redis-server): a mixed
    /// workload while workers, the dispatcher and Redis are killed; then every task in
    /// the store is audited. Exits non-zero if anything was lost or wrong.
    Chaos(ChaosArgs),
}

/// `client chaos` flags.
#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// Modes to run, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "push,pull")]
    pub modes: Vec<Mode>,
    /// How long tasks are submitted; the faults are spread over it.
    #[arg(long = "for", value_parser = humantime::parse_duration, default_value = "60s")]
    pub duration: Duration,
    /// Tasks submitted per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Fast workers (a single-slot slow worker is added).
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Slots per fast worker.
    #[arg(long, default_value_t = 2)]
    pub slots: u32,
    /// Workers SIGKILLed and replaced.
    #[arg(long, default_value_t = 8)]
    pub kills: usize,
    /// Skip the SIGSTOP/SIGCONT stall.
    #[arg(long)]
    pub no_stall: bool,
    /// Skip the dispatcher SIGKILL + restart.
    #[arg(long)]
    pub no_dispatcher_restart: bool,
    /// Skip the Redis SIGKILL + restart.
    #[arg(long)]
    pub no_redis_restart: bool,
    /// Picks which workers die.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Writes the reports as JSON here.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// `client sweep` flags.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// weak: tasks-per-worker × workers tasks; strong: a fixed number of tasks.
    #[arg(long, value_parser = ["weak", "strong"], default_value = "weak")]
    pub scaling: String,
    /// Worker counts.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    pub workers: Vec<usize>,
    /// Modes.
    #[arg(long, value_delimiter = ',', default_value = "local,pull,push")]
    pub modes: Vec<Mode>,
    /// Task kinds: noop, sleep, spin.
    #[arg(long, value_delimiter = ',', default_value = "noop,sleep")]
    pub optypes: Vec<String>,
    /// Durations of sleep and spin tasks, ms.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub task_ms: Vec<u64>,
    /// Weak scaling: tasks per worker.
    #[arg(long, default_value_t = 5)]
    pub tasks_per_worker: usize,
    /// Strong scaling: total tasks.
    #[arg(long, default_value_t = 80)]
    pub strong_tasks: usize,
    /// Repetitions of each point.
    #[arg(long, default_value_t = 3)]
    pub repeats: u32,
    /// Slots per worker.
    #[arg(long, default_value_t = 1)]
    pub slots: u32,
    /// Task store of the clusters: memory or redis://….
    #[arg(long, default_value = "memory")]
    pub store: String,
    /// Result rows.
    #[arg(long, default_value = "performance_test.csv")]
    pub out: std::path::PathBuf,
    /// Per-task records (submitted, dispatched, started, finished, completed, worker, attempt, state).
    #[arg(long)]
    pub tasks_csv: Option<std::path::PathBuf>,
}

/// `client load` flags.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Target requests per second (single cell).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// uniform or poisson arrivals (single cell).
    #[arg(long, default_value = "poisson")]
    pub arrival: String,
    /// noop, sleep or spin.
    #[arg(long, default_value = "spin")]
    pub optype: String,
    /// Task duration, ms (single cell).
    #[arg(long, default_value_t = 100)]
    pub task_ms: u64,
    /// How long to send (e.g. 30s, 12m).
    #[arg(long = "for", default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Requests intended before this are not counted.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: std::time::Duration,
    /// Wait this long after the last send for stragglers; unfinished ones are failures.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain: std::time::Duration,
    /// Seed of the arrival process.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Run the rate × spin × arrival grid on clusters started per cell.
    #[arg(long)]
    pub grid: bool,
    /// Grid: rates.
    #[arg(long, value_delimiter = ',', default_value = "5,10,15,20,25,30,35,40,45,50")]
    pub rates: Vec<f64>,
    /// Grid: spin durations, ms.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,200,300,400,500,600,700,800,900,1000"
    )]
    pub spins: Vec<u64>,
    /// Grid: arrival processes.
    #[arg(long, value_delimiter = ',', default_value = "uniform,poisson")]
    pub arrivals: Vec<String>,
    /// Grid: sending time per cell.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub cell: std::time::Duration,
    /// Grid: warm-up per cell.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub cell_warmup: std::time::Duration,
    /// Grid: wait for stragglers per cell.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub cell_drain: std::time::Duration,
    /// Grid: cluster mode.
    #[arg(long, default_value = "push")]
    pub mode: Mode,
    /// Grid: workers.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Grid: slots per worker.
    #[arg(long, default_value_t = 1)]
    pub slots: u32,
    /// Result rows (one per cell).
    #[arg(long, default_value = "load.csv")]
    pub out: std::path::PathBuf,
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
        Command::Info => info(&target, cli.json).await,
        Command::Submit {
            spec,
            count,
            wait,
            timeout_s,
        } => submit(&target, &spec, count, wait, Duration::from_secs(timeout_s), cli.json).await,
        Command::Status { task_id } => status(&target, task_id, cli.json).await,
        Command::Result { task_id } => result(&target, task_id, cli.json).await,
        Command::Sweep(args) => sweep(args).await,
        Command::Plot { csv, tasks, load, out } => {
            let files = volley_perf::plot::plot_all(csv.as_deref(), tasks.as_deref(), load.as_deref(), &out)?;
            println!("{} charts written to {}", files.len() / 2, out.display());
            Ok(0)
        }
        Command::Load(args) => load(&target, args, cli.json).await,
        Command::Demo {
            workers,
            slots,
            noop_tasks,
            sleep_tasks,
        } => demo(workers, slots, noop_tasks, sleep_tasks, cli.json).await,
        Command::Chaos(args) => chaos(args, cli.json).await,
    }
}

/// The dispatcher a command talks to, and what it presents.
struct Target {
    url: String,
    access: Access,
}

impl Target {
    async fn connect(&self) -> anyhow::Result<Client> {
        connect_with(&self.url, &self.access).await
    }
}

fn status_error(what: &str, s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{what}: {} ({:?})", s.message(), s.code())
}

async fn info(target: &Target, as_json: bool) -> anyhow::Result<i32> {
    let mut client = target.connect().await?;
    let i = client
        .cluster_info(api::ClusterInfoRequest {})
        .await
        .map_err(|s| status_error("ClusterInfo", s))?
        .into_inner();
    let c = i.counters.unwrap_or_default();
    if as_json {
        let workers: Vec<_> = i
            .workers
            .iter()
            .map(|w| json!({"id": w.id, "name": w.name, "host": w.host, "pid": w.pid, "slots": w.slots, "in_flight": w.in_flight}))
            .collect();
        println!(
            "{}",
            json!({
                "mode": i.mode, "store": i.store, "worker_endpoint": i.worker_endpoint, "version": i.version,
                "policy": i.policy, "prefetch": i.prefetch, "queued": i.queued, "running": i.running,
                "workers": workers,
                "counters": {
                    "submitted": c.submitted, "dispatched": c.dispatched, "completed": c.completed,
                    "failed": c.failed, "requeued": c.requeued, "duplicate_results": c.duplicate_results,
                    "dropped_frames": c.dropped_frames, "workers_joined": c.workers_joined,
                    "workers_lost": c.workers_lost, "rejected_submissions": c.rejected_submissions,
                    "rejected_workers": c.rejected_workers, "unauthenticated_requests": c.unauthenticated_requests,
                }
            })
        );
    } else {
        println!(
            "mode {} · store {} · policy {} · prefetch {} · volley {}",
            i.mode, i.store, i.policy, i.prefetch, i.version
        );
        if !i.worker_endpoint.is_empty() {
            println!("workers connect to {}", i.worker_endpoint);
        }
        println!("queued {} · running {}", i.queued, i.running);
        println!("{} workers:", i.workers.len());
        for w in &i.workers {
            println!(
                "  #{:<4} {:<24} {:>4} slots {:>5} in flight  ({} pid {})",
                w.id, w.name, w.slots, w.in_flight, w.host, w.pid
            );
        }
        println!(
            "submitted {} · dispatched {} · completed {} · failed {} · requeued {} · duplicate results {} · dropped frames {} · workers joined {} lost {} rejected {} · rejected submissions {} · unauthenticated calls {}",
            c.submitted, c.dispatched, c.completed, c.failed, c.requeued, c.duplicate_results, c.dropped_frames, c.workers_joined, c.workers_lost, c.rejected_workers, c.rejected_submissions, c.unauthenticated_requests
        );
    }
    Ok(0)
}

async fn submit(
    target: &Target,
    spec: &str,
    count: usize,
    wait: bool,
    timeout: Duration,
    as_json: bool,
) -> anyhow::Result<i32> {
    anyhow::ensure!(count > 0, "--count must be at least 1");
    let mut client = target.connect().await?;
    let (function_id, args) = register_spec(&mut client, spec).await?;
    let tasks = vec![(function_id, args); count];
    if !wait {
        let ids = client
            .execute_batch(api::ExecuteBatchRequest {
                tasks: tasks
                    .into_iter()
                    .map(|(function_id, args)| api::ExecuteRequest { function_id, args })
                    .collect(),
            })
            .await
            .map_err(|s| status_error("ExecuteBatch", s))?
            .into_inner()
            .task_ids;
        if as_json {
            println!("{}", json!({ "submitted": ids.len(), "task_ids": ids }));
        } else {
            ids.iter().for_each(|id| println!("{id}"));
        }
        return Ok(0);
    }
    let outcome = run_batch(&client, tasks, 10_000, timeout).await?;
    print_outcome(spec, &outcome, as_json);
    Ok(if outcome.failed > 0 { 1 } else { 0 })
}

fn print_outcome(label: &str, o: &BatchOutcome, as_json: bool) {
    if as_json {
        let first_error = o
            .tasks
            .iter()
            .find(|t| t.state == api::TaskState::Failed as i32)
            .map(|t| t.error.clone());
        println!(
            "{}",
            json!({
                "spec": label, "submitted": o.submitted, "completed": o.completed, "failed": o.failed,
                "seconds": o.elapsed.as_secs_f64(), "tasks_per_second": o.throughput(), "first_error": first_error,
            })
        );
    } else {
        println!(
            "{label}: {} submitted, {} completed, {} failed in {:.3} s ({:.0} tasks/s)",
            o.submitted,
            o.completed,
            o.failed,
            o.elapsed.as_secs_f64(),
            o.throughput()
        );
        if let Some(t) = o.tasks.iter().find(|t| t.state == api::TaskState::Failed as i32) {
            println!("  first failure: task {}: {}", t.task_id, t.error);
        }
    }
}

async fn status(target: &Target, task_id: u64, as_json: bool) -> anyhow::Result<i32> {
    let mut client = target.connect().await?;
    let s = client
        .get_status(api::GetStatusRequest { task_id })
        .await
        .map_err(|s| status_error("GetStatus", s))?
        .into_inner();
    if as_json {
        println!(
            "{}",
            json!({"task_id": s.task_id, "state": state_name(s.state), "attempts": s.attempts})
        );
    } else {
        println!("task {} {} (attempts {})", s.task_id, state_name(s.state), s.attempts);
    }
    Ok(0)
}

async fn result(target: &Target, task_id: u64, as_json: bool) -> anyhow::Result<i32> {
    let mut client = target.connect().await?;
    let t = client
        .get_result(api::GetResultRequest { task_id })
        .await
        .map_err(|s| status_error("GetResult", s))?
        .into_inner()
        .task
        .context("the dispatcher sent an empty result")?;
    if as_json {
        println!(
            "{}",
            json!({
                "task_id": t.task_id, "function_id": t.function_id, "state": state_name(t.state),
                "result": t.result, "error": t.error, "attempts": t.attempts, "worker": t.worker,
                "submitted_us": t.submitted_us, "dispatched_us": t.dispatched_us, "completed_us": t.completed_us,
                "wait_us": t.wait_us, "run_us": t.run_us,
            })
        );
    } else {
        println!(
            "task {} {} after {} attempt(s) on {}",
            t.task_id,
            state_name(t.state),
            t.attempts,
            if t.worker.is_empty() { "-" } else { &t.worker }
        );
        if !t.result.is_empty() {
            println!("result: {}", t.result);
        }
        if !t.error.is_empty() {
            println!("error: {}", t.error);
        }
    }
    Ok(0)
}

async fn demo(workers: usize, slots: u32, noop_tasks: usize, sleep_tasks: usize, as_json: bool) -> anyhow::Result<i32> {
    let mut failed = 0;
    if !as_json {
        println!(
            "Volley demo: {workers} workers × {slots} slots per mode (local: a {}-slot pool), embedded memory store, 127.0.0.1\n",
            workers as u32 * slots
        );
    }
    for mode in [Mode::Local, Mode::Pull, Mode::Push] {
        // The local pool gets as many slots as the workers have together.
        let spec = if mode == Mode::Local {
            ClusterSpec::new(mode, 0, workers as u32 * slots)
        } else {
            ClusterSpec::new(mode, workers, slots)
        };
        let cluster = Cluster::start(spec.label(format!("demo-{mode}")).log_level("warn"))
            .await
            .with_context(|| format!("starting a {mode} cluster"))?;
        let mut client = connect(&cluster.grpc_url()).await?;
        for (spec, count) in [("noop", noop_tasks), ("sleep:100", sleep_tasks)] {
            if count == 0 {
                continue;
            }
            let (function_id, args) = register_spec(&mut client, spec).await?;
            let outcome = run_batch(
                &client,
                vec![(function_id, args); count],
                10_000,
                Duration::from_secs(600),
            )
            .await?;
            failed += outcome.failed;
            print_outcome(&format!("{:>5} {spec:<9}", mode.as_str()), &outcome, as_json);
        }
        cluster.stop().await?;
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

async fn sweep(a: SweepArgs) -> anyhow::Result<i32> {
    for o in &a.optypes {
        anyhow::ensure!(
            ["noop", "sleep", "spin"].contains(&o.as_str()),
            "--optypes {o}: expected noop, sleep or spin"
        );
    }
    let spec = volley_perf::sweep::SweepSpec {
        scaling: if a.scaling == "strong" {
            volley_perf::sweep::Scaling::Strong
        } else {
            volley_perf::sweep::Scaling::Weak
        },
        workers: a.workers,
        modes: a.modes,
        optypes: a.optypes,
        task_ms: a.task_ms,
        tasks_per_worker: a.tasks_per_worker,
        strong_tasks: a.strong_tasks,
        repeats: a.repeats.max(1),
        store: a.store,
        slots: a.slots.max(1),
        out: a.out.clone(),
        tasks_csv: a.tasks_csv,
    };
    let rows = volley_perf::sweep::run(&spec).await?;
    let failed: usize = rows.iter().map(|r| r.failed()).sum();
    println!(
        "{} points written to {}; {failed} tasks failed",
        rows.len(),
        a.out.display()
    );
    Ok(if failed > 0 { 1 } else { 0 })
}

async fn load(target: &Target, a: LoadArgs, as_json: bool) -> anyhow::Result<i32> {
    use volley_perf::load::{self as open_loop, Arrival, GridSpec, LoadSpec};
    let parse = |s: &str| s.parse::<Arrival>().map_err(anyhow::Error::msg);
    let results = if a.grid {
        let spec = GridSpec {
            rates: a.rates,
            spins: a.spins,
            arrivals: a.arrivals.iter().map(|s| parse(s)).collect::<anyhow::Result<_>>()?,
            mode: a.mode,
            workers: a.workers,
            slots: a.slots.max(1),
            cell: a.cell,
            warmup: a.cell_warmup,
            drain: a.cell_drain,
            seed: a.seed,
        };
        open_loop::run_grid(&spec, &a.out).await?
    } else {
        anyhow::ensure!(a.warmup < a.duration, "--warmup must be shorter than --for");
        let client = target.connect().await?;
        let spec = LoadSpec {
            rate: a.rate,
            arrival: parse(&a.arrival)?,
            optype: a.optype,
            task_ms: a.task_ms,
            duration: a.duration,
            warmup: a.warmup,
            drain: a.drain,
            seed: a.seed,
        };
        let r = open_loop::run(&client, &spec).await?;
        volley_perf::report::write_meta(&a.out, &volley_perf::report::RunMeta::collect(), Some(a.seed))?;
        open_loop::append(&a.out, std::slice::from_ref(&r))?;
        vec![r]
    };
    for r in &results {
        if as_json {
            println!("{}", serde_json::to_string(r)?);
        } else {
            println!(
                "{} {:>5.1}/s (achieved {:>5.1}/s{}) {} {:>4} ms: {}/{} ok ({:.1} %), latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms{}",
                r.arrival,
                r.target_rate,
                r.achieved_rate,
                if r.rate_ok { "" } else { ", OFF TARGET" },
                r.optype,
                r.task_ms,
                r.completed,
                r.requests,
                r.success_rate * 100.0,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                r.slowdown_p99.map(|s| format!(", slowdown p99 {s:.2}")).unwrap_or_default()
            );
        }
    }
    println!("{} result row(s) appended to {}", results.len(), a.out.display());
    Ok(0)
}

async fn chaos(a: ChaosArgs, as_json: bool) -> anyhow::Result<i32> {
    use volley_perf::chaos::{self as scenario, ChaosSpec};
    let mut reports = Vec::new();
    for mode in a.modes {
        let spec = ChaosSpec {
            mode,
            workers: a.workers,
            slots: a.slots,
            duration: a.duration,
            rate: a.rate,
            worker_kills: a.kills,
            stall: !a.no_stall,
            restart_dispatcher: !a.no_dispatcher_restart,
            restart_redis: !a.no_redis_restart,
            seed: a.seed,
            ..ChaosSpec::default()
        };
        let report = scenario::run(&spec)
            .await
            .with_context(|| format!("the {mode} chaos scenario could not run"))?;
        if !as_json {
            println!("{}\n", report.summary());
            for p in &report.problems {
                println!("  problem: {p}");
            }
        }
        reports.push(report);
    }
    let text = serde_json::to_string_pretty(&reports)?;
    if as_json {
        println!("{text}");
    }
    if let Some(out) = &a.out {
        std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(if reports.iter().all(|r| r.passed()) { 0 } else { 1 })
}
