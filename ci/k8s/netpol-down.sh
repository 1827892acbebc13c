#!/usr/bin/env bash
# Stops only the NetworkPolicy engine of the local cluster (by recorded pid) and removes what it made:
# its jumps from INPUT/FORWARD/OUTPUT, its chains (KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-*, the
# isolation guard with them) and its ipsets. NetworkPolicy objects stay, unenforced, until
# ci/k8s/netpol-up.sh (or up.sh) starts it again. ci/k8s/down.sh does this too. Safe to run twice.
set -euo pipefail
LOG_TAG=netpol-down
source "$(dirname "$0")/lib.sh"
source "$K8S_LIB_DIR/net.sh"
source "$K8S_LIB_DIR/procs.sh"
source "$K8S_LIB_DIR/netpol.sh"
[[ $(id -u) == 0 ]] || die "needs root (iptables, ipset)"
timed "networkpolicy engine (kube-router)" stop_netpol
# The isolation chain is FORWARD's first rule again.
if iptables -w -S "$IPT_CHAIN" >/dev/null 2>&1; then
  isolation_rules
  forward_guarded || die "FORWARD does not start with -j $IPT_CHAIN"
fi
log "engine stopped, its rules and ipsets removed: NetworkPolicies are not enforced"
