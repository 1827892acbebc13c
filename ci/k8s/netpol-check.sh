#!/usr/bin/env bash
# Proves that the NetworkPolicy engine (netpol.sh, started by up.sh) enforces policies, in a namespace of
# its own (NETPOL_NAMESPACE, default netpol-lab), and measures how long each policy change takes to be enforced.
#   server  redis-server on 6379 (app=server), with a TCP readiness probe (the kubelet on the node)
#   client  role=client, runs `redis-cli -h SERVER ping`
#   other   role=other, the same
# Cases: no policy (both reach it); deny-all ingress on the server (neither does, and the kubelet's probe
# still passes); ingress allowed from role=client on 6379 (client yes, other no); deny-all egress on the
# client (client no); egress allowed to app=server on 6379 (client yes); all policies removed (both yes).
# Only pod IPs on the bridge are used: nothing is sent off the machine. Deletes the namespace at the end
# (KEEP=1 keeps it). Needs the engine running.
set -euo pipefail
LOG_TAG=netpol-check
source "$(dirname "$0")/lib.sh"
NS=${NETPOL_NAMESPACE:-netpol-lab}
IMAGE=${RCH_REDIS_IMAGE:-$REDIS_IMAGE}
PROBE_TIMEOUT=3   # seconds one redis-cli attempt may take (a REJECT answers at once)
LIMIT=${NETPOL_CHECK_LIMIT:-60}
FAILED=0
RESULTS=()

k() { kc -n "$NS" "$@"; }

cleanup() {
  [[ ${KEEP:-0} == 1 ]] && return 0
  kc delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}

pod() {  # pod NAME LABEL COMMAND...
  local name=$1 label=$2
  shift 2
  local cmd
  cmd=$(printf '"%s",' "$@")
  cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name, labels: {$label}}
spec:
  terminationGracePeriodSeconds: 0
  enableServiceLinks: false
  automountServiceAccountToken: false
  containers:
    - name: main
      image: $IMAGE
      imagePullPolicy: Never
      command: [${cmd%,}]
$(if [[ $name == server ]]; then
  echo '      ports: [{containerPort: 6379, name: redis}]'
  echo '      readinessProbe: {tcpSocket: {port: 6379}, periodSeconds: 2, failureThreshold: 2}'
fi)
---
EOF
}

setup() {
  # A previous run's namespace may still be terminating (its cleanup does not wait).
  kc wait --for=delete "namespace/$NS" --timeout=120s >/dev/null 2>&1 || true
  kc create namespace "$NS" >/dev/null 2>&1 || true
  {
    pod server "app: server" redis-server --port 6379 --protected-mode no --save "" --appendonly no
    pod client "role: client" sleep 3600
    pod other "role: other" sleep 3600
  } | k apply -f - >/dev/null
  k wait --for=condition=Ready pod/server pod/client pod/other --timeout=120s >/dev/null
  SERVER_IP=$(k get pod server -o jsonpath='{.status.podIP}')
  log "namespace $NS: server $SERVER_IP, client $(k get pod client -o jsonpath='{.status.podIP}'), other $(k get pod other -o jsonpath='{.status.podIP}')"
}

# reach FROM: PONG when FROM's redis-cli gets an answer from the server.
reach() {
  local out
  out=$(k exec "$1" -- timeout "$PROBE_TIMEOUT" redis-cli -h "$SERVER_IP" -p 6379 ping 2>&1) || true
  [[ "$out" == PONG ]]
}

# expect FROM yes|no: check once, record the result.
expect() {
  local from=$1 want=$2 got=no
  reach "$from" && got=yes
  if [[ $got == "$want" ]]; then
    RESULTS+=("ok    $from -> server: $([[ $want == yes ]] && echo reached || echo blocked)")
  else
    RESULTS+=("FAIL  $from -> server: expected $want, got $got")
    FAILED=1
  fi
}

# converge FROM yes|no WHAT: poll until the expected state is seen; print the delay since WHAT was applied.
converge() {
  local from=$1 want=$2 what=$3 t0=$4 got now
  while :; do
    got=no
    reach "$from" && got=yes
    now=$(date +%s.%N)
    if [[ $got == "$want" ]]; then
      RESULTS+=("$(awk -v a="$t0" -v b="$now" -v w="$what" -v f="$from" -v r="$want" \
        'BEGIN{printf "delay %5.2f s  %s: %s -> server %s", b-a, w, f, (r=="yes"?"reached":"blocked")}')")
      return 0
    fi
    if awk -v a="$t0" -v b="$now" -v l="$LIMIT" 'BEGIN{exit !(b-a>l)}'; then
      RESULTS+=("FAIL  $what: $from -> server still $got after ${LIMIT}s")
      FAILED=1
      return 0
    fi
    sleep 0.2
  done
}

apply() {  # apply YAML: prints the time right after the API server accepted it
  k apply -f - >/dev/null <<<"$1"
  date +%s.%N
}

policy() {  # policy NAME SPEC
  printf 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: %s}\nspec:\n%s\n' "$1" "$2"
}

main() {
  trap cleanup EXIT
  setup
  local t
  # 1. No policy.
  expect client yes
  expect other yes

  # 2. Deny all ingress to the server.
  t=$(apply "$(policy server-deny-all '  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]')")
  converge client no "deny-all ingress" "$t"
  expect other no
  sleep 5   # two probe periods: the kubelet (node-local source) must still reach the server
  if [[ $(k get pod server -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]; then
    RESULTS+=("ok    server stays Ready under deny-all ingress (the kubelet's TCP probe from the node passes)")
  else
    RESULTS+=("FAIL  server not Ready under deny-all ingress"); FAILED=1
  fi

  # 3. Allow role=client on 6379 (the deny-all policy stays: policies add up).
  t=$(apply "$(policy server-allow-client '  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
    - from: [{podSelector: {matchLabels: {role: client}}}]
      ports: [{port: 6379, protocol: TCP}]')")
  converge client yes "allow ingress from role=client" "$t"
  expect other no

  # 4. Deny all egress of the client.
  t=$(apply "$(policy client-deny-egress '  podSelector: {matchLabels: {role: client}}
  policyTypes: [Egress]')")
  converge client no "deny-all egress of the client" "$t"

  # 5. Allow the client's egress to app=server on 6379.
  t=$(apply "$(policy client-allow-egress '  podSelector: {matchLabels: {role: client}}
  policyTypes: [Egress]
  egress:
    - to: [{podSelector: {matchLabels: {app: server}}}]
      ports: [{port: 6379, protocol: TCP}]')")
  converge client yes "allow egress of the client to app=server:6379" "$t"
  expect other no

  # 6. Remove every policy: back to open.
  k delete networkpolicy --all >/dev/null
  t=$(date +%s.%N)
  converge other yes "all policies deleted" "$t"
  expect client yes

  printf '%s\n' "${RESULTS[@]}"
  ((FAILED == 0)) && log "NetworkPolicies enforced as expected" || die "some cases failed"
}

main "$@"
