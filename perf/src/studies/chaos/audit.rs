//! The audit: drain the cluster, then read every task back through the store's own
//! reader and check it, and ask `WatchResults` for every acknowledged id.

use super::faults::Tally;
use super::workload::Catalog;
use super::{ChaosReport, PREFIX};
use anyhow::{bail, Context};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use volley_dispatcher::store::redis::RedisStore;
use volley_dispatcher::store::TaskRecord;
use volley_proto::api;
use volley_testbed::cluster::Cluster;
use volley_testbed::redis_server::RedisServer;

/// A read-only view of the scenario's Redis through the store's own reader, so the
/// audit reads exactly the keys and fields the dispatcher writes.
async fn store(redis: &RedisServer) -> anyhow::Result<RedisStore> {
    RedisStore::connect(&redis.url(), PREFIX)
        .await
        .context("connecting the audit to Redis")
}

/// Waits until nothing is queued or running and the store holds no unfinished task.
pub(super) async fn drain(
    cluster: &mut Cluster,
    redis: &RedisServer,
    catalog: &Catalog,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let store = store(redis).await?;
    loop {
        let unfinished = store.unfinished_count().await.context("counting unfinished tasks")?;
        if let Ok(info) = cluster.info().await {
            tally.saw(&info);
            if unfinished == 0 && info.queued == 0 && info.running == 0 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            let stuck = stuck_tasks(&store, catalog).await;
            bail!(
                "{unfinished} tasks still unfinished 120 s after submission ended: {stuck}; logs in {}",
                cluster.log_dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first unfinished tasks, each with its kind, state, attempts and worker, so a
/// failed drain says which tasks stuck and where.
async fn stuck_tasks(store: &RedisStore, catalog: &Catalog) -> String {
    let tasks = match store.all_tasks().await {
        Ok(tasks) => tasks,
        Err(e) => return format!("(reading them failed: {e})"),
    };
    let stuck: Vec<String> = tasks
        .iter()
        .filter(|t| !t.state.is_terminal())
        .take(20)
        .map(|t| {
            format!(
                "{} {:?} {} attempt {} on {:?} dispatched at {} µs",
                t.id,
                catalog.kinds.get(&t.function_id.0),
                t.state.as_str(),
                t.attempts,
                t.worker,
                t.dispatched_us
            )
        })
        .collect();
    stuck.join("; ")
}

/// Checks every stored task, and every acknowledged id through the API.
pub(super) async fn audit(
    cluster: &Cluster,
    redis: &RedisServer,
    catalog: &Catalog,
    acknowledged: &[u64],
    seq_of: &HashMap<u64, u64>,
    report: &mut ChaosReport,
) -> anyhow::Result<()> {
    let stored: Vec<TaskRecord> = store(redis).await?.all_tasks().await.context("reading every task")?;
    let by_id: HashMap<u64, &TaskRecord> = stored.iter().map(|t| (t.id.0, t)).collect();
    let acked: HashSet<u64> = acknowledged.iter().copied().collect();
    report.stored = stored.len();
    for t in &stored {
        if t.attempts > 1 {
            report.retried_tasks += 1;
        }
        if !t.state.is_terminal() {
            report.unfinished += 1;
            report.problem(format!("task {} is {} at the end", t.id, t.state.as_str()));
        } else if let Some(why) = catalog.check_stored(t, seq_of.get(&t.id.0).copied()) {
            report.wrong += 1;
            report.problem(why);
        }
        if !acked.contains(&t.id.0) && !report.probe_ids.contains(&t.id.0) {
            report.stored_unacknowledged += 1;
        }
    }
    for id in &acked {
        if !by_id.contains_key(id) {
            report.lost += 1;
            report.problem(format!("acknowledged task {id} is not in the store"));
        }
    }

    // The API view: each acknowledged id reported exactly once, terminal, as stored.
    let mut client = cluster.connect().await?;
    for part in acknowledged.chunks(1000) {
        let mut seen: HashMap<u64, usize> = HashMap::new();
        let mut stream = client
            .watch_results(api::WatchResultsRequest {
                task_ids: part.to_vec(),
            })
            .await
            .context("WatchResults for the audit")?
            .into_inner();
        let read = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(msg) = stream.next().await {
                let Ok(msg) = msg else { break };
                for t in msg.tasks {
                    *seen.entry(t.task_id).or_default() += 1;
                    let state = volley_client::state_name(t.state);
                    let agrees = by_id
                        .get(&t.task_id)
                        .is_some_and(|s| s.state.as_str().eq_ignore_ascii_case(state));
                    if !agrees {
                        report.api_mismatches += 1;
                        report.problem(format!("task {}: the API says {state}, the store disagrees", t.task_id));
                    }
                }
                if seen.len() == part.len() {
                    break;
                }
            }
        })
        .await;
        if read.is_err() {
            report.problem("WatchResults did not report every acknowledged task within 30 s".into());
        }
        for id in part {
            if seen.get(id).copied().unwrap_or(0) != 1 {
                report.api_mismatches += 1;
                report.problem(format!(
                    "task {id} reported {} times",
                    seen.get(id).copied().unwrap_or(0)
                ));
            }
        }
    }
    Ok(())
}
