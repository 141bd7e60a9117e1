//! The sockets a dispatcher serves on, bound by its caller: the binary binds the
//! addresses of its flags, tests and embedders bind port 0.

/// Sockets the caller bound, so tests can use port 0.
pub struct Listeners {
    /// The gRPC API.
    pub grpc: tokio::net::TcpListener,
    /// The worker endpoint; required in pull and push mode, unused in local mode.
    pub workers: Option<std::net::TcpListener>,
    /// The Prometheus endpoint (`/metrics`); `None` turns metrics off.
    pub metrics: Option<tokio::net::TcpListener>,
    /// The REST edge (`--http`); `None` turns it off.
    pub http: Option<tokio::net::TcpListener>,
}

impl Listeners {
    /// Both sockets on 127.0.0.1, on ports the OS picks: for tests, benchmarks and
    /// embedding a dispatcher in another process.
    pub async fn loopback() -> std::io::Result<Self> {
        Ok(Self {
            grpc: tokio::net::TcpListener::bind("127.0.0.1:0").await?,
            workers: Some(std::net::TcpListener::bind("127.0.0.1:0")?),
            metrics: None,
            http: None,
        })
    }
}
