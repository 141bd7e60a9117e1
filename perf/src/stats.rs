//! The few statistics the studies share.

/// The value at fraction `p` (0–1) of `sorted` values; `None` when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)])
}
