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

# Images built locally by ci/images/build.sh (never pulled).
IMAGE_PREFIX=localhost/redis-cluster-helm
PAUSE_IMAGE="$IMAGE_PREFIX/pause:3.10.1-local"
REDIS_IMAGE="$IMAGE_PREFIX/redis:7.0-local"
HOOK_IMAGE="$IMAGE_PREFIX/hook:dev"

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
