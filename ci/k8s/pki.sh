# Certificates, keys and kubeconfigs of the local cluster (sourced by up.sh). Generated once with openssl
# into $K8S_DIR/pki and kept across down/up, so the admin kubeconfig stays valid.
# shellcheck shell=bash
PKI="$K8S_DIR/pki"
APISERVER_URL="https://$BRIDGE_IP:$APISERVER_PORT"

# cert NAME CN O [SANS]: a client or server certificate signed by the cluster CA.
cert() {
  local name=$1 cn=$2 o=$3 sans=${4:-} subj ext
  [[ -s "$PKI/$name.crt" && -s "$PKI/$name.key" ]] && return 0
  subj="/CN=$cn"
  [[ -n "$o" ]] && subj="/O=$o$subj"
  ext="$PKI/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n "$sans" ]]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$sans"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# kubeconfig NAME CERTNAME: a kubeconfig with embedded client certificate for the cluster.
kubeconfig() {
  local name=$1 c=$2 out="$K8S_DIR/$1.kubeconfig"
  [[ -s "$out" ]] && return 0
  cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: rch-local
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$c.crt")
    client-key-data: $(base64 -w0 <"$PKI/$c.key")
contexts:
- name: rch-local
  context:
    cluster: rch-local
    user: $name
current-context: rch-local
EOF
  chmod 600 "$out"
}

pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [[ ! -s "$PKI/ca.crt" ]]; then
    openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=redis-cluster-helm-local-ca" -days 3650 \
      -sha256 -out "$PKI/ca.crt" 2>/dev/null
  fi
  # Front-proxy CA (request-header authentication of the aggregation layer).
  if [[ ! -s "$PKI/front-proxy-ca.crt" ]]; then
    openssl genrsa -out "$PKI/front-proxy-ca.key" 2048 2>/dev/null
    openssl req -x509 -new -key "$PKI/front-proxy-ca.key" -subj "/CN=redis-cluster-helm-front-proxy-ca" \
      -days 3650 -sha256 -out "$PKI/front-proxy-ca.crt" 2>/dev/null
  fi
  if [[ ! -s "$PKI/front-proxy-client.crt" ]]; then
    openssl genrsa -out "$PKI/front-proxy-client.key" 2048 2>/dev/null
    openssl req -new -key "$PKI/front-proxy-client.key" -subj "/CN=front-proxy-client" 2>/dev/null |
      openssl x509 -req -CA "$PKI/front-proxy-ca.crt" -CAkey "$PKI/front-proxy-ca.key" -CAcreateserial \
        -days 3650 -sha256 -extfile <(printf 'extendedKeyUsage=clientAuth\n') -out "$PKI/front-proxy-client.crt" 2>/dev/null
  fi
  # ServiceAccount token signing keys (generated once).
  if [[ ! -s "$PKI/sa.key" ]]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  local svc="kubernetes.default.svc.$CLUSTER_DOMAIN"
  cert apiserver kube-apiserver "" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:$svc,DNS:localhost,DNS:$NODE_NAME,IP:127.0.0.1,IP:$BRIDGE_IP,IP:$APISERVER_SERVICE_IP"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client ""
  cert admin rch-admin system:masters
  cert controller-manager system:kube-controller-manager ""
  cert scheduler system:kube-scheduler ""
  cert kube-proxy system:kube-proxy ""
  cert kubelet "system:node:$NODE_NAME" system:nodes
  cert kubelet-serving "system:node:$NODE_NAME" system:nodes "DNS:$NODE_NAME,IP:$BRIDGE_IP,IP:127.0.0.1"
  cert coredns system:rch-coredns ""
  cert kube-router system:rch-kube-router ""
  kubeconfig admin admin
  kubeconfig controller-manager controller-manager
  kubeconfig scheduler scheduler
  kubeconfig kube-proxy kube-proxy
  kubeconfig kubelet kubelet
  kubeconfig coredns coredns
  kubeconfig kube-router kube-router
}
