//! Where each language's runtime program is on this host, found once for many workers:
//! a worker template finds them before it forks, and every worker it forks starts its
//! first runtime without a file operation or a thread for them. A worker started on its
//! own finds each when its first runtime of that language starts.

use super::user_cache::{kept, program_key};
use super::{java, python, Interpreters, NODE_RUNTIME};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The programs found for one set of interpreters.
#[derive(Debug)]
struct Found {
    java: PathBuf,
    python_dir: Option<PathBuf>,
    node_program: Option<PathBuf>,
    java_classes: Option<PathBuf>,
}

static FOUND: OnceLock<Found> = OnceLock::new();

/// Finds every language's runtime program in the user's cache, writing the Python and
/// Node programs there if they are missing. Java's classes are taken only if compiled
/// already (`javac` takes most of a second: the first Java runtime compiles them, into
/// the same cache). What cannot be kept there (no home directory) is left for each
/// worker to find as it does alone.
pub fn find_all(interpreters: &Interpreters) {
    FOUND.get_or_init(|| Found {
        java: interpreters.java.clone(),
        python_dir: python::python_program_dir_cached(),
        node_program: node_program_cached(),
        java_classes: java::cached(&java::javac_beside(&interpreters.java)),
    });
}

/// The Python runtime's module directory, if found for the host.
pub(super) fn python_dir() -> Option<PathBuf> {
    FOUND.get()?.python_dir.clone()
}

/// The Node runtime's program, if found for the host.
pub(super) fn node_program() -> Option<PathBuf> {
    FOUND.get()?.node_program.clone()
}

/// The Java runtime's classes for `java`, if found for the host with that interpreter.
pub(super) fn java_classes(java: &Path) -> Option<PathBuf> {
    FOUND.get().filter(|f| f.java == java)?.java_classes.clone()
}

/// `~/.cache/volley/node-runtime-<key>/volley_runtime.js`, written if it is not that.
fn node_program_cached() -> Option<PathBuf> {
    const KEY: u64 = program_key(NODE_RUNTIME.as_bytes());
    kept("node-runtime", KEY, "volley_runtime.js", NODE_RUNTIME)
}
