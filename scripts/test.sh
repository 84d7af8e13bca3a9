#!/usr/bin/env bash
# The test command: installs what the tests need (Prometheus, kubectl), then runs every test and doc test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --locked --no-fail-fast "$@"
