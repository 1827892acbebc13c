# Shared settings of the Argo CD scripts (sourced, not executed). Argo CD runs as processes of this
# machine (as Argo CD's own local development does), against the cluster the tests were given
# (ci/select-cluster.sh: the local one, or RCH_TEST_KUBECONFIG + RCH_TEST_CONTEXT; never KUBECONFIG).
# Everything built or started lives in ONE cache directory outside the repository, keyed by version.
# shellcheck shell=bash
ARGOCD_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$ARGOCD_LIB_DIR/../.." && pwd)
# shellcheck source=../versions.env
source "$REPO_DIR/ci/versions.env"

# shellcheck source=../cache.sh
source "$REPO_DIR/ci/cache.sh"
ARGOCD_DIR="$RCH_CACHE/argocd-$ARGOCD_VERSION"
ARGOCD_BIN="$ARGOCD_DIR/bin"          # argocd (all-in-one), helm (the version Argo CD pins)
ARGOCD_STATE="$ARGOCD_DIR/state"      # pids, logs, TLS/SSH/GPG data dirs, redis dir; removed by down
ARGOCD_PIDS="$ARGOCD_STATE/pids"
ARGOCD_LOGS="$ARGOCD_STATE/logs"

ARGOCD_NAMESPACE=${ARGOCD_NAMESPACE:-argocd}
# Loopback ports (nothing listens elsewhere): Argo CD's cache, the repo-server, metrics/health.
ARGOCD_REDIS_PORT=${ARGOCD_REDIS_PORT:-17379}
ARGOCD_REPOSERVER_PORT=${ARGOCD_REPOSERVER_PORT:-17081}
ARGOCD_REPOSERVER_METRICS_PORT=${ARGOCD_REPOSERVER_METRICS_PORT:-17084}
ARGOCD_CONTROLLER_METRICS_PORT=${ARGOCD_CONTROLLER_METRICS_PORT:-17082}

log() { printf '[%s] %s\n' "${LOG_TAG:-argocd}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# timed NAME COMMAND...: run a step and print how long it took.
timed() {
  local name=$1 t0; shift
  t0=$(date +%s.%N)
  "$@"
  log "$(awk -v a="$t0" -v b="$(date +%s.%N)" -v n="$name" 'BEGIN{printf "%-40s %7.1f s", n, b-a}')"
}

# The cluster: the one the tests were given (ci/select-cluster.sh), never an implicit KUBECONFIG.
use_cluster() {
  local exports
  exports=$("$REPO_DIR/ci/select-cluster.sh") || exit 1
  eval "$exports"
  command -v kubectl >/dev/null || die "kubectl not found (start the local cluster: make k8s-up)"
  kubectl version --request-timeout=10s >/dev/null 2>&1 ||
    die "the selected cluster ($KUBECONFIG) does not answer"
  export KUBECONFIG
}

# --- processes: each one recorded by pid with its executable; stop only those pids (shared with ci/k8s) ---
PROCS_PIDS=$ARGOCD_PIDS
PROCS_LOGS=$ARGOCD_LOGS
# shellcheck source=../k8s/procs.sh
source "$REPO_DIR/ci/k8s/procs.sh"
