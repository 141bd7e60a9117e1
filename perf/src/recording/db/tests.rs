use super::*;
use crate::recording::verdict::Checked;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("volley-results-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("results.sqlite")
}

fn sample_run() -> RunRecord {
    let meta = RunMeta {
        timestamp: "2026-11-24T00:00:00Z".into(),
        git_revision: "abc1234".into(),
        host: "test".into(),
        cores: 2,
    };
    let mut run = RunRecord::new("load", meta, Some(42));
    run.ended_ms = run.started_ms + 1500;
    run.metrics.insert("p99".into(), 0.012);
    run.assertions.push(Checked {
        expr: "p99<10ms".into(),
        measured: Some(0.012),
        passed: false,
        shown: "12.00ms".into(),
    });
    run.requests.push(RequestRow {
        task_id: Some(7),
        function: "noop".into(),
        state: "completed",
        completed_us: Some(1_000_000),
        latency_us: Some(900),
        ..Default::default()
    });
    run.minutes.push(MinuteRow {
        minute: 3,
        target: 10,
        issued: 10,
        completed: 9,
        failed: 1,
        late: 0,
    });
    run.samples.push(ProcessSample {
        unix_ms: 1_000,
        role: "dispatcher".into(),
        pid: 1,
        cpu_ms: 5.0,
        rss_bytes: 1 << 20,
    });
    run
}

#[test]
fn a_run_lands_whole_and_reads_back() {
    let path = temp("roundtrip");
    let mut db = ResultsDb::open(&path).expect("open");
    let id = db.record(&sample_run()).expect("record");
    let second = db.record(&sample_run()).expect("record again");
    assert_eq!(second, id + 1);
    let db = ResultsDb::open_read_only(&path).expect("read");
    let count = |table: &str| -> i64 {
        db.conn()
            .query_row(&format!("SELECT COUNT(*) FROM {table} WHERE run_id = ?1"), [id], |r| {
                r.get(0)
            })
            .expect("count")
    };
    for table in ["run_metrics", "assertions", "requests", "minutes", "process_samples"] {
        assert_eq!(count(table), 1, "{table}");
    }
    let verdict: String = db
        .conn()
        .query_row("SELECT verdict FROM runs WHERE id = ?1", [id], |r| r.get(0))
        .expect("verdict");
    assert_eq!(verdict, "FAIL");
    let runs = compare::runs(&db).expect("runs");
    assert_eq!(runs.len(), 2);
    let deltas = compare::compare(&db, id, second).expect("compare");
    assert_eq!(deltas[0].name, "p99");
    assert_eq!(deltas[0].change, Some(0.0));
    assert!(compare::compare(&db, id, 99).is_err());
}

#[test]
fn refuses_a_file_that_is_not_a_results_database() {
    let path = temp("garbage");
    std::fs::write(&path, "Mode,OpType\nlocal,noop\n").expect("write");
    let err = ResultsDb::open(&path).expect_err("not sqlite").to_string();
    assert!(err.contains("is not a SQLite database"), "{err}");
    // Nothing was written over it.
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        "Mode,OpType\nlocal,noop\n"
    );
}

#[test]
fn refuses_a_newer_schema_and_a_read_only_file() {
    let path = temp("newer");
    drop(ResultsDb::open(&path).expect("create"));
    {
        let conn = Connection::open(&path).expect("raw");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("bump");
    }
    let err = ResultsDb::open(&path).expect_err("newer").to_string();
    assert!(err.contains("newer than this build reads"), "{err}");

    let path = temp("readonly");
    drop(ResultsDb::open(&path).expect("create"));
    let mut perms = std::fs::metadata(&path).expect("meta").permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&path, perms).expect("chmod");
    let err = ResultsDb::open(&path).expect_err("read-only").to_string();
    assert!(err.contains("read-only"), "{err}");
    assert!(ResultsDb::open_read_only(&temp("absent")).is_err());
}

#[test]
fn two_writers_at_once_both_land() {
    let path = temp("concurrent");
    drop(ResultsDb::open(&path).expect("create"));
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut db = ResultsDb::open(&path).expect("open");
                let mut run = sample_run();
                run.requests = vec![run.requests[0].clone(); 5_000];
                for _ in 0..5 {
                    db.record(&run).expect("record beside another writer");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let db = ResultsDb::open_read_only(&path).expect("read");
    let (runs, requests): (i64, i64) = db
        .conn()
        .query_row(
            "SELECT (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM requests)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("counts");
    assert_eq!((runs, requests), (10, 50_000));
}
