//! One `dispatcher --ha` process of a pair or trio on one Redis, for tests and the
//! failover study: it binds nothing until it leads, then prints its ready line, which
//! is when it is known to lead.

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// A push-mode dispatcher under `--ha` on ports chosen now, before it leads.
pub struct HaMember {
    /// The process.
    pub child: Child,
    /// Its gRPC URL, `http://127.0.0.1:PORT`.
    pub grpc: String,
    /// Its worker endpoint, `tcp://127.0.0.1:PORT`.
    pub workers: String,
    /// When it printed its ready line: the moment it led.
    pub ready: Option<oneshot::Receiver<Instant>>,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl HaMember {
    /// Starts one on `redis` under `prefix`, with `--ha-lease-ms lease_ms` and `extra`
    /// flags, logging to `logs/dispatcher-LABEL.log`.
    pub fn start(
        redis: &str,
        prefix: &str,
        lease_ms: u64,
        logs: &Path,
        label: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let (grpc_port, worker_port) = (crate::free_port()?, crate::free_port()?);
        let log = logs.join(format!("dispatcher-{label}.log"));
        let mut child = Command::new(crate::binaries::path("dispatcher")?)
            .args(["-m", "push", "--ha", "--ha-lease-ms", &lease_ms.to_string()])
            .args(["--grpc", &format!("127.0.0.1:{grpc_port}")])
            .args([
                "-p",
                &worker_port.to_string(),
                "--store",
                redis,
                "--redis-prefix",
                prefix,
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("VOLLEY_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?)
            .kill_on_drop(true)
            .spawn()
            .context("spawning a dispatcher")?;
        let mut lines = BufReader::new(child.stdout.take().context("the dispatcher's stdout")?).lines();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("dispatcher ready") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Instant::now());
                    }
                }
            }
        });
        Ok(Self {
            child,
            grpc: format!("http://127.0.0.1:{grpc_port}"),
            workers: format!("tcp://127.0.0.1:{worker_port}"),
            ready: Some(rx),
            log,
        })
    }

    /// When it came to lead, waiting up to `limit`; an error if it did not.
    pub async fn leads(&mut self, limit: Duration) -> anyhow::Result<Instant> {
        let rx = self.ready.take().context("its leading was already awaited")?;
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(at)) => Ok(at),
            _ => bail!(
                "{} did not lead within {limit:?}; its log:\n{}",
                self.grpc,
                self.log_text()
            ),
        }
    }

    /// Sends `signal` to it.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self.child.id().context("the dispatcher has exited")? as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).context("signalling the dispatcher")
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it with SIGTERM if it still runs, and waits up to ten seconds.
    pub async fn stop(mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.signal(Signal::SIGTERM);
            let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        }
    }
}
