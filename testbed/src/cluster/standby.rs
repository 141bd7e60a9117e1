//! A second dispatcher for clusters started `--ha`: the same flags on the same ports. It
//! binds nothing while it stands by and becomes the cluster's dispatcher once it leads,
//! as a supervisor restarting dispatchers beside their leader would arrange. Workers and
//! clients need no list of addresses: the leader is always on the cluster's ports.

use super::{tail, Cluster};
use anyhow::{bail, ensure, Context};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::process::Child;
use tokio::sync::oneshot;

/// The waiting dispatcher.
pub(super) struct Standby {
    pub(super) child: Child,
    ready: oneshot::Receiver<String>,
    log: PathBuf,
}

impl Cluster {
    /// Starts a standby on the dispatcher's ports. The cluster must run `--ha`.
    pub fn start_standby(&mut self) -> anyhow::Result<()> {
        ensure!(self.standby.is_none(), "a standby already runs");
        ensure!(
            self.spec.dispatcher_args.iter().any(|a| a == "--ha"),
            "a standby needs a cluster whose dispatcher runs --ha"
        );
        let (grpc, workers) = self.ports();
        let (child, ready, log) = self.spawn_dispatcher(grpc, workers)?;
        self.standby = Some(Standby { child, ready, log });
        Ok(())
    }

    /// The standby's process id, while one runs.
    pub fn standby_pid(&self) -> Option<u32> {
        self.standby.as_ref().and_then(|s| s.child.id())
    }

    /// SIGKILLs the leader and waits up to `limit` for the standby to lead: how long
    /// the takeover took. The cluster has no standby afterwards until one is started.
    pub async fn kill_leader(&mut self, limit: Duration) -> anyhow::Result<Duration> {
        ensure!(self.standby.is_some(), "no standby to take over");
        let killed = Instant::now();
        self.kill_dispatcher().await?;
        self.take_over(limit).await?;
        Ok(killed.elapsed())
    }

    /// If the leader exited (deposed after Redis came back, say), makes the standby the
    /// dispatcher once it leads and starts a new standby; whether it had to.
    pub async fn replace_exited_leader(&mut self, limit: Duration) -> anyhow::Result<bool> {
        let exited = match self.dispatcher.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        };
        if !exited {
            return Ok(false);
        }
        self.dispatcher = None;
        self.take_over(limit).await?;
        self.start_standby()?;
        Ok(true)
    }

    async fn take_over(&mut self, limit: Duration) -> anyhow::Result<()> {
        let Standby { mut child, ready, log } = self.standby.take().context("no standby")?;
        match tokio::time::timeout(limit, ready).await {
            Ok(Ok(line)) => self.adopt(child, &line, log),
            _ => {
                let _ = child.kill().await;
                bail!(
                    "the standby did not lead within {limit:?}; its log ({}):\n{}",
                    log.display(),
                    tail(&log, 20)
                )
            }
        }
    }
}
