//! `client deploy`: a user function's code registered under a name, as a new version.

use super::{status_error, Target};
use crate::Client;
use anyhow::{bail, Context};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use volley_proto::api;
use volley_proto::function::user::{MAX_CODE_BYTES, MAX_INLINE_CODE_BYTES};
use volley_proto::function::Language;

/// `client deploy` flags.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The function's name; deploying a name again makes its next version.
    pub name: String,
    /// The code: a .py file or a .zip package (python), a .js file (node), a .java file
    /// (compiled here with javac) or a .jar (java), an executable (native).
    pub path: PathBuf,
    /// python, node, java or native.
    #[arg(long)]
    pub runtime: Language,
    /// The entry point (python and node: the function, default `handle`; java: the class,
    /// `pkg.Class` or `pkg.Class::method`, by default the .java file's class).
    #[arg(long)]
    pub handler: Option<String>,
    /// The longest one task may run before its runtime is killed (0: 60 s).
    #[arg(long, default_value_t = 0)]
    pub timeout_ms: u64,
    /// The most resident memory a runtime process may use (0: 512 MiB).
    #[arg(long, default_value_t = 0)]
    pub memory_mb: u64,
}

/// The code as it is sent, and what it is.
#[derive(Debug)]
pub struct Package {
    /// The code (a `.java` file compiled and packed into a jar).
    pub bytes: Vec<u8>,
    /// Its format: py, zip, js, jar or bin.
    pub format: &'static str,
    /// The entry point (a `.java` file's class by default).
    pub handler: String,
}

/// Deploys the code and prints the new version.
pub async fn run(target: &Target, a: &DeployArgs, as_json: bool) -> anyhow::Result<i32> {
    let package = package(&a.path, a.runtime, a.handler.as_deref())?;
    anyhow::ensure!(
        package.bytes.len() <= MAX_CODE_BYTES,
        "{} has {} bytes; a function's code may have at most {MAX_CODE_BYTES}",
        a.path.display(),
        package.bytes.len()
    );
    let mut client = target.connect().await?;
    let size = package.bytes.len();
    let runtime = api::Runtime {
        language: a.runtime.name().to_owned(),
        handler: package.handler,
        code_format: package.format.to_owned(),
        timeout_ms: a.timeout_ms,
        memory_mb: a.memory_mb,
        ..Default::default()
    };
    let reply = register_code(&mut client, &a.name, runtime, package.bytes)
        .await
        .map_err(|s| status_error("RegisterFunction", s))?;
    if as_json {
        println!(
            "{}",
            json!({
                "name": a.name, "function_id": reply.function_id, "version": reply.version,
                "runtime": a.runtime.name(), "code_digest": reply.code_digest, "size": size,
            })
        );
    } else {
        println!(
            "deployed {} version {} (function id {}, {}, {size} bytes, sha256 {})",
            a.name, reply.version, reply.function_id, a.runtime, reply.code_digest
        );
    }
    Ok(0)
}

/// Registers `runtime` with `code`: inline when it fits the inline limit, otherwise sent
/// first with `UploadCode` in 1 MiB chunks and named by its digest.
pub async fn register_code(
    client: &mut Client,
    name: &str,
    mut runtime: api::Runtime,
    code: Vec<u8>,
) -> Result<api::RegisterFunctionResponse, tonic::Status> {
    if code.len() > MAX_INLINE_CODE_BYTES {
        let chunks: Vec<api::CodeChunk> = code
            .chunks(1 << 20)
            .map(|c| api::CodeChunk { data: c.to_vec() })
            .collect();
        runtime.code_digest = client
            .upload_code(futures::stream::iter(chunks))
            .await?
            .into_inner()
            .code_digest;
    } else {
        runtime.code = code;
    }
    client
        .register_function(api::RegisterFunctionRequest {
            name: name.to_owned(),
            spec: Some(api::FunctionSpec {
                kind: Some(api::function_spec::Kind::Runtime(runtime)),
            }),
        })
        .await
        .map(|r| r.into_inner())
}

/// Reads code for `language` from `path`, compiling a `.java` file, and says what it is.
pub fn package(path: &Path, language: Language, handler: Option<&str>) -> anyhow::Result<Package> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let read = || std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let handler = handler.unwrap_or_default().to_owned();
    let (bytes, format, handler) = match (language, ext.as_str()) {
        (Language::Python, "py") => (read()?, "py", handler),
        (Language::Python, "zip") => (read()?, "zip", handler),
        (Language::Node, "js" | "cjs") => (read()?, "js", handler),
        (Language::Java, "jar") => {
            anyhow::ensure!(
                !handler.is_empty(),
                "a .jar needs --handler: the class, pkg.Class or pkg.Class::method"
            );
            (read()?, "jar", handler)
        }
        (Language::Java, "java") => {
            let class = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("Handler")
                .to_owned();
            (
                compile_java(path)?,
                "jar",
                if handler.is_empty() { class } else { handler },
            )
        }
        (Language::Native, _) => (read()?, "bin", handler),
        (language, other) => bail!(
            "{language} takes {} code, not a '.{other}' file",
            match language {
                Language::Python => ".py or .zip",
                Language::Node => ".js",
                _ => ".java or .jar",
            }
        ),
    };
    Ok(Package { bytes, format, handler })
}

/// Compiles a `.java` file with `javac` and packs its classes into a jar with `jar`.
pub fn compile_java(source: &Path) -> anyhow::Result<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("volley-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        let classes = dir.join("classes");
        std::fs::create_dir_all(&classes)?;
        let javac = Command::new("javac")
            .arg("-d")
            .arg(&classes)
            .arg(source)
            .output()
            .context("running javac (install a JDK: Debian's default-jdk-headless)")?;
        if !javac.status.success() {
            bail!("javac failed:\n{}", String::from_utf8_lossy(&javac.stderr).trim());
        }
        let jar = dir.join("code.jar");
        let packed = Command::new("jar")
            .arg("cf")
            .arg(&jar)
            .arg("-C")
            .arg(&classes)
            .arg(".")
            .output()
            .context("running jar")?;
        if !packed.status.success() {
            bail!("jar failed: {}", String::from_utf8_lossy(&packed.stderr).trim());
        }
        Ok(std::fs::read(&jar)?)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
