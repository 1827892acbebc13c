#!/usr/bin/env bash
# Prints the environment for using the local cluster, when it runs:  eval "$(ci/k8s/env.sh)"
# Prints nothing when it does not (a cluster configured by the user is then used as it is).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$K8S_LIB_DIR/procs.sh"
if alive kube-apiserver && [[ -s "$KUBECONFIG_ADMIN" ]]; then
  echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
  echo "export PATH=$K8S_BIN:\$PATH"
  # The images it runs are the chart's defaults, served by its local registry (RCH_REGISTRY, plain HTTP).
  echo "export RCH_REDIS_IMAGE=$REDIS_IMAGE RCH_TOOLS_IMAGE=$TOOLS_IMAGE RCH_REGISTRY=$REGISTRY_ADDR"
  # The chart values this cluster needs (its DNS and API server are host processes): up.sh writes them.
  if [[ -s "$K8S_STATE/chart-values.yaml" ]]; then
    echo "export RCH_CLUSTER_VALUES=$K8S_STATE/chart-values.yaml"
  fi
fi
