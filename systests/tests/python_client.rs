//! A second language's stock gRPC library drives the dispatcher at its default settings:
//! Python `grpcio` registers, submits with `ExecuteBatch`, reads more than 8 MiB of
//! results through `WatchResults` under the default 4 MiB receive limit, lists services
//! by reflection in `v1alpha` and `v1`, and asks the health service.
//!
//! The Python environment is `VOLLEY_PYTHON` if set, else `target/py-venv` (created here,
//! from PyPI, when missing; `.ci/run` creates it ahead of the tests).

use std::path::{Path, PathBuf};
use std::process::Command;
use volley_proto::Mode;
use volley_testbed::{Cluster, ClusterSpec};

/// The stock packages the test uses, pinned so every run speaks the same client.
const PACKAGES: &[&str] = &[
    "grpcio==1.85.1",
    "grpcio-tools==1.85.1",
    "grpcio-reflection==1.85.1",
    "grpcio-health-checking==1.85.1",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn run(cmd: &mut Command, what: &str) -> String {
    volley_testbed::fixtures::run_ok(cmd, what)
}

/// A Python with the stock gRPC packages, made once per workspace.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("VOLLEY_PYTHON") {
        return PathBuf::from(p);
    }
    volley_testbed::fixtures::python_venv("py-venv", ".volley-grpc-ready", PACKAGES)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_at_default_limits_reads_every_large_result() {
    let python = python();
    let stubs = std::env::temp_dir().join(format!("volley-py-stubs-{}", std::process::id()));
    std::fs::create_dir_all(&stubs).expect("stubs dir");
    let proto_dir = workspace().join("proto");
    run(
        Command::new(&python)
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(&proto_dir)
            .arg(format!("--python_out={}", stubs.display()))
            .arg(format!("--grpc_python_out={}", stubs.display()))
            .arg("volley/v1/dispatcher.proto"),
        "generating Python stubs",
    );

    let cluster = Cluster::start(ClusterSpec::new(Mode::Push, 2, 2).label("python-client"))
        .await
        .expect("cluster");
    let address = cluster.grpc_url().trim_start_matches("http://").to_owned();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/stock_client.py");
    let out = tokio::task::spawn_blocking(move || {
        run(
            Command::new(&python).arg(script).arg(&stubs).arg(address),
            "the Python stock client",
        )
    })
    .await
    .expect("join");
    let seen: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");

    assert_eq!(seen["tasks"], 80, "{seen}");
    assert!(seen["result_bytes"].as_u64().unwrap_or(0) > 8 * 1024 * 1024, "{seen}");
    assert!(
        seen["largest_message_bytes"].as_u64().unwrap_or(u64::MAX) <= 4 * 1024 * 1024,
        "{seen}"
    );
    assert!(seen["messages"].as_u64().unwrap_or(0) >= 3, "{seen}");
    // Each reflection version lists the API, health, and itself.
    for (version, itself) in [
        ("reflection_v1alpha", "grpc.reflection.v1alpha.ServerReflection"),
        ("reflection_v1", "grpc.reflection.v1.ServerReflection"),
    ] {
        let services: Vec<&str> = seen[version]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        for expected in ["volley.v1.Dispatcher", "grpc.health.v1.Health", itself] {
            assert!(services.contains(&expected), "{version} lacks {expected}: {seen}");
        }
    }
    assert_eq!(seen["health"], "SERVING", "{seen}");
    assert_eq!(seen["health_dispatcher"], "SERVING", "{seen}");
    cluster.stop().await.expect("stop");
}
