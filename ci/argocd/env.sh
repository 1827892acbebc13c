#!/usr/bin/env bash
# Prints the environment for using the Argo CD that up.sh started:  eval "$(ci/argocd/env.sh)"
# (the selected cluster's exports, ci/select-cluster.sh; Argo CD's namespace and binary directory). Applications are read with
# kubectl (`kubectl -n argocd get applications`): the argocd CLI needs argocd-server, or with --core
# in-cluster pods, neither of which runs here. Argo CD's helm is deliberately not put on PATH (the project
# uses its own Helm).
# Prints nothing when Argo CD does not run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
alive argocd-application-controller || exit 0
"$REPO_DIR/ci/select-cluster.sh" 2>/dev/null || true
echo "export ARGOCD_NAMESPACE=$ARGOCD_NAMESPACE"
echo "export ARGOCD_BIN=$ARGOCD_BIN"
