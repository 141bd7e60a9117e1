//! A replay: the schedule of a trace sent open loop through the same engine as `load`,
//! each invocation a task of the `trace` function with its own drawn duration and memory,
//! and every invocation accounted for in the records.

use super::percentiles::Percentiles;
use super::records::{self, InvocationRow, MinuteRow, Summary};
use super::schedule::{self, Invocation, ScheduleSpec};
use super::trace::{Trace, TraceFunction};
use crate::studies::load::drive;
use rand::SeedableRng;
use rand_xorshift::XorShiftRng;
use std::sync::Arc;
use std::time::Duration;
use volley_client::Client;
use volley_proto::api;
use volley_proto::function::FunctionKind;

/// Durations are clamped to this range before compression, as in the rule.
const DURATION_CLAMP_MS: (f64, f64) = (1.0, 60_000.0);

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct ReplaySpec {
    /// Count columns, spacing, phase, compression and seed.
    pub schedule: ScheduleSpec,
    /// Spin instead of sleeping.
    pub spin: bool,
    /// The most memory one invocation touches, MiB.
    pub max_memory_mb: u64,
    /// Leading count columns whose invocations are sent but not judged.
    pub warmup_columns: usize,
    /// How long to wait for results after the last intended send.
    pub drain: Duration,
    /// A deployed function every invocation runs (its latest version), given each
    /// invocation's drawn `{"ms": …, "mb": …}`; `None`: a trace function per trace function.
    pub function: Option<String>,
}

/// One planned invocation: when, of which function, and the work drawn for it.
#[derive(Debug, Clone, Copy)]
pub struct Planned {
    /// Its slot in the schedule.
    pub invocation: Invocation,
    /// Requested duration after compression, ms.
    pub ms: u64,
    /// Memory to touch, MiB.
    pub mb: u64,
}

/// Draws every invocation's duration and memory from its function's percentiles, in
/// schedule order from one seeded generator: the same seed, the same work.
pub fn plan(functions: &[&TraceFunction], spec: &ReplaySpec, schedule: &[Invocation]) -> Vec<Planned> {
    let mut rng = XorShiftRng::seed_from_u64(spec.schedule.seed ^ 0x005e_edd0_7a7a);
    let draw_ms = |d: &Percentiles, rng: &mut XorShiftRng| {
        let ms = d.sample(rng).clamp(DURATION_CLAMP_MS.0, DURATION_CLAMP_MS.1);
        (ms / spec.schedule.compress).round() as u64
    };
    schedule
        .iter()
        .map(|inv| {
            let f = functions[inv.function as usize];
            let ms = draw_ms(&f.duration_ms, &mut rng);
            let mb = (f.memory_mb.sample(&mut rng).round() as u64).min(spec.max_memory_mb);
            Planned {
                invocation: *inv,
                ms,
                mb,
            }
        })
        .collect()
}

/// The work a window offers, in busy slots: Σ requested durations over the window's
/// (compressed) length. Sleep emulation holds a slot as surely as spinning does.
pub fn busy_slots(planned: &[Planned], window_seconds: f64, compress: f64) -> f64 {
    let busy_ms: u64 = planned.iter().map(|p| p.ms).sum();
    busy_ms as f64 / 1e3 / (window_seconds / compress).max(1e-9)
}

/// Everything a replay produced.
pub struct Replayed {
    /// The replay's start in Unix µs: the zero of every row's times.
    pub start_unix_us: u64,
    /// One row per invocation.
    pub invocations: Vec<InvocationRow>,
    /// One row per count column.
    pub minutes: Vec<MinuteRow>,
    /// The summary and verdict.
    pub summary: Summary,
}

/// The schedule of `functions` with each invocation's work drawn: everything a replay
/// sends, known before the first send (and so before the cluster's capacity is checked).
pub fn prepare(trace: &Trace, functions: &[&TraceFunction], spec: &ReplaySpec) -> anyhow::Result<Vec<Planned>> {
    let schedule = schedule::build(functions, trace.granularity, &spec.schedule)?;
    Ok(plan(functions, spec, &schedule))
}

/// Replays `planned` (from [`prepare`]) against a dispatcher.
pub async fn replay(
    client: &Client,
    trace: &Trace,
    functions: &[&TraceFunction],
    spec: &ReplaySpec,
    planned: &[Planned],
) -> anyhow::Result<Replayed> {
    let kind = FunctionKind::Trace {
        spin: spec.spin,
        max_memory_mb: spec.max_memory_mb,
    };
    // Each trace function is a function of its own, named by its hash: the dispatcher
    // queues, counts and (on an elastic pool) scales each one apart.
    let mut function_ids = Vec::with_capacity(functions.len());
    if let Some(name) = &spec.function {
        let id = volley_client::commands::functions::latest(&mut client.clone(), name)
            .await?
            .function_id;
        function_ids = vec![id; functions.len()];
    }
    for f in functions.iter().skip(function_ids.len()) {
        let id = client
            .clone()
            .register_function(api::RegisterFunctionRequest {
                name: f.key.2.clone(),
                spec: Some(kind.to_api()),
            })
            .await
            .map_err(|s| volley_client::commands::status_error("registering a trace function", s))?
            .into_inner()
            .function_id;
        function_ids.push(id);
    }
    let times: Arc<Vec<Duration>> = Arc::new(
        planned
            .iter()
            .map(|p| Duration::from_micros(p.invocation.at_us))
            .collect(),
    );
    let args: Vec<String> = planned
        .iter()
        .map(|p| format!("{{\"ms\":{},\"mb\":{}}}", p.ms, p.mb))
        .collect();
    let span = trace.granularity.seconds() as f64 / spec.schedule.compress;
    let length = Duration::from_secs_f64(spec.schedule.window.len() as f64 * span);
    let requests = |i: usize| api::ExecuteRequest {
        function_id: function_ids[planned[i].invocation.function as usize],
        args: args[i].clone(),
    };
    let driven = drive::drive(client, None, Default::default(), times, requests, length + spec.drain).await?;
    Ok(records::collect(trace, functions, spec, planned, &driven))
}
