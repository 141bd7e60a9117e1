//! `client load --find-max`: the highest offered rate that meets an SLO, by bisection.

use super::{print, LoadArgs};
use crate::recording::observe::Observed;
use crate::studies::load::find_max::{cool_down, parse_range, Bisection};
use volley_client::commands::Target;

/// `--find-max`: bisects the rate range for the highest rate meeting `--slo`.
pub(super) async fn find_max(
    target: &Target,
    a: &LoadArgs,
    as_json: bool,
    observed: &mut Observed,
) -> anyhow::Result<i32> {
    let slo = a
        .slo
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("--find-max needs --slo"))?;
    let (lo, hi) = parse_range(a.rates.as_deref().unwrap_or("1000..100000"))?;
    let mut search = Bisection::new(lo, hi, 1.05, a.max_probes)?;
    let mut probes = Vec::new();
    while let Some(rate) = search.next_rate() {
        if !a.fresh {
            cool_down(&target.connect().await?, a.cool_down).await?;
        }
        let mut r = a.once(target, rate.round(), Some(observed.sampler())).await?;
        observed.record.requests.extend(std::mem::take(&mut r.records));
        let pass = r.verdict == "pass";
        println!(
            "probe {:>2}: {:>9.0}/s offered {:>9.0}/s completed {:>9.0}/s  p50 {:>8.2} ms p99 {:>8.2} ms  success {:.4}  {}",
            probes.len() + 1,
            rate,
            r.offered_rate,
            r.completed_rate,
            r.p50_ms,
            r.p99_ms,
            r.success_rate,
            r.verdict
        );
        search.record(rate, pass);
        probes.push(r);
    }
    if as_json {
        probes.iter().for_each(|r| print(r, true));
    }
    println!("{} probe row(s) appended to {}", probes.len(), a.out.display());
    match search.best() {
        Some(best) => {
            let capped = if search.capped() {
                " (the top of the range: the true maximum may be higher)"
            } else {
                ""
            };
            println!("highest offered rate meeting '{slo}': {best:.0}/s{capped}");
            Ok(0)
        }
        None => {
            println!("no rate in {lo:.0}..{hi:.0}/s meets '{slo}'");
            Ok(1)
        }
    }
}
