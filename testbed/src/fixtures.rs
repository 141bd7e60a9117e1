//! What end-to-end tests assert with. These helpers panic on failure, as tests want.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use volley_client::{register_spec, run_batch, BatchOutcome, Client};
use volley_proto::api;

static PREFIXES: AtomicUsize = AtomicUsize::new(0);

/// The machine's Redis, as CI provides it.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A key prefix no other test uses.
pub fn unique_prefix(test: &str) -> String {
    format!(
        "volley-test:{test}:{}:{}:",
        std::process::id(),
        PREFIXES.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deletes every key under `prefix`.
pub async fn purge(url: &str, prefix: &str) {
    crate::purge_redis(url, prefix).await;
}

/// The expected outcome of one task of the mixed batch.
pub struct Expect {
    pub spec: &'static str,
    pub count: usize,
    pub completed: bool,
    pub text: &'static str,
}

/// noop, sleep, spin, echo and fail tasks, with what each must end as.
pub const MIXED: &[Expect] = &[
    Expect {
        spec: "noop",
        count: 20,
        completed: true,
        text: "null",
    },
    Expect {
        spec: "sleep:30",
        count: 8,
        completed: true,
        text: "{\"slept_ms\":30}",
    },
    Expect {
        spec: "spin:10",
        count: 6,
        completed: true,
        text: "\"spun_ms\":10",
    },
    Expect {
        spec: "echo:volley",
        count: 5,
        completed: true,
        text: "\"volley\"",
    },
    Expect {
        spec: "fail:on purpose",
        count: 4,
        completed: false,
        text: "on purpose",
    },
];

/// Runs the mixed batch and checks every task reached the right terminal state.
pub async fn run_mixed(client: &mut Client) -> BatchOutcome {
    let mut tasks = Vec::new();
    let mut expected = std::collections::HashMap::new();
    for e in MIXED {
        let (function_id, args) = register_spec(client, e.spec).await.expect("register");
        expected.insert(function_id, e);
        tasks.extend(std::iter::repeat_n((function_id, args), e.count));
    }
    let outcome = run_batch(client, tasks, 16, Duration::from_secs(60))
        .await
        .expect("batch finished");
    let total: usize = MIXED.iter().map(|e| e.count).sum();
    assert_eq!(outcome.tasks.len(), total);
    for t in &outcome.tasks {
        let e = expected[&t.function_id];
        if e.completed {
            assert_eq!(
                t.state,
                api::TaskState::Completed as i32,
                "{} task {}: {:?}",
                e.spec,
                t.task_id,
                t
            );
            assert!(t.result.contains(e.text), "{} result {:?}", e.spec, t.result);
        } else {
            assert_eq!(t.state, api::TaskState::Failed as i32, "{}: {:?}", e.spec, t);
            assert_eq!(t.error, e.text);
        }
        assert!(
            t.attempts >= 1 && t.dispatched_us >= t.submitted_us && t.completed_us >= t.dispatched_us,
            "{t:?}"
        );
    }
    let failed: usize = MIXED.iter().filter(|e| !e.completed).map(|e| e.count).sum();
    assert_eq!(outcome.failed, failed);
    outcome
}

/// Polls until `check` holds for the cluster info, or panics after `timeout`.
pub async fn wait_until(
    cluster: &crate::Cluster,
    timeout: Duration,
    what: &str,
    check: impl Fn(&api::ClusterInfoResponse) -> bool,
) -> api::ClusterInfoResponse {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(info) = cluster.info().await {
            if check(&info) {
                return info;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; logs in {}",
            cluster.log_dir().display()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `GET url` over a fresh HTTP/1.1 connection: (status, body). Enough for the metrics
/// pages and Prometheus's query API, without an HTTP client crate.
pub async fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Ok((status, if chunked { dechunk(body) } else { body.to_owned() }))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A port that was free a moment ago, for a process that must be told its port
/// ([`crate::free_port`]).
pub fn free_port() -> u16 {
    crate::free_port().expect("a free port on 127.0.0.1")
}

/// Registers `spec` (e.g. `sleep:5`) under `name`; returns its id and the task arguments.
pub async fn register_named(client: &mut volley_client::Client, name: &str, spec: &str) -> (u64, String) {
    let (kind, args) = volley_proto::function::FunctionKind::parse_spec(spec).expect("spec");
    let id = client
        .register_function(api::RegisterFunctionRequest {
            name: name.into(),
            spec: Some(kind.to_api()),
        })
        .await
        .expect("register")
        .into_inner()
        .function_id;
    (id, args)
}

/// Whether process `pid` runs (a zombie does not).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Waits up to `limit` for process `pid` to be gone.
pub async fn gone_within(pid: u32, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while alive(pid) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Registers a noop and runs `n` of them to completion: the proof, after an attack or a
/// fault, that the dispatcher still serves real clients and workers.
pub async fn serves_noops(client: &Client, n: usize) {
    let (noop, _) = register_spec(&mut client.clone(), "noop")
        .await
        .expect("register a noop");
    let outcome = run_batch(
        client,
        vec![(noop, String::new()); n],
        n.min(1000),
        Duration::from_secs(30),
    )
    .await
    .expect("a batch of noops");
    assert_eq!(outcome.completed, n, "{} of {n} noops completed", outcome.completed);
}

/// Deploys user code as `name`: inline, or uploaded first when over the inline limit.
pub async fn deploy_code(
    client: &mut Client,
    name: &str,
    language: volley_proto::function::Language,
    code: Vec<u8>,
    handler: &str,
    format: &str,
    timeout_ms: u64,
) -> Result<api::RegisterFunctionResponse, tonic::Status> {
    let runtime = api::Runtime {
        language: language.name().into(),
        handler: handler.into(),
        code_format: format.into(),
        timeout_ms,
        memory_mb: 256,
        ..Default::default()
    };
    volley_client::commands::deploy::register_code(client, name, runtime, code).await
}

/// A fresh, empty folder under the system's temporary directory, named for `label` and
/// this process.
pub fn temp_dir(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("volley-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// The python of a virtual environment under the workspace's `target/`, made once from
/// PyPI with `packages` (pinned) when missing: `VOLLEY_PYTHON`-style overrides are the
/// caller's. `scripts/test.sh` makes the same environments ahead of the tests.
pub fn python_venv(name: &str, marker: &str, packages: &[&str]) -> std::path::PathBuf {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(name);
    let python = venv.join("bin/python");
    let ready = venv.join(marker);
    if !ready.exists() {
        run_ok(
            std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        );
        run_ok(
            std::process::Command::new(&python)
                .args(["-m", "pip", "install", "--quiet"])
                .args(packages),
            &format!("pip install {}", packages.join(" ")),
        );
        std::fs::write(&ready, packages.join("\n")).expect("marking the venv ready");
    }
    python
}

/// Runs `cmd` to success and returns its stdout; panics with both outputs otherwise.
pub fn run_ok(cmd: &mut std::process::Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
