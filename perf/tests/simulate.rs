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
