#!/usr/bin/env bash
# Starts Argo CD against the cluster of ci/select-cluster.sh (the local one of ci/k8s, or the one that
# RCH_TEST_KUBECONFIG + RCH_TEST_CONTEXT name; never an implicit KUBECONFIG), idempotently:
#   1. builds what is missing (ci/argocd/build.sh; cached);
#   2. installs from the release's own manifests/: the Application and AppProject CRDs, the base
#      configuration (argocd-cm, argocd-secret, ...) in namespace $ARGOCD_NAMESPACE, and the `default`
#      AppProject (only argocd-server creates it otherwise; this setup runs none);
#   3. runs, as processes of this machine (like Argo CD's own Procfile for local development), a
#      redis-server on loopback for Argo CD's cache, the repo-server (helm and git on its PATH) and the
#      application-controller, both with ARGOCD_FAKE_IN_CLUSTER=true and this KUBECONFIG.
# A second run checks that everything answers and changes nothing. Prints how long each step took.
set -euo pipefail
LOG_TAG=argocd-up
source "$(dirname "$0")/lib.sh"
STARTED=0
# Full comparison of every Application this often (Argo CD's default is 120 s with 60 s of jitter); the
# controller also reacts at once to changes of the resources it watches.
ARGOCD_APP_RESYNC=${ARGOCD_APP_RESYNC:-30}

install_manifests() {
  local m="$ARGOCD_DIR/manifests"
  kubectl create namespace "$ARGOCD_NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  # Server-side apply: the Application CRD is too large for the last-applied annotation.
  kubectl apply --server-side --force-conflicts --field-manager=rch-argocd-up \
    -f "$m/crds/application-crd.yaml" -f "$m/crds/appproject-crd.yaml" >/dev/null
  # A CRD created a moment ago may have no status.conditions yet, and `kubectl wait` then fails at once
  # ("conditions accessor error: <nil>") instead of waiting: retry, bounded.
  local tries=0
  until kubectl wait --for condition=established --timeout=60s \
    crd/applications.argoproj.io crd/appprojects.argoproj.io >/dev/null 2>&1; do
    tries=$((tries + 1))
    if ((tries >= 30)); then
      echo "argocd-up: the Argo CD CRDs were not established after 30 tries" >&2
      return 1
    fi
    sleep 1
  done
  kubectl apply --server-side --force-conflicts --field-manager=rch-argocd-up -n "$ARGOCD_NAMESPACE" \
    -f "$m/config/" -f "$ARGOCD_LIB_DIR/appproject-default.yaml" >/dev/null
}

start_all() {
  local key redis_server
  mkdir -p "$ARGOCD_STATE"/{tls,ssh,gpg/keys,gpg/source,redis,tmp}
  chmod 700 "$ARGOCD_STATE/gpg/keys"
  key=$(cat "$ARGOCD_BIN/.argocd.key" "$ARGOCD_BIN/.helm.key")
  redis_server=$(command -v redis-server) || die "redis-server not found (apt-get install redis-server)"

  start_spec argocd-redis "$(echo "$ARGOCD_REDIS_PORT" | sha256sum | cut -c1-16)" "$redis_server" \
    --bind 127.0.0.1 --port "$ARGOCD_REDIS_PORT" --save '' --appendonly no --dir "$ARGOCD_STATE/redis"

  # What both Argo CD components see (their own Procfile sets the same for local development).
  export ARGOCD_FAKE_IN_CLUSTER=true KUBECONFIG
  export ARGOCD_TLS_DATA_PATH="$ARGOCD_STATE/tls" ARGOCD_SSH_DATA_PATH="$ARGOCD_STATE/ssh"
  export ARGOCD_GPG_ENABLED=false ARGOCD_GNUPGHOME="$ARGOCD_STATE/gpg/keys"
  export ARGOCD_GPG_DATA_PATH="$ARGOCD_STATE/gpg/source"
  export TMPDIR="$ARGOCD_STATE/tmp"          # the repo-server's clones and helm's scratch space
  export PATH="$ARGOCD_BIN:$PATH"            # helm (the version Argo CD pins) before any other helm
  command -v git >/dev/null || die "git not found on the repo-server's PATH (apt-get install git)"

  local repo_args=(--address 127.0.0.1 --port "$ARGOCD_REPOSERVER_PORT"
    --metrics-address 127.0.0.1 --metrics-port "$ARGOCD_REPOSERVER_METRICS_PORT"
    --redis "127.0.0.1:$ARGOCD_REDIS_PORT" --loglevel info --logformat text)
  ARGOCD_BINARY_NAME=argocd-repo-server start_spec argocd-repo-server \
    "$(echo "$key ${repo_args[*]} $KUBECONFIG" | sha256sum | cut -c1-16)" "$ARGOCD_BIN/argocd" "${repo_args[@]}"

  local ctl_args=(--namespace "$ARGOCD_NAMESPACE" --redis "127.0.0.1:$ARGOCD_REDIS_PORT"
    --repo-server "127.0.0.1:$ARGOCD_REPOSERVER_PORT" --metrics-port "$ARGOCD_CONTROLLER_METRICS_PORT"
    --app-resync "$ARGOCD_APP_RESYNC" --app-resync-jitter 0 --loglevel info --logformat text)
  ARGOCD_BINARY_NAME=argocd-application-controller start_spec argocd-application-controller \
    "$(echo "$key ${ctl_args[*]} $KUBECONFIG" | sha256sum | cut -c1-16)" "$ARGOCD_BIN/argocd" "${ctl_args[@]}"
}

healthy() { curl -sf --max-time 2 "http://127.0.0.1:$1/healthz" >/dev/null; }

wait_ready() {
  wait_for "Argo CD's redis" 30 redis-cli -h 127.0.0.1 -p "$ARGOCD_REDIS_PORT" ping
  wait_for "repo-server health" 120 healthy "$ARGOCD_REPOSERVER_METRICS_PORT"
  wait_for "application-controller health" 120 healthy "$ARGOCD_CONTROLLER_METRICS_PORT"
}

main() {
  local t0
  t0=$(date +%s.%N)
  use_cluster
  timed "build (cached)" "$ARGOCD_LIB_DIR/build.sh"
  timed "CRDs, argocd-cm/secret, default AppProject" install_manifests
  timed "processes ($ARGOCD_NAMESPACE)" start_all
  timed "health of redis, repo-server, controller" wait_ready
  log "$(awk -v a="$t0" -v b="$(date +%s.%N)" -v n="$STARTED" \
    'BEGIN{printf "Argo CD '"$ARGOCD_VERSION"' up in %.1f s (%d process(es) started); logs in %s", b-a, n, "'"$ARGOCD_LOGS"'"}')"
}
main "$@"
