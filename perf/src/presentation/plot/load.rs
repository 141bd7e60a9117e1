//! Charts of open-loop results: latency against offered rate per mode (the hockey
//! stick of a saturation search) and heatmaps of the rate × spin × arrival grid.

use super::draw::*;
use crate::studies::load::LoadResult;
use plotters::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Latency percentiles against offered rate, one pair of lines per mode, per workload:
/// flat while the dispatcher keeps up, then a wall (the "hockey stick").
pub(super) fn plot_hockey(rows: &[LoadResult], out: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let workloads: BTreeSet<(String, u64)> = rows
        .iter()
        .filter(|r| !r.mode.is_empty())
        .map(|r| (r.optype.clone(), r.task_ms))
        .collect();
    for (optype, task_ms) in workloads {
        let of_workload = |r: &&LoadResult| r.optype == optype && r.task_ms == task_ms && r.completed > 0;
        let modes: BTreeSet<String> = rows.iter().filter(of_workload).map(|r| r.mode.clone()).collect();
        let mut series = Vec::new();
        for mode in &modes {
            let mut points: Vec<&LoadResult> = rows.iter().filter(of_workload).filter(|r| &r.mode == mode).collect();
            points.sort_by(|a, b| a.offered_rate.total_cmp(&b.offered_rate));
            if points.len() < 2 {
                continue;
            }
            series.push((
                format!("{mode} p50"),
                points.iter().map(|r| (r.offered_rate, r.p50_ms)).collect(),
            ));
            series.push((
                format!("{mode} p99"),
                points.iter().map(|r| (r.offered_rate, r.p99_ms)).collect(),
            ));
        }
        if series.is_empty() {
            continue;
        }
        let what = if task_ms > 0 {
            format!("{optype} {task_ms} ms")
        } else {
            optype.clone()
        };
        let c = Lines {
            title: format!("Latency against offered load — {what}, from intended send"),
            x_label: "offered rate (requests/s)".into(),
            y_label: "latency (ms)".into(),
            series,
            x_scale: XScale::Linear,
            y_range: None,
            reference: None,
        };
        render!(out, format!("hockey-{}", slug(&what)), draw_lines, &c, written);
    }
    Ok(())
}

pub(super) fn plot_grid(rows: &[LoadResult], out: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    // The grid spans task durations; runs of tasks without one (noop probes) are not cells.
    let rows: Vec<LoadResult> = rows.iter().filter(|r| r.task_ms > 0).cloned().collect();
    let rows = rows.as_slice();
    let arrivals: BTreeSet<String> = rows.iter().map(|r| r.arrival.clone()).collect();
    for arrival in arrivals {
        let group: Vec<&LoadResult> = rows.iter().filter(|r| r.arrival == arrival).collect();
        let mut xs: Vec<f64> = group.iter().map(|r| r.target_rate).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let mut ys: Vec<f64> = group.iter().map(|r| r.task_ms as f64).collect();
        ys.sort_by(f64::total_cmp);
        ys.dedup();
        let index = |v: &[f64], x: f64| v.iter().position(|y| (y - x).abs() < 1e-9).unwrap_or(0);
        let cells = |f: &dyn Fn(&LoadResult) -> Option<f64>| -> BTreeMap<(usize, usize), f64> {
            group
                .iter()
                .filter_map(|r| f(r).map(|v| ((index(&xs, r.target_rate), index(&ys, r.task_ms as f64)), v)))
                .collect()
        };
        // Latency exists only for requests that completed; a cell where none did is grey.
        for (metric, unit, f) in [
            (
                "p99",
                "ms, of completed requests",
                &(|r: &LoadResult| (r.completed > 0).then_some(r.p99_ms)) as &dyn Fn(&LoadResult) -> Option<f64>,
            ),
            ("slowdown", "× task duration (p99)", &|r: &LoadResult| {
                r.slowdown_p99.filter(|_| r.completed > 0)
            }),
            ("success", "% of requests completed in time", &|r: &LoadResult| {
                Some(r.success_rate * 100.0)
            }),
        ] {
            let values = cells(f);
            if values.is_empty() {
                continue;
            }
            let c = Heat {
                title: format!(
                    "Open loop, {arrival} arrivals: {} over rate × spin",
                    match metric {
                        "p99" => "p99 latency",
                        "slowdown" => "p99 slowdown",
                        _ => "success rate",
                    }
                ),
                x_label: "target rate (requests/s)".into(),
                y_label: "spin per task (ms)".into(),
                xs: xs.clone(),
                ys: ys.clone(),
                values,
                unit: unit.into(),
            };
            render!(out, format!("grid-{}-{metric}", slug(&arrival)), draw_heat, &c, written);
        }
    }
    Ok(())
}

/// The CPU curve: CPU per task of each role against the offered rate, one chart per mode
/// and cluster shape, the p50 and p99 latency on a second chart beside it.
pub fn plot_curve(points: &[crate::studies::load::curve::CurvePoint]) -> Vec<(String, Lines)> {
    let groups: BTreeSet<(String, usize, u32, String)> = points
        .iter()
        .map(|p| (p.mode.clone(), p.workers, p.slots, p.transport.clone()))
        .collect();
    let mut charts = Vec::new();
    for (mode, workers, slots, transport) in groups {
        let mut of: Vec<_> = points
            .iter()
            .filter(|p| p.mode == mode && p.workers == workers && p.slots == slots && p.transport == transport)
            .collect();
        of.sort_by(|a, b| a.offered_rate.total_cmp(&b.offered_rate));
        let line = |f: &dyn Fn(&crate::studies::load::curve::CurvePoint) -> f64| -> Vec<(f64, f64)> {
            of.iter().map(|p| (p.offered_rate, f(p))).collect()
        };
        let what = format!("{mode}, {workers} worker(s) × {slots} slot(s), {transport}");
        let stem = format!("cpu-curve-{mode}-{workers}x{slots}-{transport}");
        charts.push((
            stem.clone(),
            Lines {
                title: format!("CPU per task against offered rate — {what}"),
                x_label: "offered rate (requests/s)".into(),
                y_label: "CPU per task (µs)".into(),
                series: vec![
                    ("generator".into(), line(&|p| p.generator_us)),
                    ("dispatcher".into(), line(&|p| p.dispatcher_us)),
                    ("workers".into(), line(&|p| p.worker_us)),
                    ("floor: relay (the dispatcher's)".into(), line(&|p| p.floor_relay_us)),
                    ("floor: echo (a worker's)".into(), line(&|p| p.floor_echo_us)),
                ],
                x_scale: XScale::Decades,
                y_range: None,
                reference: None,
            },
        ));
        charts.push((
            format!("{stem}-latency"),
            Lines {
                title: format!("Latency from the intended send — {what}"),
                x_label: "offered rate (requests/s)".into(),
                y_label: "latency (ms)".into(),
                series: vec![("p50".into(), line(&|p| p.p50_ms)), ("p99".into(), line(&|p| p.p99_ms))],
                x_scale: XScale::Decades,
                y_range: None,
                reference: None,
            },
        ));
    }
    charts
}
