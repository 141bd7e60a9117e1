//! Provisioning: carrying the scaler's decisions out. A [`Provisioner`] starts an instance
//! of a function (a worker bound to it, registering under a name it chose) and retires one;
//! it reports instances that exited on their own. It is deliberately small: a Kubernetes
//! provisioner would create and delete a pod per instance, a remote-host one would start
//! processes over SSH, and both would report exits from their own watch.
//!
//! - [`local`] — worker processes on this host;
//! - [`stems`] — what it keeps ready ahead of demand: stem cells and a fork server;
//! - [`template`] — the worker template new instances' workers are forked from.

pub mod local;
pub mod stems;
pub mod template;

use crate::scaler::InstanceId;
use std::time::Instant;

/// An instance that was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// Its id.
    pub id: InstanceId,
    /// The name it registers under, so its registration can be matched to the start.
    pub worker_name: String,
    /// When the process (or pod) was created.
    pub spawned_at: Instant,
}

/// An instance that is gone, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    /// Its id.
    pub id: InstanceId,
    /// Its function.
    pub function: String,
    /// Whether it was asked to leave.
    pub retired: bool,
    /// How it ended, for the log (`exit status 0`, `signal 9`, …).
    pub how: String,
}

/// Why an instance could not be started or retired.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Already as many instances as allowed.
    #[error("{running} instances are running, the most --max-instances allows")]
    Full {
        /// Instances running.
        running: usize,
    },
    /// The instance could not be created.
    #[error("cannot start an instance of '{function}': {why}")]
    Start {
        /// The function.
        function: String,
        /// Why.
        why: String,
    },
    /// No such instance.
    #[error("no instance {0:?}")]
    Unknown(InstanceId),
}

/// Starts and retires instances.
pub trait Provisioner: Send + std::fmt::Debug {
    /// Starts one instance of `function`, decided at `decided_us` (µs since the epoch).
    /// The instance should echo that time and its spawn time in its first `Hello`
    /// (`worker --provisioned DECIDED_US,SPAWNED_US`) so its cold starts are explained.
    fn start(&mut self, function: &str, decided_us: u64) -> Result<Started, ProvisionError>;
    /// Asks an instance to leave: it says goodbye (its unfinished tasks are requeued) and exits.
    fn retire(&mut self, id: InstanceId) -> Result<(), ProvisionError>;
    /// Instances that have exited since the last call, retired or not.
    fn reap(&mut self) -> Vec<Exited>;
    /// Instances alive.
    fn running(&self) -> usize;
}
