//! Functions over gRPC: code uploaded in chunks, functions listed without their code.

use super::{status, Api};
use bytes::Bytes;
use tokio_stream::StreamExt;
use tonic::{Response, Status, Streaming};
use volley_proto::api;
use volley_proto::function::user::MAX_CODE_BYTES;

impl Api {
    /// `UploadCode`: reads the chunks into one buffer of at most [`MAX_CODE_BYTES`],
    /// stores it under its digest.
    pub(super) async fn upload(
        &self,
        mut chunks: Streaming<api::CodeChunk>,
    ) -> Result<Response<api::UploadCodeResponse>, Status> {
        let _place = self.front.upload_place().map_err(status)?;
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
        let size = code.len() as u64;
        let digest = self.front.store_code(Bytes::from(code)).await.map_err(status)?;
        Ok(Response::new(api::UploadCodeResponse {
            code_digest: digest.to_string(),
            size,
        }))
    }

    /// `ListFunctions`: every version of every function, without code.
    pub(super) async fn list(&self) -> Result<Response<api::ListFunctionsResponse>, Status> {
        let functions = self.front.functions().await.map_err(status)?;
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
