//! Drawing: the chart kinds (lines, stacked bars, heatmaps) on any plotters backend,
//! with the font, colours and legend they share.

use anyhow::{anyhow, Context};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub(super) const SIZE: (u32, u32) = (960, 600);
pub(super) const MODE_COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Reads a CSV of any of the result row types.
pub fn read_csv<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let mut r = csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    r.deserialize()
        .collect::<Result<Vec<T>, _>>()
        .with_context(|| format!("reading {}", path.display()))
}

pub(super) fn ensure_font() -> anyhow::Result<()> {
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

pub(super) fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// The legend box every chart uses.
pub(super) fn draw_legend<'a, DB: DrawingBackend + 'a>(
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
pub(super) struct Lines {
    pub(super) title: String,
    pub(super) x_label: String,
    pub(super) y_label: String,
    pub(super) series: Vec<(String, Vec<(f64, f64)>)>,
    /// How x is drawn.
    pub(super) x_scale: XScale,
    /// Fixed y range (e.g. efficiency zoomed to the data); otherwise 0 to the maximum.
    pub(super) y_range: Option<(f64, f64)>,
    pub(super) reference: Option<(String, Vec<(f64, f64)>)>,
}

/// How a line chart's x axis is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum XScale {
    /// As the values are.
    Linear,
    /// Worker counts: a log2 axis labelled 1, 2, 4, 8, …
    Workers,
    /// Values over decades (rates from 1,000 to 200,000/s): a log10 axis labelled at 1, 2
    /// and 5 of each decade.
    Decades,
}

impl XScale {
    fn to_axis(self, x: f64) -> f64 {
        match self {
            Self::Linear => x,
            Self::Workers => x.max(1e-9).log2(),
            Self::Decades => x.max(1e-9).log10(),
        }
    }
}

/// A log10 axis position's label: the value when it is 1, 2 or 5 of its decade (within
/// the tick grid's rounding), else nothing.
fn decade_label(x: &f64) -> String {
    let v = 10f64.powf(*x);
    let decade = 10f64.powf(v.log10().floor());
    let m = v / decade;
    match [1.0, 2.0, 5.0, 10.0].into_iter().find(|n| (m - n).abs() < 0.03 * n) {
        Some(n) => thousands((n * decade).round() as u64),
        None => String::new(),
    }
}

/// 200000 as 200,000.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

pub(super) fn bounds(points: impl Iterator<Item = (f64, f64)>) -> (f64, f64, f64, f64) {
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

pub(super) fn draw_lines<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &Lines) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let tx = |x: f64| c.x_scale.to_axis(x);
    let all = c
        .series
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .chain(c.reference.iter().flat_map(|(_, p)| p.iter().copied()));
    let (mut x0, mut x1, mut y0, mut y1) = bounds(all.map(|(x, y)| (tx(x), y)));
    if c.x_scale == XScale::Workers {
        x0 -= 0.25;
        x1 += 0.25;
    } else if c.x_scale == XScale::Decades {
        x0 -= 0.05;
        x1 += 0.05;
    } else if c.series.iter().all(|(_, p)| p.len() == 1) {
        // Lone points (one per series) would sit on the frame: give them room.
        let pad = (x1 - x0) * 0.06;
        (x0, x1) = (x0 - pad, x1 + pad);
    }
    if let Some((lo, hi)) = c.y_range {
        (y0, y1) = (lo, hi);
    }
    let ticks = match c.x_scale {
        XScale::Workers => (x1 - x0).round() as usize + 1,
        // A tick every tenth of a decade, so that 2 and 5 (0.30 and 0.70) have one.
        XScale::Decades => ((x1 - x0) * 10.0).round() as usize + 1,
        XScale::Linear => 10,
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
    let plain_label = |x: &f64| {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    };
    chart
        .configure_mesh()
        .x_labels(ticks.max(2))
        .x_label_formatter(match c.x_scale {
            XScale::Workers => &workers_label,
            XScale::Decades => &decade_label,
            XScale::Linear => &plain_label,
        })
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
        // Dense series (time lines) read better without a marker per point.
        if pts.len() <= 60 {
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))
                .map_err(err)?;
        }
    }
    draw_legend(&mut chart)?;
    root.present().map_err(err)
}

/// Stacked bars: one bar per label, one segment per stage.
pub(super) struct Stacked {
    pub(super) title: String,
    pub(super) y_label: String,
    pub(super) stages: Vec<String>,
    pub(super) bars: Vec<(String, Vec<f64>)>,
}

pub(super) fn draw_stacked<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &Stacked) -> anyhow::Result<()> {
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
pub(super) struct Heat {
    pub(super) title: String,
    pub(super) x_label: String,
    pub(super) y_label: String,
    pub(super) xs: Vec<f64>,
    pub(super) ys: Vec<f64>,
    pub(super) values: BTreeMap<(usize, usize), f64>,
    pub(super) unit: String,
}

pub(super) fn draw_heat<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &Heat) -> anyhow::Result<()> {
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

pub(super) fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

pub(super) fn task_label(optype: &str, ms: u64) -> String {
    if optype == "noop" || ms == 0 {
        optype.to_owned()
    } else {
        format!("{optype} {ms} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decade_axis_labels_one_two_and_five_of_each_decade_only() {
        let at = |v: f64| decade_label(&v.log10());
        assert_eq!(at(1_000.0), "1,000");
        assert_eq!(at(20_000.0), "20,000");
        assert_eq!(at(200_000.0), "200,000");
        // A tick at 0.3 of a decade is 1.995 of it: labelled 2.
        assert_eq!(decade_label(&4.3), "20,000");
        assert_eq!(decade_label(&4.7), "50,000");
        assert_eq!(at(30_000.0), "");
        assert_eq!(decade_label(&4.5), "");
    }
}
