#!/usr/bin/env bash
# Checks that nothing of the local cluster can leave the machine, and that in-cluster traffic works:
#  host side: every forwarded packet meets the RCH-ISOLATION chain first (it is FORWARD's first rule, or
#             the NetworkPolicy engine's chain is and starts with a jump to it), the service and pod ranges are routed to a
#             discard route, no MASQUERADE of the pod range, CoreDNS answers cluster.local and gives
#             NXDOMAIN for anything else (it has no forward plugin at all);
#  pod side:  TCP to the host's gateway and to the host's resolver fail fast, an outside name does not
#             resolve, an unknown service IP goes nowhere; the API's service IP and cluster DNS work.
# Exit 0 when every check passes.
set -uo pipefail
LOG_TAG=isolation
source "$(dirname "$0")/lib.sh"
source "$K8S_LIB_DIR/net.sh"
source "$K8S_LIB_DIR/procs.sh"
NS=rch-check
FAIL=0
ok() { printf '  ok    %s\n' "$*"; }
bad() { printf '  FAIL  %s\n' "$*"; FAIL=1; }

gateway=$(ip -4 route show default | awk '{print $3; exit}')
resolver=$(awk '$1=="nameserver" && $2 !~ /:/ {print $2; exit}' /etc/resolv.conf)
gateway=${gateway:-192.0.2.1}
resolver=${resolver:-10.255.255.53}

host_checks() {
  echo "host:"
  local first
  first=$(iptables -w -S FORWARD | sed -n 2p)
  if [[ "$first" == "-A FORWARD -j $IPT_CHAIN" ]]; then
    ok "FORWARD starts with -j $IPT_CHAIN"
  elif forward_guarded; then
    ok "FORWARD starts with the NetworkPolicy engine's -j KUBE-ROUTER-FORWARD, whose first rule is -j $IPT_CHAIN" \
      "(the guard), then -j $IPT_CHAIN"
  else
    bad "FORWARD's first rule is '$first', not the isolation chain nor the guarded engine chain"
  fi
  if alive kube-router; then
    [[ $(iptables -w -S KUBE-ROUTER-FORWARD 2>/dev/null | sed -n 2p) == *"-j $IPT_CHAIN" ]] &&
      ok "NetworkPolicy engine (kube-router) runs; KUBE-ROUTER-FORWARD starts with -j $IPT_CHAIN" ||
      bad "kube-router runs but KUBE-ROUTER-FORWARD does not start with -j $IPT_CHAIN"
  fi
  iptables -w -S "$IPT_CHAIN" 2>/dev/null | grep -c -- "-s $POD_CIDR .*REJECT" >/dev/null &&
    ok "$IPT_CHAIN rejects forwarded traffic from $POD_CIDR not bound for $BRIDGE" || bad "$IPT_CHAIN lacks the pod-range reject rule"
  ip route show type prohibit | grep -c "^prohibit $SERVICE_CIDR" >/dev/null &&
    ok "service range $SERVICE_CIDR routed to a discard route (prohibit)" || bad "no discard route for $SERVICE_CIDR"
  ip route show type prohibit | grep -c "^prohibit $POD_CIDR" >/dev/null &&
    ok "pod range $POD_CIDR (outside this node's /24) routed to a discard route" || bad "no discard route for $POD_CIDR"
  if iptables -w -t nat -S | grep -E -- "MASQUERADE" | grep -v -E "KUBE-POSTROUTING|mark" | grep -c . >/dev/null; then
    bad "a MASQUERADE rule other than kube-proxy's marked-service one: $(iptables -w -t nat -S | grep MASQUERADE | grep -v KUBE | head -2)"
  else
    ok "no MASQUERADE of the pod range (CNI ipMasq false; only kube-proxy's marked service hairpin rule)"
  fi
  local plugins
  plugins=$("$K8S_BIN/coredns" -plugins 2>/dev/null | sed 's/^ *dns\.//' | grep -E '^[a-z0-9_]+$' | tr '\n' ' ')
  if [[ -z "$plugins" ]] || grep -qwE 'forward|grpc|etcd|secondary|route53|azure|clouddns' <<<"$plugins"; then
    bad "CoreDNS plugins: '$plugins' (a forwarding plugin, or none listed)"
  else
    ok "CoreDNS plugins: ${plugins}(none forwards)"
  fi
  grep -qE '^\s*(forward|proxy|grpc)\b' "$K8S_STATE/coredns/Corefile" && bad "the Corefile forwards" ||
    ok "Corefile serves $CLUSTER_DOMAIN + in-addr.arpa; every other name gets NXDOMAIN locally"
  local out
  out=$(python3 "$K8S_LIB_DIR/dnsq.py" "$BRIDGE_IP" example.com 2>&1)
  [[ "$out" == NXDOMAIN* ]] && ok "CoreDNS: example.com -> $out" || bad "CoreDNS: example.com -> $out"
  out=$(python3 "$K8S_LIB_DIR/dnsq.py" "$BRIDGE_IP" "kubernetes.default.svc.$CLUSTER_DOMAIN" 2>&1)
  [[ "$out" == *"$APISERVER_SERVICE_IP"* ]] && ok "CoreDNS: kubernetes.default.svc.$CLUSTER_DOMAIN -> $out" ||
    bad "CoreDNS: kubernetes.default.svc.$CLUSTER_DOMAIN -> $out"
}

pod_checks() {
  echo "pod -> outside / cluster:"
  kc create namespace "$NS" --dry-run=client -o yaml | kc apply -f - >/dev/null
  kc -n "$NS" delete pod probe --ignore-not-found --wait=true >/dev/null 2>&1
  local script
  script=$(cat <<EOF
t() { local s=\$(date +%s%N); "\$@" >/dev/null 2>&1; local rc=\$?; echo "\$rc \$(( (\$(date +%s%N) - s) / 1000000 ))"; }
echo "gateway_tcp \$(t timeout 5 bash -c 'exec 3<>/dev/tcp/$gateway/80')"
echo "resolver_tcp \$(t timeout 5 bash -c 'exec 3<>/dev/tcp/$resolver/53')"
echo "host_resolver_udp \$(t timeout 5 getent -s dns hosts example.com)"
echo "outside_name \$(t timeout 5 getent hosts example.com)"
echo "unknown_service_ip \$(t timeout 5 bash -c 'exec 3<>/dev/tcp/10.96.255.254/80')"
echo "cluster_dns \$(t getent hosts kubernetes.default.svc.$CLUSTER_DOMAIN)"
echo "api_service_ip \$(t timeout 5 bash -c 'exec 3<>/dev/tcp/$APISERVER_SERVICE_IP/443')"
EOF
)
  kc -n "$NS" run probe --image "$REDIS_IMAGE" --image-pull-policy Never --restart Never \
    --command -- bash -c "$script" >/dev/null
  if ! kc -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded pod/probe --timeout=90s >/dev/null; then
    bad "probe pod did not complete: $(kc -n "$NS" get pod probe -o jsonpath='{.status.phase}')"
    kc -n "$NS" logs probe 2>&1 | tail -5
    return
  fi
  local name rc ms
  while read -r name rc ms; do
    case $name in
      gateway_tcp | resolver_tcp | unknown_service_ip)
        ((rc != 0)) && ok "$name: refused/failed (exit $rc) in ${ms} ms" || bad "$name: CONNECTED (exit 0) - traffic left the pod range" ;;
      host_resolver_udp | outside_name)
        ((rc != 0)) && ok "$name: example.com not resolved (exit $rc) in ${ms} ms" || bad "$name: example.com RESOLVED" ;;
      cluster_dns | api_service_ip)
        ((rc == 0)) && ok "$name: works in ${ms} ms" || bad "$name: failed (exit $rc) after ${ms} ms" ;;
    esac
  done < <(kc -n "$NS" logs probe)
  kc -n "$NS" delete pod probe --wait=false >/dev/null 2>&1
  echo "counters of $IPT_CHAIN (packets bytes target ... ):"
  iptables -w -L "$IPT_CHAIN" -v -n -x | tail -n +3 | awk '{printf "    %8s pkts  %s\n", $1, $0}' | cut -c1-150
}

host_checks
[[ ${1:-} == --host-only ]] || pod_checks
((FAIL == 0)) && log "isolation: all checks passed" || log "isolation: FAILED"
exit $FAIL
