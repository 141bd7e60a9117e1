//! Our ZMTP layer against the real thing: libzmq 4.3 through pyzmq, both ways round.
//! A Python DEALER talks to our ROUTER, and our DEALER to a Python ROUTER, with one-part
//! and multi-part messages, short and long frames.
//!
//! The Python environment is `VOLLEY_ZMQ_PYTHON` if set, else `target/zmq-venv` (created
//! here, from PyPI, when missing; `.ci/run` creates it ahead of the tests).

use bytes::Bytes;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use volley_proto::zmtp::dealer::Dealer;
use volley_proto::zmtp::router::{self, PeerEvent};
use volley_proto::zmtp::RouterLimits;

const PYZMQ: &str = "pyzmq==27.3.0";

fn python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(make_python).clone()
}

fn make_python() -> PathBuf {
    if let Some(p) = std::env::var_os("VOLLEY_ZMQ_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/zmq-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".volley-zmq-ready");
    if !ready.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv");
        assert!(ok.success(), "python3 -m venv failed");
        let ok = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", PYZMQ])
            .status()
            .expect("pip");
        assert!(ok.success(), "pip install {PYZMQ} failed");
        std::fs::write(&ready, PYZMQ).expect("marking the venv ready");
    }
    python
}

/// A Python process running `script`, killed when dropped.
struct Py(Child);

impl Py {
    fn start(script: &str, arg: &str) -> (Self, BufReader<std::process::ChildStdout>) {
        let mut child = Command::new(python())
            .args(["-c", script, arg])
            .stdout(Stdio::piped())
            .stdin(Stdio::piped())
            .spawn()
            .expect("python");
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        (Self(child), out)
    }

    fn finish(mut self) -> std::process::ExitStatus {
        drop(self.0.stdin.take());
        for _ in 0..100 {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("python did not exit");
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const PY_DEALER: &str = r#"
import sys, zmq
s = zmq.Context().socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 1000)
s.setsockopt(zmq.RCVTIMEO, 10000)
s.connect(sys.argv[1])
s.send(b"short")
assert s.recv_multipart() == [b"reply"]
s.send_multipart([b"two", b"x" * 100000])
got = s.recv_multipart()
assert got == [b"y" * 300], got[:1]
print("ok", flush=True)
s.close()
"#;

#[tokio::test]
async fn a_libzmq_dealer_talks_to_our_router() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let stop = CancellationToken::new();
    let mut socket = router::bind(listener, RouterLimits::default(), stop.clone()).expect("router");
    let (py, mut out) = Py::start(PY_DEALER, &socket.endpoint);

    let peer = match tokio::time::timeout(Duration::from_secs(20), socket.events.recv()).await {
        Ok(Some(PeerEvent::Accepted(p))) => p,
        other => panic!("expected an accepted peer, got {other:?}"),
    };
    // Admitted before it sends anything large, as a worker is once its Hello is taken.
    socket.sender.admit(&peer, 1 << 20);
    let first = tokio::time::timeout(Duration::from_secs(10), socket.receiver.recv())
        .await
        .expect("a message")
        .expect("socket open");
    assert_eq!(first.peer, peer);
    assert_eq!(first.message.first.as_ref(), b"short");
    socket
        .sender
        .send(&peer, Bytes::from_static(b"reply"))
        .await
        .expect("queued");
    let second = tokio::time::timeout(Duration::from_secs(10), socket.receiver.recv())
        .await
        .expect("a second message")
        .expect("socket open");
    assert_eq!(second.message.first.as_ref(), b"two");
    assert_eq!(second.message.rest.len(), 1);
    assert_eq!(second.message.rest[0].len(), 100_000);

    socket
        .sender
        .send(&peer, Bytes::from(vec![b'y'; 300]))
        .await
        .expect("queued");
    let mut line = String::new();
    tokio::task::spawn_blocking(move || {
        out.read_line(&mut line).expect("python's answer");
        line
    })
    .await
    .map(|line| assert_eq!(line.trim(), "ok"))
    .expect("reader");
    assert!(py.finish().success());
    match tokio::time::timeout(Duration::from_secs(10), socket.events.recv()).await {
        Ok(Some(PeerEvent::Disconnected(p))) => assert_eq!(p, peer),
        other => panic!("expected the peer to leave, got {other:?}"),
    }
    stop.cancel();
}

const PY_ROUTER: &str = r#"
import sys, zmq
s = zmq.Context().socket(zmq.ROUTER)
s.setsockopt(zmq.LINGER, 1000)
s.setsockopt(zmq.RCVTIMEO, 10000)
port = s.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
ident, body = s.recv_multipart()
assert body == b"ping", body[:10]
ident2, big = s.recv_multipart()
assert ident2 == ident and big == b"z" * 70000
s.send_multipart([ident, b"pong"])
s.send_multipart([ident, b"w" * 1000000])
sys.stdin.read()
"#;

#[tokio::test]
async fn our_dealer_talks_to_a_libzmq_router() {
    let (py, mut out) = Py::start(PY_ROUTER, "");
    let port = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        out.read_line(&mut line).expect("port");
        line.trim().parse::<u16>().expect("a port number")
    })
    .await
    .expect("reader");
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let mut dealer = Dealer::connect(&endpoint, Duration::from_secs(10), 2 << 20)
        .await
        .expect("connect");
    dealer.send(b"ping").await.expect("send");
    dealer.send(&[b'z'; 70_000]).await.expect("send");
    let pong = tokio::time::timeout(Duration::from_secs(10), dealer.recv())
        .await
        .expect("reply")
        .expect("ok");
    assert_eq!(pong.first.as_ref(), b"pong");
    let big = dealer.recv().await.expect("big");
    assert_eq!(big.len(), 1_000_000);
    drop(dealer);
    let mut py = py;
    let _ = py.0.stdin.take().map(|mut s| s.write_all(b""));
    assert!(py.finish().success());
}

/// A libzmq DEALER's message over our limit closes its connection, as `ZMQ_MAXMSGSIZE`
/// would, and the socket goes on serving others.
#[tokio::test]
async fn a_libzmq_peer_over_the_limit_is_closed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let stop = CancellationToken::new();
    let mut socket = router::bind(listener, RouterLimits::default(), stop.clone()).expect("router");
    let script = r#"
import sys, zmq
s = zmq.Context().socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.connect(sys.argv[1])
s.send(b"x" * 200000)
sys.stdin.read()
"#;
    let (py, _out) = Py::start(script, &socket.endpoint);
    let peer = match tokio::time::timeout(Duration::from_secs(20), socket.events.recv()).await {
        Ok(Some(PeerEvent::Accepted(p))) => p,
        other => panic!("expected an accepted peer, got {other:?}"),
    };
    match tokio::time::timeout(Duration::from_secs(10), socket.events.recv()).await {
        Ok(Some(PeerEvent::Disconnected(p))) => assert_eq!(p, peer),
        other => panic!("expected the stranger's connection closed, got {other:?}"),
    }
    assert_eq!(socket.stats.bad_frames.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(
        socket.receiver.try_recv().is_err(),
        "nothing of the oversized message was delivered"
    );
    drop(py);
    stop.cancel();
}
