//! User functions end to end through the binaries: code deployed over gRPC, sent to real
//! workers over ZeroMQ, run by the real python, node, java and native runtimes; every
//! fault of user code ends its task FAILED with the reason and never takes a worker down.

use volley_testbed::fixtures as common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use volley_client::{run_batch, Client};
use volley_proto::api;
use volley_proto::function::Language;
use volley_proto::wire::MAX_LOG_BYTES;
use volley_proto::Mode;
use volley_testbed::fixtures::deploy_code as deploy;
use volley_testbed::{Cluster, ClusterSpec};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn probes() -> PathBuf {
    repo().join("worker/tests/probes")
}

/// The native probe, built as the `volley-runtime` crate's example.
fn native_probe() -> Vec<u8> {
    let ok = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "volley-runtime", "--example", "probe"])
        .status()
        .expect("cargo")
        .success();
    assert!(ok, "building the native probe");
    std::fs::read(repo().join("target/debug/examples/probe")).expect("the native probe")
}

/// Each language's probe: (language, code, handler, format).
fn probe_code() -> Vec<(Language, Vec<u8>, &'static str, &'static str)> {
    vec![
        (
            Language::Python,
            std::fs::read(probes().join("probe.py")).expect("probe.py"),
            "",
            "py",
        ),
        (
            Language::Node,
            std::fs::read(probes().join("probe.js")).expect("probe.js"),
            "",
            "js",
        ),
        (
            Language::Java,
            volley_client::commands::deploy::compile_java(&probes().join("Probe.java")).expect("javac"),
            "Probe",
            "jar",
        ),
        (Language::Native, native_probe(), "", "bin"),
    ]
}

async fn run(client: &Client, tasks: Vec<(u64, String)>) -> Vec<api::TaskInfo> {
    let n = tasks.len();
    let mut outcome = run_batch(client, tasks, 64, Duration::from_secs(120))
        .await
        .expect("batch");
    assert_eq!(outcome.tasks.len(), n);
    outcome.tasks.sort_by_key(|t| t.task_id);
    outcome.tasks
}

fn completed(t: &api::TaskInfo) -> &str {
    assert_eq!(t.state, api::TaskState::Completed as i32, "{t:?}");
    &t.result
}

fn failed(t: &api::TaskInfo) -> &str {
    assert_eq!(t.state, api::TaskState::Failed as i32, "{t:?}");
    &t.error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_runtime_answers_and_contains_every_fault_in_every_mode() {
    let probes = probe_code();
    let big = "é".repeat(400 * 1024); // 800 KiB of two-byte text
    for mode in [Mode::Push, Mode::Pull, Mode::Local] {
        let (workers, slots) = if mode == Mode::Local { (0, 2) } else { (2, 1) };
        let spec = ClusterSpec::new(mode, workers, slots).label(format!("runtimes-{mode}"));
        let cluster = Cluster::start(spec).await.expect("cluster");
        let mut client = cluster.connect().await.expect("client");
        let worker_pids = cluster.worker_pids();
        let mut tasks = Vec::new();
        let cases = [
            r#"{"echo": "naïve ☃ 日本"}"#.to_owned(),
            r#"{"raise": "bad input"}"#.to_owned(),
            r#"{"crash": true}"#.to_owned(),
            r#"{"sleep_ms": 10000}"#.to_owned(),
            r#"{"print": 1048576}"#.to_owned(),
            serde_json::json!({ "echo": big }).to_string(),
        ];
        for (language, code, handler, format) in &probes {
            let id = deploy(
                &mut client,
                &format!("probe-{language}"),
                *language,
                code.clone(),
                handler,
                format,
                2000,
            )
            .await
            .expect("deploy")
            .function_id;
            tasks.extend(cases.iter().map(|c| (id, c.clone())));
        }
        let done = run(&client, tasks).await;
        for (chunk, (language, ..)) in done.chunks(cases.len()).zip(&probes) {
            let what = format!("{mode} {language}");
            assert_eq!(completed(&chunk[0]), "\"naïve ☃ 日本\"", "{what}");
            let raised = failed(&chunk[1]);
            assert!(raised.contains("bad input"), "{what}: {raised}");
            if *language != Language::Native {
                assert!(raised.lines().count() > 1, "{what}: a traceback follows: {raised}");
            }
            assert!(failed(&chunk[2]).starts_with("crashed: "), "{what}: {}", chunk[2].error);
            assert!(failed(&chunk[3]).starts_with("timeout: "), "{what}: {}", chunk[3].error);
            assert_eq!(completed(&chunk[4]), "null", "{what}");
            let log = &chunk[4].log;
            assert!(
                log.len() >= MAX_LOG_BYTES && log.contains("output cut here"),
                "{what}: {} bytes",
                log.len()
            );
            let echoed: String = serde_json::from_str(completed(&chunk[5])).expect("JSON");
            assert_eq!(echoed, big, "{what}");
        }

        // Code that cannot load fails its tasks with the runtime's own message.
        let broken = [
            (Language::Python, "def handle(event)\n", "py", "SyntaxError"),
            (Language::Node, "exports.handle = (e) => {;\n", "js", "SyntaxError"),
        ];
        for (language, code, format, expected) in broken {
            let id = deploy(&mut client, "broken", language, code.into(), "", format, 2000)
                .await
                .expect("deploy")
                .function_id;
            let done = run(&client, vec![(id, String::new()); 2]).await;
            for t in &done {
                let e = failed(t);
                assert!(
                    e.starts_with("init_failed: ") && e.contains(expected),
                    "{mode} {language}: {e}"
                );
            }
        }

        let info = cluster.info().await.expect("info");
        let broken = info
            .functions
            .iter()
            .find(|f| f.name == "broken")
            .expect("broken is listed");
        assert_eq!(
            broken.init_failures, 4,
            "{mode}: init failures are counted per function"
        );

        // Args over the limit are refused at the door, naming it.
        let over = serde_json::json!({ "echo": "x".repeat(4 << 20) }).to_string();
        let any_function = done_id(&mut client).await;
        let refused = client
            .execute(api::ExecuteRequest {
                function_id: any_function,
                args: over,
            })
            .await
            .expect_err("4 MiB of args");
        assert!(
            matches!(
                refused.code(),
                tonic::Code::InvalidArgument | tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
            ),
            "{refused:?}"
        );
        assert!(
            refused.message().contains("limit") || refused.message().contains("larger than max"),
            "{refused:?}"
        );

        // Nothing of that took a worker down.
        common::serves_noops(&client, 200).await;
        for pid in worker_pids {
            assert!(common::alive(pid), "{mode}: worker {pid} died");
        }
        cluster.stop().await.expect("stop");
    }
}

/// The id of any function, for a request that must be refused before it is looked at.
async fn done_id(client: &mut Client) -> u64 {
    let (id, _) = volley_client::register_spec(client, "noop").await.expect("noop");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_leaves_queued_tasks_on_theirs() {
    let cluster = Cluster::start(ClusterSpec::new(Mode::Push, 0, 1).label("runtime-versions"))
        .await
        .expect("cluster");
    let mut cluster = cluster;
    let mut client = cluster.connect().await.expect("client");
    let code = |v: &str| format!("def handle(event):\n    return '{v}'\n").into_bytes();
    let v1 = deploy(&mut client, "versioned", Language::Python, code("v1"), "", "py", 0)
        .await
        .expect("v1");
    assert_eq!(v1.version, 1);
    let queued = client
        .execute_batch(api::ExecuteBatchRequest {
            tasks: vec![
                api::ExecuteRequest {
                    function_id: v1.function_id,
                    args: String::new()
                };
                3
            ],
        })
        .await
        .expect("submit")
        .into_inner()
        .task_ids;
    let v2 = deploy(&mut client, "versioned", Language::Python, code("v2"), "", "py", 0)
        .await
        .expect("v2");
    assert_eq!((v2.version, v2.function_id > v1.function_id), (2, true));
    cluster.add_worker(1, &[]).await.expect("worker");
    let mut watch = client
        .watch_results(api::WatchResultsRequest { task_ids: queued })
        .await
        .expect("watch")
        .into_inner();
    let mut results = Vec::new();
    while let Some(batch) = watch.message().await.expect("stream") {
        results.extend(batch.tasks.into_iter().map(|t| t.result));
    }
    assert_eq!(results, vec!["\"v1\""; 3]);
    let latest = run(&client, vec![(v2.function_id, String::new())]).await;
    assert_eq!(completed(&latest[0]), "\"v2\"");
    let listed = client
        .list_functions(api::ListFunctionsRequest {})
        .await
        .expect("list")
        .into_inner()
        .functions;
    let versions: Vec<u32> = listed
        .iter()
        .filter(|f| f.name == "versioned")
        .map(|f| f.version)
        .collect();
    assert_eq!(versions, vec![1, 2]);
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_code_is_uploaded_chunked_and_outlives_a_dispatcher_restart_on_redis() {
    let url = common::redis_url();
    let prefix = common::unique_prefix("runtime-code");
    let spec = ClusterSpec::new(Mode::Push, 1, 1)
        .store(url.clone())
        .args(["--redis-prefix", prefix.as_str()])
        .label("runtime-redis");
    let mut cluster = Cluster::start(spec).await.expect("cluster");
    let mut client = cluster.connect().await.expect("client");
    // 5 MiB of code: over the inline limit (uploaded) and over a code piece (chunked).
    let filler = "a".repeat(5 << 20);
    let code = format!("BLOB = '{filler}'\n\ndef handle(event):\n    return len(BLOB)\n").into_bytes();
    let deployed = deploy(&mut client, "large", Language::Python, code, "", "py", 0)
        .await
        .expect("deploy");
    let done = run(&client, vec![(deployed.function_id, String::new()); 2]).await;
    assert!(
        done.iter().all(|t| completed(t) == (5u64 << 20).to_string()),
        "{done:?}"
    );

    cluster.restart_dispatcher().await.expect("restart");
    cluster
        .wait_for_workers(1, Duration::from_secs(20))
        .await
        .expect("worker back");
    let client = cluster.connect().await.expect("client");
    let done = run(&client, vec![(deployed.function_id, String::new())]).await;
    assert_eq!(completed(&done[0]), (5u64 << 20).to_string());

    // Over the code limit: refused, naming it.
    let mut client = client;
    let too_big = vec![b'#'; volley_proto::function::user::MAX_CODE_BYTES + 1];
    let refused = deploy(&mut client, "huge", Language::Python, too_big, "", "py", 0)
        .await
        .expect_err("over the limit");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("67108864"), "{refused:?}");
    // A digest nobody uploaded.
    let unknown = client
        .register_function(api::RegisterFunctionRequest {
            name: "ghost".into(),
            spec: Some(api::FunctionSpec {
                kind: Some(api::function_spec::Kind::Runtime(api::Runtime {
                    language: "python".into(),
                    code_digest: "00".repeat(32),
                    ..Default::default()
                })),
            }),
        })
        .await
        .expect_err("unknown digest");
    assert_eq!(unknown.code(), tonic::Code::FailedPrecondition, "{unknown:?}");
    cluster.stop().await.expect("stop");
    common::purge(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elastic_pool_starts_real_runtimes_from_zero() {
    let bin = volley_testbed::binaries::path("worker").expect("worker binary");
    let spec = ClusterSpec::new(Mode::Push, 0, 1)
        .args([
            "--autoscale",
            "fixed:keepalive=30s",
            "--provision",
            "local",
            "--max-instances",
            "2",
        ])
        .args(["--worker-bin", bin.to_str().expect("utf-8 path")])
        .label("runtime-elastic");
    let cluster = Cluster::start(spec).await.expect("cluster");
    let mut client = cluster.connect().await.expect("client");
    let code = b"import os\n\ndef handle(event):\n    return os.getpid()\n".to_vec();
    let id = deploy(&mut client, "pids", Language::Python, code, "", "py", 0)
        .await
        .expect("deploy")
        .function_id;
    let first = run(&client, vec![(id, String::new())]).await;
    assert!(first[0].cold, "the first task waited for an instance: {:?}", first[0]);
    // The instance started its runtime and loaded the code before it registered: the
    // start is in the cold start's init stage, not in the first task's run.
    let stages = first[0].cold_start.expect("stages");
    let init_us = stages.init_done_us - stages.process_us;
    assert!(
        init_us > 5_000,
        "a python runtime's start is in the init stage: {stages:?}"
    );
    assert!(
        first[0].run_us < init_us,
        "the first task found its runtime READY: {:?}",
        first[0]
    );
    let pid: u32 = completed(&first[0]).parse().expect("a pid");
    // The runtime is the instance's child, not the dispatcher's or a fresh process per task.
    let again = run(&client, vec![(id, String::new())]).await;
    assert!(!again[0].cold);
    assert_eq!(completed(&again[0]), pid.to_string(), "a warm task reuses the runtime");
    let instances = cluster.info().await.expect("info").workers;
    assert!(
        !instances.is_empty() && instances.iter().all(|w| w.function == "pids"),
        "{instances:?}"
    );
    let parent = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the runtime runs");
    let ppid: u32 = parent
        .rsplit(") ")
        .next()
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .expect("ppid");
    assert!(
        instances.iter().any(|w| w.pid == ppid),
        "runtime {pid}'s parent {ppid} is an instance"
    );
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_leaves_no_runtime_behind() {
    let mut cluster = Cluster::start(ClusterSpec::new(Mode::Push, 1, 1).label("runtime-orphans"))
        .await
        .expect("cluster");
    let mut client = cluster.connect().await.expect("client");
    // The handler says it runs (a marker file), then would run for a minute.
    let code =
        b"import time\n\ndef handle(event):\n    open(event['marker'], 'w').close()\n    time.sleep(60)\n".to_vec();
    let id = deploy(&mut client, "forever", Language::Python, code, "", "py", 120_000)
        .await
        .expect("deploy")
        .function_id;
    let marker = std::env::temp_dir().join(format!("volley-forever-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    client
        .execute(api::ExecuteRequest {
            function_id: id,
            args: serde_json::json!({ "marker": marker }).to_string(),
        })
        .await
        .expect("submit");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !marker.exists() {
        assert!(tokio::time::Instant::now() < deadline, "the handler never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let worker = cluster.worker_pid(0).expect("a worker");
    let runtime = *volley_testbed::procstat::children(worker)
        .first()
        .expect("the runtime is the worker's child");
    cluster
        .signal_worker(0, volley_testbed::cluster::Signal::SIGTERM)
        .expect("SIGTERM");
    cluster
        .wait_worker(0, Duration::from_secs(10))
        .await
        .expect("the worker exits");
    assert!(
        common::gone_within(runtime, Duration::from_secs(5)).await,
        "runtime {runtime} outlived its worker"
    );
    let _ = std::fs::remove_file(&marker);
    cluster.stop().await.expect("stop");
}
