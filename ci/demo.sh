#!/usr/bin/env bash
# `make demo`: the whole product on a real Kubernetes, from a fresh machine.
# Sets up what is missing (tools, the local cluster unless one is configured, local images), installs the
# chart, waits for the formation hook, runs `helm redis verify` and a crash drill, and prints a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
NAMESPACE=${DEMO_NAMESPACE:-redis-demo}
RELEASE=${DEMO_RELEASE:-redis}
declare -a times=()
stage() {  # stage NAME COMMAND...
  local name=$1 start=$SECONDS; shift
  echo "=== $name"
  "$@"
  times+=("$(printf '%-28s %5d s' "$name" $((SECONDS - start)))")
}

stage "tools (bootstrap)" ci/bootstrap.sh
source ci/cache.sh
export PATH="$RCH_CACHE/bin:$PWD/.venv/bin:$PATH"
stage "kubernetes (up)" ci/k8s/up.sh
eval "$(ci/k8s/env.sh)"
if [[ -n "${RCH_REGISTRY:-}" ]]; then stage "images (build, push, pull)" ci/images/build.sh; fi

# The plugin from this checkout. Helm installs a local plugin as a symlink named after the directory: one left
# by another checkout (or a removed one, which `helm plugin list` no longer shows) would run other code or
# make the install fail with "file exists", so it is replaced.
install_plugin() {
  local link
  link="$(helm env HELM_PLUGINS)/helm_plugin"
  if [[ -L "$link" || -e "$link" ]]; then
    [[ "$(readlink -f "$link")" == "$(readlink -f ./helm_plugin)" ]] && return 0
    echo "replacing the plugin installed from $(readlink "$link" || echo "$link")"
    rm -rf "$link"
  fi
  helm plugin install ./helm_plugin
}
stage "helm plugin install" install_plugin

node=$(kubectl get nodes -o jsonpath='{.items[0].metadata.name}')
values=(
  ${RCH_CLUSTER_VALUES:+--values "$RCH_CLUSTER_VALUES"}
  --set persistence.type=hostPath --set "persistence.hostPath.node=$node" --set volumePermissions.enabled=true
  --set "persistence.hostPath.path=/var/lib/redis-cluster-demo/{{release}}/{{ordinal}}"
)
stage "helm install (hook forms)" helm upgrade --install "$RELEASE" charts/redis-cluster -n "$NAMESPACE" \
  --create-namespace "${values[@]}" --wait --timeout 15m
stage "helm redis verify" helm redis verify "$RELEASE" -n "$NAMESPACE"
stage "helm redis drill (crash)" helm redis drill "$RELEASE" -n "$NAMESPACE" --mode crash

cat <<SUMMARY

=== summary
The cluster: release $RELEASE in namespace $NAMESPACE ($(kubectl config current-context 2>/dev/null || echo local)).
  kubectl -n $NAMESPACE get pods -o wide
  # a cluster-aware shell as the application user (its password from the file mounted in the pod)
  kubectl -n $NAMESPACE exec -it $RELEASE-redis-cluster-0 -c redis -- \\
    sh -c 'REDISCLI_AUTH="\$(head -n1 /etc/redis-auth/app-password)" redis-cli --user app -c'
  kubectl -n $NAMESPACE port-forward svc/$RELEASE-redis-cluster 6379   # then: redis-cli --user app --askpass
  helm redis verify $RELEASE -n $NAMESPACE
  helm redis drill $RELEASE -n $NAMESPACE --mode graceful
The drill's numbers are in its table above (promotion time, write gap per shard, writes lost: must be 0).
Stage times:
SUMMARY
printf '  %s\n' "${times[@]}"
