//! The local provisioner against a real dispatcher: instances of a function start as worker
//! processes and register bound to it, the bound is kept, retirement is a goodbye, a
//! missing binary is a clear error, dropping the provisioner leaves no process, and an
//! instance whose parent is SIGKILLed exits by itself.

use volley_testbed::fixtures as common;

use std::time::Duration;
use volley_client::run_batch;
use volley_dispatcher::provision::local::{LocalConfig, LocalProvisioner};
use volley_dispatcher::provision::{ProvisionError, Provisioner};
use volley_proto::Mode;
use volley_testbed::{Cluster, ClusterSpec};

/// Instances of the real worker binary for `cluster`: one slot, two at most, no
/// emulated init, logs kept, forked from a worker template.
fn local_config(cluster: &Cluster) -> LocalConfig {
    LocalConfig {
        worker_bin: volley_testbed::binaries::path("worker").expect("worker binary"),
        endpoint: cluster.worker_endpoint().expect("endpoint").to_owned(),
        slots: 1,
        init_ms: 0,
        max_instances: 2,
        token: None,
        log_dir: Some(cluster.log_dir().to_owned()),
        code: None,
        prewarm: Vec::new(),
        fork_server: false,
        ready_workers: 0,
        interpreters: Default::default(),
        fork_workers: true,
    }
}

/// What `provisioner` reaps first, waiting up to 5 s for anything to be reaped.
async fn first_reaped(provisioner: &mut LocalProvisioner) -> Vec<volley_dispatcher::provision::Exited> {
    for _ in 0..100 {
        let reaped = provisioner.reap();
        if !reaped.is_empty() {
            return reaped;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Vec::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_instances_start_bound_serve_retire_and_never_outlive_their_parent() {
    let cluster = Cluster::start(ClusterSpec::new(Mode::Push, 0, 1).label("provision"))
        .await
        .expect("cluster");
    let config = LocalConfig {
        init_ms: 100,
        ..local_config(&cluster)
    };
    let worker_bin = config.worker_bin.clone();
    let mut provisioner = LocalProvisioner::new(config.clone());
    let a = provisioner.start("resize", 0).expect("first instance");
    let b = provisioner.start("resize", 0).expect("second instance");
    assert!(matches!(
        provisioner.start("resize", 0),
        Err(ProvisionError::Full { running: 2 })
    ));
    let info = common::wait_until(&cluster, Duration::from_secs(15), "two instances", |i| {
        i.workers.iter().filter(|w| w.function == "resize").count() == 2
    })
    .await;
    let mut names: Vec<&str> = info.workers.iter().map(|w| w.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, [a.worker_name.as_str(), b.worker_name.as_str()]);

    let mut client = cluster.connect().await.expect("client");
    let (f, args) = common::register_named(&mut client, "resize", "sleep:5").await;
    let outcome = run_batch(&client, vec![(f, args); 10], 10, Duration::from_secs(30))
        .await
        .expect("batch");
    assert_eq!(outcome.completed, 10);
    assert!(outcome.tasks.iter().all(|t| t.worker.starts_with("inst-")));

    // Retire one: it says goodbye, leaves the cluster, and is reaped as retired.
    provisioner.retire(a.id).expect("retire");
    common::wait_until(&cluster, Duration::from_secs(10), "one instance", |i| {
        i.workers.len() == 1
    })
    .await;
    let reaped = first_reaped(&mut provisioner).await;
    assert_eq!(reaped.len(), 1);
    assert!(reaped[0].retired && reaped[0].id == a.id, "{reaped:?}");
    assert_eq!(provisioner.running(), 1);

    // A stopping dispatcher takes its instances with it.
    let left = provisioner.pids();
    drop(provisioner);
    for pid in left {
        assert!(
            common::gone_within(pid, Duration::from_secs(5)).await,
            "instance {pid} outlived its provisioner"
        );
    }

    // A missing binary is an error that names it.
    let mut broken = LocalProvisioner::new(LocalConfig {
        worker_bin: "/nonexistent/worker".into(),
        ..config
    });
    let err = broken.start("resize", 0).expect_err("no binary").to_string();
    assert!(err.contains("/nonexistent/worker"), "{err}");

    // A parent killed outright: its instance notices and exits.
    let script = format!(
        "{} 1 {} --function orphan --name orphan-1 --exit-with-parent & wait",
        worker_bin.display(),
        cluster.worker_endpoint().expect("endpoint")
    );
    let mut parent = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("sh");
    let info = common::wait_until(&cluster, Duration::from_secs(15), "the orphan instance", |i| {
        i.workers.iter().any(|w| w.name == "orphan-1")
    })
    .await;
    let pid = info
        .workers
        .iter()
        .find(|w| w.name == "orphan-1")
        .map(|w| w.pid)
        .expect("pid");
    parent.kill().expect("SIGKILL the parent");
    let _ = parent.wait();
    assert!(
        common::gone_within(pid, Duration::from_secs(5)).await,
        "the instance outlived its parent"
    );
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stem_cells_and_the_fork_server_that_die_are_failed_starts_and_are_replaced() {
    let cluster = Cluster::start(ClusterSpec::new(Mode::Push, 0, 1).label("provision-stems"))
        .await
        .expect("cluster");
    let config = LocalConfig {
        prewarm: vec![(volley_proto::function::Language::Python, 2)],
        fork_server: true,
        ready_workers: 1,
        fork_workers: false,
        ..local_config(&cluster)
    };
    let mut provisioner = LocalProvisioner::new(config);
    let stems = provisioner.ready().stem_pids();
    assert_eq!(stems.len(), 3, "two python stem cells and one of no language wait");
    let server = provisioner.ready().fork_server_pid().expect("a fork server runs");
    assert!(provisioner.ready().fork_socket().is_some_and(|s| s.exists()));

    // Neither registers: a stem cell waits for its function, unseen by the dispatcher.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let info = cluster.info().await.expect("info");
    assert!(info.workers.is_empty(), "{:?}", info.workers);

    for pid in [stems[0], server] {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    provisioner.reap();
    let ready = provisioner.ready();
    assert_eq!(ready.failed_starts, 2, "the dead cell and the dead server");
    let now = ready.stem_pids();
    assert_eq!(now.len(), 3, "replaced: {now:?}");
    assert!(!now.contains(&stems[0]) && now.contains(&stems[1]));
    assert!(ready.fork_server_pid().is_some_and(|p| p != server));

    let left: Vec<u32> = now.into_iter().chain(ready.fork_server_pid()).collect();
    drop(provisioner);
    for pid in left {
        assert!(
            common::gone_within(pid, Duration::from_secs(5)).await,
            "{pid} outlived the provisioner"
        );
    }
    cluster.stop().await.expect("stop");
}

/// The parent pid and command line of `pid`.
fn parent_and_cmdline(pid: u32) -> (u32, String) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process runs");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let ppid = after.split(' ').nth(1).and_then(|p| p.parse().ok()).expect("ppid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    (ppid, String::from_utf8_lossy(&cmdline).replace('\0', " "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_forked_from_the_worker_template_are_the_provisioners_children_and_outlive_it() {
    let cluster = Cluster::start(ClusterSpec::new(Mode::Push, 0, 1).label("provision-template"))
        .await
        .expect("cluster");
    let mut provisioner = LocalProvisioner::new(LocalConfig {
        max_instances: 3,
        ..local_config(&cluster)
    });
    let template = provisioner.template_pid().expect("a worker template runs");
    let a = provisioner.start("tpl", 0).expect("an instance");
    let a_pid = provisioner.pids()[0];
    let (parent, cmdline) = parent_and_cmdline(a_pid);
    assert_eq!(parent, std::process::id(), "forked as the provisioner's child");
    assert!(cmdline.contains("--template"), "forked, not exec'd: {cmdline}");
    common::wait_until(&cluster, Duration::from_secs(15), "the forked instance", |i| {
        i.workers.iter().any(|w| w.name == a.worker_name && w.pid == a_pid)
    })
    .await;
    let mut client = cluster.connect().await.expect("client");
    let (f, args) = common::register_named(&mut client, "tpl", "sleep:5").await;
    let outcome = run_batch(&client, vec![(f, args.clone()); 4], 4, Duration::from_secs(30))
        .await
        .expect("batch");
    assert_eq!(outcome.completed, 4);

    // The template killed: the instance it forked goes on serving, and a start in that
    // moment falls back to an exec of the binary; the next reap starts a new template.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(template as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(common::gone_within(template, Duration::from_secs(5)).await);
    let b = provisioner.start("tpl", 0).expect("an instance with no template");
    let b_pid = provisioner.pids()[1];
    let (parent, cmdline) = parent_and_cmdline(b_pid);
    assert_eq!(parent, std::process::id());
    assert!(!cmdline.contains("--template"), "exec'd: {cmdline}");
    assert!(provisioner.reap().is_empty(), "no instance ended");
    let again = provisioner.template_pid().expect("a new template");
    assert_ne!(again, template);
    let c = provisioner.start("tpl", 0).expect("a third instance");
    let c_pid = provisioner.pids()[2];
    assert!(parent_and_cmdline(c_pid).1.contains("--template"));
    let info = common::wait_until(&cluster, Duration::from_secs(15), "three instances", |i| {
        i.workers.iter().filter(|w| w.function == "tpl").count() == 3
    })
    .await;
    assert!(
        info.workers.iter().any(|w| w.name == a.worker_name),
        "{:?}",
        info.workers
    );
    let outcome = run_batch(&client, vec![(f, args); 9], 9, Duration::from_secs(30))
        .await
        .expect("batch");
    assert_eq!(outcome.completed, 9);
    let served: std::collections::HashSet<&str> = outcome
        .tasks
        .iter()
        .map(|t| t.worker.split('#').next().unwrap_or_default())
        .collect();
    assert!(
        served.contains(a.worker_name.as_str()),
        "the orphaned template's instance served: {served:?}"
    );

    // A forked instance retired is waited for and said to have exited cleanly.
    provisioner.retire(a.id).expect("retire");
    let reaped = first_reaped(&mut provisioner).await;
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert!(reaped[0].retired && reaped[0].how == "exit status: 0", "{reaped:?}");
    assert!(!common::alive(a_pid), "reaped, not a zombie");

    let left = [b_pid, c_pid, again];
    drop(provisioner);
    for pid in left {
        assert!(
            common::gone_within(pid, Duration::from_secs(5)).await,
            "{pid} outlived the provisioner"
        );
    }
    let _ = (b, c);
    cluster.stop().await.expect("stop");
}
