use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;
use volley_dispatcher::cli::Cli;
use volley_dispatcher::{Config, Listeners};
use volley_proto::Mode;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    volley_proto::telemetry::init("info");
    // One thread by default: on small machines cross-thread wake-ups cost more latency
    // than a second thread buys throughput (see docs/history.md).
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()
    }
    .context("building the async runtime")?;
    runtime.block_on(serve(cli))
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let (grpc_addr, worker_addr, metrics_addr) = (cli.grpc, SocketAddr::new(cli.bind, cli.worker_port), cli.metrics);
    let http_addr = cli.http;
    let exposed_workers = !cli.bind.is_loopback();
    let ha = cli.ha.then(|| volley_dispatcher::ha::HaConfig {
        redis_url: cli.store.clone(),
        prefix: cli.redis_prefix.clone(),
        lease: std::time::Duration::from_millis(cli.ha_lease_ms.max(10)),
        name: format!("grpc={grpc_addr} workers={worker_addr} pid={}", std::process::id()),
    });
    let mut config = Config::from(cli);
    let shutdown = CancellationToken::new();
    let mut metrics = match metrics_addr {
        Some(addr) => Some(volley_proto::exposition::bind(addr).await?),
        None => None,
    };
    if let Some(ha) = ha {
        if !config.store.contains("://") {
            anyhow::bail!("--ha needs a Redis store (--store redis://…): leaders and standbys share their state there");
        }
        let waiting = shutdown.clone();
        tokio::spawn(async move {
            stop_signal().await;
            waiting.cancel();
        });
        let (leadership, leader_metrics) = volley_dispatcher::ha::stand_by(&ha, shutdown.clone(), metrics.take())
            .await
            .context("waiting for the lease")?;
        metrics = leader_metrics;
        let deposed = leadership.clone();
        tokio::spawn(async move {
            deposed.deposed.cancelled().await;
            tracing::error!(
                epoch = deposed.epoch,
                fenced_writes = deposed.fenced_writes.load(std::sync::atomic::Ordering::Relaxed),
                "deposed: another dispatcher leads; exiting without draining"
            );
            std::process::exit(volley_dispatcher::ha::DEPOSED_EXIT);
        });
        config.leadership = Some(leadership);
    }
    if config.token.is_none() && (exposed_workers || !grpc_addr.ip().is_loopback()) {
        tracing::warn!("listening beyond loopback without --token: anyone who reaches the ports can submit tasks or pose as a worker");
    }
    if config.tls.is_none() && !grpc_addr.ip().is_loopback() {
        tracing::warn!("the gRPC API is served beyond loopback without TLS: requests, results and the token cross the network in clear");
    }

    let grpc = tokio::net::TcpListener::bind(grpc_addr)
        .await
        .with_context(|| format!("binding the gRPC address {grpc_addr}"))?;
    let workers = match config.mode {
        Mode::Local => None,
        Mode::Pull | Mode::Push => Some(
            std::net::TcpListener::bind(worker_addr)
                .with_context(|| format!("binding the worker port {worker_addr}"))?,
        ),
    };
    let http = match http_addr {
        Some(addr) => {
            if !addr.ip().is_loopback() {
                tracing::warn!("the REST API is served beyond loopback: it has no token; anyone who reaches {addr} can register and run Python functions");
            }
            Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the REST address {addr} (--http)"))?,
            )
        }
        None => None,
    };
    let (mode, store) = (config.mode, volley_dispatcher::store::redact(&config.store));
    let (handle, run) = volley_dispatcher::start(
        config,
        Listeners {
            grpc,
            workers,
            metrics,
            http,
        },
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("starting the dispatcher on store '{store}'"))?;
    // One line on stdout, for people and for launchers that read the chosen ports.
    println!(
        "dispatcher ready mode={mode} grpc={} workers={} store={} recovered={} metrics={} http={}",
        handle.grpc_url,
        handle.worker_endpoint.as_deref().unwrap_or("none"),
        handle.store,
        handle.recovered,
        handle.metrics_url.as_deref().unwrap_or("off"),
        handle.http_url.as_deref().unwrap_or("off")
    );
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("stopping");
        shutdown.cancel();
    });
    run.await
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
