# Shared settings of the local Kubernetes cluster scripts (sourced, not executed).
# Everything lives in ONE cache directory outside the repository, keyed by the Kubernetes version.
# shellcheck shell=bash
K8S_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$K8S_LIB_DIR/../.." && pwd)
# shellcheck source=../versions.env
source "$REPO_DIR/ci/versions.env"

# shellcheck source=../cache.sh
source "$REPO_DIR/ci/cache.sh"
K8S_DIR="$RCH_CACHE/k8s-$K8S_VERSION"
K8S_BIN="$K8S_DIR/bin"
K8S_STATE="$K8S_DIR/state"           # certs, configs, data, logs, pids of the running cluster
K8S_PIDS="$K8S_STATE/pids"
K8S_LOGS="$K8S_STATE/logs"
KUBECONFIG_ADMIN="$K8S_DIR/admin.kubeconfig"

# Network plan (checked against the host's addresses and routes by up.sh before use).
POD_CIDR=${RCH_POD_CIDR:-10.244.0.0/16}
NODE_POD_CIDR=${RCH_NODE_POD_CIDR:-10.244.0.0/24}
SERVICE_CIDR=${RCH_SERVICE_CIDR:-10.96.0.0/16}
APISERVER_SERVICE_IP=${RCH_APISERVER_SERVICE_IP:-10.96.0.1}
BRIDGE=${RCH_BRIDGE:-rch0}
BRIDGE_IP=${RCH_BRIDGE_IP:-10.244.0.1}   # gateway of the pods; CoreDNS listens here
DNS_SERVICE_IP=${RCH_DNS_SERVICE_IP:-10.96.0.10}
CLUSTER_DOMAIN=cluster.local
NODE_NAME=${RCH_NODE_NAME:-rch-node}
APISERVER_PORT=${RCH_APISERVER_PORT:-6443}
ETCD_CLIENT_PORT=${RCH_ETCD_PORT:-2379}
ETCD_PEER_PORT=${RCH_ETCD_PEER_PORT:-2380}
RUN_DIR=/run/redis-cluster-helm-k8s     # sockets and containerd's runtime state (short paths)
CONTAINERD_SOCK="$RUN_DIR/containerd.sock"
CNI_BIN_DIR=/usr/lib/cni                # Debian's containernetworking-plugins
IPT_CHAIN=RCH-ISOLATION

# Images built locally by ci/images/build.sh. The chart's images carry the chart's default coordinates and are
# pushed to the local OCI registry (ci/registry), from which containerd pulls them as a mirror of their
# registries (docker.io, ghcr.io): a default install runs here unchanged. The sandbox image is imported.
PAUSE_IMAGE=localhost/redis-cluster-helm/pause:3.10.1-local
REGISTRY_ADDR=127.0.0.1:${RCH_REGISTRY_PORT:-5000}
REGISTRY_MIRRORS=(docker.io ghcr.io)
# chart_default KEY: image.repository, image.tag or tools.image.repository from the chart's values.yaml.
chart_default() {
  awk -v want="$1" '
    /^[a-z]/ { top = $1; sub(":", "", top) }
    /^  [a-z]/ { mid = $1; sub(":", "", mid) }
    /^    [a-z]/ && top == "tools" && mid == "image" { k = $1; sub(":", "", k); if ("tools.image." k == want) { gsub(/"/, "", $2); print $2 } }
    /^  [a-z]/ && top == "image" { k = $1; sub(":", "", k); if ("image." k == want) { gsub(/"/, "", $2); print $2 } }
  ' "$REPO_DIR/charts/redis-cluster/values.yaml"
}
REDIS_IMAGE="$(chart_default image.repository):$(chart_default image.tag)"
TOOLS_IMAGE="$(chart_default tools.image.repository):$(awk '/^appVersion:/{gsub(/"/, "", $2); print $2}' "$REPO_DIR/charts/redis-cluster/Chart.yaml")"

kc() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

log() { printf '[%s] %s\n' "${LOG_TAG:-k8s}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# timed NAME COMMAND...: run a step and print how long it took.
timed() {
  local name=$1 t0; shift
  t0=$(date +%s.%N)
  "$@"
  log "$(awk -v a="$t0" -v b="$(date +%s.%N)" -v n="$name" 'BEGIN{printf "%-36s %7.1f s", n, b-a}')"
}
