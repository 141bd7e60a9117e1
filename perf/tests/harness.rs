//! The perf harness refuses to measure a cluster that is not what was asked.

use std::time::Duration;
use volley_perf::studies::harness::{parse_args, run_external};
use volley_proto::Mode;
use volley_testbed::{Cluster, ClusterSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_mode_or_worker_count_mismatch_and_measures_a_match() {
    let cluster = Cluster::start(ClusterSpec::new(Mode::Push, 2, 1).label("harness"))
        .await
        .expect("cluster");
    let out = std::env::temp_dir().join(format!("volley-harness-{}.csv", std::process::id()));
    let run = |extra: &str| {
        let line = format!(
            "--dispatcher {} --out {} --optype sleep --task-ms 20 {extra}",
            cluster.grpc_url(),
            out.display()
        );
        parse_args(line.split_whitespace().map(str::to_owned)).expect("args")
    };

    let wrong_mode = run_external(&run("--workers 2 --mode pull"))
        .await
        .expect_err("mode differs");
    assert!(wrong_mode.to_string().contains("runs in push mode"), "{wrong_mode}");
    let wrong_count = run_external(&run("--workers 3 --mode push"))
        .await
        .expect_err("count differs");
    assert!(wrong_count.to_string().contains("2 live workers"), "{wrong_count}");
    assert!(!out.exists(), "a refused run writes nothing");

    let row = tokio::time::timeout(Duration::from_secs(30), run_external(&run("--workers 2 --mode push")))
        .await
        .expect("in time")
        .expect("measured");
    assert_eq!(row.failed(), 0);
    let text = std::fs::read_to_string(&out).expect("csv");
    assert_eq!(text.lines().count(), 2, "header and one row:\n{text}");
    assert!(
        text.lines().nth(1).is_some_and(|l| l.starts_with("push,sleep,2,10,")),
        "{text}"
    );
    let _ = std::fs::remove_file(&out);
    cluster.stop().await.expect("stop");
}
