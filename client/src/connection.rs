//! Connecting to a dispatcher: the address, the shared token and TLS. The client keeps
//! gRPC's default message limits (4 MiB received), as every stock client in other
//! languages does, so a dispatcher that ever sends more is caught here first.

use anyhow::{bail, Context};
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use volley_proto::api::dispatcher_client::DispatcherClient;
use volley_proto::api::ClusterInfoRequest;
use volley_proto::auth::{Token, AUTHORIZATION};

/// How long a dispatcher of a list has to answer before the next is tried.
const LEADER_ANSWERS_WITHIN: Duration = Duration::from_secs(1);
/// How soon an address of a list that refused is tried again within one round.
const RETRY_REFUSED: Duration = Duration::from_millis(20);

/// A connected gRPC client.
pub type Client = DispatcherClient<InterceptedService<Channel, AttachToken>>;

/// What a client presents to a dispatcher that checks who calls.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The shared token, sent as `authorization: Bearer …` on every call.
    pub token: Option<Token>,
    /// PEM of the CA that signed the dispatcher's certificate; with `https://` and no
    /// CA, the system's roots are used.
    pub ca_pem: Option<Vec<u8>>,
    /// The name the certificate must carry, if not the URL's host.
    pub tls_domain: Option<String>,
}

impl Access {
    /// Reads `VOLLEY_TOKEN` and the CA file named by `VOLLEY_CA`, as the CLIs do.
    pub fn from_env() -> anyhow::Result<Self> {
        let token = match std::env::var("VOLLEY_TOKEN") {
            Ok(t) => Some(t.parse().context("VOLLEY_TOKEN")?),
            Err(_) => None,
        };
        let ca_pem = match std::env::var_os("VOLLEY_CA") {
            Some(path) => Some(std::fs::read(&path).with_context(|| format!("reading VOLLEY_CA {path:?}"))?),
            None => None,
        };
        Ok(Self {
            token,
            ca_pem,
            tls_domain: None,
        })
    }
}

/// Adds the `authorization` header to every call.
#[derive(Clone)]
pub struct AttachToken(Option<MetadataValue<Ascii>>);

impl Interceptor for AttachToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert(AUTHORIZATION, value.clone());
        }
        Ok(request)
    }
}

/// Connects to a dispatcher that checks nobody, e.g. `http://127.0.0.1:50051`.
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    connect_with(url, &Access::default()).await
}

/// Connects to a dispatcher with a token and/or TLS. A URL without a scheme is
/// `https://` when a CA is given and `http://` otherwise. Several URLs separated by
/// commas (dispatchers under `--ha`, of which only the leader listens) are all tried at
/// once, and the first that answers is used.
pub async fn connect_with(url: &str, access: &Access) -> anyhow::Result<Client> {
    let urls: Vec<&str> = url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
    if urls.len() <= 1 {
        return connect_one(url.trim(), access, None).await;
    }
    let mut tries: futures::stream::FuturesUnordered<_> = urls.iter().map(|u| answering(u, access)).collect();
    let mut failures = Vec::new();
    while let Some(outcome) = futures::StreamExt::next(&mut tries).await {
        match outcome {
            Ok(client) => return Ok(client),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    bail!("no dispatcher of the list answered: {}", failures.join("; "))
}

/// A client of `url` once it has answered a call, trying again every
/// [`RETRY_REFUSED`] until [`LEADER_ANSWERS_WITHIN`] has passed. A stalled process (a
/// leader stopped, about to be replaced) still accepts TCP connections in the kernel's
/// name: only an answer tells a live leader. A standby refuses connections until the
/// moment it leads, which may fall within the round: so a refusal is tried again, and
/// the new leader is found as soon as it listens rather than a round later.
async fn answering(url: &str, access: &Access) -> anyhow::Result<Client> {
    let deadline = tokio::time::Instant::now() + LEADER_ANSWERS_WITHIN;
    loop {
        let attempt = async {
            let mut client = connect_one(url, access, Some(LEADER_ANSWERS_WITHIN)).await?;
            match client.cluster_info(ClusterInfoRequest {}).await {
                Ok(_) => Ok(client),
                Err(s) => bail!("{url}: {}", s.message()),
            }
        };
        let failure = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(client)) => return Ok(client),
            Ok(Err(e)) => e,
            Err(_) => bail!("{url}: no answer within {LEADER_ANSWERS_WITHIN:?}"),
        };
        if tokio::time::Instant::now() + RETRY_REFUSED >= deadline {
            return Err(failure);
        }
        tokio::time::sleep(RETRY_REFUSED).await;
    }
}

/// Connects to one dispatcher. `watch`: one of a list under `--ha`, where a leader that
/// stalls must be noticed and left within about this long: connecting, and then HTTP/2
/// pings, are given that long to answer.
async fn connect_one(url: &str, access: &Access, watch: Option<Duration>) -> anyhow::Result<Client> {
    let url = if url.contains("://") {
        url.to_owned()
    } else if access.ca_pem.is_some() {
        format!("https://{url}")
    } else {
        format!("http://{url}")
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.clone())
        .with_context(|| {
            format!(
                "'{}' is not a valid dispatcher address",
                volley_proto::text::quote(&url)
            )
        })?
        .connect_timeout(watch.unwrap_or(Duration::from_secs(5)))
        .tcp_nodelay(true);
    if let Some(within) = watch {
        endpoint = endpoint
            .http2_keep_alive_interval(within / 4)
            .keep_alive_timeout(within / 2)
            .keep_alive_while_idle(true);
    }
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        tls = match &access.ca_pem {
            Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
            None => tls.with_native_roots(),
        };
        if let Some(domain) = &access.tls_domain {
            tls = tls.domain_name(domain.clone());
        }
        endpoint = endpoint
            .tls_config(tls)
            .with_context(|| format!("configuring TLS for {url}"))?;
    } else if access.ca_pem.is_some() {
        bail!("a CA was given but '{url}' is not https://");
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach the dispatcher at {url}; is it running?"))?;
    client_over(channel, access.token.as_ref())
}

/// A client over a channel the caller built (e.g. with other HTTP/2 settings),
/// presenting `token` if given.
pub fn client_over(channel: Channel, token: Option<&Token>) -> anyhow::Result<Client> {
    let header = token
        .map(|t| MetadataValue::try_from(t.bearer_header()))
        .transpose()
        .context("the token cannot travel in a header")?
        .map(|mut v| {
            // Kept out of HPACK tables and printed as "Sensitive".
            v.set_sensitive(true);
            v
        });
    Ok(DispatcherClient::with_interceptor(channel, AttachToken(header)))
}
