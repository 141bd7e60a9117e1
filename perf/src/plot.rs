//! Charts of result files, as PNG and SVG: weak scaling (overhead, latency, throughput,
//! efficiency per optype, one line per mode), strong scaling (time and speedup), per-stage
//! latency breakdown and latency CDFs from task records, and heatmaps of the open-loop grid.

use crate::load::LoadResult;
use crate::report::{PerfRow, TaskRow};
use anyhow::{anyhow, bail, Context};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const SIZE: (u32, u32) = (960, 600);
const MODE_COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// Reads a CSV of any of the result row types.
pub fn read_csv<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let mut r = csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    r.deserialize()
        .collect::<Result<Vec<T>, _>>()
        .with_context(|| format!("reading {}", path.display()))
}

fn ensure_font() -> anyhow::Result<()> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates = [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
            "/Library/Fonts/Arial.ttf",
        ];
        let path = candidates
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or("no TrueType font found for chart text; install fonts-dejavu-core")?;
        let bytes: &'static [u8] = Box::leak(std::fs::read(&path).map_err(|e| e.to_string())?.into_boxed_slice());
        for style in [FontStyle::Normal, FontStyle::Bold] {
            plotters::style::register_font("sans-serif", style, bytes)
                .map_err(|_| format!("{} is not a usable font", path.display()))?;
        }
        Ok(())
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// The legend box every chart uses.
fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)
}

/// A chart of lines, one per series.
struct Lines {
    title: String,
    x_label: String,
    y_label: String,
    series: Vec<(String, Vec<(f64, f64)>)>,
    /// Worker counts: drawn on a log2 axis labelled 1, 2, 4, 8, …
    workers_x: bool,
    /// Fixed y range (e.g. efficiency zoomed to the data); otherwise 0 to the maximum.
    y_range: Option<(f64, f64)>,
    reference: Option<(String, Vec<(f64, f64)>)>,
}

fn bounds(points: impl Iterator<Item = (f64, f64)>) -> (f64, f64, f64, f64) {
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, f64::MIN);
    for (x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return (0.0, 1.0, 0.0, 1.0);
    }
    if (x1 - x0).abs() < f64::EPSILON {
        x1 = x0 + 1.0;
    }
    (x0, x1, 0.0, if y1 <= 0.0 { 1.0 } else { y1 * 1.1 })
}

fn draw_lines<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &Lines) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let tx = |x: f64| if c.workers_x { x.max(1e-9).log2() } else { x };
    let all = c
        .series
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .chain(c.reference.iter().flat_map(|(_, p)| p.iter().copied()));
    let (mut x0, mut x1, mut y0, mut y1) = bounds(all.map(|(x, y)| (tx(x), y)));
    if c.workers_x {
        x0 -= 0.25;
        x1 += 0.25;
    }
    if let Some((lo, hi)) = c.y_range {
        (y0, y1) = (lo, hi);
    }
    let ticks = if c.workers_x {
        (x1 - x0).round() as usize + 1
    } else {
        10
    };
    let mut chart = ChartBuilder::on(root)
        .caption(&c.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    let workers_label = |x: &f64| {
        let k = x.round();
        if (x - k).abs() < 0.01 && k >= 0.0 {
            format!("{}", 2f64.powf(k) as u64)
        } else {
            String::new()
        }
    };
    let plain_label = |x: &f64| format!("{x}");
    chart
        .configure_mesh()
        .x_labels(ticks.max(2))
        .x_label_formatter(if c.workers_x { &workers_label } else { &plain_label })
        .x_desc(c.x_label.as_str())
        .y_desc(c.y_label.as_str())
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    if let Some((name, points)) = &c.reference {
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|(x, y)| (tx(*x), *y)),
                BLACK.mix(0.4).stroke_width(1),
            ))
            .map_err(err)?
            .label(name.as_str())
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
    }
    for (i, (name, points)) in c.series.iter().enumerate() {
        let color = MODE_COLORS[i % MODE_COLORS.len()];
        let pts: Vec<(f64, f64)> = points.iter().map(|(x, y)| (tx(*x), *y)).collect();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(err)?;
    }
    draw_legend(&mut chart)?;
    root.present().map_err(err)
}

/// Stacked bars: one bar per label, one segment per stage.
struct Stacked {
    title: String,
    y_label: String,
    stages: Vec<String>,
    bars: Vec<(String, Vec<f64>)>,
}

fn draw_stacked<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &Stacked) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let top = c
        .bars
        .iter()
        .map(|(_, v)| v.iter().sum::<f64>())
        .fold(0.0, f64::max)
        .max(1e-6)
        * 1.15;
    let n = c.bars.len().max(1);
    let labels: Vec<String> = c.bars.iter().map(|(l, _)| l.clone()).collect();
    let mut chart = ChartBuilder::on(root)
        .caption(&c.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(c.y_label.as_str())
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(err)?;
    for (s, stage) in c.stages.iter().enumerate() {
        let color = MODE_COLORS[s % MODE_COLORS.len()];
        chart
            .draw_series(c.bars.iter().enumerate().map(|(i, (_, v))| {
                let base: f64 = v[..s].iter().sum();
                Rectangle::new([(i as f64 - 0.3, base), (i as f64 + 0.3, base + v[s])], color.filled())
            }))
            .map_err(err)?
            .label(stage.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    draw_legend(&mut chart)?;
    root.present().map_err(err)
}

/// A heatmap over two categorical axes, each cell labelled with its value.
struct Heat {
    title: String,
    x_label: String,
    y_label: String,
    xs: Vec<f64>,
    ys: Vec<f64>,
    values: BTreeMap<(usize, usize), f64>,
    unit: String,
}

fn draw_heat<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &Heat) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let (lo, hi) = c.values.values().fold((f64::MAX, f64::MIN), |(a, b), v| {
        (a.min(v.max(1e-9).ln()), b.max(v.max(1e-9).ln()))
    });
    let (xs, ys) = (c.xs.clone(), c.ys.clone());
    let mut chart = ChartBuilder::on(root)
        .caption(&c.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(64)
        .y_label_area_size(72)
        .build_cartesian_2d(-0.5f64..(xs.len() as f64 - 0.5), -0.5f64..(ys.len() as f64 - 0.5))
        .map_err(err)?;
    let fmt = |v: &[f64], x: &f64| {
        let i = x.round();
        if (x - i).abs() < 0.01 && i >= 0.0 {
            v.get(i as usize).map(|n| format!("{n}")).unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(xs.len())
        .y_labels(ys.len())
        .x_label_formatter(&|x| fmt(&xs, x))
        .y_label_formatter(&|y| fmt(&ys, y))
        .x_desc(c.x_label.as_str())
        .y_desc(c.y_label.as_str())
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(
            (0..xs.len())
                .flat_map(|i| (0..ys.len()).map(move |j| (i, j)))
                .filter(|k| !c.values.contains_key(k))
                .map(|(i, j)| {
                    let grey = RGBColor(225, 225, 225);
                    Rectangle::new(
                        [(i as f64 - 0.5, j as f64 - 0.5), (i as f64 + 0.5, j as f64 + 0.5)],
                        grey.filled(),
                    )
                }),
        )
        .map_err(err)?;
    chart
        .draw_series(c.values.iter().map(|((i, j), v)| {
            let t = if hi > lo {
                (v.max(1e-9).ln() - lo) / (hi - lo)
            } else {
                0.5
            };
            let color = ViridisRGB::get_color_normalized(t, 0.0, 1.0);
            Rectangle::new(
                [(*i as f64 - 0.5, *j as f64 - 0.5), (*i as f64 + 0.5, *j as f64 + 0.5)],
                color.filled(),
            )
        }))
        .map_err(err)?;
    chart
        .draw_series(c.values.iter().map(|((i, j), v)| {
            let text = if *v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            };
            let style = ("sans-serif", 12)
                .into_font()
                .color(&WHITE)
                .pos(Pos::new(HPos::Center, VPos::Center));
            Text::new(text, (*i as f64, *j as f64), style)
        }))
        .map_err(err)?;
    root.draw(&Text::new(
        format!("colour: log scale; numbers in {}; grey: no request completed", c.unit),
        (20, SIZE.1 as i32 - 16),
        ("sans-serif", 13),
    ))
    .map_err(err)?;
    root.present().map_err(err)
}

macro_rules! render {
    ($out:expr, $stem:expr, $draw:ident, $chart:expr, $written:expr) => {{
        let png = $out.join(format!("{}.png", $stem));
        let svg = $out.join(format!("{}.svg", $stem));
        $draw(&BitMapBackend::new(&png, SIZE).into_drawing_area(), $chart)?;
        $draw(&SVGBackend::new(&svg, SIZE).into_drawing_area(), $chart)?;
        $written.push(png);
        $written.push(svg);
    }};
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn task_label(optype: &str, ms: u64) -> String {
    if optype == "noop" || ms == 0 {
        optype.to_owned()
    } else {
        format!("{optype} {ms} ms")
    }
}

/// Draws every chart the given files allow into `out`; returns the files written.
pub fn plot_all(
    perf: Option<&Path>,
    tasks: Option<&Path>,
    load: Option<&Path>,
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    if perf.is_none() && tasks.is_none() && load.is_none() {
        bail!("nothing to plot: give a performance CSV, --tasks or --load");
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
        plot_grid(&rows, out, &mut written)?;
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
            workers_x: true,
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
            workers_x: false,
            y_range: None,
            reference: None,
        };
        render!(out, format!("cdf-{}", slug(&what)), draw_lines, &c, written);
    }
    Ok(())
}

fn plot_grid(rows: &[LoadResult], out: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{PointSpec, RunMeta};

    fn outcome(n: usize, secs: f64) -> volley_client::BatchOutcome {
        crate::report::sample_outcome(n, secs)
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
                    };
                    let o = outcome(5 * workers, 0.52);
                    crate::report::append(&perf, &[PerfRow::new(&spec, &o, &meta)]).unwrap();
                    let rows: Vec<TaskRow> = o.tasks.iter().map(|t| TaskRow::new(&spec, t)).collect();
                    crate::report::append_tasks(&tasks, &rows).unwrap();
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
                    achieved_rate: *rate,
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
                })
            })
            .collect();
        crate::load::append(&load, &cells).unwrap();

        let out = dir.join("plots");
        let files = plot_all(Some(&perf), Some(&tasks), Some(&load), &out).unwrap();
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
        assert!(plot_all(None, None, None, &out).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
