//! `client load --curve`: the CPU curve's run, its CSV and its charts.

use super::LoadArgs;

/// `--curve`: the CPU curve, its CSV and its charts.
pub(super) async fn curve(a: &LoadArgs) -> anyhow::Result<i32> {
    use crate::studies::load::curve::{parse_shapes, run_curve, CurveSpec};
    let rates = match &a.rates {
        Some(text) => parse_rates(text)?,
        None => vec![1000.0, 5000.0, 20000.0, 40000.0, 80000.0],
    };
    let spec = CurveSpec {
        rates,
        modes: a.curve_modes.clone(),
        shapes: parse_shapes(&a.curve_shapes)?,
        duration: a.duration,
        warmup: a.warmup,
        drain: a.drain,
        arrival: a.arrival,
        transport: a.transport,
        seed: a.seed,
    };
    let out = a.out.with_file_name("cpu-curve.csv");
    let points = run_curve(&spec, &out).await?;
    println!("{} point(s) appended to {}", points.len(), out.display());
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    for chart in crate::presentation::plot::plot_curve(&points, dir)? {
        println!("chart: {}", chart.display());
    }
    Ok(0)
}

/// A comma-separated list of rates.
pub(crate) fn parse_rates(text: &str) -> anyhow::Result<Vec<f64>> {
    anyhow::ensure!(!text.contains(".."), "a list of rates (1000,5000), not a range");
    text.split(',')
        .map(|r| {
            r.trim()
                .parse::<f64>()
                .ok()
                .filter(|r| *r > 0.0)
                .ok_or_else(|| anyhow::anyhow!("'{r}' is not a rate"))
        })
        .collect()
}
