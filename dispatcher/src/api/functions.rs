//! Functions at the edge: names checked, specs resolved; user code stored by digest,
//! uploaded in chunks, listed without it.

use super::convert::store_status;
use super::{Api, MAX_NAME_CHARS};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_stream::StreamExt;
use tonic::{Response, Status, Streaming};
use volley_proto::api;
use volley_proto::function::user::{RuntimeSpec, MAX_CODE_BYTES};
use volley_proto::function::{CodeDigest, FunctionKind, UserCode};

/// The name a function is registered under, trimmed; empty or over-long is refused.
pub(super) fn checked_name(name: &str) -> Result<&str, Status> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Status::invalid_argument("function name must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Status::invalid_argument(format!(
            "function name '{}' is longer than {MAX_NAME_CHARS} characters",
            volley_proto::text::quote(name)
        )));
    }
    Ok(name)
}

/// Uploads held in memory at once: each may hold up to [`MAX_CODE_BYTES`].
pub const MAX_UPLOADS: usize = 4;

/// The places uploads take, one each.
pub fn upload_places() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_UPLOADS))
}

impl Api {
    /// What a `RegisterFunction` spec registers, and its code's digest (hex) if it is a
    /// user function: built-ins are checked against the task timeout; user code is stored.
    pub(super) async fn function_kind(
        &self,
        name: &str,
        spec: Option<&api::FunctionSpec>,
    ) -> Result<(FunctionKind, String), Status> {
        match spec.and_then(|s| s.kind.as_ref()) {
            Some(api::function_spec::Kind::Runtime(runtime)) => {
                let code = Arc::new(self.user_code(name, runtime).await?);
                let digest = code.digest.to_string();
                self.shared.latest_code.write().insert(name.to_owned(), code.clone());
                Ok((FunctionKind::User(code), digest))
            }
            _ => {
                let kind = FunctionKind::from_api(spec).map_err(|e| Status::invalid_argument(e.to_string()))?;
                kind.validate(self.max_job_ms)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                Ok((kind, String::new()))
            }
        }
    }

    /// Checks a `Runtime` spec and makes sure its code is stored and held: inline code is
    /// stored now; code named by digest must have been uploaded.
    pub(super) async fn user_code(&self, name: &str, runtime: &api::Runtime) -> Result<UserCode, Status> {
        let spec = RuntimeSpec::from_api(name, runtime, self.max_job_ms)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut code = spec.code;
        match spec.inline {
            Some(bytes) => {
                let bytes = Bytes::from(bytes);
                self.shared
                    .store
                    .put_code(code.digest, bytes.clone())
                    .await
                    .map_err(store_status)?;
                self.shared.code.put(code.digest, bytes);
            }
            None => {
                let bytes = match self.shared.code.get(&code.digest) {
                    Some(b) => b,
                    None => self
                        .shared
                        .store
                        .code(code.digest)
                        .await
                        .map_err(store_status)?
                        .ok_or_else(|| {
                            Status::failed_precondition(format!(
                                "no code with digest {} was uploaded; send it with UploadCode first",
                                code.digest
                            ))
                        })?,
                };
                code.size = bytes.len() as u64;
                self.shared.code.put(code.digest, bytes);
            }
        }
        Ok(code)
    }

    /// `UploadCode`: reads the chunks into one buffer of at most [`MAX_CODE_BYTES`],
    /// stores it under its digest.
    pub(super) async fn upload(
        &self,
        mut chunks: Streaming<api::CodeChunk>,
    ) -> Result<Response<api::UploadCodeResponse>, Status> {
        let _place =
            self.uploads.clone().try_acquire_owned().map_err(|_| {
                Status::resource_exhausted(format!("{MAX_UPLOADS} uploads are in progress; retry shortly"))
            })?;
        let mut code = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if code.len() + chunk.data.len() > MAX_CODE_BYTES {
                return Err(Status::invalid_argument(format!(
                    "the code exceeds the limit of {MAX_CODE_BYTES} bytes ({} MiB)",
                    MAX_CODE_BYTES >> 20
                )));
            }
            code.extend_from_slice(&chunk.data);
        }
        if code.is_empty() {
            return Err(Status::invalid_argument("the upload had no code"));
        }
        let digest = CodeDigest::of(&code);
        let size = code.len() as u64;
        self.shared
            .store
            .put_code(digest, Bytes::from(code))
            .await
            .map_err(store_status)?;
        Ok(Response::new(api::UploadCodeResponse {
            code_digest: digest.to_string(),
            size,
        }))
    }

    /// `ListFunctions`: every version of every function, without code.
    pub(super) async fn list(&self) -> Result<Response<api::ListFunctionsResponse>, Status> {
        let functions = self.shared.store.functions().await.map_err(store_status)?;
        Ok(Response::new(api::ListFunctionsResponse {
            functions: functions
                .into_iter()
                .map(|f| api::RegisteredFunction {
                    function_id: f.id.0,
                    name: f.name,
                    spec: Some(f.kind.to_api()),
                    version: f.version,
                })
                .collect(),
        }))
    }
}
