//! `scripts/render-benchmarks.py`, which `scripts/benchmarks.sh` runs to write BENCHMARKS.md:
//! on the committed study outputs in `docs/results/` every question renders from its data,
//! and a question without outputs is said to be missing, never filled in.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn render(dir: &Path) -> String {
    let out = Command::new("python3")
        .arg(repo().join("scripts/render-benchmarks.py"))
        .arg(dir)
        .args(["--revision", "abc1234", "--date", "2026-12-05"])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn every_question_renders_from_its_outputs_and_a_missing_one_says_so() {
    let dir = volley_testbed::fixtures::temp_dir("render-benchmarks");
    let results = repo().join("docs/results");
    for (from, to) in [
        ("weak.csv", "weak.csv"),
        ("strong.csv", "strong.csv"),
        ("find-max.csv", "find-max.csv"),
        ("replay.json", "replay.json"),
        ("coldstart-trials.csv", "coldstart-trials.csv"),
        ("coldstart-bursts.csv", "coldstart-bursts.csv"),
        ("chaos-seed7.json", "chaos.json"),
        ("course-weak-scaling.csv", "course/performance_test.csv"),
        ("cpu-curve.csv", "cpu-curve.csv"),
        ("redis-durability.log", "durability.log"),
        ("failover-kill.json", "failover-kill/kill/failover-kill.json"),
        ("failover-stall.json", "failover-stall/stall/failover-stall.json"),
        ("chaos-ha-seed7.json", "chaos-ha.json"),
    ] {
        std::fs::create_dir_all(dir.join(to).parent().expect("a folder")).expect("folder");
        std::fs::copy(results.join(from), dir.join(to)).expect("a committed result");
    }
    std::fs::write(
        dir.join("cluster.log"),
        "== cluster: cargo bench\n| mode | tasks/s |\n|---|---:|\n| pull | 347215 |\n",
    )
    .expect("log");
    let page = render(&dir);
    for section in [
        "## Throughput, CPU per task and latency (2026-12-05, `abc1234`)",
        "## Scaling, closed loop",
        "## Open loop",
        "## Open loop: CPU per task against the offered rate",
        "## Trace replay",
        "## Cold starts",
        "## Cold starts per language",
        "## The course FaaS's clients through REST",
        "## The durable path: Redis against the memory store",
        "## Failover of an --ha pair under load",
        "## Chaos",
        "## Chaos with an --ha pair, the leader killed",
    ] {
        assert!(page.contains(section), "{section} missing:\n{page}");
    }
    // Figures computed from the data: pull's 16-worker efficiency (mean of 3 repeats),
    // the replay's counts, the chaos audit, the bench's own table.
    assert!(
        page.contains("| pull | 99.62 % | 99.68 % | 99.67 % | 99.60 % | 99.47 % |"),
        "{page}"
    );
    assert!(page.contains("32,503 · 32,503 · 32,503"), "{page}");
    assert!(page.contains("| push | 11,770 | 0 | 0 | 0 |"), "{page}");
    assert!(page.contains("| pull | 347215 |"), "{page}");
    assert!(page.contains("| push | sleep | 5.032 s |"), "{page}");
    assert!(
        page.contains(
            "| push | 1 × 1 | 5,000 | 5,020 | 0.25 | 0.60 | 42.4 | 47.2 | 17.7 | 28.2 · 16.6 · 9.6 | 1.5 · 2.8 · 1.8 |"
        ),
        "{page}"
    );
    // The curve's last point per cluster: the highest rate its search found sustained.
    assert!(
        page.contains(
            "| pull | 1 × 8 | 180,861 (highest meeting the SLO) | 180,735 | 1.17 | 34.37 | 4.1 | 4.7 | 0.7 | 2.4 · 1.8 · 0.5 | 1.7 · 2.6 · 1.2 |"
        ),
        "{page}"
    );
    assert!(
        page.contains("| push | 1 × 1 | 200,000 (the search's ceiling met the SLO) | 199,983 |"),
        "{page}"
    );
    assert!(
        page.contains("pull 5.131 s (+0.131 s from the ideal 5 s, efficiency 0.975, 1.007 of local's speed)"),
        "{page}"
    );
    // The durable path as ranges over its two runs, each against the memory store of
    // its run; the failovers row by row, the one not run said so; the leader's takeover.
    assert!(
        page.contains("| redis-off | 284,282 – 291,572 | 1.10 – 1.12 | 2.17 | 1.70 – 1.97 | 0.0012 – 0.0013 |"),
        "{page}"
    );
    assert!(
        page.contains("| SIGKILL | 993 ms | 1,068 ms | 0.29 / 2.4 ms | 0.39 / 1,012.9 ms | 8 | 15 | 0 | 0 | – |"),
        "{page}"
    );
    assert!(
        page.contains("| SIGSTOP, resumed 8 s later | not measured in this run |"),
        "{page}"
    );
    assert!(
        page.contains("| push | 11,650 | 0 | 0 | 0 | 0 | 26 | 724 ms | 1 |"),
        "{page}"
    );
    // The runtimes bench did not run: said, not invented.
    assert!(
        page.contains("Not measured in this run: runtimes.log is missing."),
        "{page}"
    );

    let empty = volley_testbed::fixtures::temp_dir("render-benchmarks-empty");
    let page = render(&empty);
    assert_eq!(page.matches("Not measured in this run").count(), 13, "{page}");
}
