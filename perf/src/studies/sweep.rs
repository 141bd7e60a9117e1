//! Closed-loop scaling sweeps: a fresh cluster per point (real processes, the launcher the
//! tests use), a warm-up, the measured batch, tear-down, one `performance_test.csv` row.

use crate::recording::db::RequestRow;
use crate::recording::sampler::Tracker;
use crate::recording::tables::{self, PerfRow, PointSpec, RunMeta, TaskRow};
use crate::workload::OpType;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Duration;
use volley_client::{connect, register_spec, run_batch};
use volley_proto::api;
use volley_proto::Mode;
use volley_testbed::cluster::{Cluster, ClusterSpec};

pub use crate::workload::Scaling;

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepSpec {
    /// Weak or strong.
    pub scaling: Scaling,
    /// Worker counts.
    pub workers: Vec<usize>,
    /// Modes.
    pub modes: Vec<Mode>,
    /// Task kinds.
    pub optypes: Vec<OpType>,
    /// Durations for sleep and spin (noop ignores them).
    pub task_ms: Vec<u64>,
    /// Weak scaling: tasks per worker.
    pub tasks_per_worker: usize,
    /// Strong scaling: total tasks.
    pub strong_tasks: usize,
    /// Repetitions of every point.
    pub repeats: u32,
    /// `memory` or a Redis URL.
    pub store: String,
    /// Slots per worker (local mode: the pool gets workers × slots).
    pub slots: u32,
    /// Where rows go.
    pub out: PathBuf,
    /// Where per-task records go, if anywhere.
    pub tasks_csv: Option<PathBuf>,
    /// A user function to sweep instead of the optypes, deployed into each point's cluster.
    pub function: Option<SweepFunction>,
}

/// A user function a sweep deploys into every cluster it starts.
#[derive(Debug, Clone)]
pub struct SweepFunction {
    /// Its name, written as the rows' OpType.
    pub name: String,
    /// Its runtime spec, without the code.
    pub runtime: api::Runtime,
    /// The code.
    pub code: Vec<u8>,
    /// Every task's arguments, a JSON text.
    pub args: String,
}

impl SweepSpec {
    fn points(&self) -> Vec<(OpType, u64, Mode, usize, u32)> {
        let mut points = Vec::new();
        // A user function is one kind of task, with no nominal duration.
        let builtins = [OpType::Noop];
        let optypes = if self.function.is_some() {
            &builtins[..]
        } else {
            &self.optypes[..]
        };
        for optype in optypes {
            let durations: Vec<u64> = if !optype.has_duration() {
                vec![0]
            } else {
                self.task_ms.clone()
            };
            for ms in durations {
                for mode in &self.modes {
                    for w in &self.workers {
                        for r in 0..self.repeats {
                            points.push((*optype, ms, *mode, *w, r));
                        }
                    }
                }
            }
        }
        points
    }
}

/// Runs every point and appends its row as soon as it is measured; returns the rows.
pub async fn run(spec: &SweepSpec) -> anyhow::Result<Vec<PerfRow>> {
    run_observed(spec, None, &mut Vec::new()).await
}

/// [`run`], with every cluster's processes followed by `sampler` and every task's record
/// added to `requests`.
pub async fn run_observed(
    spec: &SweepSpec,
    sampler: Option<&Tracker>,
    requests: &mut Vec<RequestRow>,
) -> anyhow::Result<Vec<PerfRow>> {
    let meta = RunMeta::collect();
    tables::write_meta(&spec.out, &meta, None)?;
    let points = spec.points();
    let bar = ProgressBar::new(points.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} points, eta {eta} · {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut rows = Vec::with_capacity(points.len());
    for (optype, task_ms, mode, workers, repeat) in points {
        bar.set_message(format!(
            "{mode} {optype}{} × {workers} workers, repeat {repeat}",
            if task_ms > 0 {
                format!(":{task_ms}")
            } else {
                String::new()
            }
        ));
        let n = match spec.scaling {
            Scaling::Weak => spec.tasks_per_worker * workers,
            Scaling::Strong => spec.strong_tasks,
        };
        let point = PointSpec {
            mode,
            optype,
            workers,
            scaling: spec.scaling,
            store: spec.store.clone(),
            task_ms,
            slots_per_worker: spec.slots,
            repeat,
            function: spec.function.as_ref().map(|f| f.name.clone()),
        };
        let outcome = measure(spec, sampler, mode, workers, optype, task_ms, n)
            .await
            .with_context(|| format!("{mode} {optype}:{task_ms} with {workers} workers, repeat {repeat}"))?;
        let row = PerfRow::new(&point, &outcome, &meta);
        tables::append(&spec.out, std::slice::from_ref(&row))?;
        let function = point.function.clone().unwrap_or_else(|| optype.spec(task_ms));
        requests.extend(
            outcome
                .tasks
                .iter()
                .map(|t| RequestRow::from_task(Some(rows.len()), &function, t)),
        );
        if let Some(path) = &spec.tasks_csv {
            let tasks: Vec<TaskRow> = outcome.tasks.iter().map(|t| TaskRow::new(&point, t)).collect();
            tables::append_tasks(path, &tasks)?;
        }
        rows.push(row);
        bar.inc(1);
    }
    bar.finish_with_message("done");
    Ok(rows)
}

async fn measure(
    spec: &SweepSpec,
    sampler: Option<&Tracker>,
    mode: Mode,
    workers: usize,
    optype: OpType,
    task_ms: u64,
    n: usize,
) -> anyhow::Result<volley_client::BatchOutcome> {
    let prefix = format!("volley-sweep:{}:{mode}:{workers}:", std::process::id());
    let (procs, slots) = if mode == Mode::Local {
        (0, workers as u32 * spec.slots)
    } else {
        (workers, spec.slots)
    };
    let mut cluster_spec = ClusterSpec::new(mode, procs, slots)
        .store(spec.store.as_str())
        .label(format!("sweep-{mode}-{workers}"))
        .log_level("warn");
    if spec.store != "memory" {
        cluster_spec = cluster_spec.args(["--redis-prefix", prefix.as_str()]);
    }
    let cluster = Cluster::start(cluster_spec).await?;
    if let Some(s) = sampler {
        s.track_cluster(&cluster);
    }
    let mut client = connect(&cluster.grpc_url()).await?;
    let (noop, noop_args) = register_spec(&mut client, "noop").await?;
    run_batch(
        &client,
        vec![(noop, noop_args); 2 * workers.max(1)],
        1000,
        Duration::from_secs(30),
    )
    .await?;
    let (f, args) = match &spec.function {
        Some(user) => {
            let deployed = volley_client::commands::deploy::register_code(
                &mut client,
                &user.name,
                user.runtime.clone(),
                user.code.clone(),
            )
            .await
            .map_err(|s| anyhow::anyhow!("deploying {}: {}", user.name, s.message()))?;
            (deployed.function_id, user.args.clone())
        }
        None => register_spec(&mut client, &optype.spec(task_ms)).await?,
    };
    let budget = Duration::from_millis(60_000 + 4 * task_ms * n as u64);
    let outcome = run_batch(&client, vec![(f, args); n], 10_000, budget).await?;
    cluster.stop().await?;
    if spec.store != "memory" {
        volley_testbed::purge_redis(&spec.store, &prefix).await;
    }
    Ok(outcome)
}
