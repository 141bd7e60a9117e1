//! Driving a dispatcher over gRPC: connecting, registering spec strings, and
//! [`run_batch`], which submits tasks with `ExecuteBatch` and collects every outcome
//! through `WatchResults`. The client CLI, the sweeps, the tests and the benchmarks all
//! use it.

use anyhow::{bail, Context};
use futures::StreamExt;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use volley_proto::api::{self, dispatcher_client::DispatcherClient};
use volley_proto::auth::{Token, AUTHORIZATION};
use volley_proto::function::FunctionKind;

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
/// `https://` when a CA is given and `http://` otherwise.
pub async fn connect_with(url: &str, access: &Access) -> anyhow::Result<Client> {
    let url = if url.contains("://") {
        url.to_owned()
    } else if access.ca_pem.is_some() {
        format!("https://{url}")
    } else {
        format!("http://{url}")
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.clone())
        .with_context(|| format!("'{url}' is not a valid dispatcher address"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
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
    let header = access
        .token
        .as_ref()
        .map(|t| MetadataValue::try_from(t.bearer_header()))
        .transpose()
        .context("the token cannot travel in a header")?
        .map(|mut v| {
            // Kept out of HPACK tables and printed as "Sensitive".
            v.set_sensitive(true);
            v
        });
    Ok(DispatcherClient::with_interceptor(channel, AttachToken(header))
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024))
}

/// Registers the function a spec string names (`noop`, `sleep:100`, `echo:hi`, …) and
/// returns its id with the task arguments the spec implies.
pub async fn register_spec(client: &mut Client, spec: &str) -> anyhow::Result<(u64, String)> {
    let (kind, args) = FunctionKind::parse_spec(spec)?;
    let id = client
        .register_function(api::RegisterFunctionRequest {
            name: spec.to_owned(),
            spec: Some(kind.to_api()),
        })
        .await
        .map_err(|s| anyhow::anyhow!("registering '{spec}': {}", s.message()))?
        .into_inner()
        .function_id;
    Ok((id, args))
}

/// What a batch came to.
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    /// Tasks submitted.
    pub submitted: usize,
    /// Tasks COMPLETED.
    pub completed: usize,
    /// Tasks FAILED.
    pub failed: usize,
    /// From the first submission to the last outcome.
    pub elapsed: Duration,
    /// Every task's final record, in completion order.
    pub tasks: Vec<api::TaskInfo>,
}

impl BatchOutcome {
    /// Tasks per second over the whole batch.
    pub fn throughput(&self) -> f64 {
        self.submitted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Submits `tasks` (function id, args) in chunks of `chunk` and waits for every outcome.
/// Chunks are submitted while earlier ones run; each chunk is watched by id, so no
/// outcome can be missed however fast it arrives. A chunk refused with
/// `RESOURCE_EXHAUSTED` (the dispatcher's queue bound) is retried with backoff.
pub async fn run_batch(
    client: &Client,
    tasks: Vec<(u64, String)>,
    chunk: usize,
    timeout: Duration,
) -> anyhow::Result<BatchOutcome> {
    let submitted = tasks.len();
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<anyhow::Result<Vec<api::TaskInfo>>>();
    let mut submitter = client.clone();
    let mut watchers = Vec::new();
    for part in tasks.chunks(chunk.max(1)) {
        let request = api::ExecuteBatchRequest {
            tasks: part
                .iter()
                .map(|(function_id, args)| api::ExecuteRequest {
                    function_id: *function_id,
                    args: args.clone(),
                })
                .collect(),
        };
        // A full queue is backpressure, not failure: wait for room while earlier chunks
        // drain, up to the batch's deadline.
        let mut pause = Duration::from_millis(2);
        let ids = loop {
            match submitter.execute_batch(request.clone()).await {
                Ok(r) => break r.into_inner().task_ids,
                Err(s) if s.code() == tonic::Code::ResourceExhausted && started.elapsed() < timeout => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(s) => bail!("ExecuteBatch failed ({:?}): {}", s.code(), s.message()),
            }
        };
        let mut watcher = client.clone();
        let tx = tx.clone();
        watchers.push(tokio::spawn(async move {
            let watched: HashSet<u64> = ids.iter().copied().collect();
            let stream = watcher.watch_results(api::WatchResultsRequest { task_ids: ids }).await;
            let mut stream = match stream {
                Ok(s) => s.into_inner(),
                Err(s) => {
                    let _ = tx.send(Err(anyhow::anyhow!("WatchResults failed: {}", s.message())));
                    return;
                }
            };
            let mut seen = 0;
            while let Some(msg) = stream.next().await {
                match msg {
                    Ok(m) => {
                        seen += m.tasks.len();
                        let _ = tx.send(Ok(m.tasks));
                    }
                    Err(s) => {
                        let _ = tx.send(Err(anyhow::anyhow!("WatchResults stream broke: {}", s.message())));
                        return;
                    }
                }
            }
            if seen < watched.len() {
                let _ = tx.send(Err(anyhow::anyhow!(
                    "WatchResults ended after {seen} of {} tasks",
                    watched.len()
                )));
            }
        }));
    }
    drop(tx);
    let mut outcome = BatchOutcome {
        submitted,
        completed: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        tasks: Vec::with_capacity(submitted),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    while outcome.tasks.len() < submitted {
        let next = tokio::time::timeout_at(deadline, rx.recv()).await;
        let batch = match next {
            Err(_) => bail!(
                "timed out after {timeout:?} with {} of {submitted} tasks finished",
                outcome.tasks.len()
            ),
            Ok(None) => bail!(
                "watchers ended with {} of {submitted} tasks finished",
                outcome.tasks.len()
            ),
            Ok(Some(b)) => b?,
        };
        for t in batch {
            if t.state == api::TaskState::Completed as i32 {
                outcome.completed += 1;
            } else {
                outcome.failed += 1;
            }
            outcome.tasks.push(t);
        }
    }
    outcome.elapsed = started.elapsed();
    for w in watchers {
        w.abort();
    }
    Ok(outcome)
}

/// The lower-case name of a task state.
pub fn state_name(state: i32) -> &'static str {
    match api::TaskState::try_from(state) {
        Ok(api::TaskState::Queued) => "QUEUED",
        Ok(api::TaskState::Running) => "RUNNING",
        Ok(api::TaskState::Completed) => "COMPLETED",
        Ok(api::TaskState::Failed) => "FAILED",
        _ => "UNKNOWN",
    }
}
