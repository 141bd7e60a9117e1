//! The course FaaS's clients against `dispatcher --http`, in every mode: a client written
//! from the contract (`tests/python/rest_client.py`, with `dill` and `requests`) registers
//! by reference and by value, reads values, `None`, pending results and failures (in a
//! fresh interpreter too), sends bad input and 200 concurrent tasks; a lost worker, a
//! runaway function and a task no worker takes end as `Worker Failure`s it can read; and
//! schemathesis, driven by `/openapi.json`, finds no server error.
//!
//! The Python is `VOLLEY_REST_PYTHON` if set, else `target/rest-venv` (created here from
//! PyPI when missing; `scripts/test.sh` creates it ahead of the tests).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use volley_proto::Mode;
use volley_testbed::{Cluster, ClusterSpec};

/// What the client and the runtimes need, pinned.
const PACKAGES: &[&str] = &["dill==0.4.1", "requests==2.34.2", "schemathesis==4.32.5"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn scripts() -> PathBuf {
    workspace().join("systests/tests/python")
}

fn output(cmd: &mut Command, what: &str) -> String {
    volley_testbed::fixtures::run_ok(cmd, what)
}

/// A Python with dill, requests and schemathesis, made once per workspace.
fn python() -> PathBuf {
    match std::env::var_os("VOLLEY_REST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => volley_testbed::fixtures::python_venv("rest-venv", ".volley-rest-ready", PACKAGES),
    }
}

/// A cluster with the REST edge on, its runtimes on `python` with the client's modules.
async fn cluster(mode: Mode, workers: usize, slots: u32, extra: &[&str]) -> Cluster {
    let python = python();
    let spec = ClusterSpec::new(mode, workers, slots)
        .label(format!("rest-{mode}"))
        .args(["--http", "127.0.0.1:0"])
        .args(extra.iter().copied())
        .env("VOLLEY_PYTHON", python.display().to_string())
        .env("VOLLEY_PYTHON_PATH", scripts().display().to_string());
    Cluster::start(spec).await.expect("cluster")
}

fn client(args: &[&str]) -> String {
    output(
        Command::new(python()).arg(scripts().join("rest_client.py")).args(args),
        &format!("rest_client.py {}", args.join(" ")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_course_clients_contract_holds_in_local_pull_and_push_mode() {
    for mode in [Mode::Local, Mode::Pull, Mode::Push] {
        let cluster = cluster(mode, 2, 2, &["--task-timeout", "20"]).await;
        let url = cluster.http_url().expect("the REST edge is on").to_owned();
        let said = tokio::task::spawn_blocking(move || client(&["contract", &url]))
            .await
            .expect("client");
        for part in ["values", "pending", "failures", "bad input", "concurrent"] {
            assert!(said.contains(&format!("ok {part}")), "{mode}: {said}");
        }
        cluster.stop().await.expect("stop");
    }
}

fn wait_json(url: &str, task: &str) -> serde_json::Value {
    serde_json::from_str(client(&["wait", url, task]).trim()).expect("wait prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_function_a_lost_worker_and_no_worker_end_as_worker_failures() {
    let mut cluster = cluster(
        Mode::Push,
        1,
        1,
        &["--task-timeout", "2", "--max-attempts", "1", "--max-queue-wait", "1"],
    )
    .await;
    let url = cluster.http_url().expect("the REST edge is on").to_owned();
    let worker_failure = |v: &serde_json::Value, cause: &str| {
        assert_eq!(v["status"], "FAILED", "{v}");
        assert_eq!(v["error_code"], 500, "{v}");
        let text = v["text"].as_str().unwrap_or_default();
        assert!(
            text.starts_with("Worker Failure") && text.contains(cause),
            "{cause}: {v}"
        );
    };

    // Past its deadline (the function's timeout is the dispatcher's task timeout, 2 s).
    let task = client(&["submit", &url, "runaway", "[]"]);
    worker_failure(&wait_json(&url, task.trim()), "timeout");

    // Its worker killed mid-task, with no attempt left.
    let task = client(&["submit", &url, "nap", "[30]"]).trim().to_owned();
    let began = Instant::now();
    while client(&["status", &url, &task]).trim() != "RUNNING" {
        assert!(began.elapsed() < Duration::from_secs(30), "the nap never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.kill_worker(0).await.expect("kill the worker");
    worker_failure(&wait_json(&url, &task), "worker_lost");

    // No worker to take it within --max-queue-wait.
    let task = client(&["submit", &url, "double", "[2]"]);
    worker_failure(&wait_json(&url, task.trim()), "no_worker");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let cluster = cluster(Mode::Local, 0, 2, &[]).await;
    let spec = format!("{}/openapi.json", cluster.http_url().expect("the REST edge is on"));
    let schemathesis = python().with_file_name("schemathesis");
    let said = tokio::task::spawn_blocking(move || {
        output(
            Command::new(schemathesis)
                .args(["run", &spec, "--checks", "all"])
                // Valid-looking payloads are refused unless they are base64 of a pickle,
                // which a schema cannot say.
                .args(["--exclude-checks", "positive_data_acceptance"])
                .args(["--max-examples", "40", "--seed", "1"])
                .env("SCHEMATHESIS_TELEMETRY", "false")
                .current_dir(std::env::temp_dir()),
            "schemathesis",
        )
    })
    .await
    .expect("schemathesis");
    assert!(said.contains("passed"), "{said}");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_on_another_python_refuses_the_clients_functions_clearly() {
    // The clients say they pickle with Python 3.10; the runtimes run the venv's 3.11.
    let cluster = cluster(Mode::Local, 0, 1, &["--http-python", "3.10"]).await;
    let url = cluster.http_url().expect("the REST edge is on").to_owned();
    let task = client(&["submit", &url, "double", "[2]"]);
    let v = wait_json(&url, task.trim());
    let text = v["text"].as_str().unwrap_or_default();
    assert_eq!(v["status"], "FAILED", "{v}");
    assert!(
        text.starts_with("Worker Failure: init_failed: VersionMismatch") && text.contains("pickled by Python 3.10"),
        "{v}"
    );
    assert!(text.contains("--python"), "the refusal says what to do: {v}");
    cluster.stop().await.expect("stop");
}
