//! The REST edge (`dispatcher --http ADDR`): the course FaaS's four endpoints over the same
//! front door, store and modes as gRPC, so its clients run against Volley unchanged.
//!
//! - `POST /register_function` `{name, payload}` → `{function_id}`: a Python function as
//!   base64 of its dill pickle, registered as a `python` function in `dill` form;
//! - `POST /execute_function` `{function_id, payload}` → `{task_id}`: base64 of dill's
//!   `((args...), {kwargs})`;
//! - `GET /status/{task_id}` → `{task_id, status}`;
//! - `GET /result/{task_id}` → `{task_id, status, result}`, `result` `"None"` until the task
//!   ends, then base64 of the pickled value or exception;
//! - `GET /openapi.json`, describing them.
//!
//! Payloads are checked for shape only ([`pickle`]); nothing is unpickled here. Ids are
//! Volley's own, written as UUIDs ([`ids`]). Repeated slashes collapse before routing
//! (`//register_function` is what the course's perf client sends).

pub mod ids;
mod openapi;
pub mod pickle;

use crate::front::{checked_name, Front, FrontError, TaskRequest, MAX_ARGS_BYTES};
use crate::store::{TaskRecord, TaskState};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use ids::{from_uuid, to_uuid, IdError, IdKind};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use volley_proto::api;
use volley_proto::function::user::{MAX_CODE_BYTES, MAX_INLINE_CODE_BYTES};
use volley_proto::function::{FunctionKind, Language};

/// The code form of functions registered here.
pub const DILL_FORMAT: &str = "dill";
/// The Python the course's clients pickle with, by default (`--http-python`).
pub const DEFAULT_CLIENT_PYTHON: &str = "3.11";
/// How long open connections may finish their requests once the dispatcher stops.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How the REST edge is set up.
#[derive(Debug, Clone)]
pub struct RestOptions {
    /// The `MAJOR.MINOR` of the Python the clients pickle with: a runtime on another
    /// refuses their functions with a clear error instead of crashing on them.
    pub client_python: String,
}

impl Default for RestOptions {
    fn default() -> Self {
        Self {
            client_python: DEFAULT_CLIENT_PYTHON.to_owned(),
        }
    }
}

/// What the REST edge refused, by status, for `/metrics` and `ClusterInfo`.
#[derive(Debug, Default)]
pub struct RestCounters {
    /// Requests answered 2xx.
    pub served: AtomicU64,
    /// Requests answered 4xx: bad JSON, bad payloads, unknown ids, wrong routes.
    pub refused: AtomicU64,
    /// Requests answered 5xx (the store down, the dispatcher stopping).
    pub failed: AtomicU64,
}

impl RestCounters {
    /// The counters as `/metrics` shows them (each prefixed `volley_`).
    pub fn counters(&self) -> [(&'static str, &'static str, u64); 3] {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("rest_served", "REST requests answered 2xx.", load(&self.served)),
            (
                "rest_refused",
                "REST requests refused with a 4xx: bad JSON or payloads, unknown or malformed ids, wrong routes.",
                load(&self.refused),
            ),
            (
                "rest_failed",
                "REST requests answered 5xx: the store unavailable, the dispatcher stopping.",
                load(&self.failed),
            ),
        ]
    }
}

struct Edge {
    front: Front,
    options: RestOptions,
    counters: Arc<RestCounters>,
}

/// Serves the REST edge on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    front: Front,
    options: RestOptions,
    counters: Arc<RestCounters>,
    shutdown: CancellationToken,
) {
    use axum::serve::ListenerExt;
    let edge = Arc::new(Edge {
        front,
        options,
        counters,
    });
    let app = axum::Router::new()
        .fallback(route)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(edge);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(DRAIN_GRACE).await;
    };
    tokio::select! {
        served = served => if let Err(e) = served {
            tracing::warn!("REST edge stopped: {e}");
        },
        _ = grace => tracing::debug!("closing REST connections still open after the stop"),
    }
}

/// Routes on the path with repeated slashes collapsed and a trailing one dropped.
async fn route(State(edge): State<Arc<Edge>>, request: Request) -> Response {
    let path = normalized(request.uri().path());
    let method = request.method().clone();
    let body = request.into_body();
    let answer = match (path.as_str(), segments(&path).as_slice()) {
        ("/register_function", _) => only(&method, Method::POST, || edge.register(body)).await,
        ("/execute_function", _) => only(&method, Method::POST, || edge.execute(body)).await,
        (_, ["status", id]) => only(&method, Method::GET, || edge.status(id, false)).await,
        (_, ["result", id]) => only(&method, Method::GET, || edge.status(id, true)).await,
        ("/openapi.json", _) => only(&method, Method::GET, || async { Ok(Json(openapi::document())) }).await,
        _ => Err(Refusal::new(StatusCode::NOT_FOUND, "Not Found")),
    };
    let response = match answer {
        Ok(body) => body.into_response(),
        Err(r) => r.into_response(),
    };
    let counter = match response.status().as_u16() {
        200..=299 => &edge.counters.served,
        400..=499 => &edge.counters.refused,
        _ => &edge.counters.failed,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    response
}

fn normalized(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for part in path.split('/').filter(|p| !p.is_empty()) {
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|p| !p.is_empty()).collect()
}

async fn only<F, Fut>(method: &Method, wanted: Method, call: F) -> Result<Json, Refusal>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Json, Refusal>>,
{
    if *method == wanted || (wanted == Method::GET && *method == Method::HEAD) {
        call().await
    } else {
        let mut refusal = Refusal::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        refusal.allow = Some(if wanted == Method::GET { "GET, HEAD" } else { "POST" });
        Err(refusal)
    }
}

/// A 200 answer.
struct Json(Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0.to_string()).into_response()
    }
}

/// An answer other than 200, as FastAPI writes them: `{"detail": …}`.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    detail: Value,
    /// The methods a path takes, for a 405.
    allow: Option<&'static str>,
}

impl Refusal {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: Value::String(detail.into()),
            allow: None,
        }
    }

    /// A 422 about one field of the body or the path, as FastAPI's validation writes it.
    fn field(place: &str, name: &str, kind: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: json!([{ "type": kind, "loc": [place, name], "msg": message.into() }]),
            allow: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({ "detail": self.detail }).to_string();
        let mut response = (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static(allow));
        }
        response
    }
}

impl From<FrontError> for Refusal {
    fn from(e: FrontError) -> Self {
        let status = match &e {
            FrontError::Invalid(_) | FrontError::Precondition(_) => StatusCode::BAD_REQUEST,
            FrontError::NotFound(_) => StatusCode::NOT_FOUND,
            FrontError::Exhausted(_) => StatusCode::TOO_MANY_REQUESTS,
            FrontError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            FrontError::Lost(_) | FrontError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Refusal::new(status, e.to_string())
    }
}

/// One task submitted over REST.
struct RestTask {
    function_id: u64,
    args: String,
}

impl TaskRequest for RestTask {
    fn function_id(&self) -> u64 {
        self.function_id
    }
    fn args(&self) -> &str {
        &self.args
    }
}

/// The largest `/execute_function` body: the arguments' limit and room for the rest.
const EXECUTE_BODY_BYTES: usize = MAX_ARGS_BYTES + 64 * 1024;
/// The largest `/register_function` body: the code's limit in base64, and room.
const REGISTER_BODY_BYTES: usize = MAX_CODE_BYTES / 3 * 4 + MAX_CODE_BYTES / 38 + 64 * 1024;

impl Edge {
    async fn register(&self, body: Body) -> Result<Json, Refusal> {
        let _place = self.front.upload_place()?;
        let body = read(body, REGISTER_BODY_BYTES).await?;
        let name = text_field(&body, "name")?;
        let payload = text_field(&body, "payload")?;
        let name = checked_name(name)?;
        let code = pickle::decode_payload(payload).map_err(|why| Refusal::new(StatusCode::BAD_REQUEST, why))?;
        let mut runtime = api::Runtime {
            language: Language::Python.name().to_owned(),
            handler: self.options.client_python.clone(),
            code_format: DILL_FORMAT.to_owned(),
            ..Default::default()
        };
        if code.len() <= MAX_INLINE_CODE_BYTES {
            runtime.code = code;
        } else {
            runtime.code_digest = self.front.store_code(code.into()).await?.to_string();
        }
        let spec = api::FunctionSpec {
            kind: Some(api::function_spec::Kind::Runtime(runtime)),
        };
        let (kind, _digest) = self.front.function_kind(name, Some(&spec)).await?;
        let (id, _version) = self.front.register(name, kind).await?;
        Ok(Json(json!({ "function_id": to_uuid(IdKind::Function, id.0) })))
    }

    async fn execute(&self, body: Body) -> Result<Json, Refusal> {
        let body = read(body, EXECUTE_BODY_BYTES).await?;
        let function = text_field(&body, "function_id")?;
        let payload = text_field(&body, "payload")?;
        let function_id = from_uuid(IdKind::Function, function).map_err(|e| id_refusal(e, "function_id"))?;
        pickle::decode_payload(payload).map_err(|why| Refusal::new(StatusCode::BAD_REQUEST, why))?;
        let known = self.front.function(function_id).await?;
        if !matches!(&known.kind, FunctionKind::User(code) if code.format == DILL_FORMAT) {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "function {function} ({}) was not registered through this API: it is a {} function; run it over gRPC",
                    known.name,
                    known.kind.name()
                ),
            ));
        }
        let task = RestTask {
            function_id,
            args: Value::String(payload.to_owned()).to_string(),
        };
        let ids = self.front.submit(std::slice::from_ref(&task), false).await?;
        self.front.reactor_first().await;
        Ok(Json(json!({ "task_id": to_uuid(IdKind::Task, ids[0].0) })))
    }

    async fn status(&self, id: &str, with_result: bool) -> Result<Json, Refusal> {
        let task = from_uuid(IdKind::Task, id).map_err(|e| id_refusal(e, "task_id"))?;
        let record = self.front.record(task).await?;
        let task_id = to_uuid(IdKind::Task, task);
        let status = status_name(record.state);
        Ok(Json(if with_result {
            json!({ "task_id": task_id, "status": status, "result": result_text(&record) })
        } else {
            json!({ "task_id": task_id, "status": status })
        }))
    }
}

async fn read(body: Body, limit: usize) -> Result<Value, Refusal> {
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body could not be read whole within {limit} bytes: {e}"),
        )
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Refusal::field("body", "", "json_invalid", format!("JSON decode error: {e}")))
}

fn text_field<'a>(body: &'a Value, name: &str) -> Result<&'a str, Refusal> {
    match body.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Refusal::field(
            "body",
            name,
            "string_type",
            "Input should be a valid string",
        )),
        None => Err(Refusal::field("body", name, "missing", "Field required")),
    }
}

fn id_refusal(e: IdError, field: &str) -> Refusal {
    match e {
        IdError::Malformed(_) => Refusal::field(
            "path",
            field,
            "uuid_parsing",
            format!("Input should be a valid UUID: {e}"),
        ),
        IdError::Unknown { .. } => Refusal::new(StatusCode::NOT_FOUND, e.to_string()),
    }
}

fn status_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Queued => "QUEUED",
        TaskState::Running => "RUNNING",
        TaskState::Completed => "COMPLETED",
        TaskState::Failed => "FAILED",
    }
}

/// `"None"` until the task ends; then the value or the exception, base64 of a pickle. A
/// failure the function raised comes as the runtime pickled it; one of the platform (a
/// lost worker, a crash, a timeout) as an `Exception("Worker Failure: …")`.
fn result_text(r: &TaskRecord) -> String {
    let stored = || match serde_json::from_str::<Value>(&r.result) {
        Ok(Value::String(s)) => s,
        _ => r.result.clone(),
    };
    match r.state {
        TaskState::Queued | TaskState::Running => "None".to_owned(),
        TaskState::Completed => stored(),
        TaskState::Failed if !r.result.is_empty() => stored(),
        TaskState::Failed => pickle::platform_failure(&format!("Worker Failure: {}", r.error)),
    }
}
