#!/usr/bin/env bash
# A real Prometheus on loopback scraping a running Volley cluster every second, for a
# look at a run while it happens (http://127.0.0.1:PORT/graph) or for PromQL checks.
# Usage: scripts/prometheus.sh TARGET[,TARGET…] [PORT=9090]
#   TARGET: host:port of a --metrics page, e.g. 127.0.0.1:9464 (dispatcher),127.0.0.1:9465 (a worker)
# Needs Debian's prometheus package (apt-get install prometheus). Its data lives in a
# temporary directory that is removed when the script stops (Ctrl-C).
set -euo pipefail
TARGETS=${1:?targets: host:port[,host:port…] of --metrics pages}
PORT=${2:-9090}
command -v prometheus >/dev/null || { echo "prometheus is not installed: apt-get install prometheus" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
list=$(printf "'%s'," ${TARGETS//,/ })
cat > "$dir/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: volley
    static_configs:
      - targets: [${list%,}]
YAML
echo "Prometheus on http://127.0.0.1:$PORT scraping $TARGETS; try:"
echo "  curl -s 'http://127.0.0.1:$PORT/api/v1/query?query=sum(volley_tasks_finished_total)'"
exec prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
  --web.listen-address="127.0.0.1:$PORT" --log.level=warn
