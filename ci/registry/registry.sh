# The local OCI registry of the test cluster (sourced by ci/k8s/up.sh and down.sh, after lib.sh and
# procs.sh): CNCF distribution's `registry` on loopback, plain HTTP, no auth, its storage in the cluster's
# state. containerd uses it as a mirror of docker.io and ghcr.io, so pods pull the chart's default image
# coordinates from it; the tests push the chart there as an OCI artifact and install it from there.
# shellcheck shell=bash
REGISTRY_STATE="$K8S_STATE/registry"
CONTAINERD_HOSTS_DIR="$K8S_STATE/containerd/certs.d"

# registry_config: distribution's configuration (keys of its cmd/registry/config-dev.yml).
registry_config() {
  mkdir -p "$REGISTRY_STATE/data"
  put "$REGISTRY_STATE/config.yml" <<CONF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGISTRY_STATE/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $REGISTRY_ADDR
  headers:
    X-Content-Type-Options: [nosniff]
CONF
}

# containerd_mirrors: one hosts.toml per mirrored registry (read on every pull; no restart needed).
containerd_mirrors() {
  local host server
  for host in "${REGISTRY_MIRRORS[@]}"; do
    server="https://$host"
    [[ $host == docker.io ]] && server=https://registry-1.docker.io
    mkdir -p "$CONTAINERD_HOSTS_DIR/$host"
    put "$CONTAINERD_HOSTS_DIR/$host/hosts.toml" <<TOML
# Written by ci/registry/registry.sh: pull $host images from the local registry (there is no internet).
server = "$server"
[host."http://$REGISTRY_ADDR"]
  capabilities = ["pull", "resolve"]
TOML
  done
}

start_registry() {
  local registry
  registry=$(command -v registry || echo "$RCH_CACHE/bin/registry")
  [[ -x "$registry" ]] || die "registry (distribution $REGISTRY_VERSION) is missing: run make bootstrap"
  registry_config
  containerd_mirrors
  # OTEL_TRACES_EXPORTER=none: distribution would otherwise export traces to localhost:4318.
  OTEL_TRACES_EXPORTER=none start_proc registry "$registry" serve "$REGISTRY_STATE/config.yml"
  wait_for "registry on $REGISTRY_ADDR" 30 curl -fsS -o /dev/null "http://$REGISTRY_ADDR/v2/"
}
