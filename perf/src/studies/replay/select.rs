//! Choosing what to replay: a window of count columns and a seeded sample of functions.
//!
//! `--functions N` takes a sample stratified by invocation rate: the functions are ranked
//! by their invocations in the window and cut into N strata of equal size, and one
//! function is drawn from each. A sample of 50 out of 250 thus keeps the trace's mix of
//! rare and busy functions instead of whatever a plain random draw happens to give.

use super::trace::{Trace, TraceFunction};
use rand::{RngExt, SeedableRng};
use rand_xorshift::XorShiftRng;
use std::ops::Range;

/// Parses `--minutes A..B` against the trace's column labels (e.g. `540..560` in the
/// Azure sample, end exclusive) into column indices. Labels that are not numbers are
/// matched by position instead.
pub fn window(trace: &Trace, text: Option<&str>) -> anyhow::Result<Range<usize>> {
    let all = 0..trace.columns.len();
    let Some(text) = text else { return Ok(all) };
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| anyhow::anyhow!("'{text}' is not a range A..B of trace minutes"))?;
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| anyhow::anyhow!("'{s}' in '{text}' is not a minute"))
    };
    let (a, b) = (parse(a)?, parse(b)?);
    anyhow::ensure!(a < b, "the window {text} is empty");
    let labels: Option<Vec<u64>> = trace.columns.iter().map(|c| c.parse().ok()).collect();
    let index = |m: u64| match &labels {
        Some(l) => l.iter().position(|&x| x == m),
        None => (m as usize <= trace.columns.len()).then_some(m as usize),
    };
    let start = index(a).ok_or_else(|| anyhow::anyhow!("minute {a} is not in the trace ({})", describe(trace)))?;
    let end = match index(b) {
        Some(e) => e,
        None if labels
            .as_ref()
            .and_then(|l| l.last())
            .is_some_and(|&last| b == last + 1) =>
        {
            trace.columns.len()
        }
        None => anyhow::bail!("minute {b} is not in the trace ({})", describe(trace)),
    };
    anyhow::ensure!(start < end, "the window {text} is empty");
    Ok(start..end)
}

fn describe(trace: &Trace) -> String {
    match (trace.columns.first(), trace.columns.last()) {
        (Some(a), Some(b)) => format!("its columns run from {a} to {b}"),
        _ => "it has no count columns".into(),
    }
}

/// Up to `n` functions, stratified by their invocations in `window`; all of them if `n`
/// is `None` or at least their number. The result keeps the trace's order.
pub fn sample(trace: &Trace, window: Range<usize>, n: Option<usize>, seed: u64) -> Vec<&TraceFunction> {
    let all: Vec<&TraceFunction> = trace.functions.iter().collect();
    let Some(n) = n.filter(|&n| n < all.len()) else {
        return all;
    };
    if n == 0 {
        return Vec::new();
    }
    let mut ranked: Vec<usize> = (0..all.len()).collect();
    let total = |i: usize| all[i].counts[window.clone()].iter().sum::<u64>();
    ranked.sort_by_key(|&i| (total(i), i));
    let mut rng = XorShiftRng::seed_from_u64(seed);
    let mut picked: Vec<usize> = (0..n)
        .map(|s| {
            let (lo, hi) = (s * all.len() / n, (s + 1) * all.len() / n);
            ranked[rng.random_range(lo..hi)]
        })
        .collect();
    picked.sort_unstable();
    picked.into_iter().map(|i| all[i]).collect()
}

/// The functions whose `HashFunction` is listed in `text` (one per line; `#` comments).
pub fn by_ids<'t>(trace: &'t Trace, text: &str) -> anyhow::Result<Vec<&'t TraceFunction>> {
    let wanted: Vec<&str> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = Vec::new();
    for id in &wanted {
        let f = trace
            .functions
            .iter()
            .find(|f| f.key.2 == *id)
            .ok_or_else(|| anyhow::anyhow!("function {} is not in the trace", volley_proto::text::quote(id)))?;
        out.push(f);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::studies::replay::fixture;

    #[test]
    fn windows_are_trace_minutes_and_samples_span_the_rates() {
        let dir = fixture::temp_dir("select");
        fixture::write(&dir, 40, 5, 11).expect("fixture");
        let trace = Trace::read(&dir, crate::studies::replay::Granularity::Minute).expect("trace");
        assert_eq!(window(&trace, None).expect("all"), 0..5);
        // The fixture's columns are minutes 1…5; windows name minutes, end exclusive.
        assert_eq!(window(&trace, Some("2..4")).expect("window"), 1..3);
        assert_eq!(window(&trace, Some("1..6")).expect("to the end"), 0..5);
        assert!(window(&trace, Some("3..3")).is_err());
        assert!(window(&trace, Some("2..9")).is_err());

        let s = sample(&trace, 0..5, Some(8), 3);
        assert_eq!(s.len(), 8);
        assert_eq!(sample(&trace, 0..5, Some(8), 3), s, "seeded");
        let rate = |f: &TraceFunction| f.counts.iter().sum::<u64>();
        let mut all: Vec<u64> = trace.functions.iter().map(rate).collect();
        all.sort_unstable();
        let picked: Vec<u64> = s.iter().map(|f| rate(f)).collect();
        // One from the quietest fifth of the functions, one from the busiest.
        assert!(picked.iter().any(|&r| r <= all[all.len() / 8]), "{picked:?} vs {all:?}");
        assert!(
            picked.iter().any(|&r| r >= all[all.len() * 7 / 8]),
            "{picked:?} vs {all:?}"
        );
        assert_eq!(sample(&trace, 0..5, None, 3).len(), 40);

        let id = trace.functions[3].key.2.clone();
        assert_eq!(by_ids(&trace, &format!("# mine\n{id}\n")).expect("ids")[0].key.2, id);
        assert!(by_ids(&trace, "nope").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
