//! How Python runtimes start: the runtime's module kept with its bytecode once per user,
//! the launch line (with `--python-path` first on `sys.path`), and `--python-preload`,
//! the modules runtimes started ahead of their code import while they wait.

use super::user_cache::{kept, program_key};
use super::{Interpreters, PYTHON_RUNTIME};
use std::path::{Path, PathBuf};
use std::process::Command;
use volley_proto::function::Language;

impl Interpreters {
    /// Has a runtime of `language` started ahead of its code import `--python-preload`.
    pub fn preloading(&self, language: Language, command: &mut Command) {
        if language == Language::Python && !self.python_preload.is_empty() {
            command.env("VOLLEY_PYTHON_PRELOAD", self.python_preload.join(","));
        }
    }
}

/// Module names from `dill,requests` (commas or spaces between them).
pub fn preload_list(text: &str) -> Vec<String> {
    text.split([',', ' '])
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The directory holding the Python runtime's module, its bytecode compiled once per
/// user and interpreter (a runtime compiling its 300 lines at every start spent 3 ms on
/// it): `~/.cache/volley/python-runtime-<key>`, else `programs` (this worker's own, with
/// the module written there).
pub(super) fn python_program_dir(programs: &Path) -> std::io::Result<PathBuf> {
    if let Some(dir) = python_program_dir_cached() {
        return Ok(dir);
    }
    std::fs::write(programs.join("volley_runtime.py"), PYTHON_RUNTIME)?;
    Ok(programs.to_path_buf())
}

/// `~/.cache/volley/python-runtime-<key>`, the module written there if it is not that;
/// `None` if the user has no cache to keep it in.
pub(super) fn python_program_dir_cached() -> Option<PathBuf> {
    const KEY: u64 = program_key(PYTHON_RUNTIME.as_bytes());
    let file = kept("python-runtime", KEY, "volley_runtime.py", PYTHON_RUNTIME)?;
    file.parent().map(Path::to_path_buf)
}

/// How the Python runtime starts: its module imported from `sys.argv[1]`, its bytecode
/// written there and nowhere else (user code's directories stay clean); then the
/// `--python-path` directories that follow put first on `sys.path`.
pub(super) const PYTHON_LAUNCH: &str = "import sys; sys.path.insert(0, sys.argv[1]); sys.dont_write_bytecode = False; \
import volley_runtime; sys.dont_write_bytecode = True; sys.path[0:1] = sys.argv[2:]; sys.exit(volley_runtime.main())";
