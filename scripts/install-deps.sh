#!/usr/bin/env bash
# Installs the real tools the tests, the benchmarks and the quick start run: Prometheus with promtool,
# VictoriaMetrics with vmauth (the backend tests), kubectl,
# curl, h2load (nghttp2-client, the load benchmark's HTTP/2 client), and kubernetes-validate (PyPI, into
# .tools/venv: Debian's pip refuses system-wide installs).
# Does nothing when they are present; uses apt-get (as root, or through sudo) when they are not.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VALIDATE_VERSION=1.37.0
venv=.tools/venv

need=()
{ command -v prometheus && command -v promtool; } >/dev/null || need+=(prometheus)
{ command -v victoria-metrics && command -v vmauth; } >/dev/null || need+=(victoria-metrics)
command -v curl >/dev/null || need+=(curl)
command -v h2load >/dev/null || need+=(nghttp2-client)
# Debian packages kubectl as kubernetes-client; any kubectl on PATH will do.
command -v kubectl >/dev/null || need+=(kubernetes-client)
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  command -v python3 >/dev/null || need+=(python3)
  python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
fi

if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${need[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  echo "installing ${need[*]} with apt-get..." >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  echo "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $venv..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
