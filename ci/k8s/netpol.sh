# The NetworkPolicy engine of the local cluster (sourced by up.sh, down.sh, netpol-up.sh, netpol-down.sh):
# the network policy controller of kube-router (and nothing else of it: no router, no service proxy, no
# health or metrics port), built by build.sh, run as a host process like the other components, for every
# namespace, with a client certificate of its own (pki.sh; read-only RBAC from up.sh). It enforces ingress
# and egress NetworkPolicies with iptables (the `iptables` command: the backend kube-proxy uses) and ipsets.
# See ci/k8s/NETPOL.md.
# shellcheck shell=bash

NETPOL_SYNC_PERIOD=${RCH_NETPOL_SYNC_PERIOD:-5m}
NODE_PORT_RANGE=${RCH_NODE_PORT_RANGE:-30000-32767}   # the API server's default (up.sh sets none)
NETPOL_GUARD_COMMENT="rch: isolation before kube-router accepts"
NETPOL_CHAINS='^(KUBE-ROUTER-(INPUT|FORWARD|OUTPUT)|KUBE-POD-FW-.*|KUBE-NWPLCY-.*)$'
NETPOL_SETS='^(KUBE-(SRC|DST)-|kube-router-)'
# The rule of KUBE-ROUTER-FORWARD that leads to the ACCEPT of allowed traffic (v2.10: a jump to
# KUBE-NWPLCY-TAIL, whose mark-0x20000 rule ACCEPTs; v2.1: that ACCEPT itself).
NETPOL_ACCEPT_RE='(-j KUBE-NWPLCY-TAIL|--mark 0x20000/0x20000 -j ACCEPT)$'

# The isolation guard. kube-router keeps its jump to KUBE-ROUTER-FORWARD the FIRST rule of FORWARD (it
# moves it back at every sync), and that chain ends by ACCEPTing the traffic from/to local pods that the
# policies allow (pods without policies included), so pod traffic bound elsewhere would never reach
# RCH-ISOLATION. The guard, made before the engine's first sync, sends KUBE-ROUTER-FORWARD's traffic
# through the isolation chain first (pod<->pod on the bridge returns, anything else from the pod range is
# rejected). kube-router keeps foreign rules of its chains (it rewrites the filter table from iptables-save).
netpol_guard() {
  iptables -w -N KUBE-ROUTER-FORWARD 2>/dev/null || true
  [[ $(iptables -w -S KUBE-ROUTER-FORWARD | sed -n 2p) == *"-j $IPT_CHAIN" ]] && return 0
  while iptables -w -D KUBE-ROUTER-FORWARD -m comment --comment "$NETPOL_GUARD_COMMENT" -j "$IPT_CHAIN" 2>/dev/null; do :; done
  iptables -w -I KUBE-ROUTER-FORWARD 1 -m comment --comment "$NETPOL_GUARD_COMMENT" -j "$IPT_CHAIN"
  log "guard: KUBE-ROUTER-FORWARD starts with -j $IPT_CHAIN"
}

netpol_first_sync() {
  iptables -w -S KUBE-ROUTER-FORWARD 2>/dev/null | grep -qE -- "$NETPOL_ACCEPT_RE" &&
    [[ $(iptables -w -S FORWARD | sed -n 2p) == *"-j KUBE-ROUTER-FORWARD" ]]
}

# netpol_check_guard: the guard comes before the ACCEPT of KUBE-ROUTER-FORWARD, and FORWARD is guarded.
netpol_check_guard() {
  local rules first accept
  rules=$(iptables -w -S KUBE-ROUTER-FORWARD)
  first=$(sed -n 2p <<<"$rules")
  accept=$(grep -nE -- "$NETPOL_ACCEPT_RE" <<<"$rules" | head -1 | cut -d: -f1)
  [[ "$first" == *"-j $IPT_CHAIN" && -n "$accept" && "$accept" -gt 2 ]] ||
    die "KUBE-ROUTER-FORWARD does not start with the isolation guard before its ACCEPT:"$'\n'"$rules"
  forward_guarded || die "FORWARD is not guarded:"$'\n'"$(iptables -w -S FORWARD | head -5)"
}

start_netpol() {
  [[ -x "$K8S_BIN/kube-router" ]] || die "no $K8S_BIN/kube-router: run ci/k8s/build.sh"
  iptables -w -S FORWARD | grep -q -- "-j $IPT_CHAIN" ||
    die "\`iptables -S FORWARD\` shows no jump to $IPT_CHAIN: not the backend the cluster uses?"
  command -v ipset >/dev/null || die "ipset is not installed (ci/k8s/build.sh installs it)"
  local t0=$SECONDS before=$STARTED
  netpol_guard
  start_proc kube-router "$K8S_BIN/kube-router" \
    --kubeconfig "$K8S_DIR/kube-router.kubeconfig" \
    --run-firewall=true --run-router=false --run-service-proxy=false --run-loadbalancer=false \
    --enable-ipv4=true --enable-ipv6=false \
    --hostname-override="$NODE_NAME" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --service-node-port-range="$NODE_PORT_RANGE" \
    --iptables-sync-period="$NETPOL_SYNC_PERIOD" \
    --health-port=0 --metrics-port=0 \
    --v=1
  wait_for "kube-router's first sync (its chains and FORWARD jump)" 120 netpol_first_sync
  ((STARTED > before)) && sleep 1   # a sync just started may still be writing
  netpol_check_guard
  ((STARTED > before)) && log "kube-router $KUBE_ROUTER_VERSION enforces NetworkPolicies on $NODE_NAME" \
    "(every namespace) after $((SECONDS - t0)) s"
  return 0
}

# netpol_rules_down: the engine's jumps from INPUT/FORWARD/OUTPUT, its chains (the guard with them) and
# its ipsets. Run after the engine stopped.
netpol_rules_down() {
  local chain rule chains set
  for chain in INPUT FORWARD OUTPUT; do
    while read -r rule; do   # its comments are quoted: eval
      eval "iptables -w -t filter ${rule/-A /-D }" || true
    done < <(iptables -w -S "$chain" | grep -E -- '-j KUBE-ROUTER-(INPUT|FORWARD|OUTPUT)$')
  done
  chains=$(iptables -w -S | awk '$1=="-N" {print $2}' | grep -E "$NETPOL_CHAINS" || true)
  for chain in $chains; do iptables -w -F "$chain"; done
  for chain in $chains; do iptables -w -X "$chain"; done
  for set in $(ipset list -n 2>/dev/null | grep -E "$NETPOL_SETS" || true); do
    ipset destroy "$set"
  done
  local left
  left=$( (iptables-save -t filter; ipset list -n 2>/dev/null) |
    grep -c -E 'KUBE-ROUTER|KUBE-POD-FW|KUBE-NWPLCY|KUBE-(SRC|DST)-|kube-router' || true)
  ((left == 0)) || die "$left rule/chain/ipset lines of the engine are left (iptables-save -t filter)"
}

stop_netpol() {
  stop_proc kube-router 30
  netpol_rules_down
}
