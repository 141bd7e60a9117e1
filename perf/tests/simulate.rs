//! `client simulate` end to end on the synthetic trace: a row per policy, and bad policy
//! specs refused before anything runs.

use volley_perf::studies::replay::fixture;

fn client(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(volley_testbed::binaries::path("client").expect("client binary"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("client ran")
}

#[test]
fn every_policy_gets_a_row_and_bad_specs_are_refused() {
    let dir = fixture::temp_dir("simulate-e2e");
    fixture::write(&dir, 10, 8, 3).expect("fixture");
    let trace = dir.to_str().expect("utf-8 path");
    let out = client(
        &dir,
        &[
            "simulate",
            "--trace",
            trace,
            "--out",
            "sim.csv",
            "--functions-out",
            "f.csv",
            "--plot",
            "plots",
        ],
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    let mut rows = csv::Reader::from_path(dir.join("sim.csv")).expect("sim.csv");
    let column = rows
        .headers()
        .expect("header")
        .iter()
        .position(|h| h == "policy")
        .expect("a policy column");
    let policies: Vec<String> = rows
        .records()
        .map(|r| r.expect("row").get(column).expect("policy").to_owned())
        .collect();
    assert_eq!(policies, ["fixed-10m", "fixed-1m", "kpa", "hybrid"]);
    assert!(dir.join("plots").join("simulate-policies.png").exists());
    assert!(
        std::fs::read_to_string(dir.join("f.csv"))
            .expect("f.csv")
            .lines()
            .count()
            > 4
    );

    for (policy, expected) in [
        ("lru", "unknown policy 'lru'"),
        ("kpa:stable=1x", "stable=1x"),
        ("hybrid:head=70", "outside"),
    ] {
        let out = client(
            &dir,
            &["simulate", "--trace", trace, "--policy", policy, "--out", "other.csv"],
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{policy}: {said}");
        assert!(said.contains(expected), "{policy}: {said}");
        assert!(!dir.join("other.csv").exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idle_instance_time_is_weighed_by_each_runtimes_memory() {
    let dir = fixture::temp_dir("simulate-memory");
    fixture::write(&dir, 6, 8, 3).expect("fixture");
    let trace = dir.to_str().expect("utf-8 path");
    let args = [
        "simulate",
        "--trace",
        trace,
        "--policy",
        "fixed:keepalive=10m",
        "--policy",
        "fixed:keepalive=1m",
        "--idle-mib",
        "python=20,node=46.5",
    ];
    let out = client(&dir, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut r = csv::Reader::from_path(dir.join("sim-memory.csv")).expect("sim-memory.csv");
    let rows: Vec<std::collections::HashMap<String, String>> = r.deserialize().map(|x| x.expect("row")).collect();
    assert_eq!(rows.len(), 4, "two policies × two runtimes: {rows:?}");
    let num = |row: &std::collections::HashMap<String, String>, k: &str| row[k].parse::<f64>().expect(k);
    for row in &rows {
        let expected = num(row, "idle_instance_s") * num(row, "idle_mib_per_instance");
        assert!(
            (num(row, "idle_mib_s") - expected).abs() < 1e-6 * expected.max(1.0),
            "{row:?}"
        );
    }
    // A longer keep-alive idles more, and Node's instances weigh more than Python's.
    let at = |policy_prefix: &str, runtime: &str| {
        rows.iter()
            .find(|r| r["policy"].contains(policy_prefix) && r["runtime"] == runtime)
            .map(|r| num(r, "idle_mib_s"))
            .expect("a row")
    };
    assert!(at("10m", "python") >= at("1m", "python"));
    assert!(at("10m", "node") > at("10m", "python"));
    let bad = client(&dir, &["simulate", "--trace", trace, "--idle-mib", "python"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RUNTIME=MIB"));
}
