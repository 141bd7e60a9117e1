//! Charts of result files, as PNG and SVG: weak scaling (overhead, latency, throughput,
//! efficiency per optype, one line per mode), strong scaling (time and speedup), per-stage
//! latency breakdown and latency CDFs from task records, heatmaps of the open-loop grid,
//! latency against offered rate, and a trace replay's charts.

#[macro_use]
mod draw;
mod load;
mod replay;

pub use draw::read_csv;
use draw::*;

use crate::recording::tables::{PerfRow, TaskRow};
use crate::studies::load::LoadResult;
use anyhow::{bail, Context};
use plotters::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Plain lines on linear axes: what the report's and the telemetry's charts draw.
fn time_lines(title: &str, x_label: &str, y_label: &str, series: Vec<(String, Vec<(f64, f64)>)>) -> draw::Lines {
    draw::Lines {
        title: title.to_owned(),
        x_label: x_label.to_owned(),
        y_label: y_label.to_owned(),
        series,
        x_scale: draw::XScale::Linear,
        y_range: None,
        reference: None,
    }
}

/// A line chart as an SVG document, for pages that embed their charts (the HTML report).
pub fn lines_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: Vec<(String, Vec<(f64, f64)>)>,
) -> anyhow::Result<String> {
    let chart = time_lines(title, x_label, y_label, series);
    ensure_font()?;
    let mut svg = String::new();
    {
        let root = plotters::prelude::SVGBackend::with_string(&mut svg, (800, 360));
        draw::draw_lines(&plotters::prelude::IntoDrawingArea::into_drawing_area(root), &chart)?;
    }
    Ok(svg)
}

/// Draws a line chart as `<out>/<stem>.png` and `.svg`.
pub fn plot_lines(
    out: &Path,
    stem: &str,
    (title, x_label, y_label): (&str, &str, &str),
    series: Vec<(String, Vec<(f64, f64)>)>,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    ensure_font()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let chart = time_lines(title, x_label, y_label, series);
    render!(out, stem, draw_lines, &chart, written);
    Ok(())
}

/// Draws stacked bars, one per label and one segment per stage, as `<out>/<stem>.png`
/// and `.svg`.
pub fn plot_stacked(
    out: &Path,
    stem: &str,
    (title, y_label): (&str, &str),
    stages: Vec<String>,
    bars: Vec<(String, Vec<f64>)>,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    ensure_font()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let chart = Stacked {
        title: title.to_owned(),
        y_label: y_label.to_owned(),
        stages,
        bars,
    };
    render!(out, stem, draw_stacked, &chart, written);
    Ok(())
}

/// Draws the CPU curve's charts into `out` (`cpu-curve-<mode>-<shape>-<transport>` and
/// its `-latency` twin); returns the files written.
pub fn plot_curve(points: &[crate::studies::load::curve::CurvePoint], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    ensure_font()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    for (stem, chart) in load::plot_curve(points) {
        render!(out, stem, draw_lines, &chart, &mut written);
    }
    Ok(written)
}

/// Draws every chart the given files allow into `out`; returns the files written.
pub fn plot_all(
    perf: Option<&Path>,
    tasks: Option<&Path>,
    load: Option<&Path>,
    replay: Option<&Path>,
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    if perf.is_none() && tasks.is_none() && load.is_none() && replay.is_none() {
        bail!("nothing to plot: give a performance CSV, --tasks, --load or --replay");
    }
    ensure_font()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    if let Some(path) = perf {
        let rows: Vec<PerfRow> = read_csv(path)?;
        plot_scaling(&rows, out, &mut written)?;
    }
    if let Some(path) = tasks {
        let rows: Vec<TaskRow> = read_csv(path)?;
        plot_tasks(&rows, out, &mut written)?;
    }
    if let Some(path) = load {
        let rows: Vec<LoadResult> = read_csv(path)?;
        load::plot_grid(&rows, out, &mut written)?;
        load::plot_hockey(&rows, out, &mut written)?;
    }
    if let Some(path) = replay {
        replay::plot_replay(path, out, &mut written)?;
    }
    if written.is_empty() {
        bail!("the files hold no rows to plot");
    }
    Ok(written)
}

fn mean_by_workers(rows: &[&PerfRow], f: impl Fn(&PerfRow) -> Option<f64>) -> Vec<(f64, f64)> {
    let mut by: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for r in rows {
        if let Some(v) = f(r) {
            by.entry(r.workers_count()).or_default().push(v);
        }
    }
    by.into_iter()
        .map(|(w, v)| (w as f64, v.iter().sum::<f64>() / v.len() as f64))
        .collect()
}

fn plot_scaling(rows: &[PerfRow], out: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let groups: BTreeSet<(String, String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r.scaling_kind().to_owned(),
                r.optype_name().to_owned(),
                r.task_duration_ms(),
            )
        })
        .collect();
    for (scaling, optype, ms) in groups {
        let group: Vec<&PerfRow> = rows
            .iter()
            .filter(|r| r.scaling_kind() == scaling && r.optype_name() == optype && r.task_duration_ms() == ms)
            .collect();
        let modes: BTreeSet<String> = group.iter().map(|r| r.mode_name().to_owned()).collect();
        let by_mode = |f: &dyn Fn(&PerfRow) -> Option<f64>| -> Vec<(String, Vec<(f64, f64)>)> {
            modes
                .iter()
                .map(|m| {
                    let rs: Vec<&PerfRow> = group.iter().copied().filter(|r| r.mode_name() == m).collect();
                    (m.clone(), mean_by_workers(&rs, f))
                })
                .collect()
        };
        let what = task_label(&optype, ms);
        let stem = format!("{scaling}-{}", slug(&what));
        let lines = |title: &str, y: &str, series| Lines {
            title: format!("{title} — {scaling} scaling, {what}"),
            x_label: "workers".into(),
            y_label: y.into(),
            series,
            x_scale: XScale::Workers,
            y_range: None,
            reference: None,
        };
        if scaling == "weak" {
            let c = lines(
                "Overhead per task",
                "overhead per task (ms)",
                by_mode(&|r| Some(r.overhead())),
            );
            render!(out, format!("{stem}-overhead"), draw_lines, &c, written);
            let c = lines(
                "Latency per task",
                "total time / tasks (ms)",
                by_mode(&|r| Some(r.latency_per_task_ms())),
            );
            render!(out, format!("{stem}-latency"), draw_lines, &c, written);
            let c = lines(
                "Throughput",
                "tasks per second",
                by_mode(&|r| Some(r.tasks_per_second())),
            );
            render!(out, format!("{stem}-throughput"), draw_lines, &c, written);
            if ms > 0 && optype != "noop" {
                let mut c = lines(
                    "Efficiency",
                    "ideal time / actual time (%)",
                    by_mode(&|r| r.efficiency()),
                );
                // Near-ideal runs differ in tenths of a percent: zoom to the data.
                let low = group.iter().filter_map(|r| r.efficiency()).fold(100.0, f64::min);
                c.y_range = Some(((low - 1.0).floor().max(0.0), 100.5));
                let xs: BTreeSet<usize> = group.iter().map(|r| r.workers_count()).collect();
                c.reference = Some(("ideal".into(), xs.iter().map(|w| (*w as f64, 100.0)).collect()));
                render!(out, format!("{stem}-efficiency"), draw_lines, &c, written);
            }
        } else {
            let c = lines(
                "Time to finish",
                "total time (s)",
                by_mode(&|r| Some(r.total_seconds())),
            );
            render!(out, format!("{stem}-time"), draw_lines, &c, written);
            let series: Vec<(String, Vec<(f64, f64)>)> = by_mode(&|r| Some(r.total_seconds()))
                .into_iter()
                .map(|(m, pts)| {
                    let (w0, t0) = pts.first().copied().unwrap_or((1.0, 1.0));
                    (m, pts.iter().map(|(w, t)| (*w, t0 / t.max(1e-9) * w0)).collect())
                })
                .collect();
            let mut c = lines("Speedup", "speedup (× one worker)", series);
            let xs: BTreeSet<usize> = group.iter().map(|r| r.workers_count()).collect();
            c.reference = Some(("linear".into(), xs.iter().map(|w| (*w as f64, *w as f64)).collect()));
            render!(out, format!("{stem}-speedup"), draw_lines, &c, written);
        }
    }
    Ok(())
}

fn plot_tasks(rows: &[TaskRow], out: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let kinds: BTreeSet<(String, u64)> = rows.iter().map(|r| (r.optype.clone(), r.task_ms)).collect();
    for (optype, ms) in kinds {
        let group: Vec<&TaskRow> = rows.iter().filter(|r| r.optype == optype && r.task_ms == ms).collect();
        let what = task_label(&optype, ms);
        let modes: BTreeSet<String> = group.iter().map(|r| r.mode.clone()).collect();
        let bars = modes
            .iter()
            .map(|m| {
                let rs: Vec<&&TaskRow> = group.iter().filter(|r| &r.mode == m).collect();
                let n = rs.len().max(1) as f64;
                let mean = |f: &dyn Fn(&TaskRow) -> u64| rs.iter().map(|r| f(r) as f64).sum::<f64>() / n / 1000.0;
                (
                    m.clone(),
                    vec![
                        mean(&|r| r.queue_us),
                        mean(&|r| r.worker_wait_us),
                        mean(&|r| r.run_us),
                        mean(&|r| r.transfer_us),
                    ],
                )
            })
            .collect();
        let c = Stacked {
            title: format!("Where a task's time goes — {what} (mean over all points)"),
            y_label: "ms per task".into(),
            stages: vec![
                "queued in dispatcher".into(),
                "queued in worker".into(),
                "running".into(),
                "network and bookkeeping".into(),
            ],
            bars,
        };
        render!(out, format!("stages-{}", slug(&what)), draw_stacked, &c, written);

        let series = modes
            .iter()
            .map(|m| {
                let mut lat: Vec<f64> = group
                    .iter()
                    .filter(|r| &r.mode == m)
                    .map(|r| r.total_us as f64 / 1000.0)
                    .collect();
                lat.sort_by(f64::total_cmp);
                let n = lat.len().max(1) as f64;
                (
                    m.clone(),
                    lat.iter()
                        .enumerate()
                        .map(|(i, v)| (*v, (i + 1) as f64 / n * 100.0))
                        .collect(),
                )
            })
            .collect();
        let c = Lines {
            title: format!("Latency CDF — {what}, submitted → completed"),
            x_label: "latency (ms)".into(),
            y_label: "tasks at or below (%)".into(),
            series,
            x_scale: XScale::Linear,
            y_range: None,
            reference: None,
        };
        render!(out, format!("cdf-{}", slug(&what)), draw_lines, &c, written);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::tables::{PointSpec, RunMeta};

    fn outcome(n: usize, secs: f64) -> volley_client::BatchOutcome {
        crate::recording::tables::sample_outcome(n, secs)
    }

    #[test]
    fn every_kind_of_chart_is_written_and_not_empty() {
        use crate::workload::{OpType, Scaling};
        use volley_proto::Mode;
        let dir = std::env::temp_dir().join(format!("volley-plot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let meta = RunMeta::collect();
        let (perf, tasks, load) = (dir.join("perf.csv"), dir.join("tasks.csv"), dir.join("load.csv"));
        for scaling in [Scaling::Weak, Scaling::Strong] {
            for mode in [Mode::Local, Mode::Push] {
                for workers in [1usize, 2, 4] {
                    let spec = PointSpec {
                        mode,
                        optype: OpType::Sleep,
                        workers,
                        scaling,
                        store: "memory".into(),
                        task_ms: 100,
                        slots_per_worker: 1,
                        repeat: 0,
                        function: None,
                    };
                    let o = outcome(5 * workers, 0.52);
                    crate::recording::tables::append(&perf, &[PerfRow::new(&spec, &o, &meta)]).unwrap();
                    let rows: Vec<TaskRow> = o.tasks.iter().map(|t| TaskRow::new(&spec, t)).collect();
                    crate::recording::tables::append_tasks(&tasks, &rows).unwrap();
                }
            }
        }
        let cells: Vec<LoadResult> = [5.0, 10.0]
            .iter()
            .flat_map(|rate| {
                [100u64, 200].into_iter().map(move |spin| LoadResult {
                    arrival: "poisson".into(),
                    optype: "spin".into(),
                    task_ms: spin,
                    target_rate: *rate,
                    offered_rate: *rate,
                    requests: 10,
                    completed: 10,
                    success_rate: 1.0,
                    p50_ms: spin as f64 * 1.1,
                    p90_ms: spin as f64 * 1.3,
                    p99_ms: spin as f64 * rate / 4.0,
                    max_ms: spin as f64 * 3.0,
                    mean_ms: spin as f64 * 1.2,
                    slowdown_p50: Some(1.1),
                    slowdown_p99: Some(rate / 4.0),
                    rate_ok: true,
                    seed: 1,
                    ..LoadResult::default()
                })
            })
            .collect();
        crate::studies::load::append(&load, &cells).unwrap();
        // Probes of a saturation search in two modes.
        let probes: Vec<LoadResult> = ["pull", "push"]
            .iter()
            .flat_map(|mode| {
                [1_000.0, 10_000.0, 40_000.0].into_iter().map(move |rate| LoadResult {
                    mode: mode.to_string(),
                    arrival: "poisson".into(),
                    optype: "noop".into(),
                    offered_rate: rate,
                    completed: 10,
                    p50_ms: 0.4 + rate / 1e4,
                    p99_ms: if rate > 20_000.0 { 80.0 } else { 2.0 },
                    ..LoadResult::default()
                })
            })
            .collect();
        crate::studies::load::append(&load, &probes).unwrap();

        let out = dir.join("plots");
        let files = plot_all(Some(&perf), Some(&tasks), Some(&load), None, &out).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for expected in [
            "weak-sleep-100-ms-overhead.png",
            "weak-sleep-100-ms-latency.svg",
            "weak-sleep-100-ms-throughput.png",
            "weak-sleep-100-ms-efficiency.png",
            "strong-sleep-100-ms-time.png",
            "strong-sleep-100-ms-speedup.svg",
            "stages-sleep-100-ms.png",
            "cdf-sleep-100-ms.png",
            "grid-poisson-p99.png",
            "grid-poisson-slowdown.svg",
            "hockey-noop.png",
            "hockey-noop.svg",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
        }
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            assert!(bytes.len() > 2_000, "{} is only {} bytes", f.display(), bytes.len());
            if f.extension().is_some_and(|e| e == "png") {
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
            } else {
                assert!(String::from_utf8_lossy(&bytes).contains("<svg"));
            }
        }
        assert!(plot_all(None, None, None, None, &out).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
