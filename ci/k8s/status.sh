#!/usr/bin/env bash
# Status of the local cluster: its processes (by recorded pid), versions, the node, the pods, then the
# isolation checks and the smoke check (QUICK=1 skips the two checks). Exit 0 when everything is healthy.
set -uo pipefail
LOG_TAG=k8s-status
source "$(dirname "$0")/lib.sh"
source "$K8S_LIB_DIR/procs.sh"
rc=0

if [[ ! -d "$K8S_PIDS" ]]; then
  log "the local cluster is not running (no state in $K8S_STATE); start it with: make k8s-up"
  exit 3
fi
echo "processes (state $K8S_STATE):"
for n in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy coredns kube-router; do
  if alive "$n"; then
    read -r pid _ <"$K8S_PIDS/$n.pid"
    printf '  %-24s running  pid %-7s rss %s MiB\n' "$n" "$pid" "$(($(awk '/VmRSS/{print $2}' "/proc/$pid/status") / 1024))"
  else
    printf '  %-24s DOWN\n' "$n"; rc=1
  fi
done
echo "versions: server $(kc version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])' 2>/dev/null || echo '?')," \
  "etcd $("$K8S_BIN/etcd" --version 2>/dev/null | awk '/etcd Version/{print $3}')," \
  "containerd $(containerd --version 2>/dev/null | awk '{print $3}')," \
  "runc $(runc --version 2>/dev/null | awk 'NR==1{print $3}')," \
  "coredns $("$K8S_BIN/coredns" -version 2>/dev/null | awk -F- 'NR==1{print $2}')," \
  "kube-router $("$K8S_BIN/kube-router" --version 2>&1 | grep -o 'version v[0-9.]*' | cut -d' ' -f2) (NetworkPolicies:" \
  "$(kc get networkpolicies -A --no-headers 2>/dev/null | wc -l) objects)"
echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
kc get nodes -o wide 2>&1 | sed 's/^/  /' || rc=1
kc get pods -A -o wide 2>&1 | sed 's/^/  /'
if [[ ${QUICK:-0} != 1 ]]; then
  "$K8S_LIB_DIR/check-isolation.sh" || rc=1
  "$K8S_LIB_DIR/smoke.sh" || rc=1
fi
exit $rc
