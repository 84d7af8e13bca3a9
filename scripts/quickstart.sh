#!/usr/bin/env bash
# The quick start, no cluster needed: a real Prometheus loaded with sample traffic of a 3-pod X-Road Security
# Server Sidecar deployment, the adapter serving it over TLS, `kubectl get --raw` reading per-pod rates, and
# the replica count an HPA would choose for a sample target.
#
# Pods come from a snapshot file (tests/fixtures/inventory-sidecar.yaml), or with --cluster from a kube API
# the adapter lists and watches as in a cluster (the tests' fake of it); there a pod then crash-loops and the
# scale-on-failure value rises.
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=false
case "${1:-}" in
  --cluster) cluster=true ;;
  "") ;;
  *) echo "usage: $0 [--cluster]" >&2; exit 2 ;;
esac

PROMETHEUS_PORT=${PROMETHEUS_PORT:-19090}
ADAPTER_PORT=${ADAPTER_PORT:-16443}
TARGET=${TARGET:-10}   # HPA Pods target: averageValue packets/s per pod

scripts/install-deps.sh
echo "== building the adapter"
cargo build --quiet --locked --bin xroad-metrics-adapter --example quickstart_data --example quickstart_cluster
adapter=target/debug/xroad-metrics-adapter

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_for() { # url, what
  for _ in $(seq 1 100); do curl -fsk -o /dev/null "$1" && return 0; sleep 0.2; done
  echo "$2 did not come up; its log:" >&2; cat "$work/$2.log" >&2; exit 1
}

echo "== loading sample data into Prometheus (promtool tsdb create-blocks-from openmetrics)"
target/debug/examples/quickstart_data > "$work/sample.om"
promtool tsdb create-blocks-from openmetrics "$work/sample.om" "$work/prometheus-data" >/dev/null
printf 'global:\n  scrape_interval: 15s\n' > "$work/prometheus.yml"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prometheus-data" \
  --storage.tsdb.retention.time=10y --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" >"$work/prometheus.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" prometheus

if $cluster; then
  echo "== starting a kube API holding the Secondary Deployment and its 3 pods (Secondary B will crash-loop in 20 s)"
  target/debug/examples/quickstart_cluster "$work" 20 >"$work/cluster.out" 2>"$work/cluster.log" &
  pids+=($!)
  for _ in $(seq 1 100); do [ -s "$work/cluster.out" ] && break; sleep 0.1; done
  pods=(--kubeconfig "$(cat "$work/cluster.out")")
  from="listed and watched from that API"
else
  pods=(--inventory tests/fixtures/inventory-sidecar.yaml)
  from="from tests/fixtures/inventory-sidecar.yaml"
fi

echo "== starting the adapter on https://127.0.0.1:$ADAPTER_PORT (pods $from)"
"$adapter" serve --prometheus-url "http://127.0.0.1:$PROMETHEUS_PORT" --config scripts/quickstart-config.yaml \
  "${pods[@]}" --cert-dir "$work/certs" \
  --authentication none --bind-address 127.0.0.1 --secure-port "$ADAPTER_PORT" >"$work/adapter.log" 2>&1 &
pids+=($!)
wait_for "https://127.0.0.1:$ADAPTER_PORT/readyz" adapter

# The token is a placeholder: --authentication none ignores it, and kubectl prompts without one.
cat > "$work/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: quickstart
  cluster: {server: "https://127.0.0.1:$ADAPTER_PORT", certificate-authority: "$work/certs/ca.crt"}
users:
- name: quickstart
  user: {token: unused-with-authentication-none}
contexts:
- name: quickstart
  context: {cluster: quickstart, user: quickstart}
current-context: quickstart
KUBECONFIG
k() { echo; echo "\$ kubectl get --raw \"$1\""; kubectl --kubeconfig "$work/kubeconfig" get --raw "$1"; echo; }

echo
echo "== what the HPA and kubectl see"
k "/apis/custom.metrics.k8s.io/v1beta2"
k "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/pods/*/container_network_receive_packets_per_second?labelSelector=run%3Dsecurity-server-sidecar-secondary"
k "/apis/external.metrics.k8s.io/v1beta1/namespaces/sidecar/container_network_receive_packets_per_second"

# The policy evaluates in the background; its first value appears within a second.
policy="/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/deployments.apps/security-server-sidecar-secondary/xroad_scale_on_failure_replicas"
for _ in $(seq 1 50); do kubectl --kubeconfig "$work/kubeconfig" get --raw "$policy" >/dev/null 2>&1 && break; sleep 0.2; done
k "$policy"

echo
echo "== why the scale-on-failure policy asks for that many replicas"
"$adapter" explain --prometheus-url "http://127.0.0.1:$PROMETHEUS_PORT" --config scripts/quickstart-config.yaml \
  "${pods[@]}"

echo
echo "== the replica count an HPA with a Pods target of averageValue $TARGET packets/s would choose"
"$adapter" query --prometheus-url "http://127.0.0.1:$PROMETHEUS_PORT" "${pods[@]}" \
  -n sidecar -l run=security-server-sidecar-secondary --metric container_network_receive_packets_per_second \
  --target-average-value "$TARGET"
if ! $cluster; then
  echo
  echo "== why an HPA would do that: one sync of the HPA controller for scripts/quickstart-hpa.yaml"
  "$adapter" explain --prometheus-url "http://127.0.0.1:$PROMETHEUS_PORT" --config scripts/quickstart-config.yaml \
    "${pods[@]}" --hpa-file scripts/quickstart-hpa.yaml
fi
if $cluster; then
  echo
  echo "== a pod fails: the kube API reports Secondary B in CrashLoopBackOff, the watch delivers it, and after"
  echo "   failFor (30 s) the policy asks for one more replica"
  before=$(kubectl --kubeconfig "$work/kubeconfig" get --raw "$policy" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["value"])')
  for _ in $(seq 1 90); do
    now=$(kubectl --kubeconfig "$work/kubeconfig" get --raw "$policy" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["value"])')
    [ "$now" != "$before" ] && break
    sleep 1
  done
  [ "$now" != "$before" ] || { echo "the policy did not change; the adapter's log:" >&2; cat "$work/adapter.log" >&2; exit 1; }
  k "$policy"
  "$adapter" explain --prometheus-url "http://127.0.0.1:$PROMETHEUS_PORT" --config scripts/quickstart-config.yaml "${pods[@]}"
fi

echo
echo "== Grafana dashboards"
echo "dashboards/xroad-autoscaling.json and dashboards/xroad-metrics-adapter.json; in a cluster, deploy/ installs them as"
echo "the ConfigMap xroad-metrics-adapter-dashboards (label grafana_dashboard=1) for the kube-prometheus-stack Grafana."
echo "The 'Received packets per pod' panel's query against this Prometheus (it also shows the deleted pod -gone1,"
echo "whose synthetic series never stops here; the adapter leaves it out because the pod no longer exists):"
panel='sum by (pod) (max by (pod, interface) (rate(container_network_receive_packets_total{namespace="sidecar", pod=~"security-server-sidecar-secondary-.*", id!="/"}[1m])))'
curl -s "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query" --data-urlencode "query=$panel" \
  | python3 -c 'import json, sys
for r in json.load(sys.stdin)["data"]["result"]:
    print("  %-50s %8.2f packets/s" % (r["metric"]["pod"], float(r["value"][1])))'
echo
echo "Done. README.md links the docs: the metrics (docs/metrics.md), every flag and the configuration file (docs/operations.md), installing in a cluster (docs/install.md)."
