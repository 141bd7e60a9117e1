//! The search for the highest rate a cluster of the curve sustains: the highest that
//! meets an SLO, bisected between the highest listed rate that met it and the lowest above
//! that did not (or a ceiling). On a shared VM a p99 at 100,000/s is decided by the
//! host's worst seconds as much as by the system, so a probe that fails while the
//! hypervisor steals the CPUs is asked again.

use super::{CurvePoint, Rig, RESOLUTION};
use crate::studies::load::find_max::{cool_down, Bisection};
use crate::studies::load::slo::Slo;
use std::time::Duration;

/// How the highest sustained rate is searched for.
#[derive(Debug, Clone)]
pub struct HighestSearch {
    /// What sustaining a rate means.
    pub slo: Slo,
    /// The top of the range searched when every listed rate meets the SLO.
    pub up_to: f64,
    /// Probes at most, beyond the listed rates.
    pub probes: usize,
    /// A probe that fails while the hypervisor steals at least this share of the
    /// machine's CPU time (percent) runs once more; a listed rate that failed so does not
    /// bound the search.
    pub retry_steal_pct: f64,
}

impl Rig<'_> {
    fn say_probe(&self, probe: usize, p: &CurvePoint) {
        println!(
            "{}: probe {probe} at {:.0}/s: offered {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} of {} completed, steal {:.1} %: {}",
            self.label, p.target_rate, p.offered_rate, p.p50_ms, p.p99_ms, p.completed, p.sent, p.steal_pct, p.verdict
        );
    }

    /// The highest rate meeting the search's SLO, from the listed points and probes above
    /// them; `None` when no listed rate met it.
    pub(super) async fn highest(
        &self,
        search: &HighestSearch,
        listed: &[CurvePoint],
    ) -> anyhow::Result<Option<CurvePoint>> {
        // A listed rate that failed while the host stole the CPUs does not bound the search.
        let verdicts: Vec<(f64, bool)> = listed
            .iter()
            .filter(|p| p.passed() || p.steal_pct < search.retry_steal_pct)
            .map(|p| (p.target_rate, p.passed()))
            .collect();
        let Some((lo, failed_above)) = bracket(&verdicts) else {
            println!(
                "{}: no listed rate met '{}', so no search for the highest",
                self.label, search.slo
            );
            return Ok(None);
        };
        let mut best = listed
            .iter()
            .find(|p| p.target_rate == lo)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the bracket's rate {lo} is not a listed point"))?;
        let hi = failed_above.unwrap_or(search.up_to);
        if hi > lo * RESOLUTION {
            let known = 1 + usize::from(failed_above.is_some());
            let mut bisection = Bisection::new(lo, hi, RESOLUTION, known + search.probes)?;
            bisection.record(lo, true);
            if let Some(f) = failed_above {
                bisection.record(f, false);
            }
            let mut probe = 0;
            while let Some(rate) = bisection.next_rate() {
                cool_down(&self.client, Duration::from_secs(1)).await?;
                let rate = rate.round();
                probe += 1;
                let seed = self.spec.seed.wrapping_add((self.spec.rates.len() + probe) as u64);
                let mut p = self.measure(rate, seed).await?;
                self.say_probe(probe, &p);
                if !p.passed() && p.steal_pct >= search.retry_steal_pct {
                    // The verdict is the host's as much as the system's: ask again, once.
                    cool_down(&self.client, Duration::from_secs(1)).await?;
                    p = self.measure(rate, seed).await?;
                    self.say_probe(probe, &p);
                }
                bisection.record(rate, p.passed());
                if p.passed() && p.target_rate > best.target_rate {
                    best = p;
                }
            }
            best.point = if bisection.capped() {
                "highest-capped"
            } else {
                "highest"
            }
            .into();
        } else {
            best.point = "highest".into();
        }
        Ok(Some(best))
    }
}

/// Where the search for the highest sustained rate starts, from the listed rates and
/// their verdicts: the highest rate that passed, and the lowest above it that failed
/// (`None`: every rate above it passed, or there is none). `None` when none passed.
pub fn bracket(verdicts: &[(f64, bool)]) -> Option<(f64, Option<f64>)> {
    let lo = verdicts
        .iter()
        .filter(|(_, pass)| *pass)
        .map(|(r, _)| *r)
        .max_by(f64::total_cmp)?;
    let failed_above = verdicts
        .iter()
        .filter(|(r, pass)| !*pass && *r > lo)
        .map(|(r, _)| *r)
        .min_by(f64::total_cmp);
    Some((lo, failed_above))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_starts_above_the_highest_listed_rate_that_passed() {
        assert_eq!(
            bracket(&[(1e3, true), (5e3, true), (2e4, false), (4e4, false)]),
            Some((5e3, Some(2e4)))
        );
        // Every rate passed: the ceiling bounds the search.
        assert_eq!(bracket(&[(1e3, true), (5e3, true)]), Some((5e3, None)));
        // A failure below a pass (a noisy moment) does not bound it.
        assert_eq!(bracket(&[(1e3, false), (5e3, true)]), Some((5e3, None)));
        assert_eq!(bracket(&[(1e3, false), (5e3, false)]), None);
        assert_eq!(bracket(&[]), None);
    }
}
