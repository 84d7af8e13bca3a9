#!/usr/bin/env bash
# The real Kubernetes control plane for the end-to-end tests: kube-apiserver, kube-controller-manager and etcd at
# the versions pinned in scripts/control-plane/go.mod (Kubernetes v1.37.2, the etcd it requires), and the peers
# the tests compare us with, each pinned in its own module under scripts/control-plane/peers (metrics-server
# v0.8.0, the Prometheus Adapter v0.12.0). Built from the Go module proxy into .tools/control-plane/bin and
# reused while those modules are unchanged.
#
#   scripts/control-plane.sh build    build (or reuse) the binaries; prints their folder
#   scripts/control-plane.sh up       build, then run them on loopback until Ctrl-C (prints an admin kubeconfig)
#
# tests/control_plane.rs runs them (PKI, etcd, kube-apiserver with the aggregation layer, the controllers).
# The first build downloads about 600 modules and takes about 17 minutes on 2 cores (the control plane 11, each
# peer 3); later builds reuse Go's module and build caches.
set -euo pipefail
cd "$(dirname "$0")/.."

module=scripts/control-plane
bin=.tools/control-plane/bin
stamp="$bin/.built-from"

# peer DIR PACKAGE BINARY: builds a tool of the module pinned in peers/DIR.
peer() {
  local dir="$module/peers/$1" version
  version=$(awk -v m="${2%%/cmd/*}" '$1 == m {print $2; exit}' "$dir/go.mod")
  echo "building $3 ($2 $version) into $bin" >&2
  if ! (cd "$dir" && GOFLAGS=-mod=mod go build -trimpath -o "$OLDPWD/$bin/$3" "$2"); then
    echo "building $2 failed (module ${2%%/cmd/*} $version, $(go version))" >&2
    exit 1
  fi
}

build() {
  command -v go >/dev/null || { echo "go is not installed: the control plane is built with the Go toolchain (Debian: apt-get install -y golang-go, 1.26 or newer)" >&2; exit 1; }
  local want
  want=$(cat "$module/go.mod" "$module/go.sum" "$module/etcd/main.go" "$module"/peers/*/go.* | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
     && [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ] && [ -x "$bin/etcd" ] \
     && [ -x "$bin/metrics-server" ] && [ -x "$bin/prometheus-adapter" ]; then
    echo "$bin"
    return
  fi
  mkdir -p "$bin"
  local kubernetes
  kubernetes=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$module/go.mod")
  echo "building kube-apiserver, kube-controller-manager (k8s.io/kubernetes $kubernetes) and etcd into $bin" >&2
  local targets=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager ./etcd)
  for target in "${targets[@]}"; do
    if ! (cd "$module" && GOFLAGS=-mod=mod go build -trimpath -o "../../$bin/" "$target"); then
      echo "building $target failed (module k8s.io/kubernetes $kubernetes, $(go version))" >&2
      exit 1
    fi
  done
  peer metrics-server sigs.k8s.io/metrics-server/cmd/metrics-server metrics-server
  peer prometheus-adapter sigs.k8s.io/prometheus-adapter/cmd/adapter prometheus-adapter
  echo "$want" > "$stamp"
  echo "$bin"
}

case "${1:-}" in
  build) build ;;
  up) build >/dev/null && exec cargo run --quiet --locked --example control_plane ;;
  *) echo "usage: $0 build|up" >&2; exit 2 ;;
esac
