#!/usr/bin/env bash
# Stops every process the local cluster started (by recorded pid), removes its pods, mounts, cgroups,
# network (bridge, routes, iptables rules, kube-proxy's chains) and its state. Keeps the built binaries,
# images and certificates in the cache, so the next `up` is quick. Safe to run twice.
set -euo pipefail
LOG_TAG=k8s-down
source "$(dirname "$0")/lib.sh"
source "$K8S_LIB_DIR/net.sh"
source "$K8S_LIB_DIR/procs.sh"
source "$K8S_LIB_DIR/netpol.sh"
source "$REPO_DIR/ci/registry/registry.sh"

crictl_() { "$K8S_BIN/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 30s "$@"; }

remove_pods() {
  # Stop the kubelet first so it does not restart what we remove, then let containerd tear the pods
  # down properly (CNI DEL frees the IPs and veths, network namespaces and mounts go away).
  stop_proc kubelet 30
  if alive containerd && [[ -x "$K8S_BIN/crictl" ]]; then
    local pods
    pods=$(crictl_ pods -q 2>/dev/null || true)
    if [[ -n "$pods" ]]; then
      # shellcheck disable=SC2086
      crictl_ stopp $pods >/dev/null 2>&1 || true
      # shellcheck disable=SC2086
      crictl_ rmp -f $pods >/dev/null 2>&1 || true
    fi
  fi
}

# Shims and container processes of OUR containerd: shims carry our socket in their command line;
# container processes live in the kubelet's kubepods cgroups.
kill_leftovers() {
  local p cg pids=()
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -c -- "-address $CONTAINERD_SOCK " >/dev/null; then
      pids+=("${p#/proc/}")
    fi
  done
  for cg in /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/unified/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d "$cg" ]] || continue
    while read -r p; do pids+=("$p"); done < <(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)
  done
  if ((${#pids[@]})); then
    log "killing ${#pids[@]} leftover shim/container processes: ${pids[*]}"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    sleep 0.5
  fi
  # Empty kubepods cgroups (every v1 controller, deepest first).
  for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d "$cg" ]] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

unmount_ours() {
  local m
  # Deepest first: container rootfs, shm, volumes (tmpfs for secrets), netns bind mounts.
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk '{print $5}' /proc/self/mountinfo | grep -E "^($K8S_STATE|$RUN_DIR)(/|$)" | sort -r)
}

main() {
  local t0=$SECONDS
  if [[ ! -d "$K8S_STATE" && ! -d "$RUN_DIR" ]]; then
    log "no local cluster state in $K8S_STATE: nothing to stop"
    exit 0
  fi
  # The policy engine first (it would re-sync at every pod removal), with its rules and ipsets.
  timed "networkpolicy engine (kube-router)" eval '(stop_netpol) || log "engine rules left: removed with the rest below"'
  timed "pods (kubelet, CRI teardown)" remove_pods
  timed "coredns, kube-proxy, scheduler, controller-manager" eval \
    'stop_proc coredns & stop_proc kube-proxy & stop_proc kube-scheduler & stop_proc kube-controller-manager & wait'
  timed "containerd" stop_proc containerd 20
  timed "registry" stop_proc registry
  timed "leftover shims and containers" kill_leftovers
  timed "kube-apiserver" stop_proc kube-apiserver 20
  timed "etcd" stop_proc etcd
  # kube-proxy's own cleanup of its iptables chains (KUBE-*), then our chain, routes, bridge, sysctls.
  [[ -x "$K8S_BIN/kube-proxy" ]] && timed "kube-proxy --cleanup" eval \
    '"$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true'
  timed "network" network_down
  timed "mounts" unmount_ours
  rm -rf "$K8S_STATE" "$RUN_DIR"
  log "local cluster removed in $((SECONDS - t0)) s (binaries, images and certificates stay in $K8S_DIR)"
}
main "$@"
