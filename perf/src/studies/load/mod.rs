//! Open-loop load: requests leave at a target rate whatever the dispatcher does, and every
//! latency is measured from the request's *intended* send time, so a stalled dispatcher
//! shows up as the latency it really caused (no coordinated omission). Latency from the
//! actual send is reported beside it, so the generator's own delay is visible.
//!
//! - [`arrivals`] — the seeded schedule of intended send times;
//! - [`drive`] — the engine: schedule in, one fate per request out;
//! - [`pacer`] — a `timerfd` on the event loop that says which requests are due, in batches at high rates;
//! - [`ledger`] — one fate per request: completed, failed, refused, unfinished (or unknown);
//! - [`completions`] — the live stream of completions, and reading them back by id when it lags;
//! - [`slo`], [`find_max`] — SLO verdicts and the search for the highest rate meeting one;
//! - [`transport`] — requests and results on one `ExecuteStream` call, or unary calls;
//! - [`grid`] — the rate × spin × arrival study;
//! - [`curve`] — CPU per task by role against the offered rate, up to the highest rate sustained.

pub mod arrivals;
pub mod completions;
pub mod curve;
pub mod drive;
pub mod find_max;
pub mod grid;
pub mod ledger;
pub mod pacer;
pub mod slo;
pub mod transport;

pub use arrivals::{Arrival, Arrivals};
pub use grid::{run_grid, GridSpec, Shape};

use crate::recording::db::RequestRow;
use crate::workload::OpType;
use anyhow::Context;
use hdrhistogram::Histogram;
use ledger::{Fate, Ledger, Outcomes};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use volley_client::{register_spec, Client};
use volley_proto::api;

/// A send this much after its intended time counts as late.
pub const LATE_AFTER: Duration = Duration::from_millis(1);
/// Time between the schedule being built and the first intended send.
pub(crate) const LEAD: Duration = Duration::from_millis(50);
/// `ExecuteBatch` calls in flight at most. Beyond it, due requests are held and leave
/// together as answers come back (late, and reported so): an HTTP/2 connection with
/// thousands of open streams fails as a whole, and every request on it with it.
pub(crate) const MAX_IN_FLIGHT: usize = 64;
/// How long the closing `ClusterInfo` may take; with the drain, it bounds the teardown.
const INFO_TIMEOUT: Duration = Duration::from_secs(2);

/// One open-loop run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Target requests per second.
    pub rate: f64,
    /// Spacing of requests.
    pub arrival: Arrival,
    /// `noop`, `sleep` or `spin`.
    pub optype: OpType,
    /// Task duration for sleep and spin.
    pub task_ms: u64,
    /// How long requests are sent.
    pub duration: Duration,
    /// Requests intended before this are not counted in rates and latency.
    pub warmup: Duration,
    /// How long to wait for results after the last intended send; then what has no
    /// result is reported as unfinished.
    pub drain: Duration,
    /// RNG seed of the arrivals.
    pub seed: u64,
    /// A deployed function to send instead of the optype: its name (the latest version
    /// runs) and the arguments of every request.
    pub function: Option<(String, String)>,
    /// How requests travel ([`transport`]).
    pub transport: transport::Transport,
    /// Dispatchers under `--ha` to follow through a failover: after a break the run
    /// reconnects to whichever answers. `None`: the client's one dispatcher.
    pub follow: Option<volley_client::commands::Target>,
}

/// What one run measured. Outcome counts cover every request sent; rates and latency
/// cover the measured window (after the warm-up).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadResult {
    /// The dispatcher's mode, as it reported it.
    pub mode: String,
    /// `uniform` or `poisson`.
    pub arrival: String,
    /// The optype.
    pub optype: String,
    /// Task duration, ms (0 for noop).
    pub task_ms: u64,
    /// Target rate, requests/s.
    pub target_rate: f64,
    /// Requests sent per second in the measured window (on schedule or late).
    pub offered_rate: f64,
    /// Results COMPLETED per second in the measured window, whichever request they
    /// belong to: the throughput the dispatcher delivered.
    pub completed_rate: f64,
    /// Requests sent in all, warm-up included.
    pub sent: u64,
    /// Of those, COMPLETED.
    pub completed: u64,
    /// FAILED, with the dispatcher's error.
    pub failed: u64,
    /// Refused at submission.
    pub refused: u64,
    /// No result when the drain ended.
    pub unfinished: u64,
    /// The dispatcher no longer knew the task (results that cannot be known).
    pub unknown: u64,
    /// Results read back by id after the live stream fell behind.
    pub recovered: u64,
    /// Requests in the measured window.
    pub requests: u64,
    /// Of the measured requests, the share COMPLETED.
    pub success_rate: f64,
    /// Requests sent more than [`LATE_AFTER`] after their intended time.
    pub late_sends: u64,
    /// The largest delay between a request's intended and actual send, ms.
    pub max_lag_ms: f64,
    /// Latency from intended send to result, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Latency from the actual send, median, ms.
    pub send_p50_ms: f64,
    /// Latency from the actual send, 99th percentile, ms.
    pub send_p99_ms: f64,
    /// Median latency / task duration (empty for noop).
    pub slowdown_p50: Option<f64>,
    /// 99th percentile latency / task duration.
    pub slowdown_p99: Option<f64>,
    /// Whether the offered rate is within 20 % of the target; if not, the run measured
    /// the generator, not the dispatcher.
    pub rate_ok: bool,
    /// CPU time the generator's process spent, ms.
    pub generator_cpu_ms: f64,
    /// Times the live result stream broke and was reopened.
    pub stream_breaks: u64,
    /// Why it last broke.
    pub last_break: String,
    /// Tasks the dispatcher counted COMPLETED during the run (its counters' difference),
    /// if it could be asked.
    pub dispatcher_completed: Option<u64>,
    /// Tasks it counted FAILED during the run.
    pub dispatcher_failed: Option<u64>,
    /// The first failure or refusal, for the reader.
    pub first_error: String,
    /// The SLO verdict, when the run was judged (`pass` or `fail: …`).
    pub verdict: String,
    /// The arrivals' seed.
    pub seed: u64,
    /// Every request's record, for the results database (not a CSV column).
    #[serde(skip)]
    pub records: Vec<RequestRow>,
}

impl LoadResult {
    /// The four outcomes (and unknown) add up to the requests sent.
    pub fn adds_up(&self) -> bool {
        self.completed + self.failed + self.refused + self.unfinished + self.unknown == self.sent
    }

    /// The dispatcher's counters agree with ours: it completed what we saw completed,
    /// plus at most what we gave up waiting for (those may finish after the drain).
    pub fn agrees_with_dispatcher(&self) -> Option<bool> {
        let (c, f) = (self.dispatcher_completed?, self.dispatcher_failed?);
        let slack = self.unfinished + self.unknown;
        Some(c >= self.completed && f >= self.failed && c + f <= self.completed + self.failed + slack)
    }
}

/// CPU time (user + system) this process has used.
pub fn process_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

pub(crate) async fn counters(client: &Client) -> Option<(String, api::Counters)> {
    let mut client = client.clone();
    let call = client.cluster_info(api::ClusterInfoRequest {});
    let info = tokio::time::timeout(INFO_TIMEOUT, call).await.ok()?.ok()?.into_inner();
    Some((info.mode, info.counters?))
}

/// Runs one open-loop load against a dispatcher. It ends within `duration + drain` and a
/// bounded teardown, however large the backlog.
pub async fn run(client: &Client, spec: &LoadSpec) -> anyhow::Result<LoadResult> {
    let (task, function_id, args) = match &spec.function {
        Some((name, args)) => {
            let f = volley_client::commands::functions::latest(&mut client.clone(), name).await?;
            (name.clone(), f.function_id, args.clone())
        }
        None => {
            let task = spec.optype.spec(spec.task_ms);
            let (id, args) = register_spec(&mut client.clone(), &task).await?;
            (task, id, args)
        }
    };
    let schedule = Arc::new(Arrivals::new(spec.arrival, spec.rate, spec.seed)?.schedule(spec.duration));
    let requests = |_: usize| api::ExecuteRequest {
        function_id,
        args: args.clone(),
    };
    let d = drive::drive(
        client,
        spec.follow.as_ref(),
        spec.transport,
        schedule.clone(),
        requests,
        spec.duration + spec.drain,
    )
    .await?;
    let mut r = summarise(spec, &schedule, &d.ledger)?;
    if spec.function.is_some() {
        r.optype = task.clone();
        r.task_ms = 0;
    }
    r.records = records(&task, &schedule, &d.ledger, d.clock.start_unix_us);
    r.generator_cpu_ms = d.cpu.as_secs_f64() * 1e3;
    r.stream_breaks = d.breaks;
    r.last_break = d.last_break;
    if r.first_error.is_empty() && !d.transport_error.is_empty() {
        r.first_error = format!("lost in transit: {}", d.transport_error);
    }
    if let (Some((mode, b)), Some((_, a))) = (d.before, d.after) {
        r.mode = mode;
        r.dispatcher_completed = Some(a.completed.saturating_sub(b.completed));
        r.dispatcher_failed = Some(a.failed.saturating_sub(b.failed));
    }
    Ok(r)
}

fn summarise(spec: &LoadSpec, schedule: &[Duration], ledger: &Ledger) -> anyhow::Result<LoadResult> {
    let new_hist = || Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).context("histogram");
    let (mut from_intended, mut from_send) = (new_hist()?, new_hist()?);
    let (mut requests, mut measured_completed, mut late, mut max_lag) = (0u64, 0u64, 0u64, Duration::ZERO);
    let window = (spec.warmup, spec.duration);
    let mut completions_in_window = 0u64;
    for (intended, req) in schedule.iter().zip(&ledger.requests) {
        if let Fate::Finished(f) = &req.fate {
            // The dispatcher's clock: a client that paused would otherwise move
            // completions out of the window they happened in.
            if f.completed && f.done_at >= window.0 && f.done_at < window.1 {
                completions_in_window += 1;
            }
        }
        let Some(sent) = req.sent else { continue };
        let lag = sent.saturating_sub(*intended);
        max_lag = max_lag.max(lag);
        late += u64::from(lag > LATE_AFTER);
        if *intended < spec.warmup {
            continue;
        }
        requests += 1;
        if let Fate::Finished(f) = &req.fate {
            if f.completed {
                measured_completed += 1;
                from_intended.saturating_record(f.at.saturating_sub(*intended).as_micros().max(1) as u64);
                from_send.saturating_record(f.at.saturating_sub(sent).as_micros().max(1) as u64);
            }
        }
    }
    let o = Outcomes::of(ledger);
    let secs = (window.1.saturating_sub(window.0)).as_secs_f64().max(1e-9);
    let ms = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1e3
        }
    };
    let offered = requests as f64 / secs;
    let slow = |v: f64| (spec.optype.has_duration() && spec.task_ms > 0).then(|| v / spec.task_ms as f64);
    Ok(LoadResult {
        mode: String::new(),
        arrival: spec.arrival.as_str().into(),
        optype: spec.optype.to_string(),
        task_ms: if spec.optype.has_duration() { spec.task_ms } else { 0 },
        target_rate: spec.rate,
        offered_rate: offered,
        completed_rate: completions_in_window as f64 / secs,
        sent: o.sent,
        completed: o.completed,
        failed: o.failed,
        refused: o.refused,
        unfinished: o.unfinished,
        unknown: o.unknown,
        recovered: o.recovered,
        requests,
        success_rate: if requests == 0 {
            0.0
        } else {
            measured_completed as f64 / requests as f64
        },
        late_sends: late,
        max_lag_ms: max_lag.as_secs_f64() * 1e3,
        p50_ms: ms(&from_intended, 0.50),
        p90_ms: ms(&from_intended, 0.90),
        p99_ms: ms(&from_intended, 0.99),
        max_ms: if from_intended.is_empty() {
            0.0
        } else {
            from_intended.max() as f64 / 1e3
        },
        mean_ms: if from_intended.is_empty() {
            0.0
        } else {
            from_intended.mean() / 1e3
        },
        send_p50_ms: ms(&from_send, 0.50),
        send_p99_ms: ms(&from_send, 0.99),
        slowdown_p50: slow(ms(&from_intended, 0.50)),
        slowdown_p99: slow(ms(&from_intended, 0.99)),
        rate_ok: (offered - spec.rate).abs() <= 0.2 * spec.rate,
        generator_cpu_ms: 0.0,
        stream_breaks: 0,
        last_break: String::new(),
        dispatcher_completed: None,
        dispatcher_failed: None,
        first_error: ledger::first_error(ledger).unwrap_or_default(),
        verdict: String::new(),
        seed: spec.seed,
        records: Vec::new(),
    })
}

/// One row per request: intended and actual send, the dispatcher's completion, latency
/// from the intended send (as the summary counts it), and its fate.
pub fn records(function: &str, schedule: &[Duration], ledger: &Ledger, start_unix_us: u64) -> Vec<RequestRow> {
    let at = |d: Duration| start_unix_us + d.as_micros() as u64;
    schedule
        .iter()
        .zip(&ledger.requests)
        .map(|(intended, req)| {
            let mut row = RequestRow {
                task_id: req.task,
                function: function.to_owned(),
                intended_us: Some(at(*intended)),
                submitted_us: req.sent.map(at),
                ..Default::default()
            };
            row.state = match &req.fate {
                Fate::Pending => "unfinished",
                Fate::Unknown => "unknown",
                Fate::Refused(code, message) => {
                    row.error = Some(format!("{code:?}: {message}"));
                    "refused"
                }
                Fate::Finished(f) => {
                    row.completed_us = Some(at(f.done_at));
                    row.latency_us = Some(f.at.saturating_sub(*intended).as_micros() as u64);
                    row.run_us = Some(f.run_us);
                    row.worker = (!f.worker.is_empty()).then(|| f.worker.clone());
                    row.error = (!f.error.is_empty()).then(|| f.error.clone());
                    if f.completed {
                        "completed"
                    } else {
                        "failed"
                    }
                }
            };
            row
        })
        .collect()
}

/// Appends load results to a CSV, with a header when the file is new.
pub fn append(path: &std::path::Path, rows: &[LoadResult]) -> anyhow::Result<()> {
    crate::recording::tables::append_rows(path, rows)
}
