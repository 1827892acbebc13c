# Network of the local cluster (sourced): its own bridge, a discard route for the service range, and an
# explicit iptables chain that keeps every packet of the pod range on this machine.
# shellcheck shell=bash

# preflight_network: the pod and service ranges must collide with no address, route or resolver here.
preflight_network() {
  python3 - "$POD_CIDR" "$SERVICE_CIDR" "$BRIDGE" <<'EOF'
import ipaddress, json, subprocess, sys
pod, svc, bridge = ipaddress.ip_network(sys.argv[1]), ipaddress.ip_network(sys.argv[2]), sys.argv[3]
if pod.overlaps(svc):
    sys.exit(f"pod range {pod} overlaps service range {svc}")
taken = []
for r in json.loads(subprocess.check_output(["ip", "-j", "-4", "route", "show", "table", "all"])):
    dst, dev = r.get("dst", ""), r.get("dev", "")
    if dev == bridge or (r.get("type") == "prohibit" and dst in (str(svc), str(pod))):
        continue  # our own bridge route / discard routes from an earlier up
    if dst in ("default", "", "0.0.0.0/0") or r.get("type") in ("broadcast",):
        continue
    taken.append((f"route {dst} dev {dev}", ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False)))
for a in json.loads(subprocess.check_output(["ip", "-j", "-4", "addr"])):
    if a["ifname"] == bridge:
        continue
    for i in a.get("addr_info", []):
        taken.append((f"address {i['local']}/{i['prefixlen']} on {a['ifname']}",
                      ipaddress.ip_network(f"{i['local']}/{i['prefixlen']}", strict=False)))
for line in open("/etc/resolv.conf"):
    f = line.split()
    if len(f) >= 2 and f[0] == "nameserver" and ":" not in f[1]:
        taken.append((f"resolver {f[1]}", ipaddress.ip_network(f[1] + "/32")))
bad = [f"{name} collides with {label} {net}" for label, net in (("pod range", pod), ("service range", svc))
       for name, other in taken if net.overlaps(other)]
if bad:
    sys.exit("address plan refused:\n  " + "\n  ".join(bad) + "\nset RCH_POD_CIDR/RCH_SERVICE_CIDR (see ci/k8s/lib.sh)")
EOF
}

save_sysctls() {
  # Remember what we change (ours and kubelet's kernel tunables) so down.sh can put it back.
  [[ -f "$K8S_STATE/sysctl.orig" ]] && return 0
  local k
  for k in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables \
    vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.conf.all.route_localnet; do
    echo "$k=$(sysctl -n "$k" 2>/dev/null)"
  done >"$K8S_STATE/sysctl.orig"
}

# isolation_chain: the rules of the RCH-ISOLATION chain, as `iptables -S` prints them.
#  - pod <-> pod on the bridge (also after a Service DNAT) is allowed;
#  - anything else forwarded from the pod range or from the bridge is rejected at once;
#  - nothing is forwarded from elsewhere into the pod range.
isolation_chain() {
  local c=$IPT_CHAIN out='"rch: pod traffic never leaves the machine"'
  cat <<EOF
-A $c -i $BRIDGE -o $BRIDGE -j RETURN
-A $c -s $POD_CIDR -p tcp -m comment --comment $out -j REJECT --reject-with tcp-reset
-A $c -s $POD_CIDR -m comment --comment $out -j REJECT --reject-with icmp-admin-prohibited
-A $c -i $BRIDGE -m comment --comment "rch: nothing from the bridge is forwarded out" -j REJECT --reject-with icmp-admin-prohibited
-A $c -d $POD_CIDR -m comment --comment "rch: nothing forwarded into pods from outside" -j DROP
-A $c -o $BRIDGE -m comment --comment "rch: nothing forwarded into the bridge from outside" -j DROP
EOF
}

# forward_guarded: every forwarded packet meets RCH-ISOLATION before any ACCEPT. Either the chain is
# FORWARD's first rule, or the NetworkPolicy engine's jump is (kube-router keeps its own first) and its
# chain starts with the isolation guard (netpol.sh), with RCH-ISOLATION right after it.
forward_guarded() {
  local forward
  forward=$(iptables -w -S FORWARD)
  [[ $(sed -n 2p <<<"$forward") == "-A FORWARD -j $IPT_CHAIN" ]] && return 0
  [[ $(sed -n 2p <<<"$forward") == "-A FORWARD "*"-j KUBE-ROUTER-FORWARD" &&
    $(sed -n 3p <<<"$forward") == "-A FORWARD -j $IPT_CHAIN" &&
    $(iptables -w -S KUBE-ROUTER-FORWARD 2>/dev/null | sed -n 2p) == *"-j $IPT_CHAIN" ]]
}

# isolation_rules: (re)install the RCH-ISOLATION chain and keep FORWARD guarded (see forward_guarded).
# The chain is written in one transaction, and only when it differs: the NetworkPolicy engine rewrites
# the filter table from its own iptables-save, and must never see (and restore) a half-filled chain.
isolation_rules() {
  local want
  want=$(isolation_chain)
  iptables -w -N "$IPT_CHAIN" 2>/dev/null || true
  if [[ $(iptables -w -S "$IPT_CHAIN" | tail -n +2) != "$want" ]]; then
    printf '*filter\n:%s - [0:0]\n%s\nCOMMIT\n' "$IPT_CHAIN" "$want" | iptables-restore -w --noflush
  fi
  # The engine's chain, when it exists, starts with the guard.
  if iptables -w -S KUBE-ROUTER-FORWARD >/dev/null 2>&1 &&
    [[ $(iptables -w -S KUBE-ROUTER-FORWARD | sed -n 2p) != *"-j $IPT_CHAIN" ]]; then
    iptables -w -I KUBE-ROUTER-FORWARD 1 -m comment --comment "rch: isolation before kube-router accepts" -j "$IPT_CHAIN"
  fi
  forward_guarded && return 0
  while iptables -w -D FORWARD -j "$IPT_CHAIN" 2>/dev/null; do :; done
  iptables -w -I FORWARD 1 -j "$IPT_CHAIN"
}

network_up() {
  save_sysctls
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  [[ $(ip -4 addr show dev "$BRIDGE") == *" $BRIDGE_IP/"* ]] || ip addr add "$BRIDGE_IP/${NODE_POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Service IPs without a kube-proxy rule must never follow the default route: a discard route of type
  # prohibit (like blackhole, but the sender gets an ICMP error at once instead of a time-out).
  # Kube-proxy's DNAT happens before routing, so known service IPs still reach their pods.
  [[ $'\n'$(ip route show type prohibit) == *$'\n'"prohibit $SERVICE_CIDR "* ]] || ip route add prohibit "$SERVICE_CIDR"
  # The rest of the pod range (other nodes' /24s: there are none) is discarded too.
  [[ $'\n'$(ip route show type prohibit) == *$'\n'"prohibit $POD_CIDR "* ]] || ip route add prohibit "$POD_CIDR"
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
  isolation_rules
  sysctl -qw net.ipv4.ip_forward=1   # after the isolation chain is in place
}

# kube_chains_down: the KUBE-* chains that our kubelet (KUBE-FIREWALL, KUBE-KUBELET-CANARY,
# KUBE-IPTABLES-HINT) and kube-proxy made, in filter/nat/mangle, IPv4 and IPv6 (after kube-proxy --cleanup).
kube_chains_down() {
  local ipt t chain rule
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for t in filter nat mangle; do
      # rules in built-in chains that jump to a KUBE-* chain
      while read -r rule; do
        # shellcheck disable=SC2086
        eval "$ipt -w -t $t ${rule/-A /-D }" 2>/dev/null || true
      done < <("$ipt" -w -t "$t" -S 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-')
      for chain in $("$ipt" -w -t "$t" -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^KUBE-/ {print $2}'); do
        "$ipt" -w -t "$t" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt" -w -t "$t" -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^KUBE-/ {print $2}'); do
        "$ipt" -w -t "$t" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

network_down() {
  local k v
  kube_chains_down
  while iptables -w -D FORWARD -j "$IPT_CHAIN" 2>/dev/null; do :; done
  iptables -w -F "$IPT_CHAIN" 2>/dev/null || true
  iptables -w -X "$IPT_CHAIN" 2>/dev/null || true
  ip route del prohibit "$SERVICE_CIDR" 2>/dev/null || true
  ip route del prohibit "$POD_CIDR" 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  if [[ -f "$K8S_STATE/sysctl.orig" ]]; then
    while IFS='=' read -r k v; do
      [[ -n "$v" ]] && sysctl -qw "$k=$v" 2>/dev/null || true
    done <"$K8S_STATE/sysctl.orig"
  fi
}
