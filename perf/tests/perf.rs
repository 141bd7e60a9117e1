//! `cargo test --test perf -- --workers 16 --mode pull [--optype noop|sleep|spin]
//! [--task-ms N] [--dispatcher http://127.0.0.1:50051] [--out performance_test.csv]`
//! measures a running cluster; plain `cargo test` runs the self-contained version.
//! See `volley_perf::studies::harness`.

use std::process::ExitCode;
use volley_perf::studies::harness::{self, PerfArgs};
use volley_proto::Mode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match harness::parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => return finish(vec![("perf::arguments".into(), Err(e))]),
    };
    let results = if args.workers.is_some() {
        vec![(format!("perf::{}", describe(&args)), external(&args).await)]
    } else {
        let out = std::env::temp_dir().join(format!("volley-perf-selftest-{}.csv", std::process::id()));
        let mut results = Vec::new();
        for mode in [Mode::Local, Mode::Pull, Mode::Push] {
            let r = harness::run_self_contained(mode, &out).await.and_then(|rows| {
                anyhow::ensure!(rows.iter().all(|r| r.failed() == 0), "tasks failed");
                Ok(())
            });
            results.push((format!("perf::self_contained::{mode}"), r));
        }
        let header_ok = std::fs::read_to_string(&out)
            .ok()
            .and_then(|t| {
                t.lines()
                    .next()
                    .map(|h| h == volley_perf::recording::tables::HEADER.join(","))
            })
            .unwrap_or(false);
        results.push((
            "perf::self_contained::csv_header".into(),
            if header_ok {
                Ok(())
            } else {
                Err(anyhow::anyhow!("{} has no header", out.display()))
            },
        ));
        let _ = std::fs::remove_file(&out);
        results
    };
    finish(results)
}

fn describe(a: &PerfArgs) -> String {
    format!(
        "{}::{}_workers::{}",
        a.mode.map(|m| m.as_str()).unwrap_or("?"),
        a.workers.unwrap_or(0),
        a.optype
    )
}

async fn external(args: &PerfArgs) -> anyhow::Result<()> {
    let row = harness::run_external(args).await?;
    println!("{row:?}");
    println!("row appended to {}", args.out.display());
    anyhow::ensure!(row.failed() == 0, "{} task(s) FAILED", row.failed());
    Ok(())
}

fn finish(results: Vec<(String, anyhow::Result<()>)>) -> ExitCode {
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    let passed = results.len() - failed;
    println!("\nrunning {} tests", results.len());
    for (name, r) in &results {
        match r {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => println!("test {name} ... FAILED\n    {e:#}"),
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!("\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out");
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
