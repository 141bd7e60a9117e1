//! What user code gets of the worker: a scrubbed environment, a directory and a process
//! group of its own, its pipes and nothing else, and rlimits. Not a sandbox: see the
//! security page (docs/security.md) for what this does and does not stop.

use std::path::Path;
use std::process::Command;

/// Variables a runtime is given from the worker's own environment; nothing else passes
/// (no `VOLLEY_TOKEN`, no store address, no cloud credentials).
const PASSED: [&str; 2] = ["PATH", "TZ"];

/// The most files a runtime process may have open.
const MAX_OPEN_FILES: u64 = 1024;

/// Sets up `command` to run user code: environment, directory, process group.
pub fn confine(command: &mut Command, workdir: &Path, function: &str) {
    command.env_clear();
    for name in PASSED {
        if let Some(v) = std::env::var_os(name) {
            command.env(name, v);
        }
    }
    command
        .env("HOME", workdir)
        .env("TMPDIR", workdir)
        .env("LANG", "C.UTF-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONIOENCODING", "utf-8")
        .env("VOLLEY_FUNCTION", function)
        .current_dir(workdir);
    std::os::unix::process::CommandExt::process_group(command, 0);
}

/// Limits a started runtime before it is sent any code: no core dumps, a bound on open
/// files. (Memory is watched by the slot, so a limit that kills is reported as such.)
pub fn limit(pid: u32) {
    let pid = pid as libc_pid;
    let _ = rlimit::prlimit(pid, rlimit::Resource::CORE, Some((0, 0)), None);
    let _ = rlimit::prlimit(
        pid,
        rlimit::Resource::NOFILE,
        Some((MAX_OPEN_FILES, MAX_OPEN_FILES)),
        None,
    );
}

#[allow(non_camel_case_types)]
type libc_pid = i32;
