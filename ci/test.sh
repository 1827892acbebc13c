#!/usr/bin/env bash
# `make test`: every test of the project, stage by stage, with how long each stage took.
#   static   ruff, chart README/schema freshness (chart lint and render tests run under pytest)
#   local    unit, chart, plugin and Redis-level tests (real redis-server processes on loopback)
#   e2e      the Kubernetes journey, on the local cluster (ci/k8s), or on the one RCH_TEST_KUBECONFIG and
#            RCH_TEST_CONTEXT name (ci/select-cluster.sh; KUBECONFIG and ~/.kube/config are never used)
#   gitops   the chart synced from Git by a real Argo CD (ci/argocd) on that cluster
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
declare -a report=()
stage() {  # stage NAME COMMAND...
  local name=$1 start=$SECONDS; shift
  echo "=== stage: $name"
  "$@"
  report+=("$(printf '%-8s %5d s' "$name" $((SECONDS - start)))")
}
summary() { echo "=== stage times"; printf '%s\n' "${report[@]}"; }
trap summary EXIT

static() {
  .venv/bin/ruff check src tests benchmarks ci/*.py
  .venv/bin/ruff format --check src tests benchmarks ci/*.py
  $py ci/chart_docs.py --check charts/redis-cluster
}

# The explicit cluster variables are checked first (one line when wrong), not after the long stages.
ci/select-cluster.sh --check
stage static static
# Three workers (pytest-xdist): the Redis-level tests mostly wait on node timeouts, so 2 cores carry 3;
# each worker takes its own share of the loopback blocks (tests/conftest.py). 10 min serial, under 5 here.
stage local $py -m pytest -m "not e2e and not gitops" -p no:cacheprovider -n 3
# The Kubernetes journey: on the local cluster (built and started if needed, with images built from this
# checkout and imported; LOCAL_K8S=1: whatever KUBECONFIG says), or on the cluster named explicitly.
if [[ -z "${RCH_TEST_KUBECONFIG:-}${RCH_TEST_CONTEXT:-}" ]]; then stage k8s-up env LOCAL_K8S=1 ci/k8s/up.sh; fi
selected=$(ci/select-cluster.sh)
eval "$selected"
if [[ -n "${RCH_REGISTRY:-}" ]]; then stage images ci/images/build.sh; fi
# -s: the e2e tests print their measurements ([e2e] lines: rollout gaps, drill promotions, timings);
# --durations: what each test costs (the budget of DESIGN.md section 5, per engine and per move).
stage e2e $py -m pytest -m e2e -p no:cacheprovider -s --durations=40
stage argocd-up make --no-print-directory argocd-up
stage gitops $py -m pytest -m gitops -p no:cacheprovider
