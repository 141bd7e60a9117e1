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
use std::time::{Duration, Instant};
use volley_proto::auth::Token;
use volley_worker::stem_cell::Assignment;

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
    /// Where user functions' code is found, so an instance of one loads it before it
    /// registers (`None`: instances start empty and load code with their first task).
    pub code: Option<CodeSource>,
    /// Stem cells to keep per language.
    pub prewarm: Vec<(volley_proto::function::Language, u32)>,
    /// Run a Python fork server for every instance.
    pub fork_server: bool,
    /// Stem cells to keep with no runtime, for a user function of any language.
    pub ready_workers: u32,
    /// The interpreters instances and the fork server run user code with.
    pub interpreters: volley_worker::runtime::Interpreters,
}

/// The dispatcher's shared state, as the source of user functions' code.
#[derive(Clone)]
pub struct CodeSource(pub std::sync::Arc<crate::shared::Shared>);

impl std::fmt::Debug for CodeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeSource")
    }
}

#[derive(Debug)]
struct Instance {
    id: InstanceId,
    function: String,
    child: Child,
    /// When it was told to go.
    retired_at: Option<Instant>,
}

/// How long a retired instance gets to exit before it is killed.
const RETIRE_GRACE: Duration = Duration::from_secs(5);

/// Worker processes on this host.
#[derive(Debug)]
pub struct LocalProvisioner {
    config: LocalConfig,
    instances: Vec<Instance>,
    next_id: u64,
    /// Stem cells and the fork server.
    ready: super::stems::Ready,
}

impl LocalProvisioner {
    /// A provisioner with no instance yet.
    pub fn new(config: LocalConfig) -> Self {
        let mut ready = super::stems::Ready::new(&config);
        ready.refill(&config);
        Self {
            config,
            instances: Vec::new(),
            next_id: 0,
            ready,
        }
    }

    /// What it keeps ready: stem cells and the fork server.
    pub fn ready(&self) -> &super::stems::Ready {
        &self.ready
    }

    /// The latest code of user function `function` as a file instances can read (written
    /// once per digest) and the function as JSON; `None` for built-ins.
    fn code_for(&self, function: &str) -> Option<(PathBuf, volley_proto::function::UserCode)> {
        let (code, bytes) = self.config.code.as_ref()?.0.latest_user_code(function)?;
        let dir = std::env::temp_dir().join(format!("volley-instance-code-{}", std::process::id()));
        let path = dir.join(code.digest.to_string());
        if !path.exists() {
            // Instances adopt this file as it is (a hard link, not re-hashed): only this
            // user may write here, and the file is read-only and executable (native).
            let written = private_dir(&dir).and_then(|()| {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let partial = path.with_extension("partial");
                let _ = std::fs::remove_file(&partial);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o500)
                    .open(&partial)?;
                f.write_all(&bytes)?;
                drop(f);
                std::fs::rename(&partial, &path)
            });
            if let Err(e) = written {
                tracing::warn!(%function, "cannot give instances the code; they load it with their first task: {e}");
                return None;
            }
        }
        Some((path, (*code).clone()))
    }

    /// Process ids of the instances alive, for tests and telemetry.
    pub fn pids(&self) -> Vec<u32> {
        self.instances.iter().map(|i| i.child.id()).collect()
    }
}

/// Makes `dir` a directory only this user may enter, or checks that it is one: a
/// directory of that name someone else made, or others may write to, is refused.
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        Err(_) => {}
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o022 != 0 {
        return Err(std::io::Error::other(format!(
            "{} exists and is not a private directory of this user",
            dir.display()
        )));
    }
    Ok(())
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
        // A retired instance has said goodbye and is exiting: it no longer counts, or a
        // task arriving in that moment would wait for the next tick to get its start.
        // One that does not exit within RETIRE_GRACE is killed when reaped.
        let serving = self.instances.iter().filter(|i| i.retired_at.is_none()).count();
        if serving >= self.config.max_instances {
            return Err(ProvisionError::Full { running: serving });
        }
        self.next_id += 1;
        let id = InstanceId(self.next_id);
        let name = format!("inst-{}-{}", id.0, slug(function));
        let code = self.code_for(function);
        if let Some((path, user)) = &code {
            let assignment = Assignment {
                function: function.to_owned(),
                name: name.clone(),
                decided_us,
                spawned_us: crate::core::Now::current().unix_us,
                code: Some((path.clone(), user.clone())),
            };
            if let Some(child) = self.ready.assign(user.language, user.memory_mb, &assignment) {
                self.instances.push(Instance {
                    id,
                    function: function.to_owned(),
                    child,
                    retired_at: None,
                });
                return Ok(Started {
                    id,
                    worker_name: name,
                    spawned_at: Instant::now(),
                });
            }
        }
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
            .stdin(Stdio::null());
        self.ready.instance_args(&mut cmd, c);
        if let Some((path, user)) = code {
            let spec = serde_json::to_string(&user).map_err(|e| ProvisionError::Start {
                function: function.to_owned(),
                why: format!("cannot describe its code: {e}"),
            })?;
            cmd.arg("--code").arg(path).arg("--code-spec").arg(spec);
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
            retired_at: None,
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
        instance.retired_at = Some(Instant::now());
        // SIGTERM: the worker says goodbye, so anything it holds is requeued at once.
        let pid = Pid::from_raw(instance.child.id() as i32);
        if kill(pid, Signal::SIGTERM).is_err() {
            let _ = instance.child.kill();
        }
        Ok(())
    }

    fn reap(&mut self) -> Vec<Exited> {
        self.ready.refill(&self.config);
        let mut gone = Vec::new();
        self.instances.retain_mut(|i| match i.child.try_wait() {
            Ok(None) => {
                if i.retired_at.is_some_and(|at| at.elapsed() > RETIRE_GRACE) {
                    let _ = i.child.kill();
                }
                true
            }
            Ok(Some(status)) => {
                gone.push(Exited {
                    id: i.id,
                    function: i.function.clone(),
                    retired: i.retired_at.is_some(),
                    how: status.to_string(),
                });
                false
            }
            Err(e) => {
                gone.push(Exited {
                    id: i.id,
                    function: i.function.clone(),
                    retired: i.retired_at.is_some(),
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
