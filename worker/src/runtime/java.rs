//! The Java runtime's classes: compiled from `runtimes/java/VolleyRuntime.java` with the
//! JDK's `javac` once per host and user, kept in `~/.cache/volley/` under the digest of
//! the source and the compiler, so an instance's cold start does not pay for `javac`
//! (most of a second). Without a home directory, once per worker.

use std::path::{Path, PathBuf};
use std::process::Command;

const JAVA_RUNTIME: &str = include_str!("../../../runtimes/java/VolleyRuntime.java");

/// The directory holding `VolleyRuntime.class`: the user's cache if it has them or can
/// keep them, else `fallback`, compiled now.
pub(super) fn classes(fallback: PathBuf, javac: PathBuf, hint: String) -> Result<PathBuf, String> {
    let Some(cached) = cache_dir(&javac) else {
        return compile(&fallback, &javac, &hint).map(|()| fallback);
    };
    if cached.join("VolleyRuntime.class").is_file() {
        return Ok(cached);
    }
    compile_into(cached, &javac, &hint)
}

/// The user's cached classes for `javac`, if they are there: a few file lookups, no
/// thread (a worker's first Java start need not hand this to the blocking pool).
pub(super) fn cached(javac: &Path) -> Option<PathBuf> {
    cache_dir(javac).filter(|dir| dir.join("VolleyRuntime.class").is_file())
}

/// Compiles the runtime into the user's cache at `cached`.
fn compile_into(cached: PathBuf, javac: &Path, hint: &str) -> Result<PathBuf, String> {
    // Compiled beside it and renamed into place: a worker never sees half a directory,
    // and of two compiling at once, the first rename wins and both use it.
    let staging = cached.with_extension(format!("{}.partial", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    compile(&staging, javac, hint)?;
    match std::fs::rename(&staging, &cached) {
        Ok(()) => Ok(cached),
        Err(_) if cached.join("VolleyRuntime.class").is_file() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(cached)
        }
        Err(_) => Ok(staging),
    }
}

/// `~/.cache/volley/java-runtime-<key of source and javac>`.
fn cache_dir(javac: &Path) -> Option<PathBuf> {
    use super::user_cache::{program_key, user_cache};
    const SOURCE: u64 = program_key(JAVA_RUNTIME.as_bytes());
    let javac = std::fs::canonicalize(javac).unwrap_or_else(|_| javac.to_path_buf());
    let key = program_key(format!("{SOURCE:016x}\0{}", javac.display()).as_bytes());
    user_cache("java-runtime", key)
}

/// Compiles the Java runtime into `dir` with `javac`.
fn compile(dir: &Path, javac: &Path, hint: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let source = dir.join("VolleyRuntime.java");
    std::fs::write(&source, JAVA_RUNTIME).map_err(|e| e.to_string())?;
    let out = Command::new(javac)
        .arg("-d")
        .arg(dir)
        .arg(&source)
        .output()
        .map_err(|e| format!("cannot compile the java runtime with {}: {e}{hint}", javac.display()))?;
    if !out.status.success() {
        return Err(format!(
            "javac failed on the java runtime: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// `javac` in the same directory as `java`, or plain `javac` (found on `PATH`).
pub(super) fn javac_beside(java: &Path) -> PathBuf {
    match java.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            let javac = dir.join("javac");
            if javac.exists() {
                return javac;
            }
            "javac".into()
        }
        _ => "javac".into(),
    }
}
