//! CPU time and resident memory of a process, read from `/proc` (no shelling out): what a
//! benchmark charges each role (dispatcher, workers, client) per task. CPU time is the
//! honest figure on a shared machine: wall time swings with the neighbours, CPU time
//! barely does.

use std::time::Duration;

/// CPU time (user + system) of process `pid` so far.
pub fn cpu_time(pid: u32) -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (utime, stime) = parse_times(&stat)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected /proc/{pid}/stat")))?;
    let per_second = clock_ticks();
    Ok(Duration::from_secs_f64((utime + stime) as f64 / per_second as f64))
}

/// CPU time and resident set size of `pid`, as the telemetry sampler reads them ten times
/// a second. CPU time is the larger of two lower bounds: the sum of every live thread's
/// `schedstat` (nanoseconds, but blind to threads that have exited) and `stat`'s
/// utime + stime (which counts exited threads, in 10 ms clock ticks). A small process
/// that `stat` alone would round to zero is read to the microsecond.
pub fn cpu_and_rss(pid: u32) -> std::io::Result<(Duration, u64)> {
    let (ticks, rss) = stat_cpu_and_rss(pid)?;
    Ok((ticks.max(threads_cpu(pid).unwrap_or_default()), rss))
}

/// The summed `schedstat` run time of every live thread of `pid`.
fn threads_cpu(pid: u32) -> std::io::Result<Duration> {
    let mut ns: u64 = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(entry) = entry else { continue };
        let mut path = entry.path();
        path.push("schedstat");
        if let Ok(text) = std::fs::read_to_string(&path) {
            ns += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(Duration::from_nanos(ns))
}

/// CPU time in clock ticks and RSS, from one read of `/proc/<pid>/stat`.
fn stat_cpu_and_rss(pid: u32) -> std::io::Result<(Duration, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected /proc/{pid}/stat"));
    let (utime, stime) = parse_times(&stat).ok_or_else(bad)?;
    let rss_pages: u64 = stat[stat.rfind(')').ok_or_else(bad)? + 1..]
        .split_whitespace()
        .nth(21)
        .and_then(|p| p.parse().ok())
        .ok_or_else(bad)?;
    let cpu = Duration::from_secs_f64((utime + stime) as f64 / clock_ticks() as f64);
    Ok((cpu, rss_pages * page_size()))
}

/// Resident set size of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> std::io::Result<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected /proc/{pid}/statm")))?;
    Ok(pages * page_size())
}

/// utime and stime (fields 14 and 15) in clock ticks. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its closing parenthesis.
fn parse_times(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

fn clock_ticks() -> u64 {
    sysconf(nix::unistd::SysconfVar::CLK_TCK, 100)
}

fn page_size() -> u64 {
    sysconf(nix::unistd::SysconfVar::PAGE_SIZE, 4096)
}

/// A positive system constant, or `default` if the system will not say.
fn sysconf(var: nix::unistd::SysconfVar, default: u64) -> u64 {
    nix::unistd::sysconf(var)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)
        .unwrap_or(default)
}

/// The children of `pid`, whichever of its threads started them (a worker's runtimes are
/// started by its slot threads); empty once it is gone.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_found_after_an_awkward_command_name() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 1 2 3";
        assert_eq!(parse_times(stat), Some((250, 75)));
        assert_eq!(parse_times("42 (x"), None);
    }

    #[test]
    fn this_process_has_spent_some_cpu_and_holds_memory() {
        let me = std::process::id();
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {}
        assert!(cpu_time(me).expect("stat") > Duration::ZERO);
        assert!(rss_bytes(me).expect("statm") > 1 << 20);
        let (cpu, rss) = cpu_and_rss(me).expect("stat");
        assert!(cpu > Duration::ZERO && rss > 1 << 20);
        // Threads' schedstat sees what 10 ms ticks cannot.
        assert!(threads_cpu(me).expect("schedstat") > Duration::ZERO);
    }
}
