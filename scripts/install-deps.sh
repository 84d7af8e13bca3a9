#!/usr/bin/env bash
# Installs the real tools the tests and the quick start run: Prometheus with promtool, kubectl, curl.
# Does nothing when they are present; uses apt-get (as root, or through sudo) when they are not.
set -euo pipefail

need=()
{ command -v prometheus && command -v promtool; } >/dev/null || need+=(prometheus)
command -v curl >/dev/null || need+=(curl)
# Debian packages kubectl as kubernetes-client; any kubectl on PATH will do.
command -v kubectl >/dev/null || need+=(kubernetes-client)
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${need[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "installing ${need[*]} with apt-get..." >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
