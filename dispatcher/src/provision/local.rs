//! Instances as worker processes on this host: `worker SLOTS ENDPOINT --function F --name
//! inst-<id>-<F> --exit-with-parent [--init-ms N]`. Bounded by `max_instances`; every child
//! is reaped; dropping the provisioner kills what is left, and `--exit-with-parent` makes
//! instances leave by themselves if the dispatcher is killed outright.

use super::template::{Forked, InstanceProcess, Template};
use super::{Exited, ProvisionError, Provisioner, Started};
use crate::scaler::InstanceId;
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
    /// Fork instances' workers from a worker template (see `template`) instead of
    /// spawning the binary for each.
    pub fork_workers: bool,
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
    child: InstanceProcess,
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
    /// The worker template, while it runs (with `fork_workers`).
    template: Option<Template>,
    /// When a template last failed to start or died: the next try waits `TEMPLATE_RETRY`.
    template_failed_at: Option<Instant>,
}

/// How long after a template failed another is tried (instances are spawned meanwhile).
const TEMPLATE_RETRY: Duration = Duration::from_secs(5);

impl LocalProvisioner {
    /// A provisioner with no instance yet.
    pub fn new(config: LocalConfig) -> Self {
        let mut ready = super::stems::Ready::new(&config);
        ready.refill(&config);
        let mut me = Self {
            config,
            instances: Vec::new(),
            next_id: 0,
            ready,
            template: None,
            template_failed_at: None,
        };
        me.keep_template();
        me
    }

    /// Starts the worker template if it is wanted and not running.
    fn keep_template(&mut self) {
        if !self.config.fork_workers {
            return;
        }
        if self.template.as_mut().is_some_and(|t| !t.alive()) {
            tracing::warn!("the worker template died; starting another");
            self.template = None;
        }
        let waiting = self.template_failed_at.is_some_and(|at| at.elapsed() < TEMPLATE_RETRY);
        if self.template.is_none() && !waiting {
            let c = &self.config;
            let mut cmd = Command::new(&c.worker_bin);
            super::stems::instance_env(&mut cmd, c);
            let log = c
                .log_dir
                .as_ref()
                .and_then(|d| std::fs::File::create(d.join("template.log")).ok());
            cmd.stderr(log.map_or_else(Stdio::null, Stdio::from));
            match Template::start(cmd) {
                Ok(t) => {
                    tracing::info!(pid = t.pid(), "worker template up: instances are forked from it");
                    self.template = Some(t);
                }
                Err(e) => {
                    tracing::warn!(worker_bin = %c.worker_bin.display(), "cannot start the worker template; instances are spawned: {e}");
                    self.template_failed_at = Some(Instant::now());
                }
            }
        }
    }

    /// The worker template's process id, while it runs.
    pub fn template_pid(&self) -> Option<u32> {
        self.template.as_ref().map(Template::pid)
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

    /// An instance forked from the template with `args`; `None` when there is no
    /// template or it cannot serve (it is then replaced at the next reap).
    fn fork(&mut self, args: &[String], log: Option<&std::path::Path>) -> Option<Forked> {
        let template = self.template.as_mut()?;
        match template.fork(args.to_vec(), log) {
            Ok(forked) => Some(forked),
            Err(e) => {
                tracing::warn!("the worker template could not fork an instance; spawning it: {e}");
                if e.kind() != std::io::ErrorKind::Other {
                    self.template = None;
                }
                None
            }
        }
    }

    /// An instance spawned from the worker binary with `args`.
    fn spawn(&self, function: &str, args: &[String], log: Option<&std::path::Path>) -> Result<Child, ProvisionError> {
        let c = &self.config;
        let mut cmd = Command::new(&c.worker_bin);
        cmd.args(args).stdin(Stdio::null());
        super::stems::instance_env(&mut cmd, c);
        let log = log.and_then(|path| {
            std::fs::File::create(path)
                .inspect_err(|e| tracing::warn!(path = %path.display(), "cannot keep an instance's log: {e}"))
                .ok()
        });
        cmd.stderr(log.map_or_else(Stdio::null, Stdio::from));
        cmd.spawn().map_err(|e| ProvisionError::Start {
            function: function.to_owned(),
            why: format!("{}: {e}", c.worker_bin.display()),
        })
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
                    child: InstanceProcess::Spawned(child),
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
        let mut args: Vec<String> = vec![c.slots.to_string(), c.endpoint.clone()];
        args.extend(["--function", function, "--name", &name, "--exit-with-parent"].map(str::to_owned));
        args.extend(["--init-ms".to_owned(), c.init_ms.to_string()]);
        args.push(format!(
            "--provisioned={decided_us},{}",
            crate::core::Now::current().unix_us
        ));
        if let Some(socket) = self.ready.fork_socket() {
            args.extend(["--fork-server-socket".to_owned(), socket.to_string_lossy().into_owned()]);
        }
        if let Some((path, user)) = code {
            let spec = serde_json::to_string(&user).map_err(|e| ProvisionError::Start {
                function: function.to_owned(),
                why: format!("cannot describe its code: {e}"),
            })?;
            args.extend([
                "--code".to_owned(),
                path.to_string_lossy().into_owned(),
                "--code-spec".to_owned(),
                spec,
            ]);
        }
        let log = c.log_dir.as_ref().map(|d| d.join(format!("{name}.log")));
        let child = match self.fork(&args, log.as_deref()) {
            Some(forked) => InstanceProcess::Forked(forked),
            None => InstanceProcess::Spawned(self.spawn(function, &args, log.as_deref())?),
        };
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
        instance.child.terminate();
        Ok(())
    }

    fn reap(&mut self) -> Vec<Exited> {
        self.ready.refill(&self.config);
        self.keep_template();
        let mut gone = Vec::new();
        self.instances.retain_mut(|i| match i.child.try_wait() {
            Ok(None) => {
                if i.retired_at.is_some_and(|at| at.elapsed() > RETIRE_GRACE) {
                    i.child.kill();
                }
                true
            }
            Ok(Some(status)) => {
                gone.push(Exited {
                    id: i.id,
                    function: i.function.clone(),
                    retired: i.retired_at.is_some(),
                    how: status,
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
            i.child.kill_and_wait();
        }
    }
}
