//! `client simulate`: scaling policies compared over a whole trace on a virtual clock,
//! with the dispatcher's own scaler core; one row per policy, and a chart.

use crate::studies::replay::run::{self, ReplaySpec};
use crate::studies::replay::simulate::{simulate, Platform};
use crate::studies::replay::{select, Granularity, Iat, ScheduleSpec, Trace};
use std::path::PathBuf;
use std::time::Duration;
use volley_dispatcher::scaler::PolicySpec;

/// The policies compared when none is given: the paper's axis.
const DEFAULT_POLICIES: [&str; 4] = ["fixed:keepalive=10m", "fixed:keepalive=1m", "kpa", "hybrid"];

/// `client simulate` flags.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Folder with invocations.csv, durations.csv and memory.csv (Azure 2019 schema).
    #[arg(long)]
    pub trace: PathBuf,
    /// Whether the count columns are minutes or seconds.
    #[arg(long, default_value = "minute")]
    pub granularity: Granularity,
    /// A sample of N functions, stratified by invocation rate (default: all).
    #[arg(long)]
    pub functions: Option<usize>,
    /// Trace minutes A..B (end exclusive), e.g. 540..560 (default: all).
    #[arg(long)]
    pub minutes: Option<String>,
    /// Spacing inside a minute: equidistant, uniform or exponential.
    #[arg(long, default_value = "exponential")]
    pub iat: Iat,
    /// Divide every time and duration by X (to match a compressed live replay).
    #[arg(long, default_value_t = 1.0)]
    pub compress: f64,
    /// Seed of the schedule, the sample and the drawn durations.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// A policy to simulate (repeat the flag for several): fixed:keepalive=10m, kpa:…,
    /// hybrid:… (default: fixed 10 min, fixed 1 min, kpa, hybrid).
    #[arg(long = "policy")]
    pub policies: Vec<String>,
    /// Tasks one instance runs at once (container concurrency).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub slots: u32,
    /// From the decision to start an instance to its first task.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    pub cold_start: Duration,
    /// Instances at most, over all functions.
    #[arg(long, default_value_t = 100_000)]
    pub max_instances: u32,
    /// The scaler's tick.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub tick: Duration,
    /// One row per policy.
    #[arg(long, default_value = "sim.csv")]
    pub out: PathBuf,
    /// One row per policy and function.
    #[arg(long)]
    pub functions_out: Option<PathBuf>,
    /// Also draw cold starts against idle instance-time here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// What an idle instance holds in memory, MiB, per runtime (`python=20,node=46`):
    /// each policy's idle instance-time weighed by it, so a keep-alive study says what
    /// each language's warm instances cost (idle MiB·s). BENCHMARKS.md has the measured
    /// idle runtime RSS per language; an instance adds its worker's.
    #[arg(long, value_delimiter = ',', value_parser = parse_idle_mib)]
    pub idle_mib: Vec<(String, f64)>,
    /// One row per policy and runtime of --idle-mib.
    #[arg(long, default_value = "sim-memory.csv")]
    pub memory_out: PathBuf,
}

fn parse_idle_mib(s: &str) -> Result<(String, f64), String> {
    let (name, mib) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}': expected RUNTIME=MIB, e.g. python=20"))?;
    let mib: f64 = mib
        .trim()
        .parse()
        .ok()
        .filter(|m: &f64| m.is_finite() && *m > 0.0)
        .ok_or_else(|| format!("'{s}': MIB must be a positive number"))?;
    if name.trim().is_empty() {
        return Err(format!("'{s}': no runtime named"));
    }
    Ok((name.trim().to_owned(), mib))
}

/// `sim-memory.csv`: a policy's idle instance-time, weighed by a runtime's idle memory.
#[derive(Debug, serde::Serialize)]
struct MemoryRow {
    policy: String,
    runtime: String,
    idle_mib_per_instance: f64,
    idle_instance_s: f64,
    idle_mib_s: f64,
    idle_gib_h: f64,
}

/// Runs every policy over the trace and writes the rows.
pub fn run(a: &SimulateArgs, as_json: bool) -> anyhow::Result<i32> {
    let given: Vec<String> = if a.policies.is_empty() {
        DEFAULT_POLICIES.iter().map(|s| s.to_string()).collect()
    } else {
        a.policies.clone()
    };
    let specs: Vec<PolicySpec> = given
        .iter()
        .map(|p| p.parse::<PolicySpec>().map_err(|e| anyhow::anyhow!("--policy {e}")))
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(a.compress > 0.0, "--compress must be positive");
    anyhow::ensure!(a.tick > Duration::ZERO, "--tick must be positive");
    let trace = Trace::read(&a.trace, a.granularity)?;
    let window = select::window(&trace, a.minutes.as_deref())?;
    let functions = select::sample(&trace, window.clone(), a.functions, a.seed);
    anyhow::ensure!(!functions.is_empty(), "no function to simulate");
    let spec = ReplaySpec {
        schedule: ScheduleSpec {
            window: window.clone(),
            iat: a.iat,
            shift: false,
            compress: a.compress,
            seed: a.seed,
        },
        spin: false,
        max_memory_mb: 0,
        warmup_columns: 0,
        drain: Duration::ZERO,
        function: None,
    };
    let mut planned = run::prepare(&trace, &functions, &spec)?;
    planned.sort_by_key(|p| p.invocation.at_us);
    let names: Vec<String> = functions.iter().map(|f| f.key.2.clone()).collect();
    let platform = Platform {
        slots: a.slots,
        cold_start: a.cold_start,
        max_instances: a.max_instances,
        tick: a.tick,
        end: Duration::from_secs_f64(window.len() as f64 * a.granularity.seconds() as f64 / a.compress),
    };
    eprintln!(
        "simulating {} functions, {} invocations over {} s of virtual time, {} policies",
        names.len(),
        planned.len(),
        platform.end.as_secs(),
        specs.len()
    );
    let mut rows = Vec::new();
    let mut per_function = Vec::new();
    for (spec, text) in specs.iter().zip(&given) {
        let (row, functions) = simulate(spec, text, &names, &planned, &platform);
        if as_json {
            println!("{}", serde_json::to_string(&row)?);
        } else {
            println!("{}", row.line());
        }
        rows.push(row);
        per_function.extend(functions);
    }
    crate::recording::tables::write_meta(&a.out, &crate::recording::tables::RunMeta::collect(), Some(a.seed))?;
    crate::recording::tables::write_rows(&a.out, &rows)?;
    if !a.idle_mib.is_empty() {
        let memory: Vec<MemoryRow> = rows
            .iter()
            .flat_map(|r| {
                a.idle_mib.iter().map(|(runtime, mib)| MemoryRow {
                    policy: r.policy.clone(),
                    runtime: runtime.clone(),
                    idle_mib_per_instance: *mib,
                    idle_instance_s: r.idle_instance_s,
                    idle_mib_s: r.idle_instance_s * mib,
                    idle_gib_h: r.idle_instance_s * mib / 1024.0 / 3600.0,
                })
            })
            .collect();
        if !as_json {
            for m in &memory {
                println!(
                    "{:<12} idle memory as {:<8} ({:>6.1} MiB an instance): {:>12.0} MiB·s = {:>8.3} GiB·h",
                    m.policy, m.runtime, m.idle_mib_per_instance, m.idle_mib_s, m.idle_gib_h
                );
            }
        }
        crate::recording::tables::write_rows(&a.memory_out, &memory)?;
    }
    if let Some(path) = &a.functions_out {
        crate::recording::tables::write_rows(path, &per_function)?;
    }
    if let Some(dir) = &a.plot {
        let mut written = Vec::new();
        let x = "idle instance-hours (wasted memory time)";
        let per_function = rows
            .iter()
            .map(|r| (r.policy.clone(), vec![(r.idle_instance_s / 3600.0, r.cold_pct_p50)]))
            .collect();
        let title = "Cold starts per function (median) against idle instance-time";
        let y = "cold starts, % of a function's invocations";
        crate::presentation::plot::plot_lines(dir, "simulate-policies", (title, x, y), per_function, &mut written)?;
        let overall = rows
            .iter()
            .map(|r| (r.policy.clone(), vec![(r.idle_instance_s / 3600.0, r.cold_pct)]))
            .collect();
        let title = "Cold starts (all invocations) against idle instance-time";
        let y = "cold starts, % of all invocations";
        crate::presentation::plot::plot_lines(dir, "simulate-policies-overall", (title, x, y), overall, &mut written)?;
        eprintln!("charts written to {}", dir.display());
    }
    Ok(0)
}
