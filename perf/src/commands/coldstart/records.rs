//! The scale-from-zero and burst scenarios' records: their CSV rows, printed lines,
//! results-database rows and charts.

use crate::recording::db::{ColdStartRow, RequestRow};
use crate::recording::observe::Observed;
use crate::studies::coldstart::{self, Breakdown, BurstResult, Trial};
use crate::studies::replay::elastic::PoolSample;
use volley_proto::api;

/// `coldstart-trials.csv`: a trial's latencies and its cold start's stages, µs.
#[derive(serde::Serialize)]
pub(super) struct TrialRow {
    trial: usize,
    task_id: u64,
    cold_us: u64,
    warm_us: u64,
    extra_us: i64,
    queued_us: u64,
    decide_us: u64,
    spawn_us: u64,
    worker_us: u64,
    runtime_us: u64,
    init_us: u64,
    register_us: u64,
    dispatch_us: u64,
    finish_us: u64,
    residual_us: i64,
}

impl From<&Trial> for TrialRow {
    fn from(t: &Trial) -> Self {
        let s = &t.stages;
        Self {
            trial: t.trial,
            task_id: t.task_id,
            cold_us: t.cold_us,
            warm_us: t.warm_us,
            extra_us: t.extra_us,
            queued_us: s.queued_us,
            decide_us: s.decide_us,
            spawn_us: s.spawn_us,
            worker_us: s.worker_us,
            runtime_us: s.runtime_us,
            init_us: s.init_us,
            register_us: s.register_us,
            dispatch_us: s.dispatch_us,
            finish_us: s.finish_us,
            residual_us: t.residual_us,
        }
    }
}

/// `coldstart-timeline.csv`: the pool during a burst.
#[derive(serde::Serialize)]
pub(super) struct TimelineRow {
    pub(super) slots: u32,
    pub(super) t_s: f64,
    pub(super) ready: u32,
    pub(super) starting: u32,
    pub(super) queued: u64,
}

fn ms(us: impl Into<f64>) -> f64 {
    us.into() / 1e3
}

pub(super) fn print_trial(t: &Trial) {
    let s = &t.stages;
    println!(
        "trial {:>3}: cold {:>7.1} ms, warm {:>5.2} ms, extra {:>7.1} = queued {:.1} + decide {:.2} + spawn {:.1} + init {:.1} + register {:.1} + dispatch {:.2} ms (residual {:+.2} ms)",
        t.trial,
        ms(t.cold_us as f64),
        ms(t.warm_us as f64),
        ms(t.extra_us as f64),
        ms(s.queued_us as f64),
        ms(s.decide_us as f64),
        ms(s.spawn_us as f64),
        ms(s.init_us as f64),
        ms(s.register_us as f64),
        ms(s.dispatch_us as f64),
        ms(t.residual_us as f64),
    );
}

pub(super) fn summarise_trials(
    trials: &[Trial],
    measures: &mut std::collections::BTreeMap<String, f64>,
    as_json: bool,
) {
    let median = |f: &dyn Fn(&Trial) -> f64| {
        let mut v: Vec<f64> = trials.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        crate::stats::percentile(&v, 0.5).unwrap_or(0.0)
    };
    let stage = |f: fn(&Breakdown) -> u64| median(&|t: &Trial| f(&t.stages) as f64 / 1e3);
    let extra = median(&|t| t.extra_us as f64 / 1e3);
    let residual = trials.iter().map(|t| t.residual_us.unsigned_abs()).max().unwrap_or(0);
    measures.insert("extra_p50".into(), extra / 1e3);
    measures.insert("cold_p50".into(), median(&|t| t.cold_us as f64 / 1e3) / 1e3);
    measures.insert("warm_p50".into(), median(&|t| t.warm_us as f64 / 1e3) / 1e3);
    measures.insert("residual_max".into(), residual as f64 / 1e6);
    if !as_json {
        println!(
            "scale from zero, medians of {} trials: cold − warm {:.1} ms = queued {:.2} + decide {:.2} + spawn {:.1} + init {:.1} + register {:.2} + dispatch {:.2} ms; largest residual {:.2} ms",
            trials.len(),
            extra,
            stage(|b| b.queued_us),
            stage(|b| b.decide_us),
            stage(|b| b.spawn_us),
            stage(|b| b.init_us),
            stage(|b| b.register_us),
            stage(|b| b.dispatch_us),
            residual as f64 / 1e3
        );
    }
}

pub(super) fn print_burst(r: &BurstResult) {
    println!(
        "  {} slot(s)/instance: sent {}, completed {}, lost {}; cold {}; p50 {:.1} ms, p99 {:.1} ms; {} needed instances ready after {}; peak {}, {} started, idle {:.1} instance-s",
        r.slots,
        r.sent,
        r.completed,
        r.lost,
        r.cold_starts,
        r.p50_ms,
        r.p99_ms,
        r.needed,
        r.time_to_ready_s.map_or("never".to_owned(), |t| format!("{t:.2} s")),
        r.peak_instances,
        r.instance_starts,
        r.idle_instance_s
    );
}

/// The study's tasks in the results database, with the cold starts explained; `case`
/// names the runtimes scenario's case (`python/fresh/empty`).
pub(super) fn record_tasks(observed: &mut Observed, tasks: &[api::TaskInfo], case: Option<&str>) {
    for t in tasks {
        observed.record.requests.push(RequestRow {
            task_id: Some(t.task_id),
            function: case.unwrap_or("coldstart").into(),
            state: "completed",
            submitted_us: Some(t.submitted_us),
            dispatched_us: Some(t.dispatched_us),
            completed_us: Some(t.completed_us),
            latency_us: Some(coldstart::latency_us(t)),
            wait_us: Some(t.wait_us),
            run_us: Some(t.run_us),
            worker: Some(t.worker.clone()),
            attempts: Some(t.attempts),
            ..Default::default()
        });
        if let Some(s) = t.cold_start.filter(|_| t.cold) {
            observed.record.coldstarts.push(ColdStartRow {
                task_id: t.task_id,
                function: case.unwrap_or("coldstart").into(),
                case: case.map(str::to_owned),
                decision_us: s.decided_us,
                spawn_us: s.spawned_us,
                ready_us: s.process_us,
                runtime_began_us: s.runtime_began_us,
                runtime_up_us: s.runtime_up_us,
                init_us: s.init_done_us,
                registered_us: s.registered_us,
                dispatched_us: t.dispatched_us,
                finished_us: t.completed_us,
            });
        }
    }
}

pub(super) fn plot_trials(dir: &std::path::Path, trials: &[Trial]) -> anyhow::Result<()> {
    let mut written = Vec::new();
    let series = |name: &str, f: &dyn Fn(&Trial) -> f64| {
        (
            name.to_owned(),
            trials.iter().map(|t| (t.trial as f64, f(t))).collect::<Vec<_>>(),
        )
    };
    let lines = vec![
        series("cold − warm", &|t| t.extra_us as f64 / 1e3),
        series("init", &|t| t.stages.init_us as f64 / 1e3),
        series("spawn → main", &|t| t.stages.spawn_us as f64 / 1e3),
        series("init done → registered", &|t| t.stages.register_us as f64 / 1e3),
        series("residual", &|t| t.residual_us as f64 / 1e3),
    ];
    let title = "Scale from zero: the cold start's extra latency and its stages, per trial";
    crate::presentation::plot::plot_lines(dir, "coldstart-trials", (title, "trial", "ms"), lines, &mut written)?;
    Ok(())
}

pub(super) fn plot_timeline(dir: &std::path::Path, timeline: &[(u32, PoolSample)]) -> anyhow::Result<()> {
    let mut written = Vec::new();
    let mut sides: Vec<u32> = timeline.iter().map(|(s, _)| *s).collect();
    sides.dedup();
    let lines = sides
        .iter()
        .map(|slots| {
            (
                format!("{slots} slot(s) per instance: ready instances"),
                timeline
                    .iter()
                    .filter(|(s, _)| s == slots)
                    .map(|(_, (t, ready, _, _))| (*t, f64::from(*ready)))
                    .collect(),
            )
        })
        .collect();
    let title = "Burst from zero: instances ready over time";
    crate::presentation::plot::plot_lines(
        dir,
        "coldstart-burst",
        (title, "seconds from the first task", "instances"),
        lines,
        &mut written,
    )?;
    Ok(())
}
