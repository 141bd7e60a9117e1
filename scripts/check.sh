#!/usr/bin/env bash
# What a change must pass before it lands: format, lints, tests (as CI runs them).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
bash .ci/run
