//! User functions beside the built-in noop, in one run, on one push cluster of 2 workers ×
//! 1 slot (memory store): for an empty handler in each runtime, submit→result p50/p99 one
//! task at a time, throughput of a batch, the CPU per task of each role (dispatcher,
//! workers, runtime processes) and the resident memory of an idle runtime. Then each
//! runtime's start to READY, as a worker measures it, beside its bare interpreter's own
//! start (`python3 -I -c pass`, `node -e 0`, a Java hello world, an empty Rust program).
//!
//! `cargo bench -p volley-perf --bench runtimes` (env: `VOLLEY_BENCH_TASKS`, default 20000;
//! `VOLLEY_BENCH_LATENCY_SAMPLES`, default 500; `VOLLEY_BENCH_STARTS`, default 15).

use anyhow::Context;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use volley_client::{connect, register_spec, run_batch, Client};
use volley_proto::api;
use volley_proto::function::{CodeDigest, Language, UserCode};
use volley_proto::Mode;
use volley_testbed::procstat::cpu_time;
use volley_testbed::{Cluster, ClusterSpec};

/// What a runtime's command line holds, by the bench's label for it.
fn runtime_marker(label: &str) -> Option<&'static str> {
    match label {
        "native" => Some("/code/"),
        "python" => Some("volley_runtime.py"),
        "node" => Some("volley_runtime.js"),
        "java" => Some("VolleyRuntime"),
        _ => None,
    }
}

/// Rounds the single-task latencies are taken in.
const ROUNDS: usize = 5;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An empty handler: label, language, code, handler, format.
type Handler = (&'static str, Language, Vec<u8>, String, &'static str);

/// Empty handlers in every runtime.
fn empty_handlers(scratch: &Path) -> anyhow::Result<Vec<Handler>> {
    let ok = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "volley-runtime",
            "--example",
            "probe",
            "--example",
            "bare",
        ])
        .status()?
        .success();
    anyhow::ensure!(ok, "building the native probe");
    let java = scratch.join("Empty.java");
    std::fs::write(
        &java,
        "public final class Empty { public static String handle(String e) { return \"null\"; } }\n",
    )?;
    Ok(vec![
        (
            "native",
            Language::Native,
            std::fs::read(repo().join("target/release/examples/probe"))?,
            String::new(),
            "bin",
        ),
        (
            "python",
            Language::Python,
            b"def handle(event):\n    return None\n".to_vec(),
            String::new(),
            "py",
        ),
        (
            "node",
            Language::Node,
            b"exports.handle = async (event) => null;\n".to_vec(),
            String::new(),
            "js",
        ),
        (
            "java",
            Language::Java,
            volley_client::commands::deploy::compile_java(&java)?,
            "Empty".into(),
            "jar",
        ),
    ])
}

/// CPU of the dispatcher, the workers and the runtimes, and this process.
fn cpu(cluster: &Cluster) -> anyhow::Result<[Duration; 4]> {
    let dispatcher = cpu_time(cluster.dispatcher_pid().context("no dispatcher")?)?;
    let (mut workers, mut runtimes) = (Duration::ZERO, Duration::ZERO);
    for pid in cluster.worker_pids() {
        workers += cpu_time(pid)?;
        for child in volley_testbed::procstat::children(pid) {
            runtimes += cpu_time(child).unwrap_or_default();
        }
    }
    Ok([dispatcher, workers, runtimes, volley_perf::studies::load::process_cpu()])
}

struct Row {
    label: &'static str,
    id: u64,
    throughput: f64,
    cpu_us: [f64; 4],
    latencies_us: Vec<f64>,
    /// Resident memory of each worker's runtime, idle after a round of this function, MiB.
    idle_rss_mib: Vec<f64>,
}

impl Row {
    fn percentile(&self, p: f64) -> f64 {
        let mut lat = self.latencies_us.clone();
        lat.sort_by(|a, b| a.total_cmp(b));
        lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]
    }
}

/// A function's throughput over a batch (after a tenth of it unmeasured), and the CPU
/// per task of each role over it.
async fn throughput(
    cluster: &Cluster,
    client: &Client,
    label: &'static str,
    id: u64,
    tasks: usize,
) -> anyhow::Result<Row> {
    run_batch(
        client,
        vec![(id, String::new()); tasks / 10],
        10_000,
        Duration::from_secs(300),
    )
    .await?;
    let before = cpu(cluster)?;
    let outcome = run_batch(
        client,
        vec![(id, String::new()); tasks],
        10_000,
        Duration::from_secs(300),
    )
    .await?;
    anyhow::ensure!(
        outcome.completed == tasks,
        "{label}: {} of {tasks} completed",
        outcome.completed
    );
    let after = cpu(cluster)?;
    Ok(Row {
        label,
        id,
        throughput: outcome.throughput(),
        cpu_us: std::array::from_fn(|i| (after[i].saturating_sub(before[i])).as_secs_f64() * 1e6 / tasks as f64),
        latencies_us: Vec::new(),
        idle_rss_mib: Vec::new(),
    })
}

/// Submit to result of `n` tasks one at a time, µs, after `warm` unmeasured ones (a
/// slot that ran another function starts this one's runtime first).
async fn latencies(client: &Client, label: &str, id: u64, n: usize, warm: usize) -> anyhow::Result<Vec<f64>> {
    let mut watch = client
        .clone()
        .watch_results(api::WatchResultsRequest { task_ids: vec![] })
        .await?
        .into_inner();
    let mut lat = Vec::with_capacity(n);
    let mut c = client.clone();
    for i in 0..warm + n {
        let t0 = Instant::now();
        let task = c
            .execute(api::ExecuteRequest {
                function_id: id,
                args: String::new(),
            })
            .await?
            .into_inner()
            .task_id;
        loop {
            let msg = watch.next().await.context("watch ended")??;
            if let Some(t) = msg.tasks.iter().find(|t| t.task_id == task) {
                anyhow::ensure!(t.state == api::TaskState::Completed as i32, "{label}: {t:?}");
                break;
            }
        }
        if i >= warm {
            lat.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(lat)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A command's wall time from spawn to exit, ms.
fn bare_start(program: &str, args: &[&str], dir: &Path) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let ok = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()?
        .success();
    anyhow::ensure!(ok, "{program} failed");
    Ok(t0.elapsed().as_secs_f64() * 1e3)
}

/// Medians of `n` alternating trials, ms: the bare command's start to exit, spawn to
/// READY as a worker measures it, and the code's load as the runtime reported it.
/// Alternating, so both see the machine in the same state.
///
/// The runtime is started by a real worker process (`worker --code`, which starts its
/// slot's runtime before registering), not by this bench: a spawn costs the parent's
/// page tables, so a runtime started from this large process would carry a cost no
/// worker pays.
fn starts(
    n: usize,
    bare: (&str, &[&str]),
    scratch: &Path,
    python: &str,
    (language, code, handler, format): (Language, &[u8], &str, &str),
) -> anyhow::Result<[f64; 3]> {
    let digest = CodeDigest::of(code);
    let path = scratch.join(format!("empty-{}", language.name()));
    std::fs::write(&path, code)?;
    let user = UserCode {
        function: "empty".into(),
        language,
        handler: handler.into(),
        format: format.into(),
        digest,
        size: code.len() as u64,
        timeout_ms: 10_000,
        memory_mb: 512,
    };
    let spec = serde_json::to_string(&user)?;
    let worker = volley_testbed::binaries::path("worker")?;
    let (mut plain, mut ready, mut init) = (Vec::new(), Vec::new(), Vec::new());
    // One of each first, unmeasured: page cache and the JIT's class data warm.
    bare_start(bare.0, bare.1, scratch)?;
    worker_start(&worker, &path, &spec, python)?;
    for _ in 0..n {
        plain.push(bare_start(bare.0, bare.1, scratch)?);
        let (r, i) = worker_start(&worker, &path, &spec, python)?;
        ready.push(r);
        init.push(i);
    }
    Ok([median(plain), median(ready), median(init)])
}

/// Starts a worker that starts one runtime for `code` before registering, and reads
/// the runtime's spawn to READY and its code load (ms) from the worker's log. The
/// dispatcher address is one nobody listens on: the worker is stopped once it has said.
fn worker_start(worker: &Path, code: &Path, spec: &str, python: &str) -> anyhow::Result<(f64, f64)> {
    use std::io::BufRead;
    let mut child = Command::new(worker)
        .args([
            "1",
            "tcp://127.0.0.1:9",
            "--python",
            python,
            "--code-spec",
            spec,
            "--code",
        ])
        .arg(code)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("the worker's log")?;
    let mut found = None;
    let mut said = Vec::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line?;
        said.push(line.clone());
        if line.contains("runtime ready") {
            let field = |name: &str| -> Option<f64> {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .and_then(|v| v.parse().ok())
            };
            found = field("ready_ms=").zip(field("code_load_ms="));
            break;
        }
        if line.contains("could not start") {
            break;
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    child.wait()?;
    found.with_context(|| {
        format!(
            "the worker did not report its runtime ready; it said:\n{}",
            said.join("\n")
        )
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let tasks = env_usize("VOLLEY_BENCH_TASKS", 20_000);
    let samples = env_usize("VOLLEY_BENCH_LATENCY_SAMPLES", 500);
    let starts_n = env_usize("VOLLEY_BENCH_STARTS", 15);
    let scratch = std::env::temp_dir().join(format!("volley-bench-runtimes-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let handlers = empty_handlers(&scratch)?;

    let cluster = Cluster::start(
        ClusterSpec::new(Mode::Push, 2, 1)
            .label("bench-runtimes")
            .log_level("warn")
            // e.g. `--running-from dispatch`, to weigh what reporting starts costs.
            .args(
                std::env::var("VOLLEY_BENCH_DISPATCHER_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            ),
    )
    .await?;
    let mut client = connect(&cluster.grpc_url()).await?;
    let (noop, _) = register_spec(&mut client, "noop").await?;
    let mut rows = vec![throughput(&cluster, &client, "built-in noop", noop, tasks).await?];
    for (label, language, code, handler, format) in &handlers {
        let runtime = api::Runtime {
            language: language.name().into(),
            handler: handler.clone(),
            code_format: (*format).into(),
            ..Default::default()
        };
        let id = volley_client::commands::deploy::register_code(
            &mut client,
            &format!("empty-{label}"),
            runtime,
            code.clone(),
        )
        .await?
        .function_id;
        rows.push(throughput(&cluster, &client, label, id, tasks).await?);
    }
    // Latency in rounds, every function in each, so all of them see the machine in the
    // same states (this shared VM drifts by tens of µs over minutes).
    for _ in 0..ROUNDS {
        for row in &mut rows {
            let mut more = latencies(&client, row.label, row.id, samples / ROUNDS, 10).await?;
            row.latencies_us.append(&mut more);
            // A worker's slot that ran this round holds this function's runtime, idle
            // (the other may still hold an earlier one's): told apart by command line.
            let Some(marker) = runtime_marker(row.label) else {
                continue;
            };
            for pid in cluster.worker_pids() {
                for child in volley_testbed::procstat::children(pid) {
                    let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
                    if !String::from_utf8_lossy(&cmdline).contains(marker) {
                        continue;
                    }
                    if let Ok(bytes) = volley_testbed::procstat::rss_bytes(child) {
                        row.idle_rss_mib.push(bytes as f64 / (1 << 20) as f64);
                    }
                }
            }
        }
    }
    cluster.stop().await?;

    println!(
        "\nwarm empty handler, push, 2 workers × 1 slot, memory store ({tasks} tasks a batch, {samples} single tasks)"
    );
    println!("| function | p50 µs | p99 µs | tasks/s | dispatcher µs/task | workers µs/task | runtimes µs/task | client µs/task | idle runtime RSS MiB (median) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            r.label,
            r.percentile(0.5),
            r.percentile(0.99),
            r.throughput,
            r.cpu_us[0],
            r.cpu_us[1],
            r.cpu_us[2],
            r.cpu_us[3],
            if r.idle_rss_mib.is_empty() {
                "–".to_owned()
            } else {
                format!("{:.1}", median(r.idle_rss_mib.clone()))
            }
        );
    }

    // Starts: the bare interpreter, then the runtime to READY with an empty handler.
    let hello = scratch.join("Hello.java");
    std::fs::write(
        &hello,
        "public final class Hello { public static void main(String[] a) { System.out.println(\"hi\"); } }\n",
    )?;
    anyhow::ensure!(
        Command::new("javac")
            .arg("-d")
            .arg(&scratch)
            .arg(&hello)
            .status()?
            .success(),
        "javac"
    );
    let scratch_str = scratch.to_string_lossy().into_owned();
    // The interpreter itself, not a version manager's shim in front of it (pyenv's is a
    // shell script that costs ~100 ms a start): both measurements use the same binary.
    let python = String::from_utf8(
        Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()?
            .stdout,
    )?
    .trim()
    .to_owned();
    let java_args = [
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Xshare:auto",
        "-cp",
        &scratch_str,
        "Hello",
    ];
    let bare_native = repo()
        .join("target/release/examples/bare")
        .to_string_lossy()
        .into_owned();
    let bare: [(&str, &[&str]); 4] = [
        (&bare_native, &[]),
        (&python, &["-I", "-c", "pass"]),
        ("node", &["-e", "0"]),
        ("java", &java_args),
    ];
    println!(
        "\nstart to READY, empty handler, median of {n} alternating trials",
        n = starts_n
    );
    println!("| runtime | bare start ms | start to READY ms | ratio | code load ms (runtime's own) |");
    println!("|---|---:|---:|---:|---:|");
    for ((label, language, code, handler, format), bare) in handlers.iter().zip(bare) {
        let [plain, ready, init] = starts(starts_n, bare, &scratch, &python, (*language, code, handler, format))?;
        println!(
            "| {label} | {plain:.1} | {ready:.1} | {:.2} | {init:.2} |",
            ready / plain
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
