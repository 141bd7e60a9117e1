//! The scaler: a pure state machine that decides how many instances of each function
//! should exist. It sees, per function, the queue, the tasks in flight and its instances
//! (starting or ready, busy or idle since when) on a clock it is given — the dispatcher's
//! or a simulation's virtual one — and returns decisions: start k instances of F, retire
//! instance i. It does no I/O; a provisioner carries its decisions out.
//!
//! - [`policy`] — parsing `fixed:keepalive=10m`, `kpa:…`, `hybrid:…`, with clear errors.
//! - [`fixed`] — a fixed keep-alive window (AWS Lambda, Azure Functions).
//! - [`kpa`] — Knative's pod autoscaler: stable and panic windows, scale to zero.
//! - [`hybrid`] — "Serverless in the Wild"'s hybrid histogram: pre-warm and keep-alive
//!   windows from each function's idle-time distribution.

pub mod fixed;
pub mod hybrid;
pub mod kpa;
pub mod policy;

pub use policy::PolicySpec;

use std::time::Duration;

/// An instance's identity, given by whoever starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(pub u64);

/// An instance as the scaler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Its id.
    pub id: InstanceId,
    /// Still starting (decided, spawned, not yet registered).
    pub starting: bool,
    /// Tasks it runs now.
    pub busy: u32,
    /// When it last became idle (or ready); meaningful when `busy == 0`.
    pub idle_since: Duration,
}

impl Instance {
    /// Ready and running nothing.
    pub fn idle(&self) -> bool {
        !self.starting && self.busy == 0
    }
}

/// One function's load and instances at a moment.
#[derive(Debug, Clone)]
pub struct FunctionView<'a> {
    /// The function.
    pub function: &'a str,
    /// Tasks waiting for a slot.
    pub queued: u32,
    /// Tasks running.
    pub in_flight: u32,
    /// Slots per instance (container concurrency).
    pub slots: u32,
    /// Its instances.
    pub instances: &'a [Instance],
}

impl FunctionView<'_> {
    /// Instances registered and serving.
    pub fn ready(&self) -> u32 {
        self.instances.iter().filter(|i| !i.starting).count() as u32
    }

    /// Instances on their way.
    pub fn starting(&self) -> u32 {
        self.instances.iter().filter(|i| i.starting).count() as u32
    }

    /// Instances needed to give every waiting and running task a slot.
    pub fn needed_for_demand(&self) -> u32 {
        (self.queued + self.in_flight).div_ceil(self.slots.max(1))
    }

    /// Idle ready instances, longest idle first: what to retire first.
    pub fn idle_longest_first(&self) -> Vec<&Instance> {
        let mut idle: Vec<&Instance> = self.instances.iter().filter(|i| i.idle()).collect();
        idle.sort_by_key(|i| (i.idle_since, i.id));
        idle
    }
}

/// What the scaler wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start this many instances of the function.
    Start {
        /// The function.
        function: String,
        /// How many.
        count: u32,
    },
    /// Retire this (idle) instance: it says goodbye and exits.
    Retire {
        /// The function.
        function: String,
        /// The instance.
        instance: InstanceId,
    },
}

/// A scaling policy: per-function state, fed views and arrivals.
pub trait Policy: Send + std::fmt::Debug {
    /// An invocation of `function` arrived at `now` (before the view that shows it).
    fn arrival(&mut self, _function: &str, _now: Duration) {}

    /// What to do for one function now.
    fn decide(&mut self, now: Duration, view: &FunctionView<'_>) -> Vec<Decision>;
}

/// A policy and the global bound on instances.
#[derive(Debug)]
pub struct Scaler {
    policy: Box<dyn Policy>,
    max_instances: u32,
}

impl Scaler {
    /// The policy `spec`, never holding more than `max_instances` instances in all.
    pub fn new(spec: &PolicySpec, max_instances: u32) -> Self {
        Self {
            policy: spec.build(),
            max_instances,
        }
    }

    /// Tells the policy of an arrival.
    pub fn arrival(&mut self, function: &str, now: Duration) {
        self.policy.arrival(function, now);
    }

    /// Decides for one function; `total` is how many instances exist across all
    /// functions, so starts beyond `max_instances` are cut.
    pub fn decide(&mut self, now: Duration, view: &FunctionView<'_>, total: u32) -> Vec<Decision> {
        let mut room = self.max_instances.saturating_sub(total);
        let mut out = self.policy.decide(now, view);
        out.retain_mut(|d| match d {
            Decision::Start { count, .. } => {
                *count = (*count).min(room);
                room -= *count;
                *count > 0
            }
            Decision::Retire { .. } => true,
        });
        out
    }
}

/// Starts for `function` that bring it from `have` to `want` instances, if any.
pub(crate) fn start_up_to(function: &str, have: u32, want: u32) -> Option<Decision> {
    (want > have).then(|| Decision::Start {
        function: function.to_owned(),
        count: want - have,
    })
}

/// Retirements of idle instances that bring `view` down towards `want`, longest idle first.
pub(crate) fn retire_down_to(view: &FunctionView<'_>, want: u32) -> Vec<Decision> {
    let have = view.ready() + view.starting();
    let surplus = have.saturating_sub(want) as usize;
    view.idle_longest_first()
        .into_iter()
        .take(surplus)
        .map(|i| Decision::Retire {
            function: view.function.to_owned(),
            instance: i.id,
        })
        .collect()
}

#[cfg(test)]
mod tests;
