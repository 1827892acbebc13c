"""TLS, ACL users and NetworkPolicies together (all three on): a release with `tls.enabled` from an
existing Secret forms, verifies and survives crash and graceful drills with no acknowledged write lost;
a plain-TCP client is refused; a renewed certificate (the Secret's content replaced) is served by every
node without a restart, and the old one no longer is."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from tests.certs import fingerprint, issue, make_ca
from tests.kube import CHART

from .conftest import Cluster

pytestmark = pytest.mark.e2e
RELEASE = "tls"
FULLNAME = f"{RELEASE}-redis-cluster"
SECRET = "tls-redis-certs"


def _dns_names(namespace: str) -> list[str]:
    """The names the chart's own Certificate would carry (its README lists them)."""
    service = f"{FULLNAME}.{namespace}.svc"
    headless = f"{FULLNAME}-headless.{namespace}.svc"
    return [service, f"{service}.cluster.local", f"*.{headless}", f"*.{headless}.cluster.local", "localhost"]


def _put_secret(cluster: Cluster, directory: Path) -> None:
    """Create or replace the Secret's content (as cert-manager does on a renewal)."""
    manifest = cluster.kubectl(
        "create", "secret", "generic", SECRET,
        *(f"--from-file={key}={directory / key}" for key in ("tls.crt", "tls.key", "ca.crt")),
        "--dry-run=client", "-o", "json",
    ).stdout  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input=manifest)


def _pods(cluster: Cluster) -> dict[str, tuple[str, int]]:
    """Redis pod -> (uid, restarts of its containers): what a restart would change."""
    items = json.loads(
        cluster.kubectl(
            "get", "pods", "-l", f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=redis",
            "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    return {
        p["metadata"]["name"]: (
            p["metadata"]["uid"],
            sum(s.get("restartCount", 0) for s in p["status"].get("containerStatuses", [])),
        )
        for p in items
    }


def _served_fingerprint(cluster: Cluster, pod: str, client: Path) -> str:
    """The certificate a pod presents on its client port, read through a port-forward (bounded)."""
    forward = subprocess.Popen(
        ["kubectl", "--namespace", cluster.namespace, "port-forward", f"pod/{pod}", ":6379"],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = forward.stdout.readline() if forward.stdout else ""
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, f"port-forward to {pod} printed {line!r}"
        context = ssl.create_default_context(cafile=str(client / "ca.crt"))
        context.check_hostname = False  # the name is the tools' business; here: which certificate
        context.load_cert_chain(client / "tls.crt", client / "tls.key")
        with (
            socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=10) as raw,
            context.wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        return fingerprint(ssl.DER_cert_to_PEM_cert(der).encode())
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_tls_acl_and_network_policy_together_survive_drills_and_a_renewal(cluster: Cluster, tmp_path):
    ca = make_ca(tmp_path / "ca")
    first = issue(ca, tmp_path / "first", _dns_names(cluster.namespace), "first")
    _put_secret(cluster, first)
    started = time.monotonic()
    cluster.helm(
        "install", RELEASE, str(CHART), *cluster.values,
        "--set", "tls.enabled=true", "--set", f"tls.existingSecret={SECRET}",
        "--wait", "--timeout", "420s",
    )  # fmt: skip
    report = cluster.wait_verified(RELEASE, 240)
    cluster.timed("TLS install (TLS + ACL + NetworkPolicy)", started)
    checks = {c["name"]: c["status"] for c in report["checks"]}
    assert (
        checks["tls"] == "pass" and checks["auth-required"] == "pass" and checks["default-user-off"] == "pass"
    )
    assert checks["network-policy"] == "pass"

    # Plain TCP is refused on the client port (TLS only), from inside the pod itself.
    plain = cluster.kubectl(
        "exec", f"{FULLNAME}-0", "-c", "redis", "--",
        "sh", "-c", "timeout 5 redis-cli -h 127.0.0.1 ping 2>&1",
        check=False,
    )  # fmt: skip
    assert "PONG" not in plain.stdout and "NOAUTH" not in plain.stdout, plain.stdout

    for mode in ("crash", "graceful"):
        started = time.monotonic()
        code, drill = cluster.plugin_json("drill", RELEASE, "--mode", mode, "--timeout", "300")
        cluster.timed(f"TLS {mode} drill (promotion {drill.get('promotion_seconds')} s)", started)
        assert code == 0, drill
        assert drill["writes"]["acknowledged"] > 0
        assert drill["writes"]["lost_acknowledged"] == 0
        cluster.wait_verified(RELEASE, 240)

    # Renewal: the Secret's content is replaced; every node serves the new certificate, none restarts.
    pods = _pods(cluster)
    old = fingerprint((first / "tls.crt").read_bytes())
    assert {_served_fingerprint(cluster, pod, first) for pod in pods} == {old}
    renewed = issue(ca, tmp_path / "renewed", _dns_names(cluster.namespace), "renewed")
    new = fingerprint((renewed / "tls.crt").read_bytes())
    _put_secret(cluster, renewed)
    started = time.monotonic()
    serving: dict[str, str] = {}
    while time.monotonic() - started < 240:
        serving = {pod: _served_fingerprint(cluster, pod, renewed) for pod in pods}
        if set(serving.values()) == {new}:
            break
        time.sleep(5)
    cluster.timed("renewed certificate served by every node (kubelet refresh + readiness reload)", started)
    assert set(serving.values()) == {new}, {pod: f == old for pod, f in serving.items()}
    assert _pods(cluster) == pods, "a pod restarted (or was recreated) for the renewal"
    report = cluster.wait_verified(RELEASE, 120)
    assert {c["name"]: c["status"] for c in report["checks"]}["tls"] == "pass"
    cluster.helm("uninstall", RELEASE, "--wait", "--timeout", "5m")
