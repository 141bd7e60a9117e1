//! How an instance comes to be: spawned with its INIT already in the pipe, forked from
//! the fork server, or prewarmed and given its code later; and its wait for READY.

use super::super::failures::{failure_text, kind_of, tail};
use super::super::log::Log;
use super::super::{RuntimeError, Runtimes};
use super::{Event, Instance, Process, MIN_INIT, PIPE_BUF};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use tokio::net::unix::pipe;
use tokio::time::Instant;
use volley_proto::function::{CodeDigest, UserCode};
use volley_runtime::frame::{Decoder, Frame, FROM_RUNTIME_FD, PROTOCOL_VERSION, TO_RUNTIME_FD};

/// How a runtime process came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Spawned for this code (`posix_spawn` of the interpreter, or of a native function).
    Spawned,
    /// Forked from the Python fork server.
    Forked,
    /// Started before its code was known, and given it now.
    Prewarmed,
}

impl Origin {
    /// The lower-case name, for logs and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Spawned => "spawned",
            Origin::Forked => "forked",
            Origin::Prewarmed => "prewarmed",
        }
    }
}

/// What the runtime said when it became ready, and how long each part of its start took.
#[derive(Debug, Clone)]
pub struct Started {
    /// The language, as the runtime names it.
    pub runtime: String,
    /// The interpreter's or SDK's version.
    pub version: String,
    /// The user's code loading, as the runtime measured it.
    pub init_us: u64,
    /// When this start began: the spawn or fork, or for a prewarmed runtime the moment
    /// it was given its code.
    pub began: std::time::Instant,
    /// From `began` to READY, as the worker measured it.
    pub ready_after: Duration,
    /// How the process came to be.
    pub origin: Origin,
}

impl Started {
    /// From `began` until the runtime could take code: the interpreter's own start (and
    /// the runtime program's), READY's time less the code's loading.
    pub fn up_after(&self) -> Duration {
        self.ready_after.saturating_sub(Duration::from_micros(self.init_us))
    }
}

/// A runtime's three pipes: the worker's ends and the runtime's.
pub(in crate::runtime) struct Pipes {
    ours: OurEnds,
    /// The runtime's ends: frames in (fd 3), frames out (fd 4), the log (fds 1 and 2).
    pub child: [OwnedFd; 3],
}

/// The worker's ends, and whether INIT is already in the pipe.
struct OurEnds {
    to_rt: std::io::PipeWriter,
    from_rt: std::io::PipeReader,
    log: std::io::PipeReader,
    init_written: bool,
}

impl Pipes {
    /// Writes INIT for `code` into the runtime's pipe before it starts, so it reads it
    /// as it starts instead of waiting for it: any pipe holds PIPE_BUF (4 KiB) however
    /// short of buffers the system is. False when INIT is longer (a very long path): it
    /// is then written once the runtime runs.
    pub(in crate::runtime) fn prewrite_init(
        &mut self,
        code: &UserCode,
        code_path: &std::path::Path,
    ) -> Result<(), RuntimeError> {
        let init = init_frame(code, code_path);
        if init.len() > PIPE_BUF {
            return Ok(());
        }
        self.ours
            .to_rt
            .write_all(&init)
            .map_err(|e| RuntimeError::Start(format!("cannot write INIT to the runtime's pipe: {e}")))?;
        self.ours.init_written = true;
        Ok(())
    }

    pub(in crate::runtime) fn new() -> Result<Self, RuntimeError> {
        let (child_in, to_rt) = std::io::pipe().map_err(RuntimeError::io("a pipe"))?;
        let (from_rt, child_out) = std::io::pipe().map_err(RuntimeError::io("a pipe"))?;
        let (log, child_log) = std::io::pipe().map_err(RuntimeError::io("a pipe"))?;
        Ok(Self {
            ours: OurEnds {
                to_rt,
                from_rt,
                log,
                init_written: false,
            },
            child: [child_in.into(), child_out.into(), child_log.into()],
        })
    }
}

/// INIT for `code` at `code_path`.
fn init_frame(code: &UserCode, code_path: &std::path::Path) -> Vec<u8> {
    Frame::Init {
        protocol: PROTOCOL_VERSION,
        function: code.function.to_string(),
        handler: code.handler.clone(),
        code: code_path.to_string_lossy().into_owned(),
    }
    .encode()
}

impl Instance {
    /// Spawns `command`, set up by `isolation::confine` (its environment is exactly the
    /// variables set on it), as a runtime on `pipes` (`origin`: spawned for its code, or
    /// prewarmed).
    pub(in crate::runtime) fn spawn(
        runtimes: &Runtimes,
        language: volley_proto::function::Language,
        command: Command,
        pipes: Pipes,
        origin: Origin,
        workdir: PathBuf,
    ) -> Result<Self, RuntimeError> {
        let began = std::time::Instant::now();
        let [child_in, child_out, child_log] = &pipes.child;
        let spec = super::super::spawn::Spec {
            program: std::path::Path::new(command.get_program()),
            args: command.get_args().collect(),
            env: command.get_envs().filter_map(|(k, v)| Some((k, v?))).collect(),
            dir: command.get_current_dir().unwrap_or(&workdir),
            fds: vec![
                (child_in, TO_RUNTIME_FD),
                (child_out, FROM_RUNTIME_FD),
                (child_log, 1),
                (child_log, 2),
            ],
        };
        let child = super::super::spawn::Spawned::start(&spec).map_err(|e| {
            RuntimeError::Start(format!(
                "cannot start the {language} runtime ({}): {e}{}",
                command.get_program().to_string_lossy(),
                runtimes.hint(language)
            ))
        })?;
        // The child holds its ends now; ours of its ends must close, or EOF never comes.
        drop(pipes.child);
        let pid = child.id();
        Self::adopt(
            runtimes,
            Process::Child(child),
            pid,
            pipes.ours,
            workdir,
            (began, origin),
        )
    }

    /// An instance for a runtime the fork server forked on `pipes`' child ends.
    pub(in crate::runtime) async fn forked(
        runtimes: &Runtimes,
        socket: &std::path::Path,
        pipes: Pipes,
        workdir: PathBuf,
        function: &str,
    ) -> Result<Self, String> {
        let began = std::time::Instant::now();
        let forked = super::super::fork_server::fork(socket, pipes.child, &workdir, function).await?;
        let pid = forked.pid;
        Self::adopt(
            runtimes,
            Process::Forked(forked),
            pid,
            pipes.ours,
            workdir,
            (began, Origin::Forked),
        )
        .map_err(|e| e.to_string())
    }

    fn adopt(
        runtimes: &Runtimes,
        process: Process,
        pid: u32,
        ours: OurEnds,
        workdir: PathBuf,
        (began, origin): (std::time::Instant, Origin),
    ) -> Result<Self, RuntimeError> {
        super::super::isolation::limit(pid);
        runtimes.live.lock().insert(pid);
        let pipe_error = |e: std::io::Error| RuntimeError::Start(format!("cannot watch the runtime's pipes: {e}"));
        Ok(Instance {
            process,
            pid,
            live: runtimes.live.clone(),
            digest: CodeDigest([0; 32]),
            loaded: (String::new(), 0),
            to_rt: pipe::Sender::from_owned_fd(OwnedFd::from(ours.to_rt)).map_err(pipe_error)?,
            from_rt: pipe::Receiver::from_owned_fd(OwnedFd::from(ours.from_rt)).map_err(pipe_error)?,
            log_pipe: Some(pipe::Receiver::from_owned_fd(OwnedFd::from(ours.log)).map_err(pipe_error)?),
            decoder: Decoder::default(),
            workdir,
            started: Started {
                runtime: String::new(),
                version: String::new(),
                init_us: 0,
                began,
                ready_after: Duration::ZERO,
                origin,
            },
            log: Log::default(),
            buf: vec![0; 64 * 1024],
            // A process just spawned holds nothing yet: its first check is one period on.
            next_memory_check: Instant::now() + super::MEMORY_CHECK,
            init_written: ours.init_written,
        })
    }

    /// Whether the process is still there (a prewarmed runtime may have died waiting).
    pub fn alive(&mut self) -> bool {
        match &mut self.process {
            Process::Child(c) => matches!(c.try_wait(), Ok(None)),
            Process::Forked(_) => nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), None).is_ok(),
        }
    }

    /// Gives the runtime its code (INIT, unless written before the spawn) and waits for
    /// READY. A prewarmed runtime's start is counted from here.
    pub(in crate::runtime) async fn load(
        &mut self,
        code: &UserCode,
        code_path: &std::path::Path,
    ) -> Result<(), RuntimeError> {
        if self.started.origin == Origin::Prewarmed {
            self.started.began = std::time::Instant::now();
        }
        let pending = if self.init_written {
            Vec::new()
        } else {
            init_frame(code, code_path)
        };
        self.digest = code.digest;
        self.loaded = (code.handler.clone(), code.memory_mb);
        let deadline = Instant::now() + Duration::from_millis(code.timeout_ms).max(MIN_INIT);
        let mut log = Log::default();
        let event = self.wait(pending, deadline, code.memory_mb, &mut log).await;
        self.log = log;
        match event {
            Event::Frame(Frame::Ready {
                runtime,
                version,
                init_us,
            }) => {
                self.started.runtime = runtime;
                self.started.version = version;
                self.started.init_us = init_us;
                self.started.ready_after = self.started.began.elapsed();
                Ok(())
            }
            Event::Frame(Frame::InitFailed(f)) => Err(RuntimeError::Init(failure_text(&f))),
            Event::Frame(other) => Err(RuntimeError::Init(format!(
                "runtime_protocol: expected READY, got {}",
                kind_of(&other)
            ))),
            Event::Exited(how) => Err(RuntimeError::Init(format!(
                "the runtime {how} before it was ready{}",
                tail(&self.log)
            ))),
            Event::Deadline => Err(RuntimeError::Init(format!(
                "the code took longer than {:?} to load; the runtime was killed",
                Duration::from_millis(code.timeout_ms).max(MIN_INIT)
            ))),
            Event::Memory(mb) => Err(RuntimeError::Init(format!(
                "loading the code took {mb} MiB, over the function's {} MiB limit",
                code.memory_mb
            ))),
            Event::Broken(e) => Err(RuntimeError::Init(e)),
        }
    }
}
