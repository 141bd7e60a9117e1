//! `client sweep`: closed-loop weak or strong scaling on clusters it starts.

use crate::sweep::Scaling;
use crate::workload::OpType;
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
}

/// Runs the sweep; exits 1 if any task failed.
pub async fn run(a: SweepArgs) -> anyhow::Result<i32> {
    let spec = crate::sweep::SweepSpec {
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
    };
    let rows = crate::sweep::run(&spec).await?;
    let failed: usize = rows.iter().map(|r| r.failed()).sum();
    println!(
        "{} points written to {}; {failed} tasks failed",
        rows.len(),
        a.out.display()
    );
    Ok(if failed > 0 { 1 } else { 0 })
}
