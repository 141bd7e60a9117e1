//! Function-bound workers end to end: `worker --function NAME` gets only that function's
//! tasks, a function with no instance waits (never FAILED for it), and `ClusterInfo`
//! shows each function's queue and instances.

use volley_testbed::fixtures as common;

use std::time::Duration;
use volley_client::run_batch;
use volley_proto::api;
use volley_proto::Mode;
use volley_testbed::{Cluster, ClusterSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_workers_get_only_their_function_and_an_orphan_function_waits() {
    for mode in [Mode::Push, Mode::Pull] {
        let spec = ClusterSpec::new(mode, 0, 1)
            .args(["--metrics", "127.0.0.1:0"])
            .label(format!("functions-{mode}"));
        let mut cluster = Cluster::start(spec).await.expect("cluster");
        let resize = cluster
            .add_worker(2, &["--function", "resize"])
            .await
            .expect("resize instance");
        let thumb = cluster
            .add_worker(2, &["--function", "thumbnail"])
            .await
            .expect("thumbnail instance");
        let mut client = cluster.connect().await.expect("client");
        let (r, r_args) = common::register_named(&mut client, "resize", "sleep:5").await;
        let (t, t_args) = common::register_named(&mut client, "thumbnail", "echo:small").await;
        let mut tasks = vec![(r, r_args); 30];
        tasks.extend(vec![(t, t_args); 30]);
        let outcome = run_batch(&client, tasks, 7, Duration::from_secs(60))
            .await
            .expect("batch");
        assert_eq!((outcome.completed, outcome.failed), (60, 0), "{mode}");
        for task in &outcome.tasks {
            let expected = if task.function_id == r { resize } else { thumb };
            assert!(
                task.worker.starts_with(&format!("worker-{expected}#")),
                "{mode}: task of function {} ran on {}",
                task.function_id,
                task.worker
            );
        }

        // A function with no instance: its tasks wait in its queue, and are not FAILED.
        let (o, o_args) = common::register_named(&mut client, "orphan", "noop").await;
        let ids: Vec<u64> = client
            .execute_batch(api::ExecuteBatchRequest {
                tasks: vec![
                    api::ExecuteRequest {
                        function_id: o,
                        args: o_args
                    };
                    3
                ],
            })
            .await
            .expect("submit")
            .into_inner()
            .task_ids;
        let info = common::wait_until(&cluster, Duration::from_secs(10), "the orphan queue", |i| {
            i.functions.iter().any(|f| f.name == "orphan" && f.queued == 3)
        })
        .await;
        let orphan = info
            .functions
            .iter()
            .find(|f| f.name == "orphan")
            .expect("orphan listed");
        assert_eq!((orphan.ready, orphan.running), (0, 0));
        let listed = |name: &str| info.functions.iter().find(|f| f.name == name).map(|f| f.ready);
        assert_eq!((listed("resize"), listed("thumbnail")), (Some(1), Some(1)));
        assert!(info.workers.iter().any(|w| w.function == "resize"));
        let url = cluster.metrics_url().expect("metrics").to_owned();
        let (_, page) = common::http_get(&url).await.expect("scrape");
        for line in [
            r#"volley_function_tasks_queued{function="orphan"} 3"#,
            r#"volley_function_instances_ready{function="orphan"} 0"#,
            r#"volley_function_instances_ready{function="resize"} 1"#,
        ] {
            assert!(page.lines().any(|l| l == line), "{mode}: no '{line}' in\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        for id in &ids {
            let status = client
                .get_status(api::GetStatusRequest { task_id: *id })
                .await
                .expect("status")
                .into_inner();
            assert_eq!(
                status.state,
                api::TaskState::Queued as i32,
                "{mode}: task {id} left the queue"
            );
        }
        // An instance of it joins: they run.
        let instance = cluster
            .add_worker(1, &["--function", "orphan"])
            .await
            .expect("orphan instance");
        common::wait_until(&cluster, Duration::from_secs(10), "the orphan tasks", |i| {
            i.counters.as_ref().is_some_and(|c| c.completed == 63)
        })
        .await;
        let _ = instance;
        cluster.stop().await.expect("stop");
    }
}
