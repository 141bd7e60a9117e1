//! The languages of the per-runtime cold-start study: which interpreter each runs (the
//! real binary, never a version manager's shim), an empty handler and one with a heavy
//! import in each, and the bare interpreter's own start, measured in the same run.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use volley_proto::function::Language;

/// A language as this machine runs it.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The language.
    pub language: Language,
    /// The interpreter (for native, the empty program the study compares with).
    pub interpreter: PathBuf,
    /// Its version, as it says.
    pub version: String,
}

/// The handler a trial deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Handler {
    /// Returns null; its module imports nothing.
    Empty,
    /// Returns null; its module first imports what an HTTP-calling function does.
    Heavy,
}

impl Handler {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Handler::Empty => "empty",
            Handler::Heavy => "heavy",
        }
    }
}

/// What the heavy handler imports, per language, and why it stands for real functions:
/// a function that calls a web API (the most common kind) loads an HTTP client, TLS,
/// JSON, MIME parsing and crypto before its first request, as `requests`, the AWS SDKs or
/// `node-fetch` do. Only what ships with the language is used, so every machine has it.
pub const HEAVY: [(Language, &str); 3] = [
    (
        Language::Python,
        "import asyncio, decimal, email.parser, http.client, json, ssl, urllib.request, uuid, xml.etree.ElementTree",
    ),
    (Language::Node, "https, http2, crypto, zlib, stream, url, util, dns"),
    (
        Language::Java,
        "java.net.http.HttpClient, javax.crypto.Mac (HmacSHA256), java.security.MessageDigest, java.util.regex, java.time.format",
    ),
];

impl Subject {
    /// Finds the interpreter of `language`: `VOLLEY_PYTHON`/`VOLLEY_NODE`/`VOLLEY_JAVA`, else
    /// the one on `PATH`; for Python, the executable behind any shim (`sys.executable`).
    pub fn resolve(language: Language) -> anyhow::Result<Self> {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        let (interpreter, version) = match language {
            Language::Python => {
                let python = var("VOLLEY_PYTHON", "python3");
                let out = output(
                    &python,
                    &["-c", "import sys; print(sys.executable); print(sys.version.split()[0])"],
                )?;
                let mut lines = out.lines();
                let exe = lines.next().unwrap_or_default().trim().to_owned();
                (PathBuf::from(exe), lines.next().unwrap_or_default().trim().to_owned())
            }
            Language::Node => {
                let node = var("VOLLEY_NODE", "node");
                let version = output(&node, &["--version"])?.trim().trim_start_matches('v').to_owned();
                (which(&node)?, version)
            }
            Language::Java => {
                let java = var("VOLLEY_JAVA", "java");
                let out = Command::new(&java)
                    .arg("-version")
                    .output()
                    .with_context(|| format!("running {java} -version"))?;
                let text = String::from_utf8_lossy(&out.stderr);
                let version = text.split('"').nth(1).unwrap_or("unknown").to_owned();
                (which(&java)?, version)
            }
            Language::Native => (volley_testbed::binaries::example("bare")?, "rust".to_owned()),
        };
        anyhow::ensure!(
            !interpreter.as_os_str().is_empty(),
            "cannot find the {language} interpreter"
        );
        Ok(Self {
            language,
            interpreter,
            version,
        })
    }

    /// The environment a dispatcher needs so its instances run this interpreter.
    pub fn env(&self) -> Option<(&'static str, String)> {
        let name = match self.language {
            Language::Python => "VOLLEY_PYTHON",
            Language::Node => "VOLLEY_NODE",
            Language::Java => "VOLLEY_JAVA",
            Language::Native => return None,
        };
        Some((name, self.interpreter.display().to_string()))
    }

    /// The code of `handler` in this language, written under `scratch` where a compiler
    /// needs it: bytes, entry point and format, as `client deploy` sends them.
    pub fn code(&self, handler: Handler, scratch: &Path) -> anyhow::Result<(Vec<u8>, String, &'static str)> {
        let heavy = handler == Handler::Heavy;
        Ok(match self.language {
            Language::Python => {
                let imports = if heavy {
                    format!("{}\n", HEAVY[0].1)
                } else {
                    String::new()
                };
                (
                    format!("{imports}def handle(event):\n    return None\n").into_bytes(),
                    String::new(),
                    "py",
                )
            }
            Language::Node => {
                let imports = if heavy {
                    HEAVY[1].1.split(", ").map(|m| format!("require('{m}');\n")).collect()
                } else {
                    String::new()
                };
                (
                    format!("{imports}exports.handle = async (event) => null;\n").into_bytes(),
                    String::new(),
                    "js",
                )
            }
            Language::Java => {
                let class = if heavy { "Heavy" } else { "Empty" };
                let init = if heavy {
                    "static { try { java.net.http.HttpClient.newHttpClient(); javax.crypto.Mac.getInstance(\"HmacSHA256\"); \
                     java.security.MessageDigest.getInstance(\"SHA-256\"); java.util.regex.Pattern.compile(\"[a-z]+@[a-z]+\"); \
                     java.time.format.DateTimeFormatter.ISO_INSTANT.format(java.time.Instant.now()); } \
                     catch (Exception e) { throw new RuntimeException(e); } }"
                } else {
                    ""
                };
                let source = scratch.join(format!("{class}.java"));
                std::fs::write(
                    &source,
                    format!("public final class {class} {{ {init} public static String handle(String e) {{ return \"null\"; }} }}\n"),
                )?;
                (
                    volley_client::commands::deploy::compile_java(&source)?,
                    class.to_owned(),
                    "jar",
                )
            }
            Language::Native => {
                anyhow::ensure!(
                    !heavy,
                    "a native function has no imports to load: it has no heavy variant"
                );
                (
                    std::fs::read(volley_testbed::binaries::example("probe")?)?,
                    String::new(),
                    "bin",
                )
            }
        })
    }

    /// One bare start, spawn to exit, µs: the interpreter running an empty script
    /// (Python with `-I`, as the runtime), Java an empty main with the runtime's JVM
    /// flags, native an empty program.
    pub fn bare_start_us(&self, scratch: &Path) -> anyhow::Result<u64> {
        let mut cmd = Command::new(&self.interpreter);
        match self.language {
            // An empty script, as the runtime is one (`-c`/`-e` take other paths: Node's
            // `-e 0` costs twice an empty file's start here).
            Language::Python => {
                std::fs::write(scratch.join("empty.py"), "")?;
                cmd.args(["-I", "empty.py"]);
            }
            Language::Node => {
                std::fs::write(scratch.join("empty.js"), "")?;
                cmd.arg("empty.js");
            }
            Language::Java => {
                let class = scratch.join("Hello.class");
                if !class.exists() {
                    let source = scratch.join("Hello.java");
                    std::fs::write(
                        &source,
                        "public final class Hello { public static void main(String[] a) {} }\n",
                    )?;
                    let javac = self.interpreter.with_file_name("javac");
                    let javac = if javac.exists() { javac } else { PathBuf::from("javac") };
                    let ok = Command::new(javac)
                        .arg("-d")
                        .arg(scratch)
                        .arg(&source)
                        .status()?
                        .success();
                    anyhow::ensure!(ok, "javac failed on the bare start's hello class");
                }
                cmd.args(["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto", "-cp"])
                    .arg(scratch)
                    .arg("Hello");
            }
            Language::Native => {}
        }
        let t0 = Instant::now();
        let ok = cmd
            .current_dir(scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("running {}", self.interpreter.display()))?
            .success();
        anyhow::ensure!(ok, "the bare {} start failed", self.language);
        Ok(t0.elapsed().as_micros() as u64)
    }
}

fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    anyhow::ensure!(out.status.success(), "{program} {args:?} failed");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `program` as an absolute path: itself if it has a directory, else found on `PATH`.
fn which(program: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 {
        return Ok(p.to_path_buf());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|c| c.is_file())
        .with_context(|| format!("{program} is not on PATH"))
}
