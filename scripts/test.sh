#!/usr/bin/env bash
# The test suite on any machine: installs what the tests use when it is missing (Debian
# packages, two Python venvs under target/), starts Redis if it is down, then runs
# `cargo test --workspace` and prints one line of totals. `.ci/run` calls this too.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing: $* (install them with apt-get as root, then run this again)" >&2
    exit 1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not installed; this project needs the Rust toolchain" >&2
  exit 1
fi

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "== installing redis-server"
  apt_install redis-server redis-tools
fi

# The user-function runtimes: python3, node, and a JDK (java, javac, jar).
if ! command -v python3 >/dev/null 2>&1; then
  echo "== installing python3 (the python runtime)"
  apt_install python3
fi
if ! command -v node >/dev/null 2>&1; then
  echo "== installing nodejs (the node runtime)"
  apt_install nodejs
fi
if ! command -v javac >/dev/null 2>&1 || ! command -v jar >/dev/null 2>&1; then
  echo "== installing default-jdk-headless (the java runtime)"
  apt_install default-jdk-headless
fi

if [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  echo "== installing fonts-dejavu-core (chart text)"
  apt_install fonts-dejavu-core
fi

# The metrics test lints with promtool and scrapes with a real Prometheus server.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "== installing prometheus (promtool and the server, for the metrics test)"
  apt_install prometheus
fi

# The report test renders the HTML report in headless Chromium.
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium (the HTML report test)"
  apt_install chromium
fi

# The stock-client test drives the dispatcher from Python's grpcio in target/py-venv.
if ! python3 -m venv --help >/dev/null 2>&1; then
  echo "== installing python3-venv (the Python stock-client test)"
  apt_install python3 python3-venv
fi
if [ ! -f target/py-venv/.volley-grpc-ready ]; then
  echo "== creating target/py-venv with the stock gRPC packages"
  python3 -m venv target/py-venv
  target/py-venv/bin/python -m pip install --quiet grpcio==1.85.1 grpcio-tools==1.85.1 \
    grpcio-reflection==1.85.1 grpcio-health-checking==1.85.1
  printf 'grpcio==1.85.1\ngrpcio-tools==1.85.1\ngrpcio-reflection==1.85.1\ngrpcio-health-checking==1.85.1' \
    > target/py-venv/.volley-grpc-ready
fi

# The ZMTP interop test talks to libzmq through pyzmq (its wheel carries libzmq).
if [ ! -f target/zmq-venv/.volley-zmq-ready ]; then
  echo "== creating target/zmq-venv with pyzmq (libzmq interop test)"
  python3 -m venv target/zmq-venv
  target/zmq-venv/bin/python -m pip install --quiet pyzmq==27.3.0
  printf 'pyzmq==27.3.0' > target/zmq-venv/.volley-zmq-ready
fi

# The REST edge's tests: the course FaaS's client libraries (dill, requests) and
# schemathesis, in target/rest-venv; its python also runs the tests' dill functions.
if [ ! -f target/rest-venv/.volley-rest-ready ]; then
  echo "== creating target/rest-venv with dill, requests and schemathesis (REST edge tests)"
  python3 -m venv target/rest-venv
  target/rest-venv/bin/python -m pip install --quiet dill==0.4.1 requests==2.34.2 schemathesis==4.32.5
  printf 'dill==0.4.1\nrequests==2.34.2\nschemathesis==4.32.5' > target/rest-venv/.volley-rest-ready
fi

if ! redis-cli -u "$REDIS_URL" ping 2>/dev/null | grep -q PONG; then
  echo "== starting redis-server on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 50); do
    redis-cli -u "$REDIS_URL" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
fi
redis-cli -u "$REDIS_URL" ping | grep -q PONG || { echo "Redis at $REDIS_URL is not answering" >&2; exit 1; }

echo "== cargo test --workspace"
log=$(mktemp)
set +e
cargo test --workspace 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# cargo prints one closing line per test binary (the last ones are empty doc-test runs);
# end with the total so the run's outcome is one line.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "Total: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
