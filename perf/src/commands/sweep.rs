//! `client sweep`: closed-loop weak or strong scaling on clusters it starts.

use crate::recording::observe::{ObserveArgs, Observed};
use crate::recording::tables::PerfRow;
use crate::recording::verdict::{Kind, MetricDef};
use crate::studies::sweep::Scaling;
use crate::workload::OpType;
use std::collections::BTreeMap;
use volley_proto::Mode;

/// `client sweep` flags.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// weak: tasks-per-worker × workers tasks; strong: a fixed number of tasks.
    #[arg(long, default_value = "weak")]
    pub scaling: Scaling,
    /// Worker counts.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    pub workers: Vec<usize>,
    /// Modes.
    #[arg(long, value_delimiter = ',', default_value = "local,pull,push")]
    pub modes: Vec<Mode>,
    /// Task kinds: noop, sleep, spin.
    #[arg(long, value_delimiter = ',', default_value = "noop,sleep")]
    pub optypes: Vec<OpType>,
    /// Durations of sleep and spin tasks, ms.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub task_ms: Vec<u64>,
    /// Weak scaling: tasks per worker.
    #[arg(long, default_value_t = 5)]
    pub tasks_per_worker: usize,
    /// Strong scaling: total tasks.
    #[arg(long, default_value_t = 80)]
    pub strong_tasks: usize,
    /// Repetitions of each point (at least 1).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeats: u32,
    /// Slots per worker (at least 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
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
    /// Results database, verdicts, telemetry.
    #[command(flatten)]
    pub observe: ObserveArgs,
    /// Sweep a user function instead of --optypes: its code (as `client deploy` takes
    /// it), deployed into every cluster the sweep starts.
    #[arg(long, requires = "runtime")]
    pub code: Option<std::path::PathBuf>,
    /// With --code: python, node, java or native.
    #[arg(long, requires = "code")]
    pub runtime: Option<volley_proto::function::Language>,
    /// With --code: the entry point.
    #[arg(long, requires = "code")]
    pub handler: Option<String>,
    /// With --code: every task's arguments, a JSON text.
    #[arg(long, default_value = "", requires = "code")]
    pub args: String,
}

/// What a sweep can be judged on: its worst point for each figure.
pub const METRICS: &[MetricDef] = &[
    MetricDef::new("p50", Kind::Time, "the highest point p50 of submitted→completed"),
    MetricDef::new("p99", Kind::Time, "the highest point p99"),
    MetricDef::new("throughput", Kind::Number, "the lowest point throughput, tasks/s"),
    MetricDef::new(
        "efficiency",
        Kind::Fraction,
        "the lowest point efficiency (sleep and spin)",
    ),
    MetricDef::new("overhead", Kind::Time, "the highest overhead per task"),
    MetricDef::new("failed", Kind::Number, "tasks FAILED over every point"),
    MetricDef::new("completed", Kind::Number, "tasks measured over every point"),
];

/// The sweep's measures, worst point first.
pub fn measures(rows: &[PerfRow]) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let max = |f: &dyn Fn(&PerfRow) -> f64| rows.iter().map(f).fold(f64::NAN, f64::max);
    let min = |f: &dyn Fn(&PerfRow) -> f64| rows.iter().map(f).fold(f64::NAN, f64::min);
    let mut put = |k: &str, v: f64| {
        if v.is_finite() {
            m.insert(k.to_owned(), v);
        }
    };
    put("p50", max(&|r| r.latency_ms().0 / 1e3));
    put("p99", max(&|r| r.latency_ms().1 / 1e3));
    put("throughput", min(&|r| r.tasks_per_second()));
    put("efficiency", min(&|r| r.efficiency().map_or(f64::NAN, |e| e / 100.0)));
    put("overhead", max(&|r| r.overhead() / 1e3));
    let failed: usize = rows.iter().map(|r| r.failed()).sum();
    let tasks: usize = rows.iter().map(|r| r.task_count()).sum();
    put("failed", failed as f64);
    put("completed", (tasks - failed.min(tasks)) as f64);
    m
}

/// Runs the sweep; exits 1 if any task failed, 99 if an assertion failed.
pub async fn run(a: SweepArgs) -> anyhow::Result<i32> {
    let mut observed = Observed::start("sweep", &a.observe, METRICS, None)?;
    let spec = crate::studies::sweep::SweepSpec {
        scaling: a.scaling,
        workers: a.workers,
        modes: a.modes,
        optypes: a.optypes,
        task_ms: a.task_ms,
        tasks_per_worker: a.tasks_per_worker,
        strong_tasks: a.strong_tasks,
        repeats: a.repeats,
        store: a.store,
        slots: a.slots,
        out: a.out.clone(),
        tasks_csv: a.tasks_csv,
        function: match (&a.code, a.runtime) {
            (Some(path), Some(language)) => {
                let package = volley_client::commands::deploy::package(path, language, a.handler.as_deref())?;
                let name = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("function")
                    .to_owned();
                Some(crate::studies::sweep::SweepFunction {
                    name,
                    runtime: volley_proto::api::Runtime {
                        language: language.name().to_owned(),
                        handler: package.handler,
                        code_format: package.format.to_owned(),
                        ..Default::default()
                    },
                    code: package.bytes,
                    args: a.args.clone(),
                })
            }
            _ => None,
        },
    };
    crate::recording::observe::track_redis(observed.sampler(), &spec.store).await;
    let mut requests = Vec::new();
    let rows = crate::studies::sweep::run_observed(&spec, Some(observed.sampler()), &mut requests).await?;
    let failed: usize = rows.iter().map(|r| r.failed()).sum();
    println!(
        "{} points written to {}; {failed} tasks failed",
        rows.len(),
        a.out.display()
    );
    let tasks = rows.iter().map(|r| r.task_count() as u64).sum();
    observed.record.metrics = measures(&rows);
    observed.record.points = rows;
    observed.record.requests = requests;
    let verdict = observed.finish(tasks, false)?;
    Ok(crate::recording::observe::exit_code(
        if failed > 0 { 1 } else { 0 },
        verdict,
    ))
}
