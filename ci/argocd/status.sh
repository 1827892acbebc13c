#!/usr/bin/env bash
# Processes, health and Applications of the Argo CD that up.sh started. Exit 1 when a process is down.
set -euo pipefail
LOG_TAG=argocd-status
source "$(dirname "$0")/lib.sh"
rc=0
for name in argocd-redis argocd-repo-server argocd-application-controller; do
  if alive "$name"; then
    read -r pid _ <"$ARGOCD_PIDS/$name.pid"
    printf '%-32s running (pid %s)\n' "$name" "$pid"
  else
    printf '%-32s DOWN\n' "$name"; rc=1
  fi
done
health() {  # health NAME PORT
  if curl -sf --max-time 2 "http://127.0.0.1:$2/healthz" >/dev/null; then
    echo "$1 healthz ok"
  else
    echo "$1 healthz FAILED"; rc=1
  fi
}
health repo-server "$ARGOCD_REPOSERVER_METRICS_PORT"
health application-controller "$ARGOCD_CONTROLLER_METRICS_PORT"
use_cluster
kubectl -n "$ARGOCD_NAMESPACE" get applications.argoproj.io \
  -o custom-columns='NAME:.metadata.name,SYNC:.status.sync.status,HEALTH:.status.health.status,REVISION:.status.sync.revision,OPERATION:.status.operationState.phase' || rc=1
exit $rc
