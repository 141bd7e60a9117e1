//! The operator commands, one module each. Every command takes its parsed flags and the
//! [`Target`] it talks to, prints for a person (or JSON with `--json`), and returns the
//! process exit code: 0, or 1 when tasks failed.

pub mod deploy;
pub mod functions;
pub mod info;
pub mod invoke;
pub mod result;
pub mod status;
pub mod submit;

use crate::connection::{connect_with, Access, Client};

/// The dispatcher a command talks to, and what it presents.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://…` or `https://…`.
    pub url: String,
    /// Token and TLS settings.
    pub access: Access,
}

impl Target {
    /// A connected client.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        connect_with(&self.url, &self.access).await
    }
}

/// A gRPC status as an error that names the call.
pub fn status_error(what: &str, s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{what}: {} ({:?})", s.message(), s.code())
}
