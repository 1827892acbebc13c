#!/usr/bin/env bash
# Stops the Argo CD processes that up.sh started (by their recorded pids) and removes their state
# (logs, clones, Argo CD's cache). The binaries and manifests stay in the cache. Objects in the cluster
# stay too: Applications keep their resources; `ARGOCD_PURGE=1` also deletes the namespace $ARGOCD_NAMESPACE
# (Applications first, while the controller still runs and can remove their finalizers).
set -euo pipefail
LOG_TAG=argocd-down
source "$(dirname "$0")/lib.sh"

if [[ "${ARGOCD_PURGE:-0}" == 1 ]]; then
  use_cluster
  kubectl -n "$ARGOCD_NAMESPACE" delete applications.argoproj.io --all --wait=true --timeout=300s || true
fi
for name in argocd-application-controller argocd-repo-server argocd-redis; do
  stop_proc "$name" 20
done
if [[ "${ARGOCD_PURGE:-0}" == 1 ]]; then
  kubectl delete namespace "$ARGOCD_NAMESPACE" --wait=true --timeout=120s --ignore-not-found || true
fi
rm -rf "$ARGOCD_STATE"
log "stopped; state removed ($ARGOCD_STATE)"
