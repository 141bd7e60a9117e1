//! Every shipped runtime, driven through the worker's runtime host with a real
//! interpreter: results, raised errors, crashes, deadlines, memory, init failures, output,
//! non-ASCII text and isolation. (The end-to-end tests through the binaries are in perf.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use volley_proto::function::{CodeDigest, Language, UserCode};
use volley_proto::wire::{Outcome, MAX_LOG_BYTES};
use volley_worker::runtime::{Interpreters, Runtimes};

fn probes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probes")
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// The native probe, built as the `volley-runtime` crate's example.
fn native_probe() -> Vec<u8> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "volley-runtime", "--example", "probe"])
        .status()
        .expect("cargo");
    assert!(status.success());
    std::fs::read(target_dir().join("debug/examples/probe")).expect("the native probe")
}

/// The Java probe, compiled and packed as `client deploy` does with a `.java` file.
fn java_probe() -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("volley-java-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let ok = Command::new("javac")
        .arg("-d")
        .arg(&dir)
        .arg(probes().join("Probe.java"))
        .status()
        .expect("javac")
        .success();
    assert!(ok);
    let jar = dir.join("probe.jar");
    let ok = Command::new("jar")
        .arg("cf")
        .arg(&jar)
        .arg("-C")
        .arg(&dir)
        .arg("Probe.class")
        .status()
        .expect("jar")
        .success();
    assert!(ok);
    let bytes = std::fs::read(&jar).expect("the jar");
    std::fs::remove_dir_all(&dir).expect("clean up");
    bytes
}

fn user_code(language: Language, handler: &str, format: &str, digest: CodeDigest, timeout_ms: u64) -> Arc<UserCode> {
    Arc::new(UserCode {
        function: "probe".into(),
        language,
        handler: handler.into(),
        format: format.into(),
        digest,
        size: 0,
        timeout_ms,
        memory_mb: 256,
    })
}

fn each_language() -> Vec<(Language, Vec<u8>, &'static str, &'static str)> {
    vec![
        (
            Language::Python,
            std::fs::read(probes().join("probe.py")).expect("probe.py"),
            "handle",
            "py",
        ),
        (
            Language::Node,
            std::fs::read(probes().join("probe.js")).expect("probe.js"),
            "handle",
            "js",
        ),
        (Language::Native, native_probe(), "", "bin"),
        (Language::Java, java_probe(), "Probe", "jar"),
    ]
}

fn failed(o: &Outcome) -> &str {
    match o.error() {
        Some(e) => e,
        None => panic!("expected a failure, got {o:?}"),
    }
}

#[tokio::test]
async fn every_runtime_runs_answers_and_contains_every_fault() {
    std::env::set_var("VOLLEY_TOKEN", "secret-never-shown");
    let runtimes = Runtimes::new(Interpreters::default()).unwrap();
    for (language, bytes, handler, format) in each_language() {
        let digest = CodeDigest::of(&bytes);
        runtimes.cache.insert(digest, &bytes).unwrap();
        let code = user_code(language, handler, format, digest, 1500);
        let mut instance = runtimes
            .start(&code)
            .await
            .unwrap_or_else(|e| panic!("{language}: {e}"));
        assert_eq!(instance.started.runtime, language.name());

        // A result, with non-ASCII text both ways.
        let r = instance.run(&code, 1, 1, r#"{"echo": "naïve ☃ 日本"}"#).await;
        assert_eq!(r.outcome, Outcome::Completed("\"naïve ☃ 日本\"".into()), "{language}");
        assert!(r.keep);

        // A raise: its type, message and traceback; the instance lives on.
        let r = instance.run(&code, 1, 1, r#"{"raise": "bad input"}"#).await;
        let e = failed(&r.outcome);
        assert!(e.contains("bad input"), "{language}: {e}");
        if language != Language::Native {
            assert!(e.lines().count() > 1, "{language}: a traceback follows: {e}");
        }
        assert!(r.keep, "{language}");

        // The worker's secrets are not in the runtime's environment.
        let r = instance.run(&code, 1, 1, r#"{"env": "VOLLEY_TOKEN"}"#).await;
        assert_eq!(r.outcome, Outcome::Completed("null".into()), "{language}");

        // 1 MiB printed: the log keeps its bound and says it was cut.
        let r = instance.run(&code, 1, 1, r#"{"print": 1048576}"#).await;
        assert_eq!(r.outcome, Outcome::Completed("null".into()), "{language}");
        assert!(
            r.log.len() >= MAX_LOG_BYTES && r.log.len() < MAX_LOG_BYTES + 200,
            "{language}: {}",
            r.log.len()
        );
        assert!(r.log.contains("output cut here"), "{language}");

        // Past its deadline: killed, and the next task gets a fresh process.
        let r = instance.run(&code, 1, 1, r#"{"sleep_ms": 5000}"#).await;
        assert!(
            failed(&r.outcome).starts_with("timeout:"),
            "{language}: {:?}",
            r.outcome
        );
        assert!(!r.keep);
        drop(instance);

        // A crash: the exit status or signal, never the worker.
        let mut instance = runtimes.start(&code).await.unwrap();
        let r = instance.run(&code, 1, 1, r#"{"crash": true}"#).await;
        let e = failed(&r.outcome);
        assert!(
            e.starts_with("crashed:") && (e.contains("signal") || e.contains("status")),
            "{language}: {e}"
        );
        assert!(!r.keep);
        drop(instance);

        // Over its memory limit: killed, out_of_memory.
        let mut instance = runtimes.start(&code).await.unwrap();
        let r = instance
            .run(&code, 1, 1, r#"{"alloc_mb": 600, "sleep_ms": 3000}"#)
            .await;
        assert!(
            failed(&r.outcome).starts_with("out_of_memory:")
                || failed(&r.outcome).contains("OutOfMemory")
                || failed(&r.outcome).contains("MemoryError")
                || failed(&r.outcome).starts_with("crashed:"),
            "{language}: {:?}",
            r.outcome
        );
        drop(instance);
    }
}

#[tokio::test]
async fn a_handler_that_cannot_load_is_an_init_failure_with_the_runtimes_message() {
    let runtimes = Runtimes::new(Interpreters::default()).unwrap();
    let cases: [(Language, &[u8], &str, &str, &str); 3] = [
        (
            Language::Python,
            b"def handle(event)\n    return 1\n",
            "handle",
            "py",
            "SyntaxError",
        ),
        (
            Language::Python,
            b"def other(event):\n    return 1\n",
            "handle",
            "py",
            "no function 'handle'",
        ),
        (
            Language::Node,
            b"exports.handle = (e) => {;\n",
            "handle",
            "js",
            "SyntaxError",
        ),
    ];
    for (language, bytes, handler, format, expected) in cases {
        let digest = CodeDigest::of(bytes);
        runtimes.cache.insert(digest, bytes).unwrap();
        let code = user_code(language, handler, format, digest, 1000);
        match runtimes.start(&code).await {
            Ok(_) => panic!("{language}: loaded broken code"),
            Err(e) => assert!(e.to_string().contains(expected), "{language}: {e}"),
        }
    }
    let missing = Runtimes::new(Interpreters {
        python: "/nonexistent/python3".into(),
        ..Interpreters::default()
    })
    .unwrap();
    let bytes = b"def handle(e): return e";
    let digest = CodeDigest::of(bytes);
    missing.cache.insert(digest, bytes).unwrap();
    let e = missing
        .start(&user_code(Language::Python, "handle", "py", digest, 1000))
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("--python"), "{e}");
}

#[tokio::test]
async fn a_runtime_gets_only_its_pipes_and_a_directory_of_its_own() {
    let runtimes = Runtimes::new(Interpreters::default()).unwrap();
    let bytes = std::fs::read(probes().join("probe.py")).expect("probe.py");
    let digest = CodeDigest::of(&bytes);
    runtimes.cache.insert(digest, &bytes).unwrap();
    let code = user_code(Language::Python, "handle", "py", digest, 2000);
    let mut instance = runtimes.start(&code).await.unwrap();
    // 0-4 and the descriptor listdir itself opens: nothing of the worker's.
    let r = instance.run(&code, 1, 1, r#"{"fds": true}"#).await;
    assert_eq!(r.outcome, Outcome::Completed("[0,1,2,3,4,5]".into()));
    let r = instance.run(&code, 2, 1, r#"{"env": "HOME"}"#).await;
    let Outcome::Completed(home) = r.outcome else { panic!() };
    assert!(home.contains("instances"), "{home}");
    // Its own process group, in its directory, stdin empty, no signal blocked.
    let r = instance.run(&code, 3, 1, r#"{"process": true}"#).await;
    assert_eq!(
        r.outcome,
        Outcome::Completed(r#"{"group_leader":true,"stdin":"/dev/null","in_home":true,"blocked":0}"#.into())
    );
}

#[tokio::test]
async fn a_python_package_in_a_zip_imports_its_dependencies() {
    let dir = std::env::temp_dir().join(format!("volley-zip-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let zip = dir.join("app.zip");
    // A handler module and a dependency beside it, packed by Python's own zipfile.
    let script = format!(
        "import zipfile\nwith zipfile.ZipFile({:?}, 'w') as z:\n    z.writestr('helper/__init__.py', 'def shout(s):\\n    return s.upper()\\n')\n    z.writestr('app.py', 'import helper\\ndef main(event):\\n    return helper.shout(event[\"word\"])\\n')\n",
        zip.display().to_string()
    );
    assert!(Command::new("python3")
        .args(["-c", &script])
        .status()
        .expect("python3")
        .success());
    let bytes = std::fs::read(&zip).expect("the zip");
    std::fs::remove_dir_all(&dir).expect("clean up");
    let runtimes = Runtimes::new(Interpreters::default()).expect("runtimes");
    let digest = CodeDigest::of(&bytes);
    runtimes.cache.insert(digest, &bytes).expect("cache");
    let code = user_code(Language::Python, "app.main", "zip", digest, 2000);
    let mut instance = runtimes.start(&code).await.expect("start");
    let r = instance.run(&code, 1, 1, r#"{"word": "volley"}"#).await;
    assert_eq!(r.outcome, Outcome::Completed("\"VOLLEY\"".into()));
}

/// A "native function" that is a shell script writing `frames` (printf escapes) to the
/// worker's frame pipe, then waiting: a runtime that speaks garbage.
fn garbage_runtime(frames: &str) -> Vec<u8> {
    format!("#!/bin/sh\nprintf '{frames}' >&4\nsleep 5\n").into_bytes()
}

#[tokio::test]
async fn a_runtime_writing_garbage_fails_its_task_and_the_worker_goes_on() {
    let runtimes = Runtimes::new(Interpreters::default()).expect("runtimes");
    // READY("native", "x", 0) as printf escapes: length 24, kind 2, two texts, a u64.
    let ready = r"\000\000\000\030\002\000\000\000\006native\000\000\000\001x\000\000\000\000\000\000\000\000";
    let cases = [
        ("a length over the limit", r"\377\377\377\377".to_owned(), true),
        ("a zero length", r"\000\000\000\000".to_owned(), true),
        ("an unknown kind", r"\000\000\000\001\143".to_owned(), true),
        (
            "bytes after the last field",
            r"\000\000\000\003\002\000\000".to_owned(),
            true,
        ),
        (
            "READY, then an answer to another task",
            format!(r"{ready}\000\000\000\015\005\000\000\000\000\000\000\000\011\000\000\000\000"),
            false,
        ),
        (
            "READY, then text that is not UTF-8",
            format!(r"{ready}\000\000\000\016\005\000\000\000\000\000\000\000\001\000\000\000\001\377"),
            false,
        ),
    ];
    for (what, frames, at_init) in cases {
        let bytes = garbage_runtime(&frames);
        let digest = CodeDigest::of(&bytes);
        runtimes.cache.insert(digest, &bytes).expect("cache");
        let code = user_code(Language::Native, "", "bin", digest, 3000);
        let started = std::time::Instant::now();
        match runtimes.start(&code).await {
            Err(e) => {
                assert!(at_init, "{what}: refused at init: {e}");
                assert!(
                    e.to_string().contains("frame") || e.to_string().contains("READY"),
                    "{what}: {e}"
                );
            }
            Ok(mut instance) => {
                assert!(!at_init, "{what}: accepted as READY");
                let r = instance.run(&code, 1, 1, "null").await;
                let e = failed(&r.outcome);
                assert!(e.starts_with("runtime_protocol: "), "{what}: {e}");
                assert!(!r.keep, "{what}: a runtime that spoke garbage is not kept");
            }
        }
        // Judged at once, never waiting out the script's sleep or the deadline.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{what}: {:?}",
            started.elapsed()
        );
    }
}
