//! The Prometheus pages: `promtool check metrics` accepts what the dispatcher and a worker
//! serve, the counts match what the client saw, and a real Prometheus server scraping the
//! cluster answers a PromQL query with the client's completed count.

use volley_testbed::fixtures as common;

use common::{free_port, http_get};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use volley_client::{register_spec, run_batch};
use volley_proto::Mode;
use volley_testbed::{Cluster, ClusterSpec};

async fn promtool_check(page: &str) -> String {
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; .ci/run installs it)");
    let mut stdin = child.stdin.take().expect("promtool stdin");
    stdin.write_all(page.as_bytes()).await.expect("feeding promtool");
    drop(stdin);
    let out = child.wait_with_output().await.expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{said}\n--- page ---\n{page}"
    );
    said
}

/// The value of the first sample whose line starts with `series` (name and labels).
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_prometheus_reads_the_completed_count() {
    let spec = ClusterSpec::new(Mode::Pull, 2, 2)
        .args(["--metrics", "127.0.0.1:0"])
        .label("metrics");
    let mut cluster = Cluster::start(spec).await.expect("cluster");
    let worker_page = format!("127.0.0.1:{}", free_port());
    cluster
        .add_worker(1, &["--metrics", &worker_page])
        .await
        .expect("worker with metrics");
    let page_url = cluster.metrics_url().expect("metrics url in the ready line").to_owned();
    let client = cluster.connect().await.expect("client");

    let mut c = client.clone();
    let (noop, args) = register_spec(&mut c, "noop").await.expect("register noop");
    let (fail, fail_args) = register_spec(&mut c, "fail:on purpose").await.expect("register fail");
    let mut tasks = vec![(noop, args); 3000];
    tasks.extend(vec![(fail, fail_args); 7]);
    let outcome = run_batch(&client, tasks, 500, Duration::from_secs(60))
        .await
        .expect("batch");
    assert_eq!((outcome.completed, outcome.failed), (3000, 7));

    let (status, page) = http_get(&page_url).await.expect("scrape");
    assert_eq!(status, 200, "{page}");
    let lint = promtool_check(&page).await;
    assert!(lint.trim().is_empty(), "promtool lint findings:\n{lint}");
    let value = |s: &str| sample(&page, s).unwrap_or_else(|| panic!("no sample {s} in\n{page}"));
    assert_eq!(
        value(r#"volley_tasks_finished_total{function="noop",state="completed"}"#),
        3000.0
    );
    assert_eq!(
        value(r#"volley_tasks_finished_total{function="fail",state="failed"}"#),
        7.0
    );
    assert_eq!(value(r#"volley_tasks_submitted_total{function="noop"}"#), 3000.0);
    assert_eq!(value("volley_task_latency_seconds_count"), 3007.0);
    assert_eq!(value("volley_workers_ready"), 3.0);
    assert_eq!(value("volley_tasks_queued"), 0.0);
    assert!(page.contains("volley_build_info{"), "{page}");
    // Bounded labels: only these keys, and a page whose size does not grow with tasks.
    let allowed = ["function", "state", "le", "version", "mode", "store", "policy"];
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, labels)) = line.split_once('{') else {
            continue;
        };
        let labels = labels.split('}').next().unwrap_or_default();
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let key = pair.split('=').next().unwrap_or_default();
            assert!(allowed.contains(&key), "unexpected label '{key}' in {line}");
        }
    }
    assert!(page.lines().count() < 300, "{} lines", page.lines().count());

    let (status, worker) = http_get(&format!("http://{worker_page}/metrics"))
        .await
        .expect("worker scrape");
    assert_eq!(status, 200);
    promtool_check(&worker).await;
    assert!(
        sample(&worker, "volley_worker_tasks_received_total").is_some(),
        "{worker}"
    );
    assert_eq!(sample(&worker, "volley_worker_connected"), Some(1.0));

    // The Grafana dashboard asks only for series these pages serve.
    let dashboard = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana-dashboard.json"))
        .expect("docs/grafana-dashboard.json");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let mut asked = 0;
    for panel in json["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("volley_"))
            {
                asked += 1;
                let served = |p: &str| p.lines().any(|l| l.starts_with(name));
                assert!(
                    served(&page) || served(&worker),
                    "the dashboard asks for {name}, which no page serves"
                );
            }
        }
    }
    assert!(asked >= 15, "{asked} series in the dashboard");

    // A real Prometheus scraping the dispatcher: PromQL must return the client's count.
    let dir = tempdir("prometheus");
    let target = page_url.trim_start_matches("http://").trim_end_matches("/metrics");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 250ms\nscrape_configs:\n  - job_name: volley\n    static_configs:\n      - targets: ['{target}']\n"),
    )
    .expect("prometheus config");
    let web = format!("127.0.0.1:{}", free_port());
    let mut prometheus = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus (Debian package prometheus; .ci/run installs it)");
    let query = "sum(volley_tasks_finished_total%7Bstate%3D%22completed%22%7D)";
    let url = format!("http://{web}/api/v1/query?query={query}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let seen = loop {
        if let Ok((200, body)) = http_get(&url).await {
            let json: serde_json::Value = serde_json::from_str(&body).expect("query JSON");
            if let Some(v) = json["data"]["result"][0]["value"][1].as_str() {
                break v.parse::<f64>().expect("a number");
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus never returned the count; its log: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(seen, outcome.completed as f64);
    let _ = prometheus.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    cluster.stop().await.expect("stop");
}

fn tempdir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("volley-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn a_metrics_port_in_use_is_a_clear_error_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("addr").to_string();
    for (binary, args) in [
        (
            "dispatcher",
            vec!["-m", "pull", "-p", "0", "--grpc", "127.0.0.1:0", "--metrics", &addr],
        ),
        ("worker", vec!["1", "tcp://127.0.0.1:1", "--metrics", &addr]),
    ] {
        let out = std::process::Command::new(volley_testbed::binaries::path(binary).expect("binary"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("ran");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{binary} started on a taken port");
        assert!(
            said.contains(&format!("cannot serve metrics on {addr}"))
                && said.contains("another process holds the port"),
            "{binary}: {said}"
        );
    }
}
