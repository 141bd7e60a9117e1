//! The chaos workload: a mix of functions, unique arguments per task where the function
//! allows, what each task's stored outcome must be, and the open-loop submitter.

use super::{CHUNK, FAULT_TIMEOUT};
use anyhow::bail;
use futures::StreamExt;
use std::collections::HashMap;
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use volley_client::{register_spec, Client};
use volley_dispatcher::store::{TaskRecord, TaskState};
use volley_proto::api;
use volley_testbed::cluster::Cluster;
/// The workload: function specs, their shares of the tasks, and per-task arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Noop,
    Echo,
    Sleep,
    Spin,
    Fail,
    Long,
    /// A Python function returning its event (a real runtime per slot).
    PyEcho,
    /// A Python function that segfaults its runtime.
    PyCrash,
    /// A Python function that outlives its 300 ms deadline.
    PyTimeout,
}

pub(super) const MIX: &[(Kind, &str, u32)] = &[
    (Kind::Noop, "noop", 40),
    (Kind::Echo, "echo", 25),
    (Kind::Sleep, "sleep:20", 20),
    (Kind::Spin, "spin:5", 9),
    (Kind::Fail, "fail:chaos", 5),
    (Kind::Long, "sleep:1000", 1),
    (Kind::PyEcho, "python:echo", 8),
    (Kind::PyCrash, "python:crash", 1),
    (Kind::PyTimeout, "python:timeout", 1),
];

/// The Python functions of the mix, each one's code.
const PYTHON: &str = "import ctypes, time\n\ndef echo(event):\n    return event\n\ndef crash(event):\n    ctypes.string_at(0)\n\ndef timeout(event):\n    time.sleep(2)\n";

/// Errors a task may end with when the fault injected was the loss of its worker.
const LOSSES: [&str; 2] = ["worker_lost", "lease_expired"];

/// Registers a spec of the mix: a built-in, or `python:<handler>` deployed with its code.
async fn register(client: &mut Client, spec: &str) -> anyhow::Result<u64> {
    let Some(handler) = spec.strip_prefix("python:") else {
        return Ok(register_spec(client, spec).await?.0);
    };
    let runtime = api::Runtime {
        language: "python".into(),
        handler: handler.into(),
        code_format: "py".into(),
        timeout_ms: 300,
        memory_mb: 256,
        ..Default::default()
    };
    let reply =
        volley_client::commands::deploy::register_code(client, &format!("chaos-{handler}"), runtime, PYTHON.into())
            .await
            .map_err(|s| anyhow::anyhow!("deploying chaos-{handler}: {}", s.message()))?;
    Ok(reply.function_id)
}

/// Function ids of the workload, and what each task must come to.
pub(super) struct Catalog {
    pub(super) kinds: HashMap<u64, Kind>,
    pub(super) ids: Vec<(Kind, u64, u32)>,
    pub(super) probe: u64,
}

impl Catalog {
    pub(super) async fn register(client: &mut Client) -> anyhow::Result<Self> {
        let mut kinds = HashMap::new();
        let mut ids = Vec::new();
        for (kind, spec, weight) in MIX {
            let id = register(client, spec).await?;
            kinds.insert(id, *kind);
            ids.push((*kind, id, *weight));
        }
        let (probe, _) = register_spec(client, "noop").await?;
        Ok(Self { kinds, ids, probe })
    }

    /// The `seq`-th task: its function and arguments (unique where the function allows).
    pub(super) fn task(&self, seq: u64) -> (u64, String) {
        let total: u32 = self.ids.iter().map(|(_, _, w)| w).sum();
        let mut pick = (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32 % total;
        for (kind, id, weight) in &self.ids {
            if pick < *weight {
                let args = match kind {
                    Kind::Echo | Kind::PyEcho => format!("{{\"seq\":{seq}}}"),
                    Kind::Fail => format!("{{\"message\":\"chaos-{seq}\"}}"),
                    Kind::Sleep => format!("{{\"ms\":{}}}", 10 + seq % 21),
                    _ => String::new(),
                };
                return (*id, args);
            }
            pick -= weight;
        }
        (self.probe, String::new())
    }

    /// Why a stored task's outcome is not what its function and arguments imply. A
    /// finished task stored without its arguments (the Redis store drops them when it
    /// finishes) gets them back from the sequence number it was made from; one that was
    /// never acknowledged has none to check against, so only its state is checked.
    pub(super) fn check_stored(&self, t: &TaskRecord, seq: Option<u64>) -> Option<String> {
        if !t.args.is_empty() {
            return self.check(t);
        }
        match seq {
            Some(seq) => self.check(&TaskRecord {
                args: self.task(seq).1,
                ..t.clone()
            }),
            None => (!t.state.is_terminal()).then(|| format!("task {} is {}", t.id, t.state.as_str())),
        }
    }

    /// Why a stored task's outcome is not what its function and arguments imply.
    pub(super) fn check(&self, t: &TaskRecord) -> Option<String> {
        let Some(kind) = self.kinds.get(&t.function_id.0).copied().or_else(|| {
            // The probe is a noop.
            (t.function_id.0 == self.probe).then_some(Kind::Noop)
        }) else {
            return Some(format!("task {} has unknown function {}", t.id, t.function_id));
        };
        let completed = |expected: &str| {
            (t.state != TaskState::Completed || t.result != expected).then(|| {
                format!(
                    "task {} ({kind:?}, args {:?}): {} {:?} {:?}, expected COMPLETED {expected:?}",
                    t.id,
                    t.args,
                    t.state.as_str(),
                    t.result,
                    t.error
                )
            })
        };
        let json_u64 = |key: &str| {
            serde_json::from_str::<serde_json::Value>(&t.args)
                .ok()
                .and_then(|v| v.get(key).and_then(|v| v.as_u64()))
        };
        match kind {
            Kind::Noop => completed("null"),
            Kind::Echo => completed(&t.args),
            Kind::Sleep => completed(&format!("{{\"slept_ms\":{}}}", json_u64("ms").unwrap_or(20))),
            Kind::Long => completed("{\"slept_ms\":1000}"),
            Kind::PyEcho => completed(&t.args),
            Kind::PyCrash | Kind::PyTimeout => {
                let expected = if kind == Kind::PyCrash {
                    "crashed: "
                } else {
                    "timeout: "
                };
                let lost = LOSSES.iter().any(|l| t.error.starts_with(l));
                (t.state != TaskState::Failed || !(t.error.starts_with(expected) || lost)).then(|| {
                    format!(
                        "task {} ({kind:?}): {} {:?}, expected FAILED {expected:?}",
                        t.id,
                        t.state.as_str(),
                        t.error
                    )
                })
            }
            Kind::Spin => (t.state != TaskState::Completed || !t.result.contains("\"spun_ms\":5")).then(|| {
                format!(
                    "task {} (spin): {} {:?} {:?}",
                    t.id,
                    t.state.as_str(),
                    t.result,
                    t.error
                )
            }),
            Kind::Fail => {
                let message = serde_json::from_str::<serde_json::Value>(&t.args)
                    .ok()
                    .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                    .unwrap_or_else(|| "chaos".into());
                (t.state != TaskState::Failed || t.error != message).then(|| {
                    format!(
                        "task {} (fail): {} {:?}, expected FAILED {message:?}",
                        t.id,
                        t.state.as_str(),
                        t.error
                    )
                })
            }
        }
    }
}

/// What the submitter saw.
#[derive(Default)]
pub(super) struct Ledger {
    pub(super) acknowledged: Vec<u64>,
    /// The sequence number each acknowledged task was made from: its arguments, which
    /// the Redis store keeps only until the task finishes.
    pub(super) seq_of: HashMap<u64, u64>,
    pub(super) unacknowledged: usize,
    pub(super) refused: usize,
}

/// Submits one noop until it is accepted and waits for its result: the time a user
/// waits for service after a fault. Every probe task submitted is noted in `ids`.
pub(super) async fn probe(cluster: &Cluster, function_id: u64, ids: &mut Vec<u64>) -> anyhow::Result<()> {
    let deadline = Instant::now() + FAULT_TIMEOUT;
    // What went wrong last, for the error if nothing completes in time.
    let mut last = String::from("nothing tried");
    loop {
        if Instant::now() > deadline {
            bail!("no task completed within {FAULT_TIMEOUT:?} of the fault; last: {last}");
        }
        let mut client = match cluster.connect().await {
            Ok(c) => c,
            Err(e) => {
                last = format!("connecting: {e:#}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let request = api::ExecuteRequest {
            function_id,
            args: String::new(),
        };
        let accepted = match client.execute(request).await {
            Ok(a) => a,
            Err(status) => {
                last = format!("submitting: {status}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let id = accepted.into_inner().task_id;
        ids.push(id);
        let stream = match client
            .watch_results(api::WatchResultsRequest { task_ids: vec![id] })
            .await
        {
            Ok(s) => s,
            Err(status) => {
                last = format!("watching task {id}: {status}");
                continue;
            }
        };
        let mut stream = stream.into_inner();
        match tokio::time::timeout_at(deadline.into(), stream.next()).await {
            Ok(Some(Ok(msg))) if msg.tasks.iter().any(|t| t.task_id == id) => return Ok(()),
            Ok(other) => last = format!("watching task {id}: {other:?}"),
            Err(_) => last = format!("task {id} accepted, no result"),
        }
        // The stream broke (another fault): the task is still in the store; try anew.
    }
}

/// Submits the workload at `rate` until `until`, recording what was acknowledged.
pub(super) async fn submit(
    url: String,
    access: volley_client::Access,
    catalog: Arc<Catalog>,
    rate: f64,
    until: Instant,
    ledger: Arc<Mutex<Ledger>>,
) {
    let period = Duration::from_secs_f64(CHUNK as f64 / rate.max(1.0));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut client = None;
    let mut seq = 0u64;
    while Instant::now() < until {
        tick.tick().await;
        if client.is_none() {
            client = volley_client::connect_with(&url, &access).await.ok();
        }
        let first_seq = seq + 1;
        let tasks: Vec<api::ExecuteRequest> = (0..CHUNK)
            .map(|_| {
                seq += 1;
                let (function_id, args) = catalog.task(seq);
                api::ExecuteRequest { function_id, args }
            })
            .collect();
        let n = tasks.len();
        let Some(c) = client.as_mut() else {
            // Not even connected: nothing was sent.
            if let Ok(mut l) = ledger.lock() {
                l.refused += n;
            }
            continue;
        };
        let call = c.execute_batch(api::ExecuteBatchRequest { tasks });
        let answer = tokio::time::timeout(Duration::from_secs(5), call).await;
        let Ok(mut l) = ledger.lock() else { return };
        match answer {
            Ok(Ok(r)) => {
                let ids = r.into_inner().task_ids;
                l.seq_of.extend(ids.iter().zip(first_seq..).map(|(id, seq)| (*id, seq)));
                l.acknowledged.extend(ids);
            }
            Ok(Err(s))
                if matches!(
                    s.code(),
                    tonic::Code::ResourceExhausted | tonic::Code::Unavailable | tonic::Code::InvalidArgument
                ) && s.source().is_none() =>
            {
                // The dispatcher itself answered: nothing was stored.
                l.refused += n;
            }
            _ => {
                l.unacknowledged += n;
                client = None;
            }
        }
    }
}
