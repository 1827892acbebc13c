#!/usr/bin/env bash
# Brings up a single-node Kubernetes made of upstream components running as processes of this machine:
# etcd, kube-apiserver (Node,RBAC), kube-controller-manager, kube-scheduler, containerd, kubelet,
# kube-proxy (iptables), CoreDNS (cluster.local only, forwards nothing) and a NetworkPolicy engine
# (kube-router's policy controller, netpol.sh), on a bridge of its own.
# Idempotent: when everything runs already, it checks and returns in seconds.
# If a reachable cluster is already configured (KUBECONFIG / current context), it does nothing unless
# LOCAL_K8S=1. Prints how long each step took and how to use the cluster.
set -euo pipefail
LOG_TAG=k8s-up
source "$(dirname "$0")/lib.sh"
source "$K8S_LIB_DIR/pki.sh"
source "$K8S_LIB_DIR/net.sh"
source "$K8S_LIB_DIR/procs.sh"
source "$K8S_LIB_DIR/netpol.sh"
source "$REPO_DIR/ci/registry/registry.sh"

T0=$(date +%s.%N)
STARTED=0   # how many processes this run started

configured_cluster() {
  [[ ${LOCAL_K8S:-0} == 1 ]] && return 1
  local kc
  kc=$(command -v kubectl || true)
  [[ -z "$kc" && -x "$K8S_BIN/kubectl" ]] && kc="$K8S_BIN/kubectl"
  [[ -n "$kc" ]] || return 1
  # Our own cluster exported as KUBECONFIG is not "another" cluster.
  [[ "${KUBECONFIG:-}" == "$KUBECONFIG_ADMIN" ]] && return 1
  [[ -n "${KUBECONFIG:-}" || -f "$HOME/.kube/config" ]] || return 1
  timeout 15 "$kc" version --request-timeout=5s >/dev/null 2>&1 || return 1
  log "a reachable cluster is already configured: $("$kc" config current-context 2>/dev/null || echo '?')" \
    "($("$kc" config view --minify -o jsonpath='{.clusters[0].cluster.server}' 2>/dev/null))"
  log "using it as it is; set LOCAL_K8S=1 to start the local cluster anyway"
  return 0
}

# put FILE: write stdin to FILE only when it differs (kube-proxy exits when its config file changes).
put() {
  local tmp="$1.new"
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

write_configs() {
  mkdir -p "$K8S_STATE"/{kubelet,kube-proxy,coredns,cni/net.d,cni/ipam,containerd} "$K8S_PIDS" "$K8S_LOGS" "$RUN_DIR"
  put "$K8S_STATE/kubelet/resolv.conf" <<EOF
# Pods never get the host's resolver: cluster DNS only (CoreDNS on the bridge, forwards nothing).
nameserver $BRIDGE_IP
EOF
  put "$K8S_STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
clusterDNS: [$BRIDGE_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $K8S_STATE/kubelet/resolv.conf
podCIDR: $NODE_POD_CIDR
maxPods: 110
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
nodeStatusReportFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 10s
logging: {format: text}
EOF
  put "$K8S_STATE/kube-proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $K8S_DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
bindAddress: $BRIDGE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: $POD_CIDR
nodePortAddresses: [$NODE_POD_CIDR]
iptables: {masqueradeAll: false, localhostNodePorts: false, syncPeriod: 30s, minSyncPeriod: 1s}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  # Bridge CNI: own bridge, ipMasq false (nothing is NATed towards the outside), host-local IPAM.
  put "$K8S_STATE/cni/net.d/10-rch.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "rch",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$K8S_STATE/cni/ipam",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$BRIDGE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  put "$K8S_STATE/containerd/config.toml" <<EOF
version = 2
root = "$K8S_STATE/containerd/root"
state = "$RUN_DIR/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$K8S_STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This machine's root lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj (kubelet asks -998 for
  # sandboxes), so clamp it to containerd's own value instead of failing every pod.
  restrict_oom_score_adj = true
  max_concurrent_downloads = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  # Registry mirrors (ci/registry/registry.sh writes one hosts.toml per mirrored registry there).
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$CONTAINERD_HOSTS_DIR"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$K8S_STATE/cni/net.d"
    max_conf_num = 1
EOF
  # The chart values this cluster needs (env.sh exports the path as RCH_CLUSTER_VALUES; the e2e and
  # gitops tests pass it to every install). CoreDNS and the API server are host processes on the bridge
  # address, not pods: the chart's default DNS peer (kube-dns pods in kube-system) does not exist here.
  put "$K8S_STATE/chart-values.yaml" <<EOF
# Site values of the local cluster (written by ci/k8s/up.sh).
networkPolicy:
  # CoreDNS is a host process listening on the bridge address.
  dns:
    to:
      - ipBlock: {cidr: $BRIDGE_IP/32}
    ports:
      - {port: 53, protocol: UDP}
      - {port: 53, protocol: TCP}
  # The API server is a host process too: the kubernetes Service ($APISERVER_SERVICE_IP:443) is translated
  # to $BRIDGE_IP:$APISERVER_PORT before the policy engine sees the packet.
  kubeAPI:
    to:
      - ipBlock: {cidr: $BRIDGE_IP/32}
    ports:
      - {port: $APISERVER_PORT, protocol: TCP}
EOF
  # CoreDNS: cluster.local (and the reverse zones of our ranges) from the Kubernetes API; every other
  # name gets NXDOMAIN right here. There is no forward plugin in this binary at all.
  put "$K8S_STATE/coredns/Corefile" <<EOF
$CLUSTER_DOMAIN:53 in-addr.arpa:53 {
    bind $BRIDGE_IP
    errors
    ready 127.0.0.1:18181
    health 127.0.0.1:18080
    kubernetes $CLUSTER_DOMAIN in-addr.arpa {
        kubeconfig $K8S_DIR/coredns.kubeconfig rch-local
        pods insecure
        ttl 5
    }
    cache 5
    loadbalance
}
.:53 {
    bind $BRIDGE_IP
    errors
    template ANY ANY {
        rcode NXDOMAIN
    }
}
EOF
}

rbac() {
  local manifest sum
  manifest=$(cat <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: rch:kube-apiserver-kubelet-client}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:kubelet-api-admin}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: rch:coredns}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: rch:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: rch:coredns}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: system:rch-coredns}]
---
# The NetworkPolicy engine reads, never writes: the informers kube-router starts (pods, namespaces,
# networkpolicies, nodes for its own IP, services, endpoints, endpointslices).
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: rch:kube-router}
rules:
- apiGroups: [""]
  resources: [pods, namespaces, nodes, services, endpoints]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: rch:kube-router}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: rch:kube-router}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: system:rch-kube-router}]
EOF
)
  sum=$(sha256sum <<<"$manifest" | cut -c1-16)
  [[ -f "$K8S_STATE/.rbac-done" && $(cat "$K8S_STATE/.rbac-done") == "$sum" ]] && return 0
  kc apply -f - >/dev/null <<<"$manifest"
  echo "$sum" >"$K8S_STATE/.rbac-done"
}

start_etcd() {
  start_proc etcd "$K8S_BIN/etcd" --name rch --data-dir "$K8S_STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "rch=http://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls "" --unsafe-no-fsync --quota-backend-bytes 2147483648 --log-level warn
  wait_for "etcd healthy" 60 curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health"
}

start_apiserver() {
  start_proc kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address "$BRIDGE_IP" --advertise-address "$BRIDGE_IP" --secure-port "$APISERVER_PORT" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --client-ca-file "$PKI/ca.crt" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --allow-privileged=true --profiling=false --event-ttl 1h \
    --endpoint-reconciler-type lease
  wait_for "kube-apiserver ready" 120 kc get --raw /readyz
}

start_controllers() {
  start_proc kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$K8S_DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$K8S_DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$K8S_DIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" --cluster-name rch-local
  start_proc kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$K8S_DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$K8S_DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig "$K8S_DIR/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false
}

start_containerd() {
  start_proc containerd /usr/bin/containerd --config "$K8S_STATE/containerd/config.toml"
  wait_for "containerd socket" 60 test -S "$CONTAINERD_SOCK"
}

start_kubelet() {
  start_proc kubelet "$K8S_BIN/kubelet" --config "$K8S_STATE/kubelet/config.yaml" \
    --kubeconfig "$K8S_DIR/kubelet.kubeconfig" --root-dir "$K8S_STATE/kubelet/root" \
    --node-ip "$BRIDGE_IP" --hostname-override "$NODE_NAME" --v 1
  wait_for "node $NODE_NAME Ready" 180 node_ready
}

start_proxy_dns() {
  start_proc kube-proxy "$K8S_BIN/kube-proxy" --config "$K8S_STATE/kube-proxy/config.yaml"
  start_proc coredns "$K8S_BIN/coredns" -conf "$K8S_STATE/coredns/Corefile"
  wait_for "coredns ready" 60 curl -fsS http://127.0.0.1:18181/ready
  wait_for "kube-proxy healthy" 60 curl -fsS http://127.0.0.1:10256/healthz
  # kube-proxy prepends its own jumps to FORWARD; keep the isolation chain first.
  isolation_rules
}

node_ready() {
  [[ $(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

dns_test_pod() {
  local name="rch-dns-probe"
  kc -n default delete pod "$name" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  kc -n default wait --for=delete pod/"$name" --timeout=60s >/dev/null 2>&1 || true
  kc -n default run "$name" --image "$REDIS_IMAGE" --image-pull-policy Never --restart Never \
    --command -- getent hosts "kubernetes.default.svc.$CLUSTER_DOMAIN" >/dev/null
  if ! kc -n default wait --for=jsonpath='{.status.phase}'=Succeeded pod/"$name" --timeout=120s >/dev/null; then
    kc -n default describe pod "$name" >&2 || true
    kc -n default logs "$name" >&2 || true
    die "the test pod could not resolve kubernetes.default.svc.$CLUSTER_DOMAIN"
  fi
  log "test pod resolved: $(kc -n default logs "$name" | tr -s ' ')"
  kc -n default delete pod "$name" --wait=false >/dev/null
}

main() {
  configured_cluster && exit 0
  [[ $(id -u) == 0 ]] || die "the local cluster needs root (bridge, iptables, containerd, kubelet)"
  timed "build (cached)" "$K8S_LIB_DIR/build.sh"
  timed "preflight: address plan" preflight_network
  timed "pki + kubeconfigs" pki
  timed "configs" write_configs
  timed "network: bridge, routes, iptables" network_up
  timed "etcd" start_etcd
  timed "kube-apiserver" start_apiserver
  timed "rbac" rbac
  timed "controller-manager + scheduler" start_controllers
  timed "registry (mirror of docker.io, ghcr.io)" start_registry
  timed "containerd" start_containerd
  timed "images (build, push, pull)" env CONTAINERD_ADDRESS="$CONTAINERD_SOCK" "$REPO_DIR/ci/images/build.sh"
  timed "kubelet" start_kubelet
  timed "kube-proxy + coredns" start_proxy_dns
  timed "networkpolicy engine (kube-router)" start_netpol
  if ((STARTED > 0)) || [[ ${RCH_CHECK_DNS:-0} == 1 ]]; then
    timed "test pod resolves the API's FQDN" dns_test_pod
  fi
  log "$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "cluster up in %.1f s", b-a}') ($STARTED processes started)"
  cat >&2 <<EOF

Local Kubernetes $K8S_VERSION is running (node $NODE_NAME, pods $POD_CIDR, services $SERVICE_CIDR).
  export KUBECONFIG=$KUBECONFIG_ADMIN
  export PATH=$K8S_BIN:\$PATH        # kubectl $K8S_VERSION
  kubectl get nodes
Images: $REDIS_IMAGE, $TOOLS_IMAGE (the chart's defaults), pulled from the local registry
  $REGISTRY_ADDR (a mirror of ${REGISTRY_MIRRORS[*]}; push charts there with helm push --plain-http)
NetworkPolicies are enforced (kube-router $KUBE_ROUTER_VERSION); chart values this cluster needs:
  $K8S_STATE/chart-values.yaml (RCH_CLUSTER_VALUES in ci/k8s/env.sh)
Status: make k8s-status    Stop and remove: make k8s-down
EOF
}
main "$@"
