//! Running users' code: one long-lived runtime process per slot, spoken to over the
//! runtime protocol (`docs/runtime-protocol.md`), every fault of it contained.
//!
//! - [`code_cache`] — code received by digest, checked, kept on disk;
//! - [`instance`] — one runtime process: start, READY, tasks, deadline, memory, death;
//! - [`prewarm`] — runtimes started before their code is known, taken by the first
//!   function of their language;
//! - [`fork_server`] — Python runtimes forked from one warm interpreter;
//! - [`programs`] — where each language's runtime program is on this host;
//! - `python` — how Python runtimes start: launch line, `--python-path`, preloads;
//! - `failures` — how a runtime's failures read in a task's error;
//! - `isolation` — what user code gets of the worker (environment, descriptors, rlimits);
//! - `log` — a task's bounded stdout/stderr.
//!
//! The runtime programs themselves live in `runtimes/` at the repository's root and are
//! built into the worker, so a worker binary carries everything but the interpreters.

pub mod code_cache;
mod failures;
pub mod fork_server;
pub mod instance;
mod isolation;
mod java;
mod log;
pub mod prewarm;
pub mod programs;
mod python;
mod spawn;
mod user_cache;

use code_cache::CodeCache;
use fork_server::ForkServer;
use instance::{Instance, Origin, Pipes};
use parking_lot::Mutex;
use prewarm::{Shelf, StartCounts};
pub use python::preload_list;
use python::{python_program_dir, PYTHON_LAUNCH};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use volley_proto::function::{Language, UserCode};

pub(crate) const PYTHON_RUNTIME: &str = include_str!("../../../runtimes/python/volley_runtime.py");
const NODE_RUNTIME: &str = include_str!("../../../runtimes/node/volley_runtime.js");

/// Which interpreters run which language (`worker --python/--node/--java`).
#[derive(Debug, Clone)]
pub struct Interpreters {
    /// CPython 3.
    pub python: PathBuf,
    /// Directories put first on Python runtimes' `sys.path` (`--python-path`): where
    /// functions pickled by reference are imported from (a client's checkout root).
    pub python_path: Vec<PathBuf>,
    /// Modules Python runtimes started ahead of their code (prewarmed ones, the fork
    /// server) import while they wait (`--python-preload dill,requests`).
    pub python_preload: Vec<String>,
    /// Node.js.
    pub node: PathBuf,
    /// A JDK's `java`; its `javac` is looked for beside it, then on `PATH`.
    pub java: PathBuf,
}

impl Default for Interpreters {
    /// `VOLLEY_PYTHON`, `VOLLEY_PYTHON_PATH` (directories joined by `:`), `VOLLEY_NODE`
    /// and `VOLLEY_JAVA` when set (what `worker --python` and the others read), else
    /// `python3`, `node` and `java` on `PATH`.
    fn default() -> Self {
        let var = |name: &str, default: &str| std::env::var_os(name).map_or_else(|| default.into(), PathBuf::from);
        Self {
            python: var("VOLLEY_PYTHON", "python3"),
            python_path: std::env::var_os("VOLLEY_PYTHON_PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .filter(|d| !d.as_os_str().is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            python_preload: std::env::var("VOLLEY_PYTHON_PRELOAD")
                .map(|m| preload_list(&m))
                .unwrap_or_default(),
            node: var("VOLLEY_NODE", "node"),
            java: var("VOLLEY_JAVA", "java"),
        }
    }
}

/// Why a runtime could not start or load its code.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The process could not start (interpreter missing, no pipes).
    #[error("{0}")]
    Start(String),
    /// It started but did not become ready: the user's code failed to load, or the
    /// runtime died, timed out or spoke garbage while loading it.
    #[error("{0}")]
    Init(String),
}

impl RuntimeError {
    fn io(what: &'static str) -> impl Fn(std::io::Error) -> RuntimeError {
        move |e| RuntimeError::Start(format!("cannot create {what}: {e}"))
    }
}

/// Everything a worker (or the dispatcher's local pool) needs to run user code: the
/// interpreters, the runtime programs, the code cache and a directory for instances.
pub struct Runtimes {
    interpreters: Interpreters,
    root: PathBuf,
    /// Code by digest.
    pub cache: CodeCache,
    java_classes: tokio::sync::OnceCell<Result<PathBuf, String>>,
    instances: AtomicU64,
    /// Process ids of the runtimes alive (each leads its own group).
    live: Arc<Mutex<HashSet<u32>>>,
    /// Runtimes started ahead of their code.
    shelf: Shelf,
    /// Where the Python runtime's module is, and the Node runtime's program: written
    /// when a runtime of that language first starts, not at every worker's start (a
    /// worker serving native code never needs them).
    python_dir: tokio::sync::OnceCell<PathBuf>,
    node_program: tokio::sync::OnceCell<PathBuf>,
    /// Where Python runtimes are forked from, when they are.
    forks: Option<Forks>,
    /// Starts by how they went.
    pub counts: StartCounts,
}

/// How runtimes are started, beyond the interpreters.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Runtimes to keep started ahead of their code, per language (`--prewarm`).
    pub prewarm: Vec<(Language, u32)>,
    /// Fork Python runtimes from one warm interpreter (`--fork-server`).
    pub fork_server: bool,
    /// Fork them from the fork server listening here, which another process runs (the
    /// dispatcher, for all instances on its host), instead of one of this worker's own.
    pub fork_server_socket: Option<PathBuf>,
    /// Where starts are counted.
    pub counts: StartCounts,
}

/// Where Python runtimes are forked from.
enum Forks {
    /// A fork server of this worker's own, started on first use (again after it died).
    Own(tokio::sync::Mutex<Option<ForkServer>>),
    /// One another process runs.
    Shared(PathBuf),
}

static ROOTS: AtomicU64 = AtomicU64::new(0);

impl Runtimes {
    /// Runtimes under a fresh directory in the system's temporary directory, removed when
    /// this is dropped.
    pub fn new(interpreters: Interpreters) -> std::io::Result<Self> {
        Self::with_options(interpreters, StartOptions::default())
    }

    /// Runtimes started as `options` say; see [`Runtimes::new`].
    pub fn with_options(interpreters: Interpreters, options: StartOptions) -> std::io::Result<Self> {
        // Descriptors this process inherited without close-on-exec (a parent's pipes, a
        // build tool's jobserver) would otherwise pass on to every runtime.
        close_fds::set_fds_cloexec_threadsafe(3, &[]);
        let root = std::env::temp_dir().join(format!(
            "volley-runtimes-{}-{}",
            std::process::id(),
            ROOTS.fetch_add(1, Ordering::Relaxed)
        ));
        // The fork server's socket is in here: nobody else may connect to it.
        code_cache::private_dir(&root)?;
        for sub in ["programs", "instances"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        Ok(Self {
            interpreters,
            cache: CodeCache::new(root.join("code"))?,
            root,
            java_classes: tokio::sync::OnceCell::new(),
            instances: AtomicU64::new(0),
            live: Arc::new(Mutex::new(HashSet::new())),
            shelf: Shelf::new(&options.prewarm),
            python_dir: tokio::sync::OnceCell::new(),
            node_program: tokio::sync::OnceCell::new(),
            forks: match (options.fork_server_socket, options.fork_server) {
                (Some(socket), _) => Some(Forks::Shared(socket)),
                (None, true) => Some(Forks::Own(tokio::sync::Mutex::new(None))),
                (None, false) => None,
            },
            counts: options.counts,
        })
    }

    /// Starts a runtime for `code`, which must be in the cache, and waits for its READY:
    /// a prewarmed one if the shelf has one for it, else one forked from the fork server
    /// (Python, with `--fork-server`), else a fresh process.
    pub async fn start(&self, code: &UserCode) -> Result<Instance, RuntimeError> {
        let path = self.cache.path(code).ok_or_else(|| {
            RuntimeError::Start(format!(
                "the code {} never reached this worker whole (its pieces were dropped: the worker's send queue at the dispatcher was full, or a piece failed its digest); redeploy, or restart the worker to be sent it again",
                code.digest
            ))
        })?;
        let mut instance = match self.shelf.take(code.language, code.memory_mb, &self.counts) {
            Some(i) => i,
            None => self.fresh(code, &path).await?,
        };
        instance.load(code, &path).await?;
        self.counts.started(instance.started.origin);
        Ok(instance)
    }

    /// A process for `code`, INIT in its pipe: forked, or spawned.
    async fn fresh(&self, code: &UserCode, path: &Path) -> Result<Instance, RuntimeError> {
        let workdir = self.workdir()?;
        let mut pipes = Pipes::new()?;
        pipes.prewrite_init(code, path)?;
        if let (Language::Python, Some(forks)) = (code.language, &self.forks) {
            match self.forked(forks, pipes, &workdir, &code.function).await {
                Ok(i) => return Ok(i),
                Err((why, returned)) => {
                    self.counts.failed();
                    tracing::warn!(function = %code.function, "a fork failed, counted as a failed start; starting a fresh interpreter: {why}");
                    pipes = match returned {
                        Some(p) => p,
                        None => {
                            let mut p = Pipes::new()?;
                            p.prewrite_init(code, path)?;
                            p
                        }
                    };
                }
            }
        }
        let mut command = self.command(code.language, code.memory_mb, Some(path)).await?;
        isolation::confine(&mut command, &workdir, &code.function);
        Instance::spawn(self, code.language, command, pipes, Origin::Spawned, workdir)
    }

    /// Forks a runtime from the fork server, starting this worker's own if it is not
    /// running; on failure, the pipes back when they were not used.
    async fn forked(
        &self,
        forks: &Forks,
        pipes: Pipes,
        workdir: &Path,
        function: &str,
    ) -> Result<Instance, (String, Option<Pipes>)> {
        let socket = match forks {
            Forks::Shared(socket) => socket.clone(),
            Forks::Own(server) => match self.own_fork_server(server).await {
                Ok(socket) => socket,
                Err(e) => return Err((e, Some(pipes))),
            },
        };
        Instance::forked(self, &socket, pipes, workdir.to_path_buf(), function)
            .await
            .map_err(|e| (e, None))
    }

    /// The socket of this worker's own fork server, started if it is not running (again
    /// if it died).
    async fn own_fork_server(&self, server: &tokio::sync::Mutex<Option<ForkServer>>) -> Result<PathBuf, String> {
        let mut server = server.lock().await;
        if server.as_mut().is_some_and(|s| !s.alive()) {
            *server = None;
            tracing::warn!("the python fork server died; starting another");
        }
        if server.is_none() {
            let (interpreters, dir) = (self.interpreters.clone(), self.root.join("fork-server"));
            let started = tokio::task::spawn_blocking(move || ForkServer::start_in(&interpreters, &dir))
                .await
                .unwrap_or_else(|e| Err(RuntimeError::Start(format!("starting the fork server stopped: {e}"))));
            *server = Some(started.map_err(|e| e.to_string())?);
        }
        server
            .as_ref()
            .map(|s| s.socket().to_path_buf())
            .ok_or_else(|| "no fork server".to_owned())
    }

    /// Starts this worker's own fork server now (`--fork-server`), so the first cold
    /// start does not pay for it (nor for its `--python-preload`).
    pub async fn start_fork_server(&self) {
        if let Some(Forks::Own(server)) = &self.forks {
            match self.own_fork_server(server).await {
                Ok(socket) => tracing::info!(socket = %socket.display(), "python fork server up"),
                Err(e) => {
                    self.counts.failed();
                    tracing::warn!(
                        "cannot start the python fork server; it is tried again at the first python start: {e}"
                    );
                }
            }
        }
    }

    /// A fresh working directory for one runtime.
    fn workdir(&self) -> Result<PathBuf, RuntimeError> {
        let n = self.instances.fetch_add(1, Ordering::Relaxed);
        let workdir = self.root.join("instances").join(n.to_string());
        std::fs::create_dir_all(&workdir).map_err(RuntimeError::io("the instance's directory"))?;
        Ok(workdir)
    }

    /// Fills the shelf up to what `--prewarm` asks, one process per missing runtime.
    pub async fn refill(&self) {
        while let Some((language, memory_mb)) = self.shelf.missing() {
            match self.prewarmed(language, memory_mb).await {
                Ok(i) => self.shelf.put(language, memory_mb, i),
                Err(e) => {
                    self.counts.failed();
                    self.shelf.gave_up(language);
                    tracing::warn!(%language, "cannot prewarm a runtime: {e}");
                    return;
                }
            }
        }
    }

    /// A runtime process for `language`, started without code.
    async fn prewarmed(&self, language: Language, memory_mb: u64) -> Result<Instance, RuntimeError> {
        let workdir = self.workdir()?;
        let mut command = self.command(language, memory_mb, None).await?;
        isolation::confine(&mut command, &workdir, "");
        self.interpreters.preloading(language, &mut command);
        Instance::spawn(self, language, command, Pipes::new()?, Origin::Prewarmed, workdir)
    }

    /// The process ids of the runtimes alive (prewarmed ones included).
    pub fn pids(&self) -> Vec<u32> {
        self.live.lock().iter().copied().collect()
    }

    /// The fork server's process id, while one runs.
    pub async fn fork_server_pid(&self) -> Option<u32> {
        match self.forks.as_ref()? {
            Forks::Own(server) => server.lock().await.as_ref().map(ForkServer::pid),
            Forks::Shared(_) => None,
        }
    }

    /// Stops prewarming and kills what is on the shelf: a worker that became the instance
    /// of one function keeps only the runtimes it uses.
    pub fn stop_prewarming(&self) {
        self.shelf.clear();
    }

    /// Kills every runtime alive and its process group: a worker that stops leaves no
    /// runtime behind, even one busy in a task that would never end.
    pub fn kill_all(&self) {
        for pid in self.live.lock().iter() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// The command line that starts a runtime of `language` with `memory_mb`; for a
    /// native function, its executable `path` (which a prewarmed runtime cannot have).
    async fn command(&self, language: Language, memory_mb: u64, path: Option<&Path>) -> Result<Command, RuntimeError> {
        let programs = self.root.join("programs");
        let cannot =
            |e: std::io::Error| RuntimeError::Start(format!("cannot write the {language} runtime's program: {e}"));
        Ok(match language {
            Language::Python => {
                let dir = self
                    .python_dir
                    .get_or_try_init(|| async {
                        programs::python_dir().map_or_else(|| python_program_dir(&programs), Ok)
                    })
                    .await
                    .map_err(cannot)?;
                let mut c = Command::new(&self.interpreters.python);
                c.args(["-I", "-c", PYTHON_LAUNCH])
                    .arg(dir)
                    .args(&self.interpreters.python_path);
                c
            }
            Language::Node => {
                let program = self
                    .node_program
                    .get_or_try_init(|| async {
                        let path = programs.join("volley_runtime.js");
                        programs::node_program().map_or_else(|| std::fs::write(&path, NODE_RUNTIME).map(|()| path), Ok)
                    })
                    .await
                    .map_err(cannot)?;
                let mut c = Command::new(&self.interpreters.node);
                c.arg(format!("--max-old-space-size={memory_mb}")).arg(program);
                c
            }
            Language::Java => {
                let classes = self.java_runtime().await?;
                let mut c = Command::new(&self.interpreters.java);
                c.arg(format!("-Xmx{}m", (memory_mb * 3 / 4).max(16)))
                    .args(["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto", "-cp"])
                    .arg(classes)
                    .arg("VolleyRuntime");
                c
            }
            Language::Native => Command::new(path.ok_or_else(|| {
                RuntimeError::Start(
                    "a native function's runtime is its own executable: it cannot start before its code".into(),
                )
            })?),
        })
    }

    /// The Java runtime's classes ([`java`]), found or compiled once per worker, off
    /// the async threads (`javac` takes most of a second).
    async fn java_runtime(&self) -> Result<PathBuf, RuntimeError> {
        let dir = self.root.join("programs/java");
        let javac = java::javac_beside(&self.interpreters.java);
        let hint = self.hint(Language::Java);
        let java = &self.interpreters.java;
        self.java_classes
            .get_or_init(|| async move {
                if let Some(found) = programs::java_classes(java).or_else(|| java::cached(&javac)) {
                    return Ok(found);
                }
                tokio::task::spawn_blocking(move || java::classes(dir, javac, hint))
                    .await
                    .unwrap_or_else(|e| Err(format!("compiling the java runtime stopped: {e}")))
            })
            .await
            .clone()
            .map_err(RuntimeError::Start)
    }

    /// What to do when a language's interpreter is missing.
    pub fn hint(&self, language: Language) -> String {
        let (flag, package) = match language {
            Language::Python => ("--python", "python3"),
            Language::Node => ("--node", "nodejs"),
            Language::Java => ("--java", "default-jdk-headless"),
            Language::Native => return String::new(),
        };
        format!("; install it (Debian: {package}) or give the worker {flag} PATH")
    }
}

impl Drop for Runtimes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
