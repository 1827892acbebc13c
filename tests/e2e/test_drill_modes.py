"""The drill's modes on a real Kubernetes, each against the outcome it promises (issue 9, items 6 and 7):
graceful (the preStop's handover, proven), restart (the container restarts in its pod), hang (a frozen
process: Redis's own election), crash (frozen, then the pod force-deleted: no handover possible) and
rollout (a rolling restart of the StatefulSet under write load).

A release of its own in a namespace of its own, installed once for the module and uninstalled at the end.
The drills run the console script (`helm-redis drill RELEASE`, what the plugin's shim runs) with Helm's
plugin environment (HELM_NAMESPACE, KUBECONFIG)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from helm_redis.release import open_release
from tests.kube import CHART, cluster_env

from .conftest import Cluster, assert_drill_ok, chart_values, remove

pytestmark = pytest.mark.e2e
RELEASE = "drills"


@pytest.fixture(scope="module")
def release() -> Iterator[Cluster]:
    env, helm_home = cluster_env("rch-drill-helm-")
    run_id = uuid.uuid4().hex[:6]
    # Redis's own mechanisms are what these drills measure: no failover controller to act before them
    # (tests/e2e/test_failover_controller.py measures it).
    values = [*chart_values(env, run_id), "--set", "failoverController.enabled=false"]
    cluster = Cluster(f"rch-drill-{run_id}", {**env, "HELM_NAMESPACE": f"rch-drill-{run_id}"}, values)
    cluster.run("kubectl", "create", "namespace", cluster.namespace)
    try:
        started = time.monotonic()
        cluster.helm("install", RELEASE, str(CHART), *values, "--wait", "--timeout", "15m")
        cluster.wait_verified(RELEASE, 300)
        cluster.timed("install -> verified", started)
        yield cluster
    finally:
        remove(cluster, [RELEASE], helm_home)


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
    ids = release.node_ids(RELEASE)

    report = release.drill(RELEASE, "restart", "--timeout", "300")

    assert_drill_ok(report)
    assert report["manual_failovers"] == 0
    assert report["outcome"] in (
        "returned as master within the node timeout: no failover",
        f"replica promoted: {report['new_master']} took over",
    )
    assert {"node down", "node back", "replication link up"} <= {e["event"] for e in report["timeline"]}
    assert release.node_ids(RELEASE) == ids


def test_graceful_drill_hands_over_within_two_seconds_with_proof(release: Cluster):
    ids = release.node_ids(RELEASE)

    report = release.drill(RELEASE, "graceful", "--timeout", "300")

    assert_drill_ok(report)
    assert report["manual_failovers"] >= 1
    assert report["outcome"].startswith("handed over to ")
    assert report["promotion_seconds"] < 2
    assert release.node_ids(RELEASE) == ids
    assert release.role(RELEASE, report["target"]) == "replica"


def test_hang_drill_is_redis_own_election_and_the_old_master_wakes_as_replica(release: Cluster):
    ids = release.node_ids(RELEASE)

    report = release.drill(RELEASE, "hang", "--timeout", "300")

    assert_drill_ok(report)
    assert report["manual_failovers"] == 0
    assert report["outcome"].startswith("unplanned failover: ")
    assert report["promotion_seconds"] > report["node_timeout_seconds"]
    events = {e["event"] for e in report["timeline"]}
    assert {"failure seen", "replica promoted", "node back", "rejoined as replica"} <= events
    assert release.node_ids(RELEASE) == ids
    assert release.role(RELEASE, report["target"]) == "replica"


def test_crash_drill_loses_the_pod_without_a_handover_and_it_rejoins_with_its_node_id(release: Cluster):
    ids = release.node_ids(RELEASE)

    report = release.drill(RELEASE, "crash", "--timeout", "300")

    assert_drill_ok(report)
    assert report["manual_failovers"] == 0  # the preStop could not hand over to a frozen Redis
    assert report["outcome"].startswith("unplanned failover: ")
    assert report["promotion_seconds"] > report["node_timeout_seconds"]
    events = {e["event"] for e in report["timeline"]}
    assert {"failure seen", "node back", "rejoined as replica", "replication link up"} <= events
    assert release.node_ids(RELEASE) == ids  # the recreated pod kept its node ID (nodes.conf on its volume)
    assert release.role(RELEASE, report["target"]) == "replica"


def test_rollout_drill_restarts_every_pod_and_loses_no_acknowledged_write(release: Cluster):
    ids = release.node_ids(RELEASE)
    pods_before = _pod_uids(release)

    report = release.drill(RELEASE, "rollout", "--timeout", "1200")

    assert_drill_ok(report)
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
    assert release.node_ids(RELEASE) == ids


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
