#!/usr/bin/env bash
# Stops the NetworkPolicy engine that ci/k8s/netpol-up.sh started (by recorded pid) and removes what it
# made: its jumps from INPUT/FORWARD/OUTPUT, its chains (KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-*,
# with the isolation guard), its ipsets (KUBE-SRC-*, KUBE-DST-*, kube-router-*). Keeps the built binary.
# Then compares the filter table with the copy netpol-up took before the engine started: prints the
# differences (kube-proxy's own changes since then show there too). Safe to run twice.
set -euo pipefail
LOG_TAG=netpol-down
source "$(dirname "$0")/lib.sh"

KUBE_ROUTER_VERSION=${NETPOL_KUBE_ROUTER_VERSION:-v2.10.0}
NETPOL_DIR="$RCH_CACHE/netpol-kube-router-$KUBE_ROUTER_VERSION"
NETPOL_STATE="$NETPOL_DIR/state"
PROCS_PIDS="$NETPOL_STATE/pids"
PROCS_LOGS="$NETPOL_STATE/logs"
source "$K8S_LIB_DIR/procs.sh"
ENGINE_CHAINS='^(KUBE-ROUTER-(INPUT|FORWARD|OUTPUT)|KUBE-POD-FW-.*|KUBE-NWPLCY-.*)$'

remove_rules() {
  local chain rule
  # Jumps from the built-in chains into the engine's chains (its comments are quoted: eval).
  for chain in INPUT FORWARD OUTPUT; do
    while read -r rule; do
      eval "iptables -w -t filter ${rule/-A /-D }" || true
    done < <(iptables -w -S "$chain" | grep -E -- '-j KUBE-ROUTER-(INPUT|FORWARD|OUTPUT)$')
  done
  local chains
  chains=$(iptables -w -S | awk '$1=="-N" {print $2}' | grep -E "$ENGINE_CHAINS" || true)
  for chain in $chains; do iptables -w -F "$chain"; done
  for chain in $chains; do iptables -w -X "$chain"; done
  local set
  for set in $(ipset list -n 2>/dev/null | grep -E '^(KUBE-(SRC|DST)-|kube-router-)' || true); do
    ipset destroy "$set"
  done
}

main() {
  [[ $(id -u) == 0 ]] || die "needs root (iptables, ipset)"
  stop_proc kube-router 30
  stop_proc netpol-scope-proxy 10
  rm -rf "$NETPOL_STATE/api"   # the scoping proxy's copy of the admin credentials
  remove_rules
  local left
  left=$( (iptables-save -t filter; ipset list -n 2>/dev/null) | grep -c -E 'KUBE-ROUTER|KUBE-POD-FW|KUBE-NWPLCY|KUBE-(SRC|DST)-|kube-router' || true)
  ((left == 0)) || die "$left rule/chain/ipset lines of the engine are left (iptables-save -t filter)"
  # If the cluster's isolation chain exists it must be FORWARD's first rule again (net.sh keeps it there).
  if iptables -w -S "$IPT_CHAIN" >/dev/null 2>&1 &&
    [[ $(iptables -w -S FORWARD | sed -n 2p) != "-A FORWARD -j $IPT_CHAIN" ]]; then
    while iptables -w -D FORWARD -j "$IPT_CHAIN" 2>/dev/null; do :; done
    iptables -w -I FORWARD 1 -j "$IPT_CHAIN"
    log "put -j $IPT_CHAIN back as FORWARD's first rule"
  fi
  if [[ -f "$NETPOL_STATE/before.rules" ]]; then
    local now diff
    now=$(mktemp)
    { iptables-save -t filter; ipset list -n 2>/dev/null | sed 's/^/ipset /'; } >"$now"
    # Counters and comments of iptables-save's header lines change by themselves: compare rules only.
    diff=$(diff <(grep -vE '^#|^:' "$NETPOL_STATE/before.rules") <(grep -vE '^#|^:' "$now") || true)
    if [[ -z "$diff" ]]; then
      log "filter table and ipsets: identical to before the engine started"
    else
      log "filter table and ipsets differ from before the engine started (kube-proxy's changes included):"
      printf '%s\n' "$diff" >&2
    fi
    rm -f "$now" "$NETPOL_STATE/before.rules"
  fi
  log "engine stopped, its rules and ipsets removed"
}

main "$@"
