//! The shared token and TLS, end to end: real dispatcher, worker and client processes.

use volley_testbed::fixtures as common;

use common::run_mixed;
use std::path::{Path, PathBuf};
use std::time::Duration;
use volley_client::{connect, connect_with, Access};
use volley_proto::api;
use volley_proto::auth::Token;
use volley_proto::connection::WorkerConnection;
use volley_proto::wire::{FromWorker, ToWorker};
use volley_proto::Mode;
use volley_testbed::{Cluster, ClusterSpec, ClusterTls};

const SECRET: &str = "correct-horse-battery-staple";

fn token(s: &str) -> Token {
    Token::new(s).expect("valid token")
}

/// Debug logs from Volley's own crates, so a leak would show.
const CHATTY: &str = "info,volley_dispatcher=debug,volley_worker=debug";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_admits_workers_and_clients_and_refuses_everyone_else() {
    let spec = ClusterSpec::new(Mode::Push, 1, 2)
        .label("token")
        .log_level(CHATTY)
        .token(token(SECRET));
    let mut cluster = Cluster::start(spec).await.expect("cluster with a token");

    // The cluster's own worker registered with the token; its client presents it.
    let mut client = cluster.connect().await.expect("connect");
    run_mixed(&mut client).await;

    // gRPC calls without the token, or with another one, are UNAUTHENTICATED.
    let mut anonymous = connect(&cluster.grpc_url()).await.expect("connect");
    let status = anonymous
        .cluster_info(api::ClusterInfoRequest {})
        .await
        .expect_err("no token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("Bearer"), "{}", status.message());
    let wrong = Access {
        token: Some(token("guess")),
        ..Access::default()
    };
    let mut impostor = connect_with(&cluster.grpc_url(), &wrong).await.expect("connect");
    let status = impostor
        .get_status(api::GetStatusRequest { task_id: 1 })
        .await
        .expect_err("wrong token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("wrong"), "{}", status.message());

    // Workers without the token, or with another one, are rejected.
    let endpoint = cluster.worker_endpoint().expect("endpoint").to_owned();
    for presented in [None, Some(token("guess"))] {
        let mut peer = WorkerConnection::connect(&endpoint, Duration::from_secs(2))
            .await
            .expect("connect");
        peer.send(&FromWorker::Hello {
            name: "stranger".into(),
            slots: 1,
            pid: 1,
            host: "h".into(),
            version: volley_proto::VERSION.into(),
            expect_mode: None,
            token: presented,
            function: None,
            start: None,
        })
        .await
        .expect("send");
        match tokio::time::timeout(Duration::from_secs(5), peer.recv()).await {
            Ok(Ok(ToWorker::Reject { reason })) => assert!(reason.contains("authentication"), "{reason}"),
            other => panic!("expected a Reject, got {other:?}"),
        }
    }
    // A worker process given the wrong token says why and exits non-zero.
    let index = cluster.add_worker(1, &["--token", "guess"]).await.expect("spawn");
    let code = cluster
        .wait_worker(index, Duration::from_secs(10))
        .await
        .expect("a rejected worker exits");
    assert_eq!(code, Some(2));
    let log = std::fs::read_to_string(cluster.log_dir().join(format!("worker-{index}.log"))).expect("log");
    assert!(log.contains("authentication failed"), "{log}");

    // Nothing got in, the real worker is still the only one, and everything was counted.
    let info = cluster.info().await.expect("info");
    assert_eq!(info.workers.len(), 1);
    let c = info.counters.expect("counters");
    assert_eq!(c.rejected_workers, 3);
    assert_eq!(c.unauthenticated_requests, 2);

    let logs = cluster.log_dir().to_path_buf();
    cluster.stop().await.expect("stop");
    assert_secret_absent(&logs, SECRET);
}

/// A throwaway CA and a server certificate for `localhost` and 127.0.0.1 it signed.
struct TestPki {
    dir: PathBuf,
    ca_pem: String,
}

impl TestPki {
    fn generate(label: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca");
        let server_key = KeyPair::generate().expect("server key");
        let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params")
            .signed_by(&server_key, &ca)
            .expect("server cert");
        let dir = std::env::temp_dir().join(format!("volley-pki-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("pki dir");
        std::fs::write(dir.join("server.pem"), server.pem()).expect("write cert");
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).expect("write key");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca");
        Self { dir, ca_pem: ca.pem() }
    }

    fn cluster_tls(&self) -> ClusterTls {
        ClusterTls {
            cert: self.dir.join("server.pem"),
            key: self.dir.join("server.key"),
            ca_pem: self.ca_pem.clone().into_bytes(),
        }
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_the_ca_and_no_one_else() {
    let pki = TestPki::generate("tls");
    let spec = ClusterSpec::new(Mode::Local, 0, 2)
        .label("tls")
        .tls(pki.cluster_tls())
        .token(token(SECRET));
    let cluster = Cluster::start(spec).await.expect("cluster with TLS");
    assert!(cluster.grpc_url().starts_with("https://"));

    let mut client = cluster.connect().await.expect("TLS connect");
    run_mixed(&mut client).await;

    // A client that does not trust the CA cannot complete a call.
    let untrusting = Access {
        token: Some(token(SECRET)),
        ..Access::default()
    };
    match connect_with(&cluster.grpc_url(), &untrusting).await {
        Err(_) => {}
        Ok(mut c) => {
            let status = c
                .cluster_info(api::ClusterInfoRequest {})
                .await
                .expect_err("an untrusted certificate");
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        }
    }
    // Plaintext gRPC against the TLS port gets nowhere.
    let plain = cluster.grpc_url().replacen("https://", "http://", 1);
    match connect(&plain).await {
        Err(_) => {}
        Ok(mut c) => {
            let status = tokio::time::timeout(Duration::from_secs(10), c.cluster_info(api::ClusterInfoRequest {}))
                .await
                .expect("plaintext fails promptly")
                .expect_err("plaintext against TLS");
            assert_ne!(status.code(), tonic::Code::Ok);
        }
    }

    // The operator CLI: --ca and the token from the environment.
    let ca_file = pki.dir.join("ca.pem");
    let run_client = |with_token: bool| {
        let mut cmd = std::process::Command::new(volley_testbed::binaries::path("client").expect("client binary"));
        cmd.args(["--dispatcher", &cluster.grpc_url(), "--ca"])
            .arg(&ca_file)
            .args(["submit", "echo:over-tls", "--count", "3", "--wait"])
            .env_remove("VOLLEY_TOKEN");
        if with_token {
            cmd.env("VOLLEY_TOKEN", SECRET);
        }
        cmd.output().expect("run client")
    };
    let ok = run_client(true);
    assert!(
        ok.status.success(),
        "client over TLS failed: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = run_client(false);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("Bearer"), "{stderr}");

    let logs = cluster.log_dir().to_path_buf();
    cluster.stop().await.expect("stop");
    assert_secret_absent(&logs, SECRET);
}

fn assert_secret_absent(dir: &Path, secret: &str) {
    for entry in std::fs::read_dir(dir).expect("log dir").flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        assert!(!text.contains(secret), "{} contains the token", entry.path().display());
    }
}
