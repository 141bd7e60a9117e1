//! The floor's relay and echo: `client floor-role relay` and `client floor-role echo
//! ADDR`. Each is one thread of blocking `poll`, `read` and `write` on TCP sockets with
//! Nagle off: the least a process can do to pass a message on.

use super::Cpu;
use anyhow::Context;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::resource::{getrusage, UsageWho};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

/// Bytes read at a time: a backlog of messages leaves in one write.
const BUFFER: usize = 64 * 1024;

/// CPU the calling thread (`UsageWho::RUSAGE_THREAD`) or process has used.
pub fn cpu(who: UsageWho) -> anyhow::Result<Cpu> {
    let usage = getrusage(who).context("getrusage")?;
    let micros = |t: nix::sys::time::TimeVal| Duration::from_micros((t.tv_sec() * 1_000_000 + t.tv_usec()) as u64);
    Ok(Cpu {
        user: micros(usage.user_time()),
        sys: micros(usage.system_time()),
    })
}

fn since(start: Cpu, end: Cpu) -> Cpu {
    Cpu {
        user: end.user.saturating_sub(start.user),
        sys: end.sys.saturating_sub(start.sys),
    }
}

/// The line the relay prints first: the port the generator connects to, then the echo's.
pub fn ports_line(front: u16, back: u16) -> String {
    format!("ports {front} {back}")
}

/// Reads [`ports_line`].
pub fn parse_ports(line: &str) -> Option<(u16, u16)> {
    let mut words = line.split_whitespace();
    (words.next()? == "ports").then_some(())?;
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}

fn accept(listener: &TcpListener) -> anyhow::Result<TcpStream> {
    let (stream, _) = listener.accept().context("accepting")?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    Ok(stream)
}

/// The relay (the dispatcher's floor): whatever the generator sends goes to the echo,
/// whatever the echo sends goes back, until the generator hangs up.
pub fn relay() -> anyhow::Result<()> {
    let front = TcpListener::bind("127.0.0.1:0").context("binding the generator's port")?;
    let back = TcpListener::bind("127.0.0.1:0").context("binding the echo's port")?;
    println!("{}", ports_line(front.local_addr()?.port(), back.local_addr()?.port()));
    let mut echo = accept(&back)?;
    let mut generator = accept(&front)?;
    let mut buf = vec![0u8; BUFFER];
    let mut start = None;
    loop {
        let (from_generator, from_echo) = {
            let mut fds = [
                PollFd::new(generator.as_fd(), PollFlags::POLLIN),
                PollFd::new(echo.as_fd(), PollFlags::POLLIN),
            ];
            poll(&mut fds, PollTimeout::NONE).context("poll")?;
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if start.is_none() {
            start = Some(cpu(UsageWho::RUSAGE_SELF)?);
        }
        if from_generator {
            let n = generator.read(&mut buf).context("reading the generator")?;
            if n == 0 {
                break;
            }
            echo.write_all(&buf[..n]).context("writing to the echo")?;
        }
        if from_echo {
            let n = echo.read(&mut buf).context("reading the echo")?;
            anyhow::ensure!(n > 0, "the echo hung up first");
            generator.write_all(&buf[..n]).context("writing to the generator")?;
        }
    }
    let end = cpu(UsageWho::RUSAGE_SELF)?;
    drop(echo);
    println!("{}", since(start.unwrap_or(end), end).line());
    Ok(())
}

/// The echo (the worker's floor): sends back whatever it reads until the relay hangs up.
pub fn echo(relay: &str) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(relay).with_context(|| format!("connecting to the relay at {relay}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    let mut buf = vec![0u8; BUFFER];
    let mut start = None;
    loop {
        let n = stream.read(&mut buf).context("reading the relay")?;
        if start.is_none() {
            start = Some(cpu(UsageWho::RUSAGE_SELF)?);
        }
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).context("writing to the relay")?;
    }
    let end = cpu(UsageWho::RUSAGE_SELF)?;
    println!("{}", since(start.unwrap_or(end), end).line());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ports_line_reads_back() {
        assert_eq!(parse_ports(&ports_line(4000, 4001)), Some((4000, 4001)));
        assert_eq!(parse_ports("ports 1"), None);
        assert_eq!(parse_ports("cpu 1 2"), None);
    }
}
