//! A real cluster of processes: one dispatcher and `N` workers, on 127.0.0.1 and ports
//! the OS picks. Every process writes its own log file under `target/volley-logs/`,
//! which is kept so a failing test can be read afterwards. Dropping a [`Cluster`] kills
//! everything it started.

use anyhow::{bail, Context};
pub use nix::sys::signal::Signal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use volley_client::{connect_with, Access, Client};
use volley_proto::api;
use volley_proto::Mode;

static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

mod spec;
mod standby;
pub use spec::{ClusterSpec, ClusterTls};

/// A running dispatcher and its workers.
pub struct Cluster {
    spec: ClusterSpec,
    grpc_addr: SocketAddr,
    worker_endpoint: Option<String>,
    metrics_url: Option<String>,
    http_url: Option<String>,
    dispatcher: Option<Child>,
    workers: Vec<Option<Child>>,
    log_dir: PathBuf,
    dispatcher_starts: usize,
    dispatcher_log: PathBuf,
    standby: Option<standby::Standby>,
}

impl Cluster {
    /// Starts the dispatcher, then the workers, and waits until every worker registered.
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Self> {
        let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let bin_dir = crate::binaries::path("dispatcher")?;
        let target = bin_dir
            .parent()
            .and_then(Path::parent)
            .context("binary outside a target directory")?;
        let log_dir = target
            .join("volley-logs")
            .join(format!("{}-{}-{n}", sanitize(&spec.label), std::process::id()));
        std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
        let mut cluster = Self {
            spec,
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            worker_endpoint: None,
            metrics_url: None,
            http_url: None,
            dispatcher: None,
            workers: Vec::new(),
            dispatcher_log: log_dir.join("dispatcher-0.log"),
            log_dir,
            dispatcher_starts: 0,
            standby: None,
        };
        let worker_port = cluster.spec.worker_port;
        cluster.start_dispatcher(0, worker_port).await?;
        // With none of its own, a cluster has nothing to wait for; waiting for exactly zero
        // would race a worker started before it (it may register first).
        if cluster.spec.mode != Mode::Local && cluster.spec.workers > 0 {
            for _ in 0..cluster.spec.workers {
                cluster.spawn_worker(cluster.spec.slots, &[])?;
            }
            cluster
                .wait_for_workers(cluster.spec.workers, Duration::from_secs(30))
                .await?;
        }
        Ok(cluster)
    }

    /// `http://127.0.0.1:<port>`, or `https://…` with TLS.
    pub fn grpc_url(&self) -> String {
        let scheme = if self.spec.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.grpc_addr)
    }

    /// What this cluster's clients present: its token and CA.
    pub fn access(&self) -> Access {
        Access {
            token: self.spec.token.clone(),
            ca_pem: self.spec.tls.as_ref().map(|t| t.ca_pem.clone()),
            tls_domain: None,
        }
    }

    /// A gRPC client that presents this cluster's token and trusts its CA.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        connect_with(&self.grpc_url(), &self.access()).await
    }

    /// `tcp://127.0.0.1:<port>`, or `None` in local mode.
    pub fn worker_endpoint(&self) -> Option<&str> {
        self.worker_endpoint.as_deref()
    }

    /// The dispatcher's `http://…/metrics`, when started with `--metrics`.
    pub fn metrics_url(&self) -> Option<&str> {
        self.metrics_url.as_deref()
    }

    /// `http://…` of the dispatcher's REST edge, when it was started with `--http`.
    pub fn http_url(&self) -> Option<&str> {
        self.http_url.as_deref()
    }

    /// Where this cluster's logs are.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    async fn start_dispatcher(&mut self, grpc_port: u16, worker_port: u16) -> anyhow::Result<()> {
        let (mut child, ready, log) = self.spawn_dispatcher(grpc_port, worker_port)?;
        let line = match tokio::time::timeout(Duration::from_secs(30), ready).await {
            Ok(Ok(line)) => line,
            _ => {
                let _ = child.kill().await;
                bail!(
                    "the dispatcher did not start; its log ({}):\n{}",
                    log.display(),
                    tail(&log, 20)
                );
            }
        };
        self.adopt(child, &line, log)
    }

    /// Spawns a dispatcher process; the receiver gets its ready line.
    fn spawn_dispatcher(
        &mut self,
        grpc_port: u16,
        worker_port: u16,
    ) -> anyhow::Result<(Child, oneshot::Receiver<String>, PathBuf)> {
        let log = self.log_dir.join(format!("dispatcher-{}.log", self.dispatcher_starts));
        self.dispatcher_starts += 1;
        let mut cmd = Command::new(crate::binaries::path("dispatcher")?);
        cmd.args(["-m", self.spec.mode.as_str()])
            .args(["--grpc", &format!("127.0.0.1:{grpc_port}")])
            .args(["-p", &worker_port.to_string()])
            .args(["-w", &self.spec.slots.to_string()])
            .args(["--store", &self.spec.store])
            .args(&self.spec.dispatcher_args)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", &self.spec.log_level)
            .env_remove("VOLLEY_TOKEN")
            .env_remove("VOLLEY_TLS_CERT")
            .env_remove("VOLLEY_TLS_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true);
        if let Some(token) = &self.spec.token {
            cmd.env("VOLLEY_TOKEN", token.expose());
        }
        if let Some(tls) = &self.spec.tls {
            cmd.env("VOLLEY_TLS_CERT", &tls.cert).env("VOLLEY_TLS_KEY", &tls.key);
        }
        let mut child = cmd.spawn().context("spawning the dispatcher")?;
        let stdout = child.stdout.take().context("dispatcher stdout")?;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("dispatcher ready") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line);
                    }
                }
            }
        });
        Ok((child, rx, log))
    }

    /// Makes `child`, which printed `line`, this cluster's dispatcher.
    fn adopt(&mut self, child: Child, line: &str, log: PathBuf) -> anyhow::Result<()> {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key))
                .map(str::to_owned)
        };
        let grpc = field("grpc=http://")
            .or_else(|| field("grpc=https://"))
            .context("ready line without grpc=")?;
        self.grpc_addr = grpc.parse().with_context(|| format!("bad grpc address in '{line}'"))?;
        self.worker_endpoint = field("workers=").filter(|w| w != "none");
        self.metrics_url = field("metrics=").filter(|m| m != "off");
        self.http_url = field("http=").filter(|h| h != "off");
        self.dispatcher = Some(child);
        self.dispatcher_log = log;
        Ok(())
    }

    fn spawn_worker(&mut self, slots: u32, extra: &[&str]) -> anyhow::Result<usize> {
        let endpoint = self.worker_endpoint.clone().context("local mode has no workers")?;
        let index = self.workers.len();
        let log = self.log_dir.join(format!("worker-{index}.log"));
        let mut cmd = Command::new(crate::binaries::path("worker")?);
        cmd.env_remove("VOLLEY_TOKEN");
        if let Some(token) = &self.spec.token {
            cmd.env("VOLLEY_TOKEN", token.expose());
        }
        let child = cmd
            .arg(slots.to_string())
            .arg(&endpoint)
            .args(["--mode", self.spec.mode.as_str()])
            .args(["--name", &format!("worker-{index}")])
            .args(extra)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", &self.spec.log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .context("spawning a worker")?;
        self.workers.push(Some(child));
        Ok(index)
    }

    /// Starts one more worker with these slots (and extra flags); returns its index.
    pub async fn add_worker(&mut self, slots: u32, extra: &[&str]) -> anyhow::Result<usize> {
        self.spawn_worker(slots, extra)
    }

    /// The dispatcher's `ClusterInfo`.
    pub async fn info(&self) -> anyhow::Result<api::ClusterInfoResponse> {
        Ok(self
            .connect()
            .await?
            .cluster_info(api::ClusterInfoRequest {})
            .await?
            .into_inner())
    }

    /// Waits until exactly `n` workers are registered.
    pub async fn wait_for_workers(&mut self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            self.check_dispatcher()?;
            if let Ok(info) = self.info().await {
                if info.workers.len() == n {
                    return Ok(());
                }
                last = Some(info.workers.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "{n} workers did not register within {timeout:?} (last seen: {last:?}); logs in {}",
            self.log_dir.display()
        )
    }

    /// The OS pid of the dispatcher, if it runs.
    pub fn dispatcher_pid(&self) -> Option<u32> {
        self.dispatcher.as_ref()?.id()
    }

    /// The OS pids of the workers that run.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().flatten().filter_map(|c| c.id()).collect()
    }

    /// The OS pid of worker `index`, if it runs.
    pub fn worker_pid(&self, index: usize) -> Option<u32> {
        self.workers.get(index)?.as_ref()?.id()
    }

    /// Sends `signal` (e.g. `Signal::SIGSTOP`) to worker `index`.
    pub fn signal_worker(&self, index: usize, signal: Signal) -> anyhow::Result<()> {
        let pid = self.worker_pid(index).context("no such worker")?;
        signal_pid(pid, signal)
    }

    /// SIGKILLs worker `index` and reaps it.
    pub async fn kill_worker(&mut self, index: usize) -> anyhow::Result<()> {
        let mut child = self
            .workers
            .get_mut(index)
            .and_then(Option::take)
            .context("no such worker")?;
        child.kill().await?;
        Ok(())
    }

    /// Waits for worker `index` to exit on its own and returns its exit code.
    pub async fn wait_worker(&mut self, index: usize, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let child = self
            .workers
            .get_mut(index)
            .and_then(Option::as_mut)
            .context("no such worker")?;
        let status = tokio::time::timeout(timeout, child.wait())
            .await
            .context("worker did not exit in time")??;
        self.workers[index] = None;
        Ok(status.code())
    }

    /// Sends `signal` to the dispatcher (e.g. SIGSTOP to stall it, SIGCONT to resume).
    pub fn signal_dispatcher(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self.dispatcher_pid().context("the dispatcher is not running")?;
        signal_pid(pid, signal)
    }

    /// SIGKILLs the dispatcher (workers keep running and will reconnect).
    pub async fn kill_dispatcher(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.dispatcher.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Starts the dispatcher again on the same ports; workers find it by themselves.
    pub async fn restart_dispatcher(&mut self) -> anyhow::Result<()> {
        self.kill_dispatcher().await?;
        let (grpc_port, worker_port) = self.ports();
        self.start_dispatcher(grpc_port, worker_port).await
    }

    /// The dispatcher's gRPC and worker ports (0 for none).
    fn ports(&self) -> (u16, u16) {
        let worker_port = self
            .worker_endpoint
            .as_deref()
            .and_then(|e| e.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        (self.grpc_addr.port(), worker_port)
    }

    /// Fails with the log's tail if the dispatcher exited.
    pub fn check_dispatcher(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.dispatcher.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "the dispatcher exited ({status}); its log:\n{}",
                    tail(&self.dispatcher_log, 30)
                );
            }
        }
        Ok(())
    }

    /// Stops everything gracefully (SIGTERM, then SIGKILL after a grace period).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(mut standby) = self.standby.take() {
            let _ = standby.child.kill().await;
        }
        if let Some(mut child) = self.dispatcher.take() {
            if let Some(pid) = child.id() {
                let _ = signal_pid(pid, Signal::SIGTERM);
            }
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        for child in self.workers.iter_mut().filter_map(Option::as_mut) {
            if tokio::time::timeout(Duration::from_secs(3), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        Ok(())
    }
}

fn signal_pid(pid: u32, signal: Signal) -> anyhow::Result<()> {
    let pid = i32::try_from(pid).context("pid out of range")?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .with_context(|| format!("sending {signal} to {pid}"))
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect()
}

/// The last `n` lines of a log file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
