//! Functions at the front door: names checked, specs resolved, user code stored by
//! digest, registrations stored and cached.

use super::{Front, FrontError, Known, MAX_NAME_CHARS};
use crate::store::FunctionRecord;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tracing::info;
use volley_proto::api;
use volley_proto::function::user::RuntimeSpec;
use volley_proto::function::{CodeDigest, FunctionKind, UserCode};
use volley_proto::ids::FunctionId;

/// The name a function is registered under, trimmed; empty or over-long is refused.
pub fn checked_name(name: &str) -> Result<&str, FrontError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(FrontError::Invalid("function name must not be empty".into()));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(FrontError::Invalid(format!(
            "function name '{}' is longer than {MAX_NAME_CHARS} characters",
            volley_proto::text::quote(name)
        )));
    }
    Ok(name)
}

/// Uploads held in memory at once: each may hold up to
/// [`volley_proto::function::user::MAX_CODE_BYTES`].
pub const MAX_UPLOADS: usize = 4;

/// The places uploads take, one each.
pub(super) fn upload_places() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_UPLOADS))
}

impl Front {
    /// What a `FunctionSpec` registers, and its code's digest (hex) if it is a user
    /// function: built-ins are checked against the task timeout; user code is stored.
    pub async fn function_kind(
        &self,
        name: &str,
        spec: Option<&api::FunctionSpec>,
    ) -> Result<(FunctionKind, String), FrontError> {
        match spec.and_then(|s| s.kind.as_ref()) {
            Some(api::function_spec::Kind::Runtime(runtime)) => {
                let code = Arc::new(self.user_code(name, runtime).await?);
                let digest = code.digest.to_string();
                self.shared.latest_code.write().insert(name.to_owned(), code.clone());
                Ok((FunctionKind::User(code), digest))
            }
            _ => {
                let kind = FunctionKind::from_api(spec).map_err(|e| FrontError::Invalid(e.to_string()))?;
                kind.validate(self.max_job_ms)
                    .map_err(|e| FrontError::Invalid(e.to_string()))?;
                Ok((kind, String::new()))
            }
        }
    }

    /// Checks a `Runtime` spec and makes sure its code is stored and held: inline code is
    /// stored now; code named by digest must have been uploaded.
    async fn user_code(&self, name: &str, runtime: &api::Runtime) -> Result<UserCode, FrontError> {
        let spec =
            RuntimeSpec::from_api(name, runtime, self.max_job_ms).map_err(|e| FrontError::Invalid(e.to_string()))?;
        let mut code = spec.code;
        match spec.inline {
            Some(bytes) => {
                let bytes = Bytes::from(bytes);
                self.shared.store.put_code(code.digest, bytes.clone()).await?;
                self.shared.code.put(code.digest, bytes);
            }
            None => {
                let bytes = match self.shared.code.get(&code.digest) {
                    Some(b) => b,
                    None => self.shared.store.code(code.digest).await?.ok_or_else(|| {
                        FrontError::Precondition(format!(
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

    /// Stores a function under `name` and remembers it; its id and version.
    pub async fn register(&self, name: &str, kind: FunctionKind) -> Result<(FunctionId, u32), FrontError> {
        let (id, version) = self.shared.store.register_function(name, &kind).await?;
        info!(
            function = name,
            id = id.0,
            version,
            kind = kind.name(),
            "function registered"
        );
        if let Some(m) = &self.shared.metrics {
            m.name_function(id, name);
        }
        self.functions.write().insert(
            id,
            Known {
                kind,
                name: name.into(),
            },
        );
        Ok((id, version))
    }

    /// A place to hold one upload in memory, or a refusal when all are taken.
    pub fn upload_place(&self) -> Result<tokio::sync::OwnedSemaphorePermit, FrontError> {
        self.uploads
            .clone()
            .try_acquire_owned()
            .map_err(|_| FrontError::Exhausted(format!("{MAX_UPLOADS} uploads are in progress; retry shortly")))
    }

    /// Stores uploaded code under its digest; the digest.
    pub async fn store_code(&self, code: Bytes) -> Result<CodeDigest, FrontError> {
        if code.is_empty() {
            return Err(FrontError::Invalid("the upload had no code".into()));
        }
        let digest = CodeDigest::of(&code);
        self.shared.store.put_code(digest, code).await?;
        Ok(digest)
    }

    /// Every version of every function, oldest first.
    pub async fn functions(&self) -> Result<Vec<FunctionRecord>, FrontError> {
        Ok(self.shared.store.functions().await?)
    }
}
