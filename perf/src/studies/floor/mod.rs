//! The floor: what carrying one invocation costs on this machine when nothing but the
//! kernel is in the way. Three processes pass a 16-byte message along the path a noop
//! task takes — generator → relay → echo → relay → generator, over TCP on loopback — at
//! the same open-loop rates and arrivals as the load study, and each reports its CPU per
//! message. The relay is the dispatcher's floor, the echo the worker's.
//!
//! A wake-up's cost differs tenfold between machines (a nested VM's IPIs against bare
//! metal), so a CPU figure alone says little about the code; divided by the floor
//! measured in the same run, it says how much the code adds.
//!
//! - [`roles`] — the relay and echo processes (`client floor-role`), each a loop of
//!   `poll`, `read` and `write` and nothing else.
//! - [`generator`] — the paced sender and receiver, in the calling process.

pub mod generator;
pub mod roles;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::studies::load::Arrival;

/// One message's bytes: its index in the schedule, then padding (a noop's assignment is
/// about this size on the wire).
pub const MESSAGE: usize = 16;

/// One rate's floor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorPoint {
    /// Target rate, messages/s.
    pub target_rate: f64,
    /// Messages sent (every one came back, or the run failed).
    pub sent: u64,
    /// Round trip from the intended send, median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// The generator's CPU per message, µs.
    pub generator_us: f64,
    /// Of it, in the kernel.
    pub generator_sys_us: f64,
    /// The relay's CPU per message, µs (the dispatcher's floor).
    pub relay_us: f64,
    /// Of it, in the kernel.
    pub relay_sys_us: f64,
    /// The echo's CPU per message, µs (the worker's floor).
    pub echo_us: f64,
    /// Of it, in the kernel.
    pub echo_sys_us: f64,
}

/// A role process's report: CPU from its first message to its peer's end.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cpu {
    /// In user space.
    pub user: Duration,
    /// In the kernel.
    pub sys: Duration,
}

impl Cpu {
    /// The report line a role prints last.
    pub fn line(&self) -> String {
        format!("cpu {} {}", self.user.as_micros(), self.sys.as_micros())
    }

    /// Reads a report line.
    pub fn parse(line: &str) -> Option<Cpu> {
        let mut words = line.split_whitespace();
        (words.next()? == "cpu").then_some(())?;
        let user = words.next()?.parse().ok()?;
        let sys = words.next()?.parse().ok()?;
        Some(Cpu {
            user: Duration::from_micros(user),
            sys: Duration::from_micros(sys),
        })
    }

    fn total(&self) -> Duration {
        self.user + self.sys
    }
}

/// A role process and its stdout.
struct Role {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
    name: &'static str,
}

impl Role {
    fn start(args: &[&str], name: &'static str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding the client binary to start the floor's roles")?;
        let mut child = Command::new(exe)
            .arg("floor-role")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the floor's {name}"))?;
        let out = child.stdout.take().context("the role's stdout")?;
        Ok(Self {
            child,
            out: BufReader::new(out),
            name,
        })
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        self.out
            .read_line(&mut line)
            .with_context(|| format!("reading the floor's {}", self.name))?;
        anyhow::ensure!(!line.is_empty(), "the floor's {} ended without a word", self.name);
        Ok(line)
    }

    fn report(mut self) -> anyhow::Result<Cpu> {
        let line = self.line()?;
        let _ = self.child.wait();
        Cpu::parse(&line).with_context(|| format!("the floor's {} said {line:?}", self.name))
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the floor at `rate` for `duration`: starts the relay and the echo, paces the
/// schedule from this process, and gathers the three CPU reports.
pub fn measure(rate: f64, arrival: Arrival, duration: Duration, seed: u64) -> anyhow::Result<FloorPoint> {
    let schedule = crate::studies::load::arrivals::Arrivals::new(arrival, rate, seed)?.schedule(duration);
    anyhow::ensure!(!schedule.is_empty(), "no message falls within {duration:?} at {rate}/s");
    let mut relay = Role::start(&["relay"], "relay")?;
    let ports = relay.line()?;
    let (front, back) = roles::parse_ports(&ports).with_context(|| format!("the relay said {ports:?}"))?;
    let echo = Role::start(&["echo", &format!("127.0.0.1:{back}")], "echo")?;
    let run = generator::run(&format!("127.0.0.1:{front}"), &schedule)?;
    let (relay, echo) = (relay.report()?, echo.report()?);
    let n = schedule.len() as f64;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n;
    Ok(FloorPoint {
        target_rate: rate,
        sent: schedule.len() as u64,
        p50_ms: run.p50_ms,
        p99_ms: run.p99_ms,
        generator_us: per(run.cpu.total()),
        generator_sys_us: per(run.cpu.sys),
        relay_us: per(relay.total()),
        relay_sys_us: per(relay.sys),
        echo_us: per(echo.total()),
        echo_sys_us: per(echo.sys),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_line_reads_back() {
        let cpu = Cpu {
            user: Duration::from_micros(1234),
            sys: Duration::from_micros(56),
        };
        assert_eq!(Cpu::parse(&cpu.line()), Some(cpu));
        assert_eq!(Cpu::parse("cpu 1"), None);
        assert_eq!(Cpu::parse("ports 1 2"), None);
    }
}
