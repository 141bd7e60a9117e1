//! The `cargo test --test perf` harness.
//!
//! With `--workers N --mode M` it measures a cluster someone started by hand (dispatcher,
//! then N worker terminals): it first checks with `ClusterInfo` that the dispatcher runs
//! mode M with N live workers, and refuses with a clear message if not; then it runs the
//! weak-scaling point (5 × N tasks), waits for every outcome through `WatchResults`,
//! counts FAILED tasks as failures, and appends a row to `performance_test.csv`.
//! With no arguments it is self-contained: a small cluster per mode on free ports.
//! Either way it ends with an `N passed, N failed` line.

use crate::recording::tables::{self, PerfRow, PointSpec, RunMeta};
use crate::workload::{OpType, Scaling};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::Duration;
use volley_client::{connect, connect_with, register_spec, run_batch, Access};
use volley_proto::api;
use volley_proto::Mode;
use volley_testbed::cluster::{Cluster, ClusterSpec};

/// Weak scaling: tasks per worker.
pub const TASKS_PER_WORKER: usize = 5;

/// What the harness was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct PerfArgs {
    /// Workers the running cluster must have (`None`: self-contained run).
    pub workers: Option<usize>,
    /// Mode the running cluster must run.
    pub mode: Option<Mode>,
    /// The kind of task.
    pub optype: OpType,
    /// Duration of sleep and spin tasks.
    pub task_ms: u64,
    /// The dispatcher's gRPC address.
    pub dispatcher: String,
    /// Where rows are appended.
    pub out: PathBuf,
}

/// `performance_test.csv` at the workspace root.
pub fn default_csv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("performance_test.csv")
}

/// Parses the harness's arguments; flags cargo's own test runner passes (`--nocapture`,
/// `--test-threads N`, filters) are ignored.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> anyhow::Result<PerfArgs> {
    let mut parsed = PerfArgs {
        workers: None,
        mode: None,
        optype: OpType::Sleep,
        task_ms: 100,
        dispatcher: "http://127.0.0.1:50051".into(),
        out: default_csv(),
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> anyhow::Result<String> {
            inline
                .clone()
                .or_else(|| it.next())
                .with_context(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--workers" => {
                let v = value("--workers")?;
                parsed.workers = Some(v.parse().with_context(|| format!("--workers {v}: not a number"))?);
            }
            "--mode" => parsed.mode = Some(value("--mode")?.parse().map_err(anyhow::Error::msg)?),
            "--optype" => {
                parsed.optype = value("--optype")?
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("--optype: {e}"))?;
            }
            "--task-ms" => {
                let v = value("--task-ms")?;
                parsed.task_ms = v.parse().with_context(|| format!("--task-ms {v}: not a number"))?;
            }
            "--dispatcher" => parsed.dispatcher = value("--dispatcher")?,
            "--out" => parsed.out = PathBuf::from(value("--out")?),
            "--test-threads" | "--color" | "--format" | "--skip" | "-Z" | "--logfile" => {
                let _ = it.next();
            }
            _ => {}
        }
    }
    if parsed.workers.is_some() != parsed.mode.is_some() {
        bail!("give both --workers N and --mode local|pull|push to measure a running cluster, or neither for the self-contained run");
    }
    Ok(parsed)
}

/// Checks that a running dispatcher is what the measurement claims it is.
pub fn check_cluster(info: &api::ClusterInfoResponse, mode: Mode, workers: usize) -> Result<(), String> {
    if info.mode != mode.as_str() {
        return Err(format!(
            "the dispatcher runs in {} mode, but --mode {mode} was asked; restart it with -m {mode} or pass --mode {}",
            info.mode, info.mode
        ));
    }
    if mode == Mode::Local {
        let slots: u32 = info.workers.iter().map(|w| w.slots).sum();
        if slots as usize != workers {
            return Err(format!(
                "the dispatcher's local pool has {slots} slots, but --workers {workers} was asked; restart it with -w {workers}"
            ));
        }
    } else if info.workers.len() != workers {
        return Err(format!(
            "the dispatcher has {} live workers, but --workers {workers} was asked; start {} more worker(s) or pass --workers {}",
            info.workers.len(),
            workers.saturating_sub(info.workers.len()),
            info.workers.len()
        ));
    }
    Ok(())
}

/// Measures the running cluster `args` names and appends one row. Fails on a mismatch,
/// an unreachable dispatcher, or any FAILED task.
pub async fn run_external(args: &PerfArgs) -> anyhow::Result<PerfRow> {
    let (Some(workers), Some(mode)) = (args.workers, args.mode) else {
        bail!("run_external needs --workers and --mode");
    };
    // A dispatcher started with a token or TLS: VOLLEY_TOKEN and VOLLEY_CA, as for `client`.
    let mut client = connect_with(&args.dispatcher, &Access::from_env()?).await?;
    let info = client
        .cluster_info(api::ClusterInfoRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("ClusterInfo failed: {}", s.message()))?
        .into_inner();
    check_cluster(&info, mode, workers).map_err(anyhow::Error::msg)?;
    let slots_per_worker = if mode == Mode::Local {
        1
    } else {
        (info.workers.iter().map(|w| w.slots).sum::<u32>() / workers.max(1) as u32).max(1)
    };
    let spec = args.optype.spec(args.task_ms);
    let (function_id, fargs) = register_spec(&mut client, &spec).await?;
    let n = TASKS_PER_WORKER * workers;
    let outcome = run_batch(
        &client,
        vec![(function_id, fargs); n],
        10_000,
        Duration::from_secs(3600),
    )
    .await?;
    let point = PointSpec {
        mode,
        optype: args.optype,
        workers,
        scaling: Scaling::Weak,
        store: info.store.clone(),
        task_ms: args.optype.task_ms(args.task_ms),
        slots_per_worker,
        repeat: 0,
        function: None,
    };
    let row = PerfRow::new(&point, &outcome, &RunMeta::collect());
    tables::append(&args.out, std::slice::from_ref(&row))?;
    Ok(row)
}

/// The self-contained run: per mode, a cluster of 2 workers × 1 slot (local: a 2-slot
/// pool), a weak-scaling point of noop and of 50 ms sleep tasks; every task must complete.
/// Rows go to `out`.
pub async fn run_self_contained(mode: Mode, out: &Path) -> anyhow::Result<Vec<PerfRow>> {
    let (workers, slots) = if mode == Mode::Local { (0, 2) } else { (2, 1) };
    let cluster = Cluster::start(
        ClusterSpec::new(mode, workers, slots)
            .label(format!("perf-{mode}"))
            .log_level("warn"),
    )
    .await?;
    let mut client = connect(&cluster.grpc_url()).await?;
    let meta = RunMeta::collect();
    let mut rows = Vec::new();
    for (optype, task_ms) in [(OpType::Noop, 0), (OpType::Sleep, 50)] {
        let (function_id, args) = register_spec(&mut client, &optype.spec(task_ms)).await?;
        let n = TASKS_PER_WORKER * 2;
        let outcome = run_batch(&client, vec![(function_id, args); n], n, Duration::from_secs(60)).await?;
        if outcome.completed != n {
            bail!(
                "{mode} {optype}: {} of {n} tasks completed ({} failed); logs in {}",
                outcome.completed,
                outcome.failed,
                cluster.log_dir().display()
            );
        }
        let point = PointSpec {
            mode,
            optype,
            workers: if mode == Mode::Local { 2 } else { workers },
            scaling: Scaling::Weak,
            store: "memory".into(),
            task_ms,
            slots_per_worker: 1,
            repeat: 0,
            function: None,
        };
        rows.push(PerfRow::new(&point, &outcome, &meta));
    }
    cluster.stop().await?;
    tables::append(out, &rows)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> anyhow::Result<PerfArgs> {
        parse_args(s.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn arguments_parse_and_libtest_flags_are_ignored() {
        let a = args("--workers 16 --mode pull --nocapture --test-threads 1 --optype=spin --task-ms 250").unwrap();
        assert_eq!(
            (a.workers, a.mode, a.optype, a.task_ms),
            (Some(16), Some(Mode::Pull), OpType::Spin, 250)
        );
        let plain = args("").unwrap();
        assert_eq!((plain.workers, plain.mode), (None, None));
        assert!(args("--workers 4").unwrap_err().to_string().contains("give both"));
        assert!(args("--workers x --mode pull").is_err());
        assert!(args("--workers 2 --mode sideways").is_err());
        assert!(args("--workers 2 --mode push --optype dance").is_err());
    }

    fn info(mode: &str, slots: &[u32]) -> api::ClusterInfoResponse {
        api::ClusterInfoResponse {
            mode: mode.into(),
            workers: slots
                .iter()
                .map(|s| api::WorkerInfo {
                    slots: *s,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_cluster_must_be_what_the_measurement_claims() {
        assert!(check_cluster(&info("pull", &[1, 1]), Mode::Pull, 2).is_ok());
        assert!(check_cluster(&info("pull", &[1, 1]), Mode::Push, 2)
            .unwrap_err()
            .contains("runs in pull mode"));
        assert!(check_cluster(&info("push", &[1]), Mode::Push, 16)
            .unwrap_err()
            .contains("1 live workers"));
        assert!(check_cluster(&info("local", &[4]), Mode::Local, 4).is_ok());
        assert!(check_cluster(&info("local", &[2]), Mode::Local, 4)
            .unwrap_err()
            .contains("local pool has 2 slots"));
    }
}
