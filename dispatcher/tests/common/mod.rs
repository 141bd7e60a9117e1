//! An in-process dispatcher on ports the OS picks, hand-driven worker connections, and a
//! gRPC client: what the dispatcher's own tests need, with no processes to spawn.
#![allow(dead_code)] // each test binary uses its own part

use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use volley_dispatcher::{Config, Handle, Listeners};
use volley_proto::api;
use volley_proto::api::dispatcher_client::DispatcherClient;
use volley_proto::connection::WorkerConnection;
use volley_proto::function::FunctionKind;
use volley_proto::ids::WorkerId;
use volley_proto::wire::{FromWorker, ToWorker};
use volley_proto::Mode;

/// Adds the dispatcher's token to every call, when it has one.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A gRPC client of the test's dispatcher.
pub type Client = DispatcherClient<InterceptedService<Channel, Bearer>>;

/// A running dispatcher; stops when dropped.
pub struct Dispatcher {
    pub handle: Handle,
    pub client: Client,
    shutdown: CancellationToken,
    run: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Dispatcher {
    /// Starts a dispatcher in `mode` on the memory store; `tweak` adjusts the rest.
    pub async fn start(mode: Mode, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            mode,
            ..Config::default()
        };
        tweak(&mut config);
        let bearer = Bearer(
            config
                .token
                .as_ref()
                .map(|t| t.bearer_header().parse().expect("a token is a valid header value")),
        );
        let listeners = Listeners::loopback().await.expect("bind");
        let shutdown = CancellationToken::new();
        let (handle, run) = volley_dispatcher::start(config, listeners, shutdown.clone())
            .await
            .expect("dispatcher starts");
        let run = tokio::spawn(run);
        let channel = Channel::from_shared(handle.grpc_url.clone())
            .expect("url")
            .connect()
            .await
            .expect("client connects");
        let client = DispatcherClient::with_interceptor(channel, bearer);
        Self {
            handle,
            client,
            shutdown,
            run: Some(run),
        }
    }

    /// Where workers connect.
    pub fn endpoint(&self) -> String {
        self.handle.worker_endpoint.clone().expect("a worker endpoint")
    }

    /// Registers `kind` and returns its id.
    pub async fn register(&mut self, kind: FunctionKind) -> u64 {
        self.client
            .register_function(api::RegisterFunctionRequest {
                name: kind.label(),
                spec: Some(kind.to_api()),
            })
            .await
            .expect("register")
            .into_inner()
            .function_id
    }

    /// Submits `n` tasks of `function` with no arguments; returns their ids.
    pub async fn submit(&mut self, function: u64, n: usize) -> Vec<u64> {
        let tasks = (0..n)
            .map(|_| api::ExecuteRequest {
                function_id: function,
                args: String::new(),
            })
            .collect();
        self.client
            .execute_batch(api::ExecuteBatchRequest { tasks })
            .await
            .expect("submit")
            .into_inner()
            .task_ids
    }

    /// Submits `n` tasks of `function` and waits for all of them; returns how many completed.
    pub async fn run(&mut self, function: u64, n: usize) -> usize {
        use futures::StreamExt;
        let ids = self.submit(function, n).await;
        let mut stream = self
            .client
            .watch_results(api::WatchResultsRequest { task_ids: ids })
            .await
            .expect("watch")
            .into_inner();
        let mut completed = 0;
        while let Some(msg) = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("results arrive")
        {
            let msg = msg.expect("a message");
            completed += msg
                .tasks
                .iter()
                .filter(|t| t.state == api::TaskState::Completed as i32)
                .count();
        }
        completed
    }

    /// The dispatcher's view of itself.
    pub async fn info(&mut self) -> api::ClusterInfoResponse {
        self.client
            .cluster_info(api::ClusterInfoRequest {})
            .await
            .expect("cluster info")
            .into_inner()
    }

    /// The dispatcher's counters.
    pub async fn counters(&mut self) -> api::Counters {
        self.info().await.counters.expect("counters")
    }

    /// Polls `ClusterInfo` until `done` holds (every 20 ms, for at most `within`).
    pub async fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        done: impl Fn(&api::ClusterInfoResponse) -> bool,
    ) -> api::ClusterInfoResponse {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let info = self.info().await;
            if done(&info) {
                return info;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {info:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the dispatcher and waits for it to drain.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(run) = self.run.take() {
            run.await.expect("dispatcher task").expect("dispatcher drains");
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A greeting with the given name and slots and nothing else special.
pub fn hello(name: &str, slots: u32) -> FromWorker {
    greeting(name, slots, None, None)
}

/// A greeting that expects `mode` and presents `token`.
pub fn greeting(
    name: &str,
    slots: u32,
    expect_mode: Option<Mode>,
    token: Option<volley_proto::auth::Token>,
) -> FromWorker {
    FromWorker::Hello {
        name: name.into(),
        slots,
        pid: 1,
        host: "test".into(),
        version: volley_proto::VERSION.into(),
        expect_mode,
        token,
        function: None,
        start: None,
    }
}

/// The next message from the dispatcher, within five seconds.
pub async fn next(conn: &mut WorkerConnection) -> ToWorker {
    tokio::time::timeout(Duration::from_secs(5), conn.recv())
        .await
        .expect("the dispatcher answers")
        .expect("a decodable message")
}

/// The next message that is not a heartbeat.
pub async fn next_not_heartbeat(conn: &mut WorkerConnection) -> ToWorker {
    loop {
        match next(conn).await {
            ToWorker::Heartbeat => continue,
            other => return other,
        }
    }
}

/// Connects, says `greeting`, and returns the connection with the dispatcher's answer.
pub async fn greet(endpoint: &str, greeting: &FromWorker) -> (WorkerConnection, ToWorker) {
    let mut conn = WorkerConnection::connect(endpoint, Duration::from_secs(2))
        .await
        .expect("connect");
    conn.send(greeting).await.expect("send hello");
    let reply = next_not_heartbeat(&mut conn).await;
    (conn, reply)
}

/// A hand-driven worker that registered: panics unless welcomed.
pub async fn registered(endpoint: &str, name: &str, slots: u32) -> (WorkerConnection, WorkerId) {
    match greet(endpoint, &hello(name, slots)).await {
        (conn, ToWorker::Welcome { worker_id, .. }) => (conn, worker_id),
        (_, other) => panic!("expected a Welcome, got {other:?}"),
    }
}

/// The refusal's reason; panics on anything but a `Reject`.
pub fn rejected(reply: ToWorker) -> String {
    match reply {
        ToWorker::Reject { reason } => reason,
        other => panic!("expected a Reject, got {other:?}"),
    }
}
