//! The Python fork server (a zygote, as in SOCK): one interpreter with the runtime
//! program loaded that forks every new Python runtime, so an instance does not pay for
//! the interpreter's start. The server is `volley_runtime.py --fork-server SOCKET`; each
//! connection to its socket asks for one runtime, passing the runtime's three pipe ends.
//!
//! What forks share, and what that means for isolation, is in `docs/functions.md`.

use super::isolation;
use super::RuntimeError;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Interest};
use tokio::net::UnixStream;

/// How long the server may take to come up, and a fork to be answered.
const START_LIMIT: Duration = Duration::from_secs(10);
const FORK_LIMIT: Duration = Duration::from_secs(5);

/// A running fork server; dropping it stops the server (its runtimes live on).
pub struct ForkServer {
    child: std::process::Child,
    socket: PathBuf,
    /// The server's stdin: it exits when this closes, so it never outlives its owner.
    _owner: std::process::ChildStdin,
}

/// A runtime the fork server forked: not this process's child, so its end is learnt
/// from the server over the connection that asked for it.
pub struct Forked {
    /// Its process id (it leads its own session and process group).
    pub pid: u32,
    answers: BufReader<UnixStream>,
}

impl ForkServer {
    /// Starts a fork server in `dir`, made for it and only this user may enter: the
    /// runtime program is written there, and the socket is `dir/fork-server.sock`. Blocks
    /// for the interpreter's start: call it off the async threads.
    pub fn start_in(interpreters: &super::Interpreters, dir: &Path) -> Result<Self, RuntimeError> {
        use std::os::unix::fs::PermissionsExt;
        let prepared = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
            .and_then(|()| std::fs::write(dir.join("volley_runtime.py"), super::PYTHON_RUNTIME));
        prepared
            .map_err(|e| RuntimeError::Start(format!("cannot prepare {} for the fork server: {e}", dir.display())))?;
        Self::start(interpreters, &dir.join("volley_runtime.py"), dir)
    }

    /// Starts `python -I program --fork-server DIR/fork-server.sock [PYTHON_PATH…]` in
    /// `dir` and waits until it listens.
    fn start(interpreters: &super::Interpreters, program: &Path, dir: &Path) -> Result<Self, RuntimeError> {
        let python = &interpreters.python;
        use command_fds::{CommandFdExt, FdMapping};
        use std::io::Read;
        let socket = dir.join("fork-server.sock");
        let _ = std::fs::remove_file(&socket);
        let mut command = Command::new(python);
        command
            .arg("-I")
            .arg(program)
            .arg("--fork-server")
            .arg(&socket)
            .args(&interpreters.python_path);
        isolation::confine(&mut command, dir, "");
        interpreters.preloading(volley_proto::function::Language::Python, &mut command);
        let (mut ready, ready_w) = std::io::pipe().map_err(RuntimeError::io("a pipe"))?;
        command
            .fd_mappings(vec![FdMapping {
                parent_fd: OwnedFd::from(ready_w),
                child_fd: volley_runtime::frame::FROM_RUNTIME_FD,
            }])
            .map_err(|e| RuntimeError::Start(format!("descriptor mapping: {e}")))?;
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().map_err(|e| {
            RuntimeError::Start(format!(
                "cannot start the python fork server ({}): {e}",
                python.display()
            ))
        })?;
        drop(command);
        let owner = child
            .stdin
            .take()
            .ok_or_else(|| RuntimeError::Start("the fork server has no stdin".into()))?;
        isolation::limit(child.id());
        let mut server = Self {
            child,
            socket,
            _owner: owner,
        };
        // The server writes one byte once it listens, or exits (closing the pipe).
        let listening = nix::poll::poll(
            &mut [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&ready),
                nix::poll::PollFlags::POLLIN,
            )],
            nix::poll::PollTimeout::try_from(START_LIMIT.as_millis() as i32).unwrap_or(nix::poll::PollTimeout::MAX),
        );
        let mut byte = [0u8; 1];
        match listening {
            Ok(n) if n > 0 && matches!(ready.read(&mut byte), Ok(1)) && byte[0] == b'R' => Ok(server),
            Ok(0) => Err(RuntimeError::Start(format!(
                "the python fork server did not listen within {START_LIMIT:?}"
            ))),
            _ => {
                let _ = server.child.kill();
                let how = match server.child.wait() {
                    Ok(status) => super::instance::describe(status),
                    Err(e) => format!("ended ({e})"),
                };
                Err(RuntimeError::Start(format!(
                    "the python fork server {how} before it listened"
                )))
            }
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where it listens.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether the server is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks the fork server at `socket` for a runtime on `fds` (frames in, frames out, log:
/// the runtime's ends), working in `workdir`, for `function`.
pub async fn fork(socket: &Path, fds: [OwnedFd; 3], workdir: &Path, function: &str) -> Result<Forked, String> {
    let ask = async {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|e| format!("cannot reach the fork server at {}: {e}", socket.display()))?;
        let mut request = serde_json::json!({ "workdir": workdir, "function": function }).to_string();
        request.push('\n');
        send_with_fds(&stream, request.as_bytes(), &fds).await?;
        drop(fds);
        let mut answers = BufReader::new(stream);
        let mut line = String::new();
        answers
            .read_line(&mut line)
            .await
            .map_err(|e| format!("the fork server did not answer: {e}"))?;
        let pid = line
            .strip_prefix("pid ")
            .and_then(|p| p.trim().parse::<u32>().ok())
            .filter(|p| *p > 1)
            .ok_or_else(|| format!("the fork server refused: {}", line.trim()))?;
        Ok(Forked { pid, answers })
    };
    tokio::time::timeout(FORK_LIMIT, ask)
        .await
        .unwrap_or_else(|_| Err(format!("the fork server did not fork within {FORK_LIMIT:?}")))
}

impl Forked {
    /// How the runtime ended, as the fork server saw it reaped; waits for it.
    pub async fn ended(&mut self) -> String {
        let mut line = String::new();
        match self.answers.read_line(&mut line).await {
            Ok(_) => {
                let mut words = line.split_whitespace();
                match (words.next(), words.next().and_then(|n| n.parse::<i32>().ok())) {
                    (Some("exit"), Some(code)) => format!("exited with status {code}"),
                    (Some("signal"), Some(sig)) => super::instance::signalled(sig),
                    _ => "ended (the fork server is gone, so its status is unknown)".to_owned(),
                }
            }
            Err(e) => format!("ended (its status is unknown: {e})"),
        }
    }
}

/// Sends `data` with `fds` attached (SCM_RIGHTS), then any rest of `data` plainly.
async fn send_with_fds(stream: &UnixStream, data: &[u8], fds: &[OwnedFd; 3]) -> Result<(), String> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let raw = fds.each_ref().map(|fd| fd.as_raw_fd());
    let sent = loop {
        stream
            .writable()
            .await
            .map_err(|e| format!("cannot write to the fork server: {e}"))?;
        let attempt = stream.try_io(Interest::WRITABLE, || {
            sendmsg::<()>(
                stream.as_raw_fd(),
                &[IoSlice::new(data)],
                &[ControlMessage::ScmRights(&raw)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(std::io::Error::from)
        });
        match attempt {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(format!("cannot send the pipes to the fork server: {e}")),
        }
    };
    let mut rest = &data[sent..];
    while !rest.is_empty() {
        stream
            .writable()
            .await
            .map_err(|e| format!("cannot write to the fork server: {e}"))?;
        match stream.try_write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(format!("cannot write to the fork server: {e}")),
        }
    }
    Ok(())
}
