#!/usr/bin/env bash
# (Re)starts only the NetworkPolicy engine of the running local cluster (ci/k8s/up.sh starts it with the
# rest; this is for after ci/k8s/netpol-down.sh). Idempotent: when it runs, it only checks the guard.
# See netpol.sh and NETPOL.md.
set -euo pipefail
LOG_TAG=netpol-up
source "$(dirname "$0")/lib.sh"
source "$K8S_LIB_DIR/net.sh"
source "$K8S_LIB_DIR/procs.sh"
source "$K8S_LIB_DIR/netpol.sh"
STARTED=0
[[ $(id -u) == 0 ]] || die "needs root (iptables, ipset)"
[[ -s "$K8S_DIR/kube-router.kubeconfig" ]] && kc get node "$NODE_NAME" >/dev/null 2>&1 ||
  die "the local cluster does not answer, or has no kube-router credentials (start it with ci/k8s/up.sh)"
timed "networkpolicy engine (kube-router)" start_netpol
