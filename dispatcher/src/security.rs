//! Who may talk to the gRPC API: the shared-token check on every call, and the TLS
//! identity the API serves with. (Workers present the token in `Hello`; the reactor
//! checks it there.)

use crate::config::TlsFiles;
use crate::shared::{EdgeCounters, Shared};
use anyhow::Context;
use std::sync::Arc;
use tonic::service::Interceptor;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic::{Request, Status};
use tracing::warn;
use volley_proto::auth::{Token, AUTHORIZATION};

/// Refuses calls without `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct RequireToken {
    token: Token,
    shared: Arc<Shared>,
}

impl RequireToken {
    /// Checks calls against `token`.
    pub fn new(token: Token, shared: Arc<Shared>) -> Self {
        Self { token, shared }
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request.metadata().get(AUTHORIZATION).map(|v| v.as_bytes());
        if self.token.admits_header(header) {
            return Ok(request);
        }
        if let Some(refused) = EdgeCounters::bump_sampled(&self.shared.counters.unauthenticated_requests) {
            let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
            warn!(%peer, refused, "refused a gRPC call without the right token (logged at powers of two)");
        }
        let message = if header.is_some() {
            "the authorization token is wrong"
        } else {
            "this dispatcher requires 'authorization: Bearer <token>' (client --token / VOLLEY_TOKEN)"
        };
        Err(Status::unauthenticated(message))
    }
}

/// Reads the TLS identity the gRPC API serves with.
pub fn server_tls(files: &TlsFiles) -> anyhow::Result<ServerTlsConfig> {
    let cert =
        std::fs::read(&files.cert).with_context(|| format!("reading the TLS certificate {}", files.cert.display()))?;
    let key = std::fs::read(&files.key).with_context(|| format!("reading the TLS key {}", files.key.display()))?;
    warn_if_expiring(&files.cert, &cert);
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
}

/// A certificate past its end date is still served (the operator may have reasons, and
/// clients will refuse it loudly), but never silently: say so at start, and a week ahead.
fn warn_if_expiring(path: &std::path::Path, pem: &[u8]) {
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(pem) else {
        warn!(cert = %path.display(), "cannot read the TLS certificate's dates; serving it unchecked");
        return;
    };
    let Ok(cert) = block.parse_x509() else {
        warn!(cert = %path.display(), "cannot parse the TLS certificate; serving it unchecked");
        return;
    };
    let validity = cert.validity();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let ends = validity.not_after.timestamp();
    if ends < now {
        warn!(cert = %path.display(), not_after = %validity.not_after, "the TLS certificate has EXPIRED; clients will refuse it");
    } else if ends - now < 7 * 86_400 {
        warn!(cert = %path.display(), not_after = %validity.not_after, "the TLS certificate expires within a week");
    }
    if validity.not_before.timestamp() > now {
        warn!(cert = %path.display(), not_before = %validity.not_before, "the TLS certificate is not valid yet");
    }
}
