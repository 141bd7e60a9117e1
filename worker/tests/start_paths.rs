//! The ways a runtime can start besides a fresh interpreter: forked from the Python fork
//! server, or taken prewarmed from the shelf; and what happens when either fails.

use std::path::Path;
use std::sync::Arc;
use volley_proto::function::{CodeDigest, Language, UserCode, DEFAULT_MEMORY_MB};
use volley_proto::wire::Outcome;
use volley_worker::runtime::instance::Origin;
use volley_worker::runtime::{Interpreters, Runtimes, StartOptions};

fn probe(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probes").join(name)).expect("a probe")
}

fn deploy(runtimes: &Runtimes, language: Language, file: &str, format: &str) -> Arc<UserCode> {
    let bytes = probe(file);
    let digest = CodeDigest::of(&bytes);
    runtimes.cache.insert(digest, &bytes).expect("cache");
    Arc::new(UserCode {
        function: "probe".into(),
        language,
        handler: "handle".into(),
        format: format.into(),
        digest,
        size: bytes.len() as u64,
        timeout_ms: 2000,
        memory_mb: DEFAULT_MEMORY_MB,
    })
}

fn completed(o: Outcome) -> String {
    match o {
        Outcome::Completed(r) => r,
        other => panic!("expected a result, got {other:?}"),
    }
}

fn with(options: StartOptions) -> Runtimes {
    Runtimes::with_options(Interpreters::default(), options).expect("runtimes")
}

fn kill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[tokio::test]
async fn the_fork_server_forks_runtimes_whose_state_and_surroundings_are_their_own() {
    let runtimes = with(StartOptions {
        fork_server: true,
        ..Default::default()
    });
    let code = deploy(&runtimes, Language::Python, "probe.py", "py");
    let mut instances = Vec::new();
    for _ in 0..3 {
        let i = runtimes.start(&code).await.expect("a forked runtime");
        assert_eq!(i.started.origin, Origin::Forked);
        assert_eq!(i.started.runtime, "python");
        instances.push(i);
    }
    assert_eq!(runtimes.counts.forked.get(), 3);
    let server = runtimes.fork_server_pid().await.expect("a fork server runs");

    // Module state is per instance: each counts from 1 in a process of its own.
    let mut pids = Vec::new();
    for (n, i) in instances.iter_mut().enumerate() {
        for expected in 1..=n + 1 {
            let r: (u32, u32) =
                serde_json::from_str(&completed(i.run(&code, 1, 1, r#"{"count": 1}"#).await.outcome)).unwrap();
            assert_eq!(r.0 as usize, expected);
            pids.push(r.1);
        }
    }
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(!pids.contains(&server));

    // The same surroundings as a fresh interpreter: its pipes only, its own directory,
    // the function's name, nothing of the worker's environment.
    let i = &mut instances[0];
    assert_eq!(
        completed(i.run(&code, 2, 1, r#"{"fds": true}"#).await.outcome),
        "[0,1,2,3,4,5]"
    );
    assert!(completed(i.run(&code, 3, 1, r#"{"env": "HOME"}"#).await.outcome).contains("instances"));
    assert_eq!(
        completed(i.run(&code, 4, 1, r#"{"env": "VOLLEY_FUNCTION"}"#).await.outcome),
        "\"probe\""
    );
    let r = i.run(&code, 5, 1, r#"{"print": 5}"#).await;
    assert_eq!(r.log, "xxxxx");

    // A forked runtime's death is read back from the server; the others serve on.
    let r = instances[1].run(&code, 6, 1, r#"{"exit": 3}"#).await;
    assert!(!r.keep);
    assert!(
        matches!(&r.outcome, Outcome::Failed(e) if e.contains("exited with status 3")),
        "{:?}",
        r.outcome
    );
    let r = instances[2].run(&code, 7, 1, r#"{"sleep_ms": 5000}"#).await;
    assert!(
        matches!(&r.outcome, Outcome::Failed(e) if e.starts_with("timeout: ")),
        "{:?}",
        r.outcome
    );
    let r = instances[0].run(&code, 8, 1, r#"{"echo": "still here"}"#).await;
    assert_eq!(completed(r.outcome), "\"still here\"");
}

#[tokio::test]
async fn a_failed_fork_is_counted_and_a_fresh_interpreter_takes_its_place() {
    let runtimes = with(StartOptions {
        fork_server: true,
        ..Default::default()
    });
    let code = deploy(&runtimes, Language::Python, "probe.py", "py");
    let first = runtimes.start(&code).await.expect("forked");
    assert_eq!(first.started.origin, Origin::Forked);
    let server = runtimes.fork_server_pid().await.expect("a fork server");
    // The server stopped (alive, so not restarted): its fork is refused after the wait.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let mut second = runtimes.start(&code).await.expect("a fresh runtime");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server as i32),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    assert_eq!(second.started.origin, Origin::Spawned);
    assert_eq!(runtimes.counts.failed.get(), 1);
    assert_eq!(completed(second.run(&code, 1, 1, r#"{"echo": 2}"#).await.outcome), "2");

    // A dead server is replaced by a new one on the next start, without a failure.
    kill(server);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let third = runtimes.start(&code).await.expect("forked again");
    assert_eq!(third.started.origin, Origin::Forked);
    assert_ne!(runtimes.fork_server_pid().await, Some(server));
    assert_eq!(runtimes.counts.failed.get(), 1);
}

#[tokio::test]
async fn a_prewarmed_runtime_takes_a_deployed_function_and_the_shelf_is_refilled() {
    let runtimes = with(StartOptions {
        prewarm: vec![(Language::Python, 1), (Language::Node, 1)],
        ..Default::default()
    });
    runtimes.refill().await;
    assert_eq!(runtimes.pids().len(), 2, "one python and one node runtime wait");
    for (language, file, format) in [(Language::Python, "probe.py", "py"), (Language::Node, "probe.js", "js")] {
        let code = deploy(&runtimes, language, file, format);
        let mut i = runtimes
            .start(&code)
            .await
            .unwrap_or_else(|e| panic!("{language}: {e}"));
        assert_eq!(i.started.origin, Origin::Prewarmed, "{language}");
        // Given its function only now, it still knows its name.
        let name = completed(i.run(&code, 1, 1, r#"{"env": "VOLLEY_FUNCTION"}"#).await.outcome);
        assert_eq!(name, "\"probe\"", "{language}");
        // Whatever it did while it waited (Node holds a conversation with itself) has
        // left nothing in the directory the function gets.
        let left = completed(i.run(&code, 2, 1, r#"{"ls": true}"#).await.outcome);
        assert_eq!(left, "[]", "{language}");
        runtimes.refill().await;
        let again = runtimes.start(&code).await.expect("from the refilled shelf");
        assert_eq!(again.started.origin, Origin::Prewarmed, "{language}");
    }
    // A limit other than the default: Node's heap is set at start, so no prewarmed one.
    let mut code = (*deploy(&runtimes, Language::Node, "probe.js", "js")).clone();
    code.memory_mb = 300;
    runtimes.refill().await;
    let i = runtimes.start(&code).await.expect("a fresh node");
    assert_eq!(i.started.origin, Origin::Spawned);
    assert_eq!(runtimes.counts.prewarmed.get(), 4);
}

#[tokio::test]
async fn a_prewarmed_runtime_that_died_waiting_is_a_failed_start_and_is_replaced() {
    let runtimes = with(StartOptions {
        prewarm: vec![(Language::Python, 1)],
        ..Default::default()
    });
    runtimes.refill().await;
    let waiting = runtimes.pids();
    assert_eq!(waiting.len(), 1);
    kill(waiting[0]);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let code = deploy(&runtimes, Language::Python, "probe.py", "py");
    let mut i = runtimes.start(&code).await.expect("a fresh runtime instead");
    assert_eq!(i.started.origin, Origin::Spawned);
    assert_eq!(runtimes.counts.failed.get(), 1);
    assert_eq!(completed(i.run(&code, 1, 1, r#"{"echo": 1}"#).await.outcome), "1");
    runtimes.refill().await;
    let replaced: Vec<u32> = runtimes.pids().into_iter().filter(|p| *p != waiting[0]).collect();
    assert_eq!(replaced.len(), 2, "the running one and a new prewarmed one");
}

#[test]
fn prewarm_flags_name_languages_and_counts() {
    use volley_worker::runtime::prewarm::parse;
    assert_eq!(
        parse("python=2,node=1").unwrap().0,
        vec![(Language::Python, 2), (Language::Node, 1)]
    );
    assert!(parse("native=1").unwrap_err().contains("own executable"));
    assert!(parse("python").unwrap_err().contains("LANGUAGE=N"));
    assert!(parse("cobol=1").is_err());
    assert!(parse("python=1000").unwrap_err().contains("0 to 64"));
}
