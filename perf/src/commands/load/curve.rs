//! `client load --curve`: the CPU curve's run, its CSV and its charts.

use super::LoadArgs;

/// `--curve`: the CPU curve, its CSV and its charts.
pub(super) async fn curve(a: &LoadArgs) -> anyhow::Result<i32> {
    use crate::studies::load::curve::{parse_shapes, run_curve, CurveSpec, HighestSearch};
    let mut rates = match &a.rates {
        Some(text) => parse_rates(text)?,
        None => vec![1000.0, 5000.0, 20000.0, 40000.0, 80000.0],
    };
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    anyhow::ensure!(
        a.curve_up_to.is_finite() && a.curve_up_to > 0.0,
        "--curve-up-to must be a rate above 0, not {}",
        a.curve_up_to
    );
    let highest = (a.curve_probes > 0).then(|| HighestSearch {
        slo: a.slo.clone().unwrap_or_else(default_slo),
        up_to: a.curve_up_to,
        probes: a.curve_probes,
        retry_steal_pct: a.curve_retry_steal,
    });
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
        highest,
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

/// What sustaining a rate means when no --slo is given: the SLO of BENCHMARKS.md's
/// search for the highest rate.
fn default_slo() -> crate::studies::load::slo::Slo {
    "p99<50ms,success>=0.999".parse().expect("a valid SLO")
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
