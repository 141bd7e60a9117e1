//! What the local provisioner keeps ready ahead of demand: stem cells (worker processes
//! started before their function is known, waiting for an assignment on stdin, with the
//! runtimes of one language up or with none; see `volley_worker::stem_cell`) and the
//! host's Python fork server, from which every instance forks its Python runtimes.

use super::local::LocalConfig;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use volley_proto::function::Language;
use volley_worker::runtime::fork_server::ForkServer;
use volley_worker::runtime::prewarm::PREWARM_MEMORY_MB;
use volley_worker::stem_cell::Assignment;

/// A worker waiting for its function: with its runtimes up for one language, or (`None`)
/// with none, for a function of any language, which then starts its runtime fresh.
#[derive(Debug)]
struct Stem {
    language: Option<Language>,
    child: Child,
    stdin: ChildStdin,
}

/// The stem cells and the fork server.
pub struct Ready {
    wanted: Vec<(Option<Language>, u32)>,
    stems: Vec<Stem>,
    next: u64,
    fork_server: Option<ForkServer>,
    fork_dir: Option<PathBuf>,
    /// What the fork server runs on.
    interpreters: volley_worker::runtime::Interpreters,
    /// Stem cells that died before they were used, or refused their assignment, and
    /// fork servers that died: each a failed start, replaced.
    pub failed_starts: u64,
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready")
            .field("wanted", &self.wanted)
            .field("stems", &self.stems.len())
            .field("fork_server", &self.fork_server.as_ref().map(ForkServer::pid))
            .finish()
    }
}

impl Ready {
    /// Nothing ready yet; the fork server is started here when asked for.
    pub fn new(config: &LocalConfig) -> Self {
        let fork_dir = config
            .fork_server
            .then(|| std::env::temp_dir().join(format!("volley-fork-server-{}", std::process::id())));
        if let Some(dir) = &fork_dir {
            if let Err(e) = super::local::private_dir(dir) {
                tracing::warn!("no fork server: {e}");
            }
        }
        let mut ready = Self {
            wanted: config
                .prewarm
                .iter()
                .map(|(l, n)| (Some(*l), *n))
                .chain([(None, config.ready_workers)])
                .filter(|(_, n)| *n > 0)
                .collect(),
            stems: Vec::new(),
            next: 0,
            fork_server: None,
            fork_dir,
            interpreters: config.interpreters.clone(),
            failed_starts: 0,
        };
        ready.keep_fork_server();
        ready
    }

    /// Where instances fork their Python runtimes from, while the fork server runs.
    pub fn fork_socket(&self) -> Option<&Path> {
        self.fork_server.as_ref().map(ForkServer::socket)
    }

    /// The fork server's process id, while it runs.
    pub fn fork_server_pid(&self) -> Option<u32> {
        self.fork_server.as_ref().map(ForkServer::pid)
    }

    /// Process ids of the stem cells waiting.
    pub fn stem_pids(&self) -> Vec<u32> {
        self.stems.iter().map(|s| s.child.id()).collect()
    }

    /// Starts the fork server if it is wanted and not running.
    fn keep_fork_server(&mut self) {
        let Some(dir) = &self.fork_dir else { return };
        if self.fork_server.as_mut().is_some_and(|s| !s.alive()) {
            self.failed_starts += 1;
            tracing::warn!("the python fork server died; starting another");
            self.fork_server = None;
        }
        if self.fork_server.is_none() {
            let interpreters = &self.interpreters;
            match ForkServer::start_in(interpreters, dir) {
                Ok(s) => {
                    tracing::info!(pid = s.pid(), python = %interpreters.python.display(), "python fork server up");
                    self.fork_server = Some(s);
                }
                Err(e) => {
                    self.failed_starts += 1;
                    tracing::warn!("cannot start the python fork server; instances start fresh interpreters: {e}");
                }
            }
        }
    }

    /// Hands `assignment` to a live stem cell that can run it: one of `language` (Node's
    /// and Java's heap is fixed at start: theirs serve the default memory limit only),
    /// else one with no runtime; the cell's process, now an instance. Dead cells met on
    /// the way are failed starts.
    pub fn assign(&mut self, language: Language, memory_mb: u64, assignment: &Assignment) -> Option<Child> {
        let fits = |s: &Stem| match s.language {
            Some(l) => l == language && (language == Language::Python || memory_mb == PREWARM_MEMORY_MB),
            None => false,
        };
        let at = |stems: &[Stem]| {
            stems
                .iter()
                .position(fits)
                .or_else(|| stems.iter().position(|s| s.language.is_none()))
        };
        while let Some(at) = at(&self.stems) {
            let mut stem = self.stems.swap_remove(at);
            let handed = std::io::Write::write_all(&mut stem.stdin, assignment.to_line().as_bytes());
            match handed {
                Ok(()) => return Some(stem.child),
                Err(e) => {
                    self.failed_starts += 1;
                    tracing::warn!(%language, "a stem cell could not take its assignment ({e}); counted as a failed start and replaced");
                    let _ = stem.child.kill();
                    let _ = stem.child.wait();
                }
            }
        }
        None
    }

    /// Reaps dead stem cells (failed starts), restarts a dead fork server and starts
    /// the stem cells that are missing.
    pub fn refill(&mut self, config: &LocalConfig) {
        self.keep_fork_server();
        self.stems.retain_mut(|s| match s.child.try_wait() {
            Ok(None) => true,
            _ => {
                self.failed_starts += 1;
                tracing::warn!(
                    language = kind(s.language),
                    "a stem cell died while it waited; counted as a failed start and replaced"
                );
                false
            }
        });
        for (language, n) in self.wanted.clone() {
            while self.stems.iter().filter(|s| s.language == language).count() < n as usize {
                match self.spawn(config, language) {
                    Ok(stem) => self.stems.push(stem),
                    Err(e) => {
                        self.failed_starts += 1;
                        tracing::warn!(
                            language = kind(language),
                            "cannot start a stem cell; no longer keeping them: {e}"
                        );
                        self.wanted.retain(|(l, _)| *l != language);
                        break;
                    }
                }
            }
        }
    }

    fn spawn(&mut self, c: &LocalConfig, language: Option<Language>) -> std::io::Result<Stem> {
        self.next += 1;
        let mut cmd = Command::new(&c.worker_bin);
        cmd.arg(c.slots.to_string())
            .arg(&c.endpoint)
            .args(["--stem-cell", "--exit-with-parent"]);
        if let Some(language) = language {
            cmd.arg("--prewarm").arg(format!("{}={}", language.name(), c.slots));
        }
        self.instance_args(&mut cmd, c);
        let log = c
            .log_dir
            .as_ref()
            .and_then(|d| std::fs::File::create(d.join(format!("stem-{}-{}.log", self.next, kind(language)))).ok());
        cmd.stdin(Stdio::piped())
            .stderr(log.map_or_else(Stdio::null, Stdio::from));
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
        Ok(Stem { language, child, stdin })
    }

    /// What every instance's command line and environment share: the token, no
    /// metrics port, the fork server.
    pub fn instance_args(&self, cmd: &mut Command, c: &LocalConfig) {
        instance_env(cmd, c);
        if let Some(socket) = self.fork_socket() {
            cmd.arg("--fork-server-socket").arg(socket);
        }
    }
}

/// What every instance's environment holds: the token, no metrics port, the
/// interpreters.
pub fn instance_env(cmd: &mut Command, c: &LocalConfig) {
    cmd.env_remove("VOLLEY_TOKEN")
        .env_remove("VOLLEY_METRICS")
        .stdout(Stdio::null());
    if let Some(token) = &c.token {
        cmd.env("VOLLEY_TOKEN", token.expose());
    }
    // Set when there is something to say: an empty variable is a missing value to
    // the worker's flags.
    let python = &c.interpreters;
    cmd.env("VOLLEY_PYTHON", &python.python);
    match std::env::join_paths(&python.python_path) {
        Ok(path) if !path.is_empty() => cmd.env("VOLLEY_PYTHON_PATH", path),
        _ => cmd.env_remove("VOLLEY_PYTHON_PATH"),
    };
    match python.python_preload.join(",") {
        modules if !modules.is_empty() => cmd.env("VOLLEY_PYTHON_PRELOAD", modules),
        _ => cmd.env_remove("VOLLEY_PYTHON_PRELOAD"),
    };
}

/// A stem cell's kind, for logs: its language, or `any`.
fn kind(language: Option<Language>) -> &'static str {
    language.map_or("any", Language::name)
}

impl Drop for Ready {
    fn drop(&mut self) {
        for s in &mut self.stems {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
        if let Some(dir) = &self.fork_dir {
            self.fork_server = None;
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
