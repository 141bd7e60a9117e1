//! Instances as worker processes on this host: `worker SLOTS ENDPOINT --function F --name
//! inst-<id>-<F> --exit-with-parent [--init-ms N]`. Bounded by `max_instances`; every child
//! is reaped; dropping the provisioner kills what is left, and `--exit-with-parent` makes
//! instances leave by themselves if the dispatcher is killed outright.

use super::{Exited, ProvisionError, Provisioner, Started};
use crate::scaler::InstanceId;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;
use volley_proto::auth::Token;

/// How local instances are started.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The worker binary.
    pub worker_bin: PathBuf,
    /// The dispatcher's worker endpoint.
    pub endpoint: String,
    /// Slots per instance (container concurrency).
    pub slots: u32,
    /// Emulated runtime start-up, ms.
    pub init_ms: u64,
    /// Instances at most.
    pub max_instances: usize,
    /// The shared token instances present (passed in their environment).
    pub token: Option<Token>,
    /// Where instance logs go (`None`: discarded).
    pub log_dir: Option<PathBuf>,
}

#[derive(Debug)]
struct Instance {
    id: InstanceId,
    function: String,
    child: Child,
    retired: bool,
}

/// Worker processes on this host.
#[derive(Debug)]
pub struct LocalProvisioner {
    config: LocalConfig,
    instances: Vec<Instance>,
    next_id: u64,
}

impl LocalProvisioner {
    /// A provisioner with no instance yet.
    pub fn new(config: LocalConfig) -> Self {
        Self {
            config,
            instances: Vec::new(),
            next_id: 0,
        }
    }

    /// Process ids of the instances alive, for tests and telemetry.
    pub fn pids(&self) -> Vec<u32> {
        self.instances.iter().map(|i| i.child.id()).collect()
    }
}

/// A function name as it may appear in a process name and a log file name.
fn slug(function: &str) -> String {
    function
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .take(48)
        .collect()
}

impl Provisioner for LocalProvisioner {
    fn start(&mut self, function: &str, decided_us: u64) -> Result<Started, ProvisionError> {
        if self.instances.len() >= self.config.max_instances {
            return Err(ProvisionError::Full {
                running: self.instances.len(),
            });
        }
        self.next_id += 1;
        let id = InstanceId(self.next_id);
        let name = format!("inst-{}-{}", id.0, slug(function));
        let c = &self.config;
        let mut cmd = Command::new(&c.worker_bin);
        cmd.arg(c.slots.to_string())
            .arg(&c.endpoint)
            .args(["--function", function, "--name", &name, "--exit-with-parent"])
            .args(["--init-ms", &c.init_ms.to_string()])
            .arg(format!(
                "--provisioned={decided_us},{}",
                crate::core::Now::current().unix_us
            ))
            .env_remove("VOLLEY_TOKEN")
            .env_remove("VOLLEY_METRICS")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(token) = &c.token {
            cmd.env("VOLLEY_TOKEN", token.expose());
        }
        let log = c.log_dir.as_ref().and_then(|d| {
            let path = d.join(format!("{name}.log"));
            std::fs::File::create(&path)
                .inspect_err(|e| tracing::warn!(path = %path.display(), "cannot keep an instance's log: {e}"))
                .ok()
        });
        cmd.stderr(log.map_or_else(Stdio::null, Stdio::from));
        let child = cmd.spawn().map_err(|e| ProvisionError::Start {
            function: function.to_owned(),
            why: format!("{}: {e}", c.worker_bin.display()),
        })?;
        let spawned_at = Instant::now();
        self.instances.push(Instance {
            id,
            function: function.to_owned(),
            child,
            retired: false,
        });
        Ok(Started {
            id,
            worker_name: name,
            spawned_at,
        })
    }

    fn retire(&mut self, id: InstanceId) -> Result<(), ProvisionError> {
        let instance = self
            .instances
            .iter_mut()
            .find(|i| i.id == id)
            .ok_or(ProvisionError::Unknown(id))?;
        instance.retired = true;
        // SIGTERM: the worker says goodbye, so anything it holds is requeued at once.
        let pid = Pid::from_raw(instance.child.id() as i32);
        if kill(pid, Signal::SIGTERM).is_err() {
            let _ = instance.child.kill();
        }
        Ok(())
    }

    fn reap(&mut self) -> Vec<Exited> {
        let mut gone = Vec::new();
        self.instances.retain_mut(|i| match i.child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                gone.push(Exited {
                    id: i.id,
                    function: i.function.clone(),
                    retired: i.retired,
                    how: status.to_string(),
                });
                false
            }
            Err(e) => {
                gone.push(Exited {
                    id: i.id,
                    function: i.function.clone(),
                    retired: i.retired,
                    how: format!("cannot be waited for: {e}"),
                });
                false
            }
        });
        gone
    }

    fn running(&self) -> usize {
        self.instances.len()
    }
}

impl Drop for LocalProvisioner {
    /// A stopping dispatcher takes its instances with it.
    fn drop(&mut self) {
        for i in &mut self.instances {
            let _ = i.child.kill();
            let _ = i.child.wait();
        }
    }
}
