//! A private `redis-server` for tests and scenarios that must restart or break Redis.
//! Persistence is off unless asked; the server is killed when the guard drops.

use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a server keeps across a SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing: it restarts empty.
    Off,
    /// AOF with `appendfsync everysec`: all but about the last second.
    EverySec,
    /// AOF with `appendfsync always`: every write it acknowledged.
    Always,
}

/// A running `redis-server` on 127.0.0.1 and a port of its own.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    persistence: Persistence,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port; `append_only` turns on AOF (fsync on every write) so
    /// a restart, even after SIGKILL, keeps every acknowledged write.
    pub fn start(append_only: bool) -> anyhow::Result<Self> {
        Self::start_with(if append_only {
            Persistence::Always
        } else {
            Persistence::Off
        })
    }

    /// Starts a server on a free port that keeps what `persistence` says.
    pub fn start_with(persistence: Persistence) -> anyhow::Result<Self> {
        let port = crate::free_port()?;
        let dir = std::env::temp_dir().join(format!("volley-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            port,
            dir,
            persistence,
            child: None,
        };
        server.restart()?;
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The server's process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL): clients see it vanish.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (and, with AOF, the same data).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args([
                "--appendonly",
                if self.persistence == Persistence::Off {
                    "no"
                } else {
                    "yes"
                },
            ])
            .args([
                "--appendfsync",
                if self.persistence == Persistence::EverySec {
                    "everysec"
                } else {
                    "always"
                },
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (is it installed? apt-get install redis-server)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("redis-server on port {} did not answer PING within 10 s", self.port)
    }
}

fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
