//! Locating the `dispatcher`, `worker` and `client` executables.
//!
//! `VOLLEY_BIN_DIR` wins if set. Otherwise they sit in the same target profile directory
//! as the running executable; when run under cargo (tests, benches, `cargo run`), they
//! are built first, once per process, so a test never runs a stale binary.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The path of an example of the `volley-runtime` crate (`probe`, a native function
/// that does what its event asks; `bare`, an empty program), built with the binaries.
pub fn example(name: &str) -> anyhow::Result<PathBuf> {
    let dir = path("worker")?.parent().map(Path::to_path_buf).unwrap_or_default();
    let p = dir.join("examples").join(name);
    if !p.exists() {
        bail!(
            "{} does not exist; build it with `cargo build -p volley-runtime --examples` (add --release for a release build)",
            p.display()
        );
    }
    Ok(p)
}

/// The path of a Volley binary (`dispatcher`, `worker` or `client`).
pub fn path(name: &str) -> anyhow::Result<PathBuf> {
    let dir = BUILT
        .get_or_init(|| locate_and_build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)?;
    let p = dir.join(name);
    if !p.exists() {
        bail!("{} does not exist; build it with `cargo build --bins`", p.display());
    }
    Ok(p)
}

fn locate_and_build() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("VOLLEY_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("locating the running executable")?;
    let mut dir = exe.parent().context("executable has no directory")?.to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps" || n == "examples") {
        dir.pop();
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        build(Path::new(&cargo), &dir)?;
    }
    Ok(dir)
}

fn build(cargo: &Path, profile_dir: &Path) -> anyhow::Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("perf crate has no parent directory")?;
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(workspace).args([
        "build",
        "--quiet",
        "-p",
        "volley-dispatcher",
        "-p",
        "volley-worker",
        "-p",
        "volley-perf",
        "--bins",
        "-p",
        "volley-runtime",
        "--example",
        "probe",
        "--example",
        "bare",
    ]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    // Build into the same target directory the running executable came from.
    if let Some(target) = profile_dir.parent() {
        cmd.arg("--target-dir").arg(target);
    }
    let status = cmd.status().context("running cargo build for the Volley binaries")?;
    if !status.success() {
        bail!("cargo build of the Volley binaries failed ({status})");
    }
    Ok(())
}
