"""The chart's NetworkPolicies hold on a cluster that enforces them (the local one runs kube-router's policy
controller, ci/k8s/netpol.sh): a pod outside the release is refused on the client and bus ports until
`networkPolicy.clientSources` lists it, then it reaches the client port only; the release itself still
forms (hook Job), resolves names and talks to itself, and cannot reach what its policies do not name.
Every probe is a real TCP connection between pods on the cluster's network, with a timeout."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from tests.kube import CHART, default_images

from .conftest import Cluster

pytestmark = pytest.mark.e2e
RELEASE = "netpol"
OUTSIDER = "netpol-outsider"
OUTSIDER_PORT = 7000  # a listener of the outsider: egress from the release's pods is not allowed to it
CONNECT = 3  # seconds one connection attempt may take (the engine REJECTs: a refusal answers at once)


def _outsider_manifest(image: str) -> str:
    """A pod of the namespace without the release's labels, serving a redis-server on OUTSIDER_PORT."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": OUTSIDER, "labels": {"app": OUTSIDER}},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "containers": [
                    {
                        "name": "main",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": ["redis-server", "--port", str(OUTSIDER_PORT), "--protected-mode", "no"],
                        "ports": [{"containerPort": OUTSIDER_PORT}],
                        "readinessProbe": {"tcpSocket": {"port": OUTSIDER_PORT}, "periodSeconds": 2},
                    }
                ],
            },
        }
    )


def _pod_ip(cluster: Cluster, pod: str) -> str:
    return cluster.kubectl("get", "pod", pod, "-o", "jsonpath={.status.podIP}").stdout


def _connects(cluster: Cluster, pod: str, container: str, ip: str, port: int) -> bool:
    """True when `pod` opens a TCP connection to ip:port within CONNECT seconds."""
    script = f"exec timeout {CONNECT} bash -c 'exec 3<>/dev/tcp/{ip}/{port}'"
    done = cluster.kubectl("exec", pod, "-c", container, "--", "sh", "-c", script, check=False, timeout=60)
    if done.returncode not in (0, 1, 124):  # 1: refused, 124: timed out; anything else is kubectl's
        raise AssertionError(f"kubectl exec {pod} failed ({done.returncode}): {done.stderr[-500:]}")
    return done.returncode == 0


def _redis_cli(cluster: Cluster, pod: str, container: str, ip: str, port: int) -> str:
    """What redis-cli in `pod` gets for a PING without a login: NOAUTH once connected."""
    script = f"env -u REDISCLI_AUTH timeout {CONNECT} redis-cli -h {ip} -p {port} ping 2>&1"
    done = cluster.kubectl("exec", pod, "-c", container, "--", "sh", "-c", script, check=False, timeout=60)
    return done.stdout.strip()


def test_pods_outside_the_release_are_refused_until_listed_in_client_sources(cluster: Cluster):
    started = time.monotonic()
    image = cluster.env.get("RCH_REDIS_IMAGE") or default_images()["image"]
    cluster.kubectl("apply", "-f", "-", input=_outsider_manifest(image))
    cluster.helm(
        "install",
        RELEASE,
        str(CHART),
        *cluster.values,
        "--set",
        "cluster.replicasPerMaster=0",
        "--wait",
        "--timeout",
        "300s",
    )
    cluster.timed("netpol install (3 masters, 0 replicas)", started)
    # The post-install hook Job formed the cluster under its policy (Redis pods, DNS, API only): helm
    # waited for it to succeed, and the cluster verifies from the outside (the node is always allowed).
    report = cluster.wait_verified(RELEASE, 120)
    assert {c["name"]: c["status"] for c in report["checks"]}["network-policy"] == "pass"
    policies = cluster.kubectl("get", "networkpolicies", "-o", "name").stdout.split()
    assert f"networkpolicy.networking.k8s.io/{RELEASE}-redis-cluster-tools" in policies, policies
    cluster.kubectl("wait", "--for=condition=Ready", f"pod/{OUTSIDER}", "--timeout=120s")

    pods = [f"{RELEASE}-redis-cluster-{i}" for i in range(3)]
    target = _pod_ip(cluster, pods[0])
    outsider = _pod_ip(cluster, OUTSIDER)
    # Positive controls first, so that no refusal below can come from a broken network: another Redis
    # pod of the release reaches both ports, and the outsider's own listener answers (from the node).
    assert _connects(cluster, pods[1], "redis", target, 6379)
    assert _connects(cluster, pods[1], "redis", target, 16379)
    assert _redis_cli(cluster, pods[1], "redis", target, 6379).startswith("NOAUTH")
    with socket.create_connection((outsider, OUTSIDER_PORT), timeout=CONNECT):
        pass

    # The outsider is refused on the client port and on the cluster bus.
    t0 = time.monotonic()
    assert not _connects(cluster, OUTSIDER, "main", target, 6379)
    refused_in = time.monotonic() - t0
    assert not _connects(cluster, OUTSIDER, "main", target, 16379)
    answer = _redis_cli(cluster, OUTSIDER, "main", target, 6379)
    assert "NOAUTH" not in answer and "PONG" not in answer, answer
    print(
        f"\n[e2e] outsider -> {target}:6379 refused in {refused_in:.2f} s (kubectl exec included): {answer}"
    )

    # The release's pods: names resolve (egress to the cluster DNS), and nothing else is allowed: not the
    # outsider's listener, not the Kubernetes API (the Redis pods have no business there).
    subdomain = cluster.kubectl("get", "pod", pods[0], "-o", "jsonpath={.spec.subdomain}").stdout
    peer = f"{pods[2]}.{subdomain}.{cluster.namespace}.svc.cluster.local"
    resolved = cluster.kubectl("exec", pods[0], "-c", "redis", "--", "getent", "hosts", peer).stdout
    assert _pod_ip(cluster, pods[2]) in resolved, resolved
    assert not _connects(cluster, pods[0], "redis", outsider, OUTSIDER_PORT)
    api = cluster.run(
        "kubectl", "get", "service", "kubernetes", "-n", "default", "-o", "jsonpath={.spec.clusterIP}"
    )
    assert not _connects(cluster, pods[0], "redis", api.stdout, 443)

    # clientSources lists the outsider: it reaches the client port (NOAUTH: connected, not logged in),
    # still not the bus. Measured: from the NetworkPolicy's change in the API to the first connection.
    changed: dict[str, float] = {}
    stop = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 400
        while not stop.is_set() and time.monotonic() < deadline and "policy" not in changed:
            spec = cluster.kubectl(
                "get",
                "networkpolicy",
                f"{RELEASE}-redis-cluster",
                "-o",
                "jsonpath={.spec.ingress}",
                check=False,
            ).stdout
            if OUTSIDER in spec:
                changed["policy"] = time.monotonic()
            else:
                time.sleep(0.1)
        while not stop.is_set() and time.monotonic() < deadline and "policy" in changed:
            if _connects(cluster, OUTSIDER, "main", target, 6379):
                changed["open"] = time.monotonic()
                return

    watcher = threading.Thread(target=watch, daemon=True)
    started = time.monotonic()
    watcher.start()
    try:
        cluster.helm(
            "upgrade",
            RELEASE,
            str(CHART),
            "--reuse-values",
            "--set-json",
            "networkPolicy.clientSources="
            + json.dumps([{"podSelector": {"matchLabels": {"app": OUTSIDER}}}]),
            "--wait",
            "--timeout",
            "300s",
        )
        cluster.timed("netpol upgrade (clientSources lists the outsider)", started)
        watcher.join(timeout=60)
    finally:
        stop.set()
    assert "open" in changed, f"the outsider never reached {target}:6379 after the upgrade: {changed}"
    print(f"\n[e2e] NetworkPolicy change in the API -> enforced: {changed['open'] - changed['policy']:.2f} s")
    assert _redis_cli(cluster, OUTSIDER, "main", target, 6379).startswith("NOAUTH")
    assert _connects(cluster, OUTSIDER, "main", _pod_ip(cluster, pods[2]), 6379)
    assert not _connects(cluster, OUTSIDER, "main", target, 16379)
    cluster.helm("uninstall", RELEASE, "--wait", "--timeout", "5m")
    cluster.kubectl("delete", "pod", OUTSIDER, "--wait=false")
