//! Trace replay end to end: a synthetic trace in the Azure schema, replayed by the
//! `client` binary on a cluster it starts, every scheduled invocation accounted for.

use std::collections::HashMap;
use volley_perf::studies::replay::{fixture, Granularity, Trace};

fn rows(path: &std::path::Path) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).expect("csv");
    r.deserialize().map(|row| row.expect("row")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_minute_trace_at_compress_30_accounts_for_every_invocation() {
    let dir = fixture::temp_dir("replay-e2e");
    fixture::write(&dir, 6, 2, 21).expect("fixture");
    let trace = Trace::read(&dir, Granularity::Minute).expect("trace");
    let scheduled = trace.invocations(0..2);
    let out = |name: &str| dir.join(name);
    let client = volley_testbed::binaries::path("client").expect("client binary");
    let run = tokio::process::Command::new(client)
        .arg("replay")
        .arg("--trace")
        .arg(&dir)
        .args([
            "--compress",
            "30",
            "--cluster",
            "pull:2:8",
            "--drain",
            "10s",
            "--warmup-minutes",
            "1",
        ])
        // Touching the fixture's 20–300 MiB of fresh pages per invocation costs up to 0.65 ms
        // of CPU a MiB: more than 2 cores can give at this rate. A few MiB keep the memory path tested.
        .args(["--max-memory-mb", "4"])
        .arg("--out")
        .arg(out("replay.csv"))
        .arg("--minutes-out")
        .arg(out("minutes.csv"))
        .arg("--summary")
        .arg(out("summary.json"))
        .arg("--db")
        .arg(out("results.sqlite"))
        .args(["--assert", "failed==0,failure_rate==0"])
        .output()
        .await
        .expect("client runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(run.status.success(), "{stdout}\n{stderr}");

    let invocations = rows(&out("replay.csv"));
    assert_eq!(invocations.len() as u64, scheduled, "one row per scheduled invocation");
    assert!(
        invocations.iter().all(|r| r["state"] == "completed"),
        "{stdout}\n{stderr}"
    );
    assert!(invocations
        .iter()
        .all(|r| !r["sent_us"].is_empty() && !r["worker"].is_empty()));
    let minutes = rows(&out("minutes.csv"));
    assert_eq!(minutes.len(), 2);
    for (i, m) in minutes.iter().enumerate() {
        let target: u64 = trace.functions.iter().map(|f| f.counts[i]).sum();
        assert_eq!(m["target"], target.to_string());
        assert_eq!(m["completed"], target.to_string());
        // Issued counts by when the send really happened: on a loaded machine a send due in
        // a minute's last instant may leave just after it, and is counted in the next.
        let issued: u64 = m["issued"].parse().expect("a count");
        assert!(
            issued.abs_diff(target) <= 1 + target / 100,
            "minute {i}: issued {issued} of {target}"
        );
    }
    assert_eq!(
        (minutes[0]["phase"].as_str(), minutes[1]["phase"].as_str()),
        ("warmup", "measure")
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out("summary.json")).expect("summary")).expect("json");
    assert_eq!(summary["completed"], scheduled);
    assert_eq!(summary["issued"], scheduled, "every invocation was sent");
    assert_eq!(summary["verdict"]["pass"], true);
    assert!(out("replay.csv.meta.json").exists());

    // The same run in the results database: every invocation, both minutes, a PASS.
    let db = rusqlite::Connection::open(out("results.sqlite")).expect("results database");
    let one = |sql: &str| -> i64 {
        db.query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    assert_eq!(
        one("SELECT COUNT(*) FROM runs WHERE kind = 'replay' AND verdict = 'PASS'"),
        1
    );
    assert_eq!(
        one("SELECT COUNT(*) FROM requests WHERE state = 'completed'") as u64,
        scheduled
    );
    assert_eq!(one("SELECT COUNT(*) FROM minutes"), 2);
    assert_eq!(one("SELECT SUM(target) FROM minutes") as u64, scheduled);
    assert!(one("SELECT COUNT(DISTINCT pid) FROM process_samples WHERE role = 'worker'") == 2);

    // The replay's charts.
    let plots = dir.join("plots");
    let plot = tokio::process::Command::new(volley_testbed::binaries::path("client").expect("client binary"))
        .args(["plot", "--replay"])
        .arg(out("replay.csv"))
        .arg("--out")
        .arg(&plots)
        .output()
        .await
        .expect("client runs");
    assert!(plot.status.success(), "{}", String::from_utf8_lossy(&plot.stderr));
    for chart in [
        "replay-minutes",
        "replay-latency-cdf",
        "replay-slowdown",
        "replay-durations",
    ] {
        let png = plots.join(format!("{chart}.png"));
        assert!(
            std::fs::metadata(&png).is_ok_and(|m| m.len() > 2_000),
            "{} missing or empty",
            png.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
