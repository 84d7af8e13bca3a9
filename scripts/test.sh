#!/usr/bin/env bash
# The test command: installs what the tests need (Prometheus, kubectl), builds the real control plane the
# end-to-end tests run (kube-apiserver, kube-controller-manager, etcd; reused once built), then runs every test
# and doc test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/control-plane.sh build >/dev/null
cargo test --locked --no-fail-fast "$@"
