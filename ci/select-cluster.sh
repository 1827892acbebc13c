#!/usr/bin/env bash
# The cluster the tests may touch, as exports:  eval "$(ci/select-cluster.sh [DIR])"
#   RCH_TEST_KUBECONFIG and RCH_TEST_CONTEXT both set: that context only, extracted from that file into a
#     kubeconfig of its own (DIR/kubeconfig-<hash>, mode 600; DIR defaults to $RCH_CACHE/test-cluster);
#   neither set: the local cluster of ci/k8s when it runs (the exports of ci/k8s/env.sh).
# Anything else is refused in one line on stderr (exit 1). KUBECONFIG, ~/.kube/config and any current
# context of the caller are never read, and no cluster is contacted here.
#   --check: only check the explicit variables (exit 0 when neither is set); prints nothing.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=cache.sh
source "$repo/ci/cache.sh"
# shellcheck source=versions.env
source "$repo/ci/versions.env"
refuse() { echo "select-cluster: $*" >&2; exit 1; }
check=0
[[ ${1:-} == --check ]] && { check=1; shift; }
dir=${1:-$RCH_CACHE/test-cluster}
given=${RCH_TEST_KUBECONFIG:-} context=${RCH_TEST_CONTEXT:-}

if [[ -z "$given" && -z "$context" ]]; then
  ((check)) && exit 0
  exports=$("$repo/ci/k8s/env.sh")
  grep -q '^export KUBECONFIG=' <<<"$exports" ||
    refuse "the local cluster does not run (make k8s-up); for another cluster set both RCH_TEST_KUBECONFIG and RCH_TEST_CONTEXT (KUBECONFIG and ~/.kube/config are never used)"
  # What a caller may carry over from its own environment must not pick another context or server.
  echo "unset HELM_KUBECONTEXT HELM_KUBEAPISERVER HELM_KUBETOKEN HELM_KUBECAFILE HELM_KUBEASUSER HELM_KUBEASGROUPS HELM_KUBETLS_SERVER_NAME HELM_KUBEINSECURE_SKIP_TLS_VERIFY"
  echo "$exports"
  exit 0
fi
[[ -n "$given" && -n "$context" ]] ||
  refuse "set both RCH_TEST_KUBECONFIG (a kubeconfig file) and RCH_TEST_CONTEXT (its context), or neither for the local cluster"
[[ -f "$given" ]] || refuse "RCH_TEST_KUBECONFIG=$given is not a file"
kubectl=$(command -v kubectl || true)
[[ -z "$kubectl" && -x "$RCH_CACHE/k8s-$K8S_VERSION/bin/kubectl" ]] && kubectl="$RCH_CACHE/k8s-$K8S_VERSION/bin/kubectl"
[[ -n "$kubectl" ]] || refuse "kubectl not found on PATH: needed to extract context $context from $given"
# `config view` reads the file only; --kubeconfig makes it ignore KUBECONFIG and ~/.kube/config.
minimal=$(env -u KUBECONFIG "$kubectl" config view --kubeconfig "$given" --context "$context" \
  --minify --flatten 2>&1) || refuse "context $context of $given: $(head -n1 <<<"$minimal")"
((check)) && exit 0
mkdir -p "$dir"
out="$dir/kubeconfig-$(echo "$given $context" | sha256sum | cut -c1-12)"
(umask 077 && printf '%s\n' "$minimal" >"$out.tmp") && mv "$out.tmp" "$out"
echo "unset HELM_KUBECONTEXT HELM_KUBEAPISERVER HELM_KUBETOKEN HELM_KUBECAFILE HELM_KUBEASUSER HELM_KUBEASGROUPS HELM_KUBETLS_SERVER_NAME HELM_KUBEINSECURE_SKIP_TLS_VERIFY"
echo "export KUBECONFIG=$out"
[[ "$kubectl" == "$(command -v kubectl)" ]] || echo "export PATH=${kubectl%/*}:\$PATH"
