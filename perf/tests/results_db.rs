//! The results database and verdicts end to end, through the `client` binary: a sweep
//! stores its run, points, requests and process samples; a failing `--assert` exits 99
//! and is stored as FAIL; bad `--db` and `--assert` are refused before anything runs.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::Output;

fn client(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(volley_testbed::binaries::path("client").expect("client binary"))
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("client ran")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("volley-db-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_sweep_is_stored_and_a_failing_assertion_exits_99() {
    let dir = scratch("sweep");
    let sweep = |assert: &str| {
        client(
            &dir,
            &[
                "sweep",
                "--workers",
                "1,2",
                "--modes",
                "pull",
                "--optypes",
                "sleep",
                "--task-ms",
                "20",
                "--repeats",
                "2",
                "--out",
                "p.csv",
                "--db",
                "r.sqlite",
                "--assert",
                assert,
            ],
        )
    };
    let pass = sweep("failed==0,efficiency>=0.1,p99<30s");
    assert_eq!(pass.status.code(), Some(0), "{}", said(&pass));
    assert!(said(&pass).contains("verdict: PASS"), "{}", said(&pass));
    let fail = sweep("p50<1us,failed==0");
    assert_eq!(fail.status.code(), Some(99), "{}", said(&fail));
    let out = said(&fail);
    assert!(out.contains("FAIL p50<1us") && out.contains("PASS failed==0"), "{out}");

    let db = Connection::open(dir.join("r.sqlite")).expect("open");
    let one = |sql: &str| -> i64 {
        db.query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    // The schema: every table docs/observability.md documents, with its indices.
    for table in [
        "runs",
        "run_metrics",
        "assertions",
        "points",
        "requests",
        "minutes",
        "process_samples",
        "coldstarts",
    ] {
        assert_eq!(
            one(&format!(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
            )),
            1,
            "{table}"
        );
    }
    assert!(one("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'process_samples_by_time'") == 1);
    assert_eq!(one("SELECT COUNT(*) FROM runs"), 2);
    assert_eq!(one("SELECT COUNT(*) FROM runs WHERE id = 1 AND verdict = 'PASS'"), 1);
    assert_eq!(one("SELECT COUNT(*) FROM runs WHERE id = 2 AND verdict = 'FAIL'"), 1);
    // 2 worker counts × 2 repeats, 5 tasks per worker: 4 points, 30 tasks per run.
    assert_eq!(one("SELECT COUNT(*) FROM points WHERE run_id = 1"), 4);
    assert_eq!(
        one("SELECT COUNT(*) FROM requests WHERE run_id = 1 AND state = 'completed'"),
        30
    );
    assert_eq!(
        one("SELECT COUNT(DISTINCT pid) FROM process_samples WHERE run_id = 1 AND role = 'dispatcher'"),
        4
    );
    assert!(one("SELECT COUNT(*) FROM process_samples WHERE run_id = 1 AND role = 'worker'") >= 6);
    assert_eq!(
        one("SELECT passed FROM assertions WHERE run_id = 2 AND expr = 'p50<1us'"),
        0
    );
    // The documented join (docs/queries/): each request with the dispatcher's CPU in the second it completed.
    let query = include_str!("../../docs/queries/latency-vs-dispatcher-cpu.sql");
    let mut q = db.prepare(query).expect("the documented query compiles");
    let joined: Vec<(f64, f64)> = q
        .query_map(rusqlite::named_params! {":run": 1}, |r| Ok((r.get(3)?, r.get(4)?)))
        .expect("runs")
        .collect::<Result<_, _>>()
        .expect("rows");
    let joined = joined.len();
    assert!(joined > 0, "no request joined a dispatcher sample");

    let compare = client(&dir, &["compare", "1", "2", "--db", "r.sqlite"]);
    assert_eq!(compare.status.code(), Some(0), "{}", said(&compare));
    assert!(
        said(&compare).contains("pull sleep:20 ×2 throughput"),
        "{}",
        said(&compare)
    );
    let runs = client(&dir, &["runs", "--db", "r.sqlite"]);
    assert!(said(&runs).contains("FAIL"), "{}", said(&runs));

    // The CPU/RSS-over-time panel as chart files.
    let plot = client(&dir, &["plot", "--db", "r.sqlite", "--run", "1", "--out", "plots"]);
    assert_eq!(plot.status.code(), Some(0), "{}", said(&plot));
    for chart in ["process-cpu-run1.png", "process-rss-run1.svg"] {
        assert!(dir.join("plots").join(chart).exists(), "{chart} missing");
    }

    // The report of the failed run, rendered by a real browser.
    let report = client(
        &dir,
        &["report", "--db", "r.sqlite", "--run", "2", "--out", "report.html"],
    );
    assert_eq!(report.status.code(), Some(0), "{}", said(&report));
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report");
    // Self-contained: nothing fetched (the SVG namespace is a name, not a request).
    for fetch in ["src=", "href=", "<link", "<script", "url(", "@import"] {
        assert!(!html.contains(fetch), "the report would fetch something: {fetch}");
    }
    let dom = chromium(&dir, &["--dump-dom", "report.html"]);
    for section in volley_perf::presentation::html::SECTIONS {
        assert!(
            dom.contains(&format!("<section id=\"{section}\">")),
            "section {section} missing from the rendered page"
        );
    }
    assert!(
        dom.contains("FAIL") && dom.contains("p50&lt;1us"),
        "the verdict is not on the page"
    );
    assert!(dom.matches("<svg").count() >= 4, "expected four charts");
    chromium(
        &dir,
        &["--window-size=1100,3000", "--screenshot=report.png", "report.html"],
    );
    let shot = std::fs::metadata(dir.join("report.png")).expect("screenshot").len();
    assert!(shot > 50_000, "a {shot}-byte screenshot is too small to hold the page");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Headless Chromium (Debian's package; .ci/run installs it) on a file in `dir`.
fn chromium(dir: &Path, args: &[&str]) -> String {
    let (file, flags) = args.split_last().expect("a file");
    let out = std::process::Command::new("chromium")
        .current_dir(dir)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--user-data-dir=chromium-profile",
        ])
        .args(flags)
        .arg(format!("file://{}", dir.join(file).display()))
        .output()
        .expect("chromium (apt-get install chromium; .ci/run installs it)");
    assert!(out.status.success(), "chromium failed: {}", said(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bad_db_and_assertions_are_refused_before_the_run() {
    let dir = scratch("refusals");
    std::fs::write(dir.join("notes.txt"), "not a database").expect("write");
    let cases: [(&[&str], &str); 3] = [
        (&["sweep", "--db", "notes.txt"], "is not a SQLite database"),
        (&["sweep", "--assert", "p98<1ms"], "unknown metric 'p98'"),
        (&["sweep", "--assert", "p99<250"], "needs a unit"),
    ];
    for (args, expected) in cases {
        let o = client(&dir, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", said(&o));
        assert!(said(&o).contains(expected), "{args:?}: {}", said(&o));
        assert!(!dir.join("performance_test.csv").exists(), "{args:?} ran anyway");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).expect("read"),
        "not a database"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_run_samples_the_dispatcher_it_reports_and_stores_every_request() {
    use volley_proto::Mode;
    use volley_testbed::{Cluster, ClusterSpec};
    let cluster = Cluster::start(ClusterSpec::new(Mode::Push, 1, 2).label("db-load"))
        .await
        .expect("cluster");
    let dir = scratch("load");
    let url = cluster.grpc_url();
    let out = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            client(
                &dir,
                &[
                    "--dispatcher",
                    &url,
                    "load",
                    "--rate",
                    "200",
                    "--optype",
                    "noop",
                    "--for",
                    "2s",
                    "--warmup",
                    "500ms",
                    "--drain",
                    "2s",
                    "--db",
                    "r.sqlite",
                    "--assert",
                    "failed==0,achieved_rate>=0.5",
                ],
            )
        })
        .await
        .expect("client thread")
    };
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let db = Connection::open(dir.join("r.sqlite")).expect("open");
    let one = |sql: &str| -> i64 {
        db.query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    assert_eq!(
        one("SELECT COUNT(*) FROM runs WHERE kind = 'load' AND verdict = 'PASS' AND seed = 42"),
        1
    );
    // Every request sent has a row, and the dispatcher agrees on how many completed.
    let info = cluster.info().await.expect("info");
    let completed = info.counters.expect("counters").completed as i64;
    assert_eq!(
        one("SELECT COUNT(*) FROM requests WHERE state = 'completed'"),
        completed
    );
    assert_eq!(one("SELECT COUNT(*) FROM requests WHERE intended_us IS NULL"), 0);
    // The dispatcher and worker on this host were found through ClusterInfo and sampled.
    let dispatcher = format!(
        "SELECT COUNT(*) FROM process_samples WHERE role = 'dispatcher' AND pid = {}",
        info.pid
    );
    assert!(one(&dispatcher) >= 2, "the dispatcher was not sampled");
    assert!(one("SELECT COUNT(DISTINCT pid) FROM process_samples WHERE role = 'worker'") == 1);
    assert!(one("SELECT COUNT(*) FROM run_metrics WHERE name = 'dispatcher_cpu_per_task'") == 1);
    cluster.stop().await.expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sweep_on_redis_samples_the_redis_server_too() {
    let dir = scratch("redis");
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let out = client(
        &dir,
        &[
            "sweep",
            "--workers",
            "1",
            "--modes",
            "local",
            "--optypes",
            "noop",
            "--repeats",
            "1",
            "--store",
            &redis,
            "--out",
            "p.csv",
            "--db",
            "r.sqlite",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let db = Connection::open(dir.join("r.sqlite")).expect("open");
    let samples: i64 = db
        .query_row("SELECT COUNT(*) FROM process_samples WHERE role = 'redis'", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert!(samples >= 1, "Redis was not sampled: {}", said(&out));
    let measured: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM run_metrics WHERE name = 'redis_cpu_per_task'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(measured, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
