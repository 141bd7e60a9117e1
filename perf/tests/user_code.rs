//! The benchmark's commands on user functions: open-loop load, trace replay and a sweep
//! drive deployed Python code by name.

use std::time::Duration;
use volley_proto::api;
use volley_proto::function::Language;
use volley_proto::Mode;
use volley_testbed::fixtures::deploy_code as deploy;
use volley_testbed::{Cluster, ClusterSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_load_drives_a_deployed_function_by_name() {
    use volley_perf::studies::load::{self, Arrival, LoadSpec};
    let cluster = Cluster::start(ClusterSpec::new(Mode::Pull, 1, 2).label("runtime-load"))
        .await
        .expect("cluster");
    let mut client = cluster.connect().await.expect("client");
    let code = b"def handle(event):\n    return event['n'] * 2\n".to_vec();
    deploy(&mut client, "double", Language::Python, code, "", "py", 0)
        .await
        .expect("deploy");
    let spec = LoadSpec {
        rate: 200.0,
        arrival: Arrival::Poisson,
        optype: volley_perf::workload::OpType::Noop,
        task_ms: 0,
        duration: Duration::from_secs(2),
        warmup: Duration::ZERO,
        drain: Duration::from_secs(10),
        seed: 7,
        function: Some(("double".into(), r#"{"n": 21}"#.into())),
        transport: Default::default(),
        follow: None,
    };
    let r = load::run(&client, &spec).await.expect("load");
    assert!(r.sent > 200, "{r:?}");
    assert_eq!((r.completed, r.failed, r.unfinished), (r.sent, 0, 0), "{r:?}");
    assert_eq!(r.optype, "double");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_replays_onto_a_deployed_function() {
    use volley_perf::studies::replay::{fixture, Granularity, Trace};
    let dir = fixture::temp_dir("replay-function");
    fixture::write(&dir, 4, 2, 5).expect("fixture");
    let scheduled = Trace::read(&dir, Granularity::Minute).expect("trace").invocations(0..2);
    let cluster = Cluster::start(ClusterSpec::new(Mode::Pull, 2, 4).label("runtime-replay"))
        .await
        .expect("cluster");
    let mut client = cluster.connect().await.expect("client");
    let code =
        b"import time\n\ndef handle(event):\n    time.sleep(event['ms'] / 1000)\n    return event['ms']\n".to_vec();
    deploy(&mut client, "emulate", Language::Python, code, "", "py", 0)
        .await
        .expect("deploy");
    let out = dir.join("replay.csv");
    let run = tokio::process::Command::new(volley_testbed::binaries::path("client").expect("client binary"))
        .args(["replay", "--function", "emulate", "--compress", "30", "--drain", "10s"])
        .arg("--dispatcher")
        .arg(cluster.grpc_url())
        .arg("--trace")
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .arg("--minutes-out")
        .arg(dir.join("minutes.csv"))
        .arg("--summary")
        .arg(dir.join("summary.json"))
        .output()
        .await
        .expect("client runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(run.status.success(), "{}\n{}", text(&run.stdout), text(&run.stderr));
    let rows = std::fs::read_to_string(&out).expect("replay.csv");
    let completed = rows.lines().skip(1).filter(|l| l.contains(",completed,")).count() as u64;
    assert_eq!(completed, scheduled, "{rows}");
    let info = cluster.info().await.expect("info");
    let emulate = info.counters.expect("counters");
    assert!(emulate.completed >= scheduled);
    let functions = client
        .list_functions(api::ListFunctionsRequest {})
        .await
        .expect("list")
        .into_inner()
        .functions;
    assert_eq!(functions.len(), 1, "no trace function was registered: {functions:?}");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_deploys_user_code_into_every_cluster_it_starts() {
    let dir = std::env::temp_dir().join(format!("volley-sweep-code-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let code = dir.join("square.py");
    std::fs::write(&code, "def handle(event):\n    return event['n'] ** 2\n").expect("code");
    let out = dir.join("performance_test.csv");
    let run = tokio::process::Command::new(volley_testbed::binaries::path("client").expect("client binary"))
        .args([
            "sweep",
            "--workers",
            "1,2",
            "--modes",
            "pull",
            "--repeats",
            "1",
            "--tasks-per-worker",
            "20",
        ])
        .args(["--runtime", "python", "--args", r#"{"n": 7}"#])
        .arg("--code")
        .arg(&code)
        .arg("--out")
        .arg(&out)
        .output()
        .await
        .expect("client runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(run.status.success(), "{}\n{}", text(&run.stdout), text(&run.stderr));
    let mut rows = csv::Reader::from_path(&out).expect("csv");
    let rows: Vec<std::collections::HashMap<String, String>> = rows.deserialize().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 2, "one row per point: {rows:?}");
    for r in &rows {
        assert_eq!(r["OpType"], "square", "{r:?}");
    }
    assert_eq!(
        rows.iter()
            .map(|r| r["nTasks"].parse::<usize>().expect("count"))
            .sum::<usize>(),
        60
    );
    let _ = std::fs::remove_dir_all(&dir);
}
