# Shared settings of the Argo CD scripts (sourced, not executed). Argo CD runs as processes of this
# machine (as Argo CD's own local development does), against the cluster of KUBECONFIG.
# Everything built or started lives in ONE cache directory outside the repository, keyed by version.
# shellcheck shell=bash
ARGOCD_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$ARGOCD_LIB_DIR/../.." && pwd)
# shellcheck source=../versions.env
source "$REPO_DIR/ci/versions.env"

RCH_CACHE=${RCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/redis-cluster-helm}
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

# The cluster: the local one when it runs (ci/k8s/env.sh prints its exports), else the configured one.
use_cluster() {
  local exports
  exports=$("$REPO_DIR/ci/k8s/env.sh" 2>/dev/null || true)
  [[ -n "$exports" ]] && eval "$exports"
  command -v kubectl >/dev/null || die "kubectl not found (start the local cluster: make k8s-up)"
  kubectl version --request-timeout=10s >/dev/null 2>&1 ||
    die "no reachable Kubernetes (run make k8s-up or set KUBECONFIG)"
  KUBECONFIG_PATH=${KUBECONFIG:-$HOME/.kube/config}
  export KUBECONFIG="$KUBECONFIG_PATH"
}

# --- processes: each one recorded by pid with its executable; stop only those pids ---
running() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

# alive NAME: the recorded pid still runs the recorded executable.
alive() {
  local f="$ARGOCD_PIDS/$1.pid" pid exe
  [[ -f "$f" ]] || return 1
  read -r pid exe _ <"$f" || return 1
  [[ -n "$pid" ]] && running "$pid" || return 1
  [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$exe"* ]]
}

# start_proc NAME SPEC EXECUTABLE ARGS...: start once, in its own session, logging to $ARGOCD_LOGS/NAME.log.
# SPEC sums up what it runs with (arguments, environment, binary); a different SPEC restarts it.
start_proc() {
  local name=$1 spec=$2 exe=$3 old=""
  shift 3
  if alive "$name"; then
    read -r _ _ old <"$ARGOCD_PIDS/$name.pid" || true
    [[ "$old" == "$spec" ]] && return 0
    log "$name runs with other arguments or binary: restarting it"
    stop_proc "$name" 20
  fi
  mkdir -p "$ARGOCD_PIDS" "$ARGOCD_LOGS"
  setsid "$exe" "$@" >>"$ARGOCD_LOGS/$name.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid $(readlink -f "$exe") $spec" >"$ARGOCD_PIDS/$name.pid"
  STARTED=$((STARTED + 1))
  log "started $name (pid $pid, log $ARGOCD_LOGS/$name.log)"
  sleep 0.3
  alive "$name" || { tail -20 "$ARGOCD_LOGS/$name.log" >&2; die "$name exited at once"; }
}

# stop_proc NAME [SECONDS]: SIGTERM the recorded pid, SIGKILL after a grace period.
stop_proc() {
  local name=$1 grace=${2:-15} f="$ARGOCD_PIDS/$1.pid" pid i
  [[ -f "$f" ]] || return 0
  read -r pid _ <"$f" || true
  if alive "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      running "$pid" || break
      sleep 0.1
    done
    if running "$pid"; then
      log "$name (pid $pid) ignored SIGTERM for ${grace}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$f"
}

# wait_for WHAT SECONDS COMMAND...: poll a command until it succeeds.
wait_for() {
  local what=$1 limit=$2 t0=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - t0 >= limit)) && die "timed out after ${limit}s waiting for: $what (logs: $ARGOCD_LOGS)"
    sleep 0.5
  done
}
