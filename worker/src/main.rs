use clap::Parser;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use volley_proto::telemetry;
use volley_worker::cli::Cli;
use volley_worker::WorkerConfig;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init("info");
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let metrics_addr = cli.metrics;
    let config = WorkerConfig::from(cli);
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
