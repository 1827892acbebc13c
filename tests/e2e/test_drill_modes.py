"""The drill's modes on a real Kubernetes, each against the outcome it promises (issue 9, items 6 and 7):
graceful (the preStop's handover, proven), restart (the container restarts in its pod), hang (a frozen
process: Redis's own election), crash (frozen, then the pod force-deleted: no handover possible) and
rollout (a rolling restart of the StatefulSet under write load).

A release of its own in a namespace of its own, installed once for the module and uninstalled at the end.
The drills run the console script (`helm-redis drill RELEASE`, what the plugin's shim runs) with Helm's
plugin environment (HELM_NAMESPACE, KUBECONFIG)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from helm_redis.nodes import read_views
from helm_redis.release import open_release
from tests.kube import CHART, cluster_env

from .conftest import Cluster

pytestmark = pytest.mark.e2e
RELEASE = "drills"
HELM_REDIS = str(Path(sys.executable).with_name("helm-redis"))


@pytest.fixture(scope="module")
def release() -> Iterator[Cluster]:
    env, helm_home = cluster_env("rch-drill-helm-")
    redis_image, hook_image = env.get("RCH_REDIS_IMAGE"), env.get("RCH_HOOK_IMAGE")
    if not (redis_image and hook_image):
        raise RuntimeError("set RCH_REDIS_IMAGE and RCH_HOOK_IMAGE to images your cluster can run")
    node = subprocess.run(
        ["kubectl", "get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values: list[str] = []
    for prefix, image in (("image", redis_image), ("hook.image", hook_image)):
        repository, _, tag = image.rpartition(":")
        values += ["--set", f"{prefix}.repository={repository}", "--set", f"{prefix}.tag={tag}"]
        values += ["--set", f"{prefix}.pullPolicy=Never"]
    run_id = uuid.uuid4().hex[:6]
    values += [
        "--set",
        "persistence.type=hostPath",
        "--set",
        f"persistence.hostPath.node={node}",
        "--set",
        f"persistence.hostPath.path=/var/lib/redis-cluster-e2e/{run_id}/{{{{ordinal}}}}",
        "--set",
        "volumePermissions.enabled=true",
    ]
    cluster = Cluster(f"rch-drill-{run_id}", {**env, "HELM_NAMESPACE": f"rch-drill-{run_id}"}, values)
    cluster.run("kubectl", "create", "namespace", cluster.namespace)
    try:
        started = time.monotonic()
        cluster.helm("install", RELEASE, str(CHART), *values, "--wait", "--timeout", "15m")
        _wait_verified(cluster, 300)
        cluster.timed("install -> verified", started)
        yield cluster
    finally:
        print("\n[drill e2e] timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in cluster.timings.items()))
        with contextlib.suppress(OSError, subprocess.SubprocessError):  # the namespace goes in any case
            cluster.helm("uninstall", RELEASE, "--wait", "--timeout", "5m", check=False)
        cluster.run(
            "kubectl", "delete", "namespace", cluster.namespace, "--wait=true", "--timeout=300s", check=False
        )
        ours = [
            pv
            for pv in cluster.run("kubectl", "get", "pv", "-o", "name", check=False).stdout.split()
            if pv.startswith(f"persistentvolume/{cluster.namespace}-")
        ]
        if ours:
            cluster.run("kubectl", "delete", "--wait=false", *ours, check=False)
        shutil.rmtree(helm_home, ignore_errors=True)


def _helm_redis(cluster: Cluster, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HELM_REDIS, *args], env=cluster.env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _wait_verified(cluster: Cluster, timeout: float) -> dict:
    """Poll verify until it passes; while pods restart it may also exit 2 (a pod does not answer)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        done = _helm_redis(cluster, "verify", RELEASE, "--output", "json", timeout=120)
        if done.returncode == 0:
            return json.loads(done.stdout)
        last = done.stdout[-2000:] or done.stderr[-500:]
        time.sleep(3)
    raise AssertionError(f"not verified within {timeout} s: {last}")


def _drill(cluster: Cluster, mode: str, *extra: str) -> dict:
    """Run a drill on a verified cluster; the JSON report (its exit code as `exit_code`)."""
    _wait_verified(cluster, 300)
    started = time.monotonic()
    done = _helm_redis(cluster, "drill", RELEASE, "--mode", mode, "--output", "json", *extra)
    cluster.timed(f"{mode} drill", started)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"drill --mode {mode}: no JSON ({done.returncode}):\n{done.stderr}") from None
    report["exit_code"] = done.returncode
    report["progress"] = done.stderr
    gaps = ", ".join(f"{s['shard']} {s['longest_gap_seconds']:.3f} s" for s in report["shards"])
    print(
        f"\n[drill e2e] {mode}: exit {done.returncode}, outcome {report['outcome']!r}, promotion "
        f"{report['promotion_seconds']} s, manual failovers {report['manual_failovers']}, node timeout "
        f"{report['node_timeout_seconds']} s; longest write gap per shard: {gaps}; "
        f"writes {report['writes']}; timeline {[(e['event'], e['seconds']) for e in report['timeline']]}"
    )
    for handover in report["handovers"]:
        print(f"[drill e2e]   handover {handover}")
    return report


def _node_ids(cluster: Cluster) -> dict[str, str]:
    target = open_release(RELEASE, cluster.namespace, kubeconfig=cluster.env.get("KUBECONFIG"))
    try:
        views = read_views(target.connector, [m.address for m in target.members])
        return {m.name: v.node_id for m, v in zip(target.members, views, strict=True)}
    finally:
        target.close()


def _role(cluster: Cluster, pod: str) -> str:
    target = open_release(RELEASE, cluster.namespace, kubeconfig=cluster.env.get("KUBECONFIG"))
    try:
        member = next(m for m in target.members if m.name == pod)
        return "master" if read_views(target.connector, [member.address])[0].myself.is_master else "replica"
    finally:
        target.close()


def _ok(report: dict) -> None:
    assert report["exit_code"] == 0 and report["ok"], (report["problems"], report["progress"][-3000:])
    assert report["writes"]["lost_acknowledged"] == 0
    assert report["writes"]["acknowledged"] > 0


def test_a_port_forwarded_connection_reaches_redis_as_a_local_client(release: Cluster):
    # What the hang and crash drills rely on: `enable-debug-command local` accepts DEBUG from them.
    target = open_release(RELEASE, release.namespace, kubeconfig=release.env.get("KUBECONFIG"))
    try:
        client = target.connector.client(target.members[0].address)
        addr = client.client_info()["addr"]
        assert addr.rpartition(":")[0] in ("127.0.0.1", "::1", "[::1]"), addr
        assert client.config_get("enable-debug-command")["enable-debug-command"] == "local"
    finally:
        target.close()


def test_restart_drill_the_container_restarts_in_its_pod_without_a_manual_failover(release: Cluster):
    ids = _node_ids(release)

    report = _drill(release, "restart", "--timeout", "300")

    _ok(report)
    assert report["manual_failovers"] == 0
    assert report["outcome"] in (
        "returned as master within the node timeout: no failover",
        f"replica promoted: {report['new_master']} took over",
    )
    assert {"node down", "node back", "replication link up"} <= {e["event"] for e in report["timeline"]}
    assert _node_ids(release) == ids


def test_graceful_drill_hands_over_within_two_seconds_with_proof(release: Cluster):
    ids = _node_ids(release)

    report = _drill(release, "graceful", "--timeout", "300")

    _ok(report)
    assert report["manual_failovers"] >= 1
    assert report["outcome"].startswith("handed over to ")
    assert report["promotion_seconds"] < 2
    assert _node_ids(release) == ids
    assert _role(release, report["target"]) == "replica"


def test_hang_drill_is_redis_own_election_and_the_old_master_wakes_as_replica(release: Cluster):
    ids = _node_ids(release)

    report = _drill(release, "hang", "--timeout", "300")

    _ok(report)
    assert report["manual_failovers"] == 0
    assert report["outcome"].startswith("unplanned failover: ")
    assert report["promotion_seconds"] > report["node_timeout_seconds"]
    events = {e["event"] for e in report["timeline"]}
    assert {"failure seen", "replica promoted", "node back", "rejoined as replica"} <= events
    assert _node_ids(release) == ids
    assert _role(release, report["target"]) == "replica"


def test_crash_drill_loses_the_pod_without_a_handover_and_it_rejoins_with_its_node_id(release: Cluster):
    ids = _node_ids(release)

    report = _drill(release, "crash", "--timeout", "300")

    _ok(report)
    assert report["manual_failovers"] == 0  # the preStop could not hand over to a frozen Redis
    assert report["outcome"].startswith("unplanned failover: ")
    assert report["promotion_seconds"] > report["node_timeout_seconds"]
    events = {e["event"] for e in report["timeline"]}
    assert {"failure seen", "node back", "rejoined as replica", "replication link up"} <= events
    assert _node_ids(release) == ids  # the recreated pod kept its node ID (nodes.conf on its volume)
    assert _role(release, report["target"]) == "replica"


def test_rollout_drill_restarts_every_pod_and_loses_no_acknowledged_write(release: Cluster):
    ids = _node_ids(release)
    pods_before = _pod_uids(release)

    report = _drill(release, "rollout", "--timeout", "1200")

    _ok(report)
    assert report["mode"] == "rollout"
    assert {"rollout started", "rollout complete", "cluster healthy"} <= {
        e["event"] for e in report["timeline"]
    }
    pods_after = _pod_uids(release)
    assert set(pods_after) == set(pods_before)
    assert all(pods_after[pod] != uid for pod, uid in pods_before.items())  # every pod was recreated
    # Every master at the start was restarted: each shard changed hands at least once, by handover.
    assert {h["shard"] for h in report["handovers"]} == {s["shard"] for s in report["shards"]}
    assert all(s["lost"] == 0 and s["acknowledged"] > 0 for s in report["shards"])
    assert all(s["longest_gap_seconds"] < _node_timeout(release) for s in report["shards"]), report["shards"]
    assert _node_ids(release) == ids


def _pod_uids(cluster: Cluster) -> dict[str, str]:
    out = cluster.kubectl(
        "get",
        "pods",
        "-l",
        f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=redis",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.metadata.uid}{'\\n'}{end}",
    ).stdout
    return dict(line.split("=", 1) for line in out.split() if "=" in line)


def _node_timeout(cluster: Cluster) -> float:
    """The release's cluster-node-timeout in seconds: a shard unwritable that long had no handover."""
    target = open_release(RELEASE, cluster.namespace, kubeconfig=cluster.env.get("KUBECONFIG"))
    try:
        value = target.connector.client(target.members[0].address).config_get("cluster-node-timeout")
        return int(value["cluster-node-timeout"]) / 1000
    finally:
        target.close()
