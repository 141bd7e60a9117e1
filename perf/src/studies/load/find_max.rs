//! The search for the highest offered rate that meets an SLO: a pure bisection over a
//! rate range (geometric, since rates span decades), fed one verdict per probe. Latency
//! against offered rate is a hockey stick — flat, then a wall — so one crossing exists
//! and bisection finds it in a handful of probes.

use std::time::Duration;

/// Where the search stands.
#[derive(Debug, Clone)]
pub struct Bisection {
    /// The highest rate known to pass.
    pass: Option<f64>,
    /// The lowest rate known to fail.
    fail: Option<f64>,
    lo: f64,
    hi: f64,
    /// Stop when fail / pass is within this ratio.
    resolution: f64,
    probes: usize,
    max_probes: usize,
}

impl Bisection {
    /// A search over `lo..hi` requests/s, to within `resolution` (e.g. 1.05 = 5 %), with at
    /// most `max_probes` probes.
    pub fn new(lo: f64, hi: f64, resolution: f64, max_probes: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            lo.is_finite() && lo > 0.0 && hi > lo,
            "a rate range must be lo..hi with 0 < lo < hi, not {lo}..{hi}"
        );
        anyhow::ensure!(resolution > 1.0, "the resolution must be a ratio above 1");
        Ok(Self {
            pass: None,
            fail: None,
            lo,
            hi,
            resolution,
            probes: 0,
            max_probes: max_probes.max(2),
        })
    }

    /// The next rate to probe, or `None` when the search is over.
    pub fn next_rate(&self) -> Option<f64> {
        if self.probes >= self.max_probes {
            return None;
        }
        match (self.pass, self.fail) {
            // First the bottom: if even it fails, nothing in the range meets the SLO.
            (None, None) => Some(self.lo),
            (None, Some(_)) => None,
            // Then the top: if it passes, the answer lies above the range.
            (Some(p), None) if p < self.hi => Some(self.hi),
            (Some(_), None) => None,
            (Some(p), Some(f)) if f / p > self.resolution => Some((p * f).sqrt()),
            (Some(_), Some(_)) => None,
        }
    }

    /// Records a probe's verdict.
    pub fn record(&mut self, rate: f64, pass: bool) {
        self.probes += 1;
        if pass {
            self.pass = Some(self.pass.map_or(rate, |p: f64| p.max(rate)));
        } else {
            self.fail = Some(self.fail.map_or(rate, |f: f64| f.min(rate)));
        }
    }

    /// The highest rate that met the SLO, if any.
    pub fn best(&self) -> Option<f64> {
        self.pass
    }

    /// Whether the best rate is the top of the range (the true maximum may be higher).
    pub fn capped(&self) -> bool {
        self.pass == Some(self.hi)
    }
}

/// Waits until the dispatcher has nothing queued or running, then `pause` more: a probe
/// past the knee leaves a backlog that would otherwise be charged to the next one.
pub async fn cool_down(client: &volley_client::Client, pause: Duration) -> anyhow::Result<()> {
    let mut client = client.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let info = client
            .cluster_info(volley_proto::api::ClusterInfoRequest {})
            .await
            .map_err(|s| volley_client::commands::status_error("ClusterInfo", s))?
            .into_inner();
        if info.queued + info.running == 0 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the dispatcher still has {} queued and {} running after two minutes; probes would overlap",
            info.queued,
            info.running
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(pause).await;
    Ok(())
}

/// Parses `lo..hi` (requests/s).
pub fn parse_range(text: &str) -> anyhow::Result<(f64, f64)> {
    let (lo, hi) = text
        .split_once("..")
        .ok_or_else(|| anyhow::anyhow!("'{text}' is not a rate range lo..hi (e.g. 1000..100000)"))?;
    let num = |s: &str| {
        s.trim()
            .replace('_', "")
            .parse::<f64>()
            .map_err(|_| anyhow::anyhow!("'{s}' in '{text}' is not a rate"))
    };
    Ok((num(lo)?, num(hi)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(capacity: f64, lo: f64, hi: f64) -> (Option<f64>, Vec<f64>) {
        let mut b = Bisection::new(lo, hi, 1.05, 20).expect("range");
        let mut probes = Vec::new();
        while let Some(rate) = b.next_rate() {
            probes.push(rate);
            b.record(rate, rate <= capacity);
        }
        (b.best(), probes)
    }

    #[test]
    fn finds_the_crossing_to_the_resolution() {
        let (best, probes) = search(37_000.0, 1_000.0, 100_000.0);
        let best = best.expect("found");
        assert!(
            best <= 37_000.0 && best * 1.05 >= 37_000.0 * 0.999,
            "{best} from {probes:?}"
        );
        assert!(probes.len() <= 12, "{probes:?}");
        assert_eq!(&probes[..2], &[1_000.0, 100_000.0]);
    }

    #[test]
    fn says_when_nothing_or_everything_passes() {
        assert_eq!(search(10.0, 1_000.0, 100_000.0), (None, vec![1_000.0]));
        let mut b = Bisection::new(1_000.0, 100_000.0, 1.05, 20).expect("range");
        b.record(1_000.0, true);
        b.record(100_000.0, true);
        assert_eq!((b.next_rate(), b.best(), b.capped()), (None, Some(100_000.0), true));
        assert!(Bisection::new(5.0, 5.0, 1.05, 8).is_err());
        assert_eq!(parse_range("1_000..40000").expect("range"), (1_000.0, 40_000.0));
        assert!(parse_range("1000-4000").is_err());
    }
}
