//! A distribution known only by some of its percentiles, as the Azure trace gives
//! durations and memory: sampled by a piecewise-uniform inverse CDF between them.

use rand::RngExt;

/// Values at percentiles, ascending in both.
#[derive(Debug, Clone, PartialEq)]
pub struct Percentiles {
    points: Vec<(f64, f64)>,
}

impl Percentiles {
    /// From (percentile 0–100, value) pairs. Percentiles must be distinct; values that
    /// dip below an earlier one (rounding in the source) are raised to it, so the
    /// inverse CDF stays monotone.
    pub fn new(mut points: Vec<(f64, f64)>) -> Result<Self, String> {
        if points.is_empty() {
            return Err("no percentiles".into());
        }
        if points
            .iter()
            .any(|(p, v)| !(0.0..=100.0).contains(p) || !v.is_finite() || *v < 0.0)
        {
            return Err("percentiles lie in 0..=100 and values are non-negative numbers".into());
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        if points.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err("a percentile is given twice".into());
        }
        let mut floor = 0.0f64;
        for point in &mut points {
            floor = floor.max(point.1);
            point.1 = floor;
        }
        Ok(Self { points })
    }

    /// The value at percentile `p` (0–100), interpolated linearly between the given
    /// points and held flat beyond them.
    pub fn at(&self, p: f64) -> f64 {
        let pts = &self.points;
        let first = pts[0];
        let last = pts[pts.len() - 1];
        if p <= first.0 {
            return first.1;
        }
        if p >= last.0 {
            return last.1;
        }
        let i = pts.partition_point(|(q, _)| *q <= p);
        let ((p0, v0), (p1, v1)) = (pts[i - 1], pts[i]);
        v0 + (v1 - v0) * (p - p0) / (p1 - p0)
    }

    /// One draw.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> f64 {
        self.at(rng.random_range(0.0..100.0))
    }

    /// The distribution's mean.
    pub fn mean(&self) -> f64 {
        let pts = &self.points;
        let mut total = pts[0].0 / 100.0 * pts[0].1;
        for w in pts.windows(2) {
            total += (w[1].0 - w[0].0) / 100.0 * (w[0].1 + w[1].1) / 2.0;
        }
        let last = pts[pts.len() - 1];
        total + (100.0 - last.0) / 100.0 * last.1
    }

    /// The same distribution with every value multiplied by `factor`.
    pub fn scaled(&self, factor: f64) -> Self {
        Self {
            points: self.points.iter().map(|&(p, v)| (p, v * factor)).collect(),
        }
    }

    /// The smallest and largest values.
    pub fn range(&self) -> (f64, f64) {
        (self.points[0].1, self.points[self.points.len() - 1].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn durations() -> Percentiles {
        Percentiles::new(vec![
            (0.0, 22.0),
            (1.0, 25.0),
            (25.0, 31.0),
            (50.0, 34.0),
            (75.0, 39.0),
            (99.0, 65.0),
            (100.0, 630.0),
        ])
        .expect("valid")
    }

    #[test]
    fn draws_stay_inside_their_brackets_in_the_right_shares() {
        let d = durations();
        let mut rng = rand_xorshift::XorShiftRng::seed_from_u64(7);
        let n = 100_000;
        let draws: Vec<f64> = (0..n).map(|_| d.sample(&mut rng)).collect();
        assert!(draws.iter().all(|&v| (22.0..=630.0).contains(&v)));
        let below = |x: f64| draws.iter().filter(|&&v| v <= x).count() as f64 / n as f64;
        assert!((below(34.0) - 0.50).abs() < 0.01, "{}", below(34.0));
        assert!((below(39.0) - 0.75).abs() < 0.01, "{}", below(39.0));
        assert!((below(65.0) - 0.99).abs() < 0.002, "{}", below(65.0));
        let mean = draws.iter().sum::<f64>() / n as f64;
        assert!((mean - d.mean()).abs() / d.mean() < 0.02, "{mean} vs {}", d.mean());
    }

    #[test]
    fn tails_hold_flat_and_bad_input_is_refused() {
        let m = Percentiles::new(vec![(1.0, 100.0), (50.0, 120.0), (99.0, 90.0)]).expect("valid");
        assert_eq!(m.at(0.0), 100.0);
        assert_eq!(m.at(100.0), 120.0, "a dip is raised to the earlier value");
        assert_eq!(m.scaled(0.5).range(), (50.0, 60.0));
        assert!(Percentiles::new(vec![]).is_err());
        assert!(Percentiles::new(vec![(50.0, 1.0), (50.0, 2.0)]).is_err());
        assert!(Percentiles::new(vec![(101.0, 1.0)]).is_err());
        assert!(Percentiles::new(vec![(1.0, f64::NAN)]).is_err());
    }
}
