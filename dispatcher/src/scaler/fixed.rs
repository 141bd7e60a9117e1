//! A fixed keep-alive window, as AWS Lambda and Azure Functions keep instances: start one
//! for each task that finds no free slot, keep an idle instance for `keepalive`, then
//! retire it.

use super::{retire_down_to, start_up_to, Decision, FunctionView, Policy};
use std::time::Duration;

/// The fixed keep-alive policy.
#[derive(Debug)]
pub struct Fixed {
    keepalive: Duration,
}

impl Fixed {
    /// Keeps idle instances `keepalive`.
    pub fn new(keepalive: Duration) -> Self {
        Self { keepalive }
    }
}

/// Starts what demand needs and retires instances idle for `keepalive`: shared with the
/// hybrid policy's fallback.
pub(crate) fn keep_alive(now: Duration, view: &FunctionView<'_>, keepalive: Duration) -> Vec<Decision> {
    let have = view.ready() + view.starting();
    let mut out: Vec<Decision> = start_up_to(view.function, have, view.needed_for_demand())
        .into_iter()
        .collect();
    if out.is_empty() {
        let expired = view
            .idle_longest_first()
            .into_iter()
            .filter(|i| now.saturating_sub(i.idle_since) >= keepalive)
            .count() as u32;
        out.extend(retire_down_to(view, have - expired));
    }
    out
}

impl Policy for Fixed {
    fn decide(&mut self, now: Duration, view: &FunctionView<'_>) -> Vec<Decision> {
        keep_alive(now, view, self.keepalive)
    }
}
