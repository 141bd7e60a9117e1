//! The `worker` binary: parses its command line, serves its metrics, and runs a worker
//! until a signal or the dispatcher stops it; or, as `worker --template`, forks
//! instances' workers on request, each of which then runs as a worker.

use clap::Parser;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use volley_proto::telemetry;
use volley_worker::cli::Cli;
use volley_worker::template;
use volley_worker::{ProcessStart, WorkerConfig};

fn main() -> ExitCode {
    let main_began = std::time::Instant::now();
    // The parent as early as it can be known: one gone before the watch starts is noticed.
    let parent = nix::unistd::getppid();
    // Before a template forks anything: its instances inherit the logger, set up once.
    telemetry::init("info");
    let (cli, main_began, parent) = if std::env::args_os().nth(1).is_some_and(|a| a == template::FLAG) {
        match template::serve() {
            Ok(Some(forked)) => (forked.cli, forked.began, forked.parent),
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("worker template: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        (Cli::parse(), main_began, parent)
    };
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run(cli, main_began, parent)),
        Err(e) => {
            eprintln!("worker: cannot start its event loop: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli, main_began: std::time::Instant, parent: nix::unistd::Pid) -> ExitCode {
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let metrics_addr = cli.metrics;
    if cli.exit_with_parent {
        tokio::spawn(exit_with_parent(shutdown.clone(), parent));
    }
    if cli.init_ms > 0 {
        tracing::info!(init_ms = cli.init_ms, "initialising (emulated runtime start-up)");
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(cli.init_ms)) => {}
            _ = shutdown.cancelled() => return ExitCode::SUCCESS,
        }
        tracing::info!("init done");
    }
    let provisioned = cli.provisioned;
    let instance_code = match (cli.code.clone(), cli.code_spec.as_deref()) {
        (Some(path), Some(spec)) => match serde_json::from_str::<volley_proto::function::UserCode>(spec) {
            Ok(code) => Some((std::sync::Arc::new(code), path)),
            Err(e) => {
                eprintln!("worker: --code-spec is not a function: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let mut config = WorkerConfig::from(cli);
    config.instance_code = instance_code;
    config.start = provisioned.map(|(decided_us, spawned_us)| ProcessStart {
        decided_us,
        spawned_us,
        main: main_began,
        init_done: std::time::Instant::now(),
        runtime: None,
        code: None,
    });
    if let (Some(addr), Some(metrics)) = (metrics_addr, &config.metrics) {
        match volley_proto::exposition::bind(addr).await {
            Ok(listener) => {
                tracing::info!(url = %format!("http://{}/metrics", listener.local_addr().unwrap_or(addr)), "serving metrics");
                tokio::spawn(volley_proto::exposition::serve(
                    listener,
                    metrics.render(),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                eprintln!("worker: {e}");
                return ExitCode::from(2);
            }
        }
    }
    match volley_worker::run(config, shutdown).await {
        Ok(exit) => {
            tracing::info!(?exit, "worker stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("worker: {e}");
            ExitCode::from(2)
        }
    }
}

/// Stops the worker once its parent has gone (it is re-parented, so the parent pid changes).
async fn exit_with_parent(shutdown: CancellationToken, parent: nix::unistd::Pid) {
    loop {
        if nix::unistd::getppid() != parent {
            tracing::warn!(%parent, "the parent process is gone; stopping");
            shutdown.cancel();
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    shutdown.cancel();
}
