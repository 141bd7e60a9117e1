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
    let (http_addr, cli_lease_ms) = (cli.http, cli.ha_lease_ms.max(10));
    let exposed_workers = !cli.bind.is_loopback();
    let ha = cli.ha.then(|| volley_dispatcher::ha::HaConfig {
        redis_url: cli.store.clone(),
        prefix: cli.redis_prefix.clone(),
        lease: std::time::Duration::from_millis(cli_lease_ms),
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

    // A leader that just took over on this host may find its ports still held for a
    // moment by the deposed one, exiting: it waits for them rather than failing.
    let patience = match &config.leadership {
        Some(_) => std::time::Duration::from_millis(2 * cli_lease_ms),
        None => std::time::Duration::ZERO,
    };
    let grpc = patiently(patience, || tcp_listener(grpc_addr))
        .await
        .with_context(|| format!("binding the gRPC address {grpc_addr}"))?;
    let workers = match config.mode {
        Mode::Local => None,
        Mode::Pull | Mode::Push => Some(
            patiently(patience, || std::net::TcpListener::bind(worker_addr))
                .await
                .with_context(|| format!("binding the worker port {worker_addr}"))?,
        ),
    };
    let http = match http_addr {
        Some(addr) => {
            if !addr.ip().is_loopback() {
                tracing::warn!("the REST API is served beyond loopback: it has no token; anyone who reaches {addr} can register and run Python functions");
            }
            Some(
                patiently(patience, || tcp_listener(addr))
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

/// Binds with `bind`, trying again every 20 ms for up to `patience` while the address
/// is in use.
async fn patiently<T>(
    patience: std::time::Duration,
    mut bind: impl FnMut() -> std::io::Result<T>,
) -> std::io::Result<T> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        match bind() {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            bound => return bound,
        }
    }
}

/// A Tokio listener bound as `TcpListener::bind` binds it (address reuse, a backlog of
/// 1024), but synchronously, so [`patiently`] can retry it.
fn tcp_listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
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
